/// Which engine answers for which object, and why (`FileSideEngineChoice`): `syscalls` and `bpf`
/// as asked, and `auto` as a policy, not code inside a scanner. One policy serves one scanner
/// (kept between its scans) or one report of whole objects.
///
/// `auto` is the BPF engine for shared memory (tmpfs, memfd, shared anonymous memory, SysV shm,
/// hugetlbfs) wherever it loads: it names the swap location of every swapped page, and walks at
/// a few nanoseconds a slot. Where it cannot load (no root, BTF, libbpf, or the verifier refused
/// it), the syscalls engine answers, with a note that says why. Regular files keep the syscalls
/// engine (cachestat(2), lseek, mincore): they have no swap locations to name, and cachestat
/// settles a uniform stretch in one call; the walk counts them only where cachestat is missing
/// (Linux before 6.5). The walker is loaded once per process (`XArrayWalker.shared()`), so
/// long-lived users (the exporter, `--interval`) load it once and keep it.
final class EnginePolicy {
    let choice: FileSideEngineChoice
    /// The BPF walker once loaded (or why it could not be).
    private var walker: Result<XArrayWalker, PageStatError>?
    /// Whether `auto` has said that the BPF engine could not load (said once per policy).
    private var saidUnavailable = false
    /// The BPF engine's walked runs, kept between the engines of a scan (see `BPFFileSide.takeStorage`).
    private var walkedStorage: [XArrayRun] = []
    /// The last BPF engine this policy made, whose storage the next one reuses: its identity
    /// only. A weak reference would give every engine a side table, and each retain of it (one
    /// per stretch the scanner asks, millions in a fragmented scan) the runtime's slow path.
    private var lastBPF: ObjectIdentifier?
    /// For whole-object counts: whether the walker counts regular files too (`bpf`, or no
    /// cachestat; `decideCounting`).
    private var walksRegularFiles = false

    init(_ choice: FileSideEngineChoice) {
        self.choice = choice
    }

    /// Pages the syscalls engine is asked at once (the BPF engine is asked a whole run).
    static let stretchPages: UInt64 = 1 << 16

    /// The walker, loaded once; with `auto`, only where it finds this process's descriptors
    /// (`XArrayWalker.seesOwnDescriptors`: not in a PID namespace of its own), else why not.
    private func loadWalker() -> Result<XArrayWalker, PageStatError> {
        if walker == nil {
            walker = Result { () throws(PageStatError) in
                let loaded = try XArrayWalker.shared()
                if choice == .auto { try XArrayWalker.seesOwnDescriptors.get() }
                return loaded
            }
        }
        return walker!
    }

    /// A new scan begins. With `bpf`, loads it or throws why it cannot.
    func beginScan(fileSide: Bool) throws(PageStatError) {
        if choice == .bpf && fileSide, case .failure(let error) = loadWalker() { throw error }
    }

    /// The walker that reads shared memory's page cache under this policy: with `bpf` (loaded,
    /// or the scan fails with the reason), with `auto` where it loads (else nil, with the note
    /// that says why, once), never with `syscalls`.
    func sharedMemoryWalker(notes: inout Notes) throws(PageStatError) -> XArrayWalker? {
        switch choice {
        case .syscalls:
            return nil
        case .bpf:
            return try loadWalker().get()
        case .auto:
            switch loadWalker() {
            case .success(let walker):
                return walker
            case .failure(let error):
                if !saidUnavailable { notes.add(.bpfEngineUnavailable(error)) }
                saidUnavailable = true
                return nil
            }
        }
    }

    /// Whether the BPF engine answers for `object`: always with `bpf` (where it cannot load, the
    /// scan fails with the reason), never with `syscalls`, and with `auto` for shared memory
    /// wherever it loads. Notes say which engine ran and why.
    func bpfFromStart(for object: PageCacheObject, notes: inout Notes) throws(PageStatError) -> Bool {
        switch choice {
        case .syscalls:
            return false
        case .bpf:
            if case .failure(let error) = loadWalker() { throw error }
            notes.add(.bpfEngineAsAsked)
            return true
        case .auto:
            guard object.isShmem else { return false }
            return try sharedMemoryWalker(notes: &notes) != nil
        }
    }

    /// The engine for the pending pages of `object`: the BPF engine where `bpfFromStart` said so,
    /// else the syscalls engine with what the object's counts told of its data pages.
    func engine(for object: PageCacheObject, bpf: Bool, dataMode: FileSide.DataMode) -> any PageCacheEngine {
        if bpf, case .success(let walker)? = walker { return bpfEngine(object, walker) }
        return SyscallFileSide(object: object, dataMode: dataMode)
    }

    /// An engine is done with its stretch of the scan: the BPF engine's storage is kept for the next.
    func finished(_ engine: any PageCacheEngine) {
        if let bpf = engine as? BPFFileSide, ObjectIdentifier(bpf) == lastBPF { walkedStorage = bpf.takeStorage() }
    }

    /// A BPF engine for `object` that reuses the storage of the last one's walks.
    private func bpfEngine(_ object: PageCacheObject, _ walker: XArrayWalker) -> BPFFileSide {
        let engine = BPFFileSide(object: object, walker: walker, storage: walkedStorage)
        walkedStorage = []
        lastBPF = ObjectIdentifier(engine)
        return engine
    }

    // MARK: whole objects

    /// For reports that count whole objects (`file`, `objects`, `top`, the exporter): the BPF
    /// walker when asked for; with `auto`, the walker for shared memory wherever it loads (its
    /// counts are cachestat's, at a few nanoseconds a slot where cachestat(2) pays about 240 ns a
    /// swapped page; loaded at the first shared object, so a regular file alone never pays the
    /// load), and for regular files only where cachestat(2) is missing (Linux before 6.5);
    /// cachestat otherwise. `note` says which ran and why, when it is not the usual. Returns
    /// whether the BPF engine counts every object.
    @discardableResult
    func decideCounting(note: (ScanNote) -> Void) throws(PageStatError) -> Bool {
        switch choice {
        case .syscalls:
            break
        case .bpf:
            walker = .success(try XArrayWalker.shared())
            walksRegularFiles = true
        case .auto:
            guard !PageCacheObject.cachestatSupported else { break }
            switch loadWalker() {
            case .success:
                walksRegularFiles = true
                note(.cachestatMissingCountedByBPF)
            case .failure(let error):
                note(.cachestatMissingAndBPFUnavailable(error))
            }
        }
        return walksRegularFiles
    }

    /// The walker that counts `object` whole, as `decideCounting` decided (nil: cachestat).
    private func countingWalker(for object: PageCacheObject) -> XArrayWalker? {
        switch choice {
        case .syscalls: return nil
        case .bpf: return try? loadWalker().get()
        case .auto: return object.isShmem || walksRegularFiles ? try? loadWalker().get() : nil
        }
    }

    /// Whether the BPF engine counts `object` whole (after `decideCounting`).
    func countsByBPF(_ object: PageCacheObject) -> Bool { countingWalker(for: object) != nil }

    /// The engine that counts `object` whole, as `decideCounting` decided.
    func countingEngine(for object: PageCacheObject) -> any PageCacheEngine {
        if let walker = countingWalker(for: object) { return BPFFileSide(object: object, walker: walker) }
        return SyscallFileSide(object: object)
    }
}
