/// Which engine answers for which object, and why (`FileSideEngineChoice`): `syscalls` and `bpf`
/// as asked, and `auto` as a policy, not code inside a scanner. One policy serves one scanner
/// (its scans add up what `auto` weighs) or one report of whole objects.
///
/// For the pages a page table leaves open, `auto` starts with the syscalls engine and turns to
/// the BPF engine for shared memory once lseek has cost, or is on course to cost, about what the
/// BPF engine's load does (`turn(from:pendingPages:notes:)`). For whole-object counts, `auto`
/// walks only where cachestat(2) is missing (Linux before 6.5) and the BPF engine loads.
final class EnginePolicy {
    let choice: FileSideEngineChoice
    /// The BPF walker once loaded (or why it could not be).
    private var walker: Result<XArrayWalker, PageStatError>?
    /// lseek calls of the syscalls engine so far, and the pages of shared memory it has asked.
    private var lseeksSoFar = 0
    private var pagesAskedSoFar: UInt64 = 0
    /// Whether the current scan turned from the syscalls engine to the BPF engine (`auto`).
    private(set) var turnedToBPF = false
    /// The BPF engine's walked runs, kept between the engines of a scan (see `BPFFileSide.takeStorage`).
    private var walkedStorage: [XArrayRun] = []
    /// The last BPF engine this policy made, whose storage the next one reuses.
    private weak var lastBPF: BPFFileSide?
    /// For whole-object counts: the walker that counts, nil for cachestat (`decideCounting`).
    private var countingWalker: XArrayWalker?

    init(_ choice: FileSideEngineChoice) {
        self.choice = choice
    }

    /// lseek calls on shared memory that cost about what the BPF engine's load does (about
    /// 20-30 ms here, most of it libbpf reading the kernel's BTF; an lseek that walks to the next
    /// data page costs 0.4 us and up).
    static let bpfPaysLseeks = 1 << 15
    /// Pages asked before `auto` projects lseek calls from its rate so far.
    static let weighedPages: UInt64 = 1 << 12

    /// The BPF engine, where it is already loaded.
    var loadedWalker: XArrayWalker? { if case .success(let walker) = walker { walker } else { nil } }

    private func loadWalker() -> Result<XArrayWalker, PageStatError> {
        if walker == nil { walker = Result { () throws(PageStatError) in try XArrayWalker.shared() } }
        return walker!
    }

    /// A new scan begins (lseek calls add up from one scan to the next: `raw` scans batch by
    /// batch). With `bpf`, loads it or throws why it cannot.
    func beginScan(fileSide: Bool) throws(PageStatError) {
        turnedToBPF = false
        if choice == .bpf && fileSide, case .failure(let error) = loadWalker() { throw error }
    }

    /// Whether the BPF engine answers for `object` from the start: always with `bpf` (where it
    /// cannot load, the scan fails with the reason), never with `syscalls`, and with `auto` for
    /// shared memory once it is loaded (see `turn`). Notes say which engine ran and why.
    func bpfFromStart(for object: PageCacheObject, notes: inout Notes) throws(PageStatError) -> Bool {
        switch choice {
        case .syscalls:
            return false
        case .bpf:
            if case .failure(let error) = loadWalker() { throw error }
            notes.add(.bpfEngineAsAsked)
            return true
        case .auto:
            // Once loaded, for all shared memory left to ask (its load is paid).
            guard object.isShmem, case .success? = walker else { return false }
            return true
        }
    }

    /// The engine for the pending pages of `object`: the BPF engine where `bpfFromStart` said so,
    /// else the syscalls engine with what the object's counts told of its data pages.
    func engine(for object: PageCacheObject, bpf: Bool, dataMode: FileSide.DataMode) -> any PageCacheEngine {
        if bpf, let walker = loadedWalker { return bpfEngine(object, walker) }
        return SyscallFileSide(object: object, dataMode: dataMode)
    }

    /// Pages the syscalls engine is asked at once: fewer while `auto` is still weighing, so that
    /// it can turn as soon as lseek has cost, or is on course to cost, what the BPF engine's load does.
    var stretchPages: UInt64 { choice == .auto && walker == nil ? 1 << 12 : 1 << 16 }

    /// With `auto`: once the syscalls engine's lseek calls on shared memory have cost about what
    /// the BPF engine's load does (`bpfPaysLseeks`), the BPF engine, where it loads, for the rest
    /// of the scan. Or sooner, on course to: once it has asked `weighedPages` pages, when lseek
    /// calls at the rate so far over the `pendingPages` still to ask in this mapping would reach
    /// that cost. (Fragmented shared memory shows at once: one or two calls per page, where a
    /// uniform layout costs a few calls per stretch.) nil: keep `engine`.
    func turn(from engine: any PageCacheEngine, pendingPages: UInt64,
                      notes: inout Notes) -> (any PageCacheEngine)? {
        guard choice == .auto, !engine.knowsSwapLocations, engine.object.isShmem else { return nil }
        let lseeks = UInt64(lseeksSoFar + engine.lseeks)
        let onCourse = pagesAskedSoFar >= Self.weighedPages
            && lseeks + lseeks * pendingPages / pagesAskedSoFar >= UInt64(Self.bpfPaysLseeks)
        guard lseeks >= UInt64(Self.bpfPaysLseeks) || onCourse else { return nil }
        switch loadWalker() {
        case .success(let walker):
            notes.add(.bpfEngineAfterLseeks(lseekCalls: Self.bpfPaysLseeks))
            lseeksSoFar += engine.takeLseeks()
            turnedToBPF = true
            return bpfEngine(engine.object, walker)
        case .failure(let error):
            notes.add(.bpfEngineUnavailable(error))
            return nil
        }
    }

    /// The syscalls engine asked `pages` more pages.
    func asked(_ pages: UInt64) { pagesAskedSoFar += pages }

    /// An engine is done with its stretch of the scan: its lseek calls are counted, and the BPF
    /// engine's storage kept for the next.
    func finished(_ engine: any PageCacheEngine) {
        lseeksSoFar += engine.takeLseeks()
        if let bpf = lastBPF, bpf === engine { walkedStorage = bpf.takeStorage() }
    }

    /// A BPF engine for `object` that reuses the storage of the last one's walks.
    private func bpfEngine(_ object: PageCacheObject, _ walker: XArrayWalker) -> BPFFileSide {
        let engine = BPFFileSide(object: object, walker: walker, storage: walkedStorage)
        walkedStorage = []
        lastBPF = engine
        return engine
    }

    // MARK: whole objects

    /// For reports that count whole objects (`file`, `objects`): the BPF walker when asked for,
    /// or with `auto` where cachestat(2) is missing (Linux before 6.5) and the walker loads;
    /// cachestat otherwise. `note` says which ran and why, when it is not the usual. Returns
    /// whether the BPF engine counts.
    @discardableResult
    func decideCounting(note: (ScanNote) -> Void) throws(PageStatError) -> Bool {
        switch choice {
        case .syscalls:
            countingWalker = nil
        case .bpf:
            countingWalker = try XArrayWalker.shared()
        case .auto:
            guard !PageCacheObject.cachestatSupported else { countingWalker = nil; break }
            do {
                countingWalker = try XArrayWalker.shared()
                note(.cachestatMissingCountedByBPF)
            } catch {
                note(.cachestatMissingAndBPFUnavailable(error))
                countingWalker = nil
            }
        }
        return countingWalker != nil
    }

    /// Whether the BPF engine counts whole objects (after `decideCounting`).
    var countsByBPF: Bool { countingWalker != nil }

    /// The engine that counts `object` whole, as `decideCounting` decided.
    func countingEngine(for object: PageCacheObject) -> any PageCacheEngine {
        if let countingWalker { return BPFFileSide(object: object, walker: countingWalker) }
        return SyscallFileSide(object: object)
    }
}
