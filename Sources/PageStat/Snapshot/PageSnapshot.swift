#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// One stretch of pages, in order: where it starts (an address in a process; a byte offset in an
/// object), its pages, where they came from, and for `memory`, `swap` and `swappedIn` their bytes.
public struct SnapshotChunk {
    /// The mapping the pages belong to; nil for an object.
    public var mapping: Mapping?
    /// The first page's address (a process) or byte offset (an object).
    public var start: UInt64
    public var pages: UInt64
    public var source: SnapshotSource
    /// The pages' bytes in the snapshot's one buffer, valid only during the call that hands the
    /// chunk over; nil for a source without bytes.
    package var storage: UnsafeRawBufferPointer?

    /// Calls `body` with the pages' bytes (`memory`, `swap`, `swappedIn`) and returns its result;
    /// nil for a source without bytes (`zero`, `hole`, `file`, `unsettled`). The bytes live in
    /// the snapshot's one buffer: copy what must outlast the call.
    public func withBytes<Result, Failure: Error>(_ body: (RawSpan) throws(Failure) -> Result) throws(Failure) -> Result? {
        guard let storage else { return nil }
        return try body(storage.bytes)
    }
}

/// How a snapshot reads.
public struct SnapshotOptions: Sendable {
    /// Pages of swap areas that cannot be read (`PageStatError.swapAreaRefused`) are read through
    /// the mapping or the object instead, which swaps them in; they count as `swappedIn`.
    public var allowSwapIn = false
    /// How often a page found moved after its read is planned and read again before it is
    /// reported `unsettled`.
    public var maxReplans = 3
    /// Pages per window (located, read and checked together), and the size of the one buffer
    /// the snapshot holds.
    public var chunkPages = 4096
    /// Only mappings of these kinds (a process snapshot); nil for every mapping.
    public var mappingKinds: Set<MappingKind>?

    public init(allowSwapIn: Bool = false) {
        self.allowSwapIn = allowSwapIn
    }
}

/// What a finished snapshot tells besides its chunks.
public struct SnapshotResult: Sendable {
    /// Where the pages came from.
    public var totals = SnapshotTotals()
    /// The planned page states, as `show` counts them.
    public var planned: [PageState: UInt64] = [:]
    /// The scan's notes: what it could not tell, and why.
    public var notes: [ScanNote] = []
}

/// Copies the memory of a process range or of a shared memory object (memfd, tmpfs, /dev/shm,
/// SysV shm) without swapping any of it in: plans it with the scanners (page states; swap
/// locations of private pages from /proc/PID/pagemap, of shared pages from the page-cache xarray,
/// `XArrayWalker`), then reads present pages from memory (process_vm_readv, or pread of pages
/// resident in the object) and swapped pages straight from their swap slots (O_DIRECT, one read
/// per stretch of consecutive slots). Every page read from a slot is checked again afterwards
/// (its pagemap entry, or its xarray slot): one that moved is planned and read again, a bounded
/// number of times, else reported `unsettled`. Stale slot bytes are never handed over as data.
///
/// Chunks come in address order through one buffer of `SnapshotOptions.chunkPages` pages, so a
/// caller can stream guest RAM into a migration stream without a temporary file.
/// Needs root (pagemap swap entries, map_files, the swap device, BPF).
public final class PageSnapshot {
    enum Target {
        case process(ProcessScanner, range: AddressRange?)
        case object(PageCacheObject, path: String)
    }

    let target: Target
    let options: SnapshotOptions
    /// The size of the pages that chunks count.
    public let pageSize: UInt64

    /// The object's size in bytes; nil for a process.
    public var objectSize: UInt64? {
        if case .object(let object, _) = target { return object.size }
        return nil
    }

    /// A snapshot of `range` of process `pid` (every mapping when nil).
    public init(pid: Int32, range: AddressRange? = nil, options: SnapshotOptions = SnapshotOptions()) throws(PageStatError) {
        let scanner = try ProcessScanner(pid: pid)
        target = .process(scanner, range: range)
        self.options = options
        pageSize = scanner.pageSize
    }

    /// A snapshot of the shared memory object at `path` (a tmpfs or /dev/shm file, or a
    /// /proc/PID/fd/N or /proc/PID/map_files/START-END link to a memfd, SysV segment or shared
    /// anonymous mapping). Throws `.invalidInput` for a file that is not shmem.
    public init(objectAt path: String, options: SnapshotOptions = SnapshotOptions()) throws(PageStatError) {
        let object = try PageCacheObject.open(path: path, pid: getpid(), what: path)
        guard object.isShmem, object.hugePageSize == nil else {
            throw .invalidInput("\(path) is not a shared memory object (tmpfs, memfd, /dev/shm, SysV shm): copy it with cp")
        }
        target = .object(object, path: path)
        self.options = options
        pageSize = object.pageSize
    }

    /// The mappings a process snapshot covers (maps, clamped to the range), each with its
    /// planned runs; nil for an object. Plans anew on each call.
    public func plan() throws(PageStatError) -> [MappingReport]? {
        guard case .process(let scanner, let range) = target else { return nil }
        return try scanner.scan(Self.scanOptions(range)).mappings
    }

    /// Plans, then reads every page and hands the chunks to `body` in order. A `body` error
    /// ends the copy and is thrown.
    public func copy(_ body: (SnapshotChunk) throws(PageStatError) -> Void) throws(PageStatError) -> SnapshotResult {
        try withoutActuallyEscaping(body) { (body) throws(PageStatError) in try copy(escaping: body) }
    }

    private func copy(escaping body: @escaping (SnapshotChunk) throws(PageStatError) -> Void) throws(PageStatError) -> SnapshotResult {
        var result = SnapshotResult()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: options.chunkPages * Int(pageSize), alignment: Int(pageSize))
        defer { buffer.deallocate() }
        let slots = try SwapSlotSource()
        switch target {
        case .process(let scanner, let range):
            let report = try scanner.scan(Self.scanOptions(range))
            result.notes = report.notes
            let pagemap = try Pagemap(handle: scanner.handle, pageSize: Int(pageSize))
            for mapping in report.mappings where options.mappingKinds?.contains(mapping.mapping.kind) ?? true {
                for run in mapping.runs { result.planned[run.state, default: 0] += run.pages }
                let object = mapping.mapping.kind.isShmem ? try? PageCacheObject.open(mapping: mapping.mapping, pid: scanner.pid) : nil
                let engine: (any PageCacheEngine)? = object.flatMap { object in
                    (try? XArrayWalker.shared()).map { BPFFileSide(object: object, walker: $0) }
                }
                let side = ProcessSide(pid: scanner.pid, mapping: mapping.mapping, pagemap: pagemap.fileDescriptor, object: object,
                                       engine: engine, pageSize: pageSize)
                var copier = SnapshotCopier(side: side, slots: slots, options: options, buffer: buffer, pageSize: pageSize,
                                            mapping: mapping.mapping, body: body)
                for run in mapping.runs {
                    try copier.copy(start: run.start, pages: run.pages, planned: side.planned(run))
                }
                try copier.flush()
                result.totals = result.totals.merged(copier.totals)
            }
        case .object(let object, _):
            let side = ObjectSide(object: object, engine: BPFFileSide(object: object, walker: try XArrayWalker.shared()), pageSize: pageSize)
            var copier = SnapshotCopier(side: side, slots: slots, options: options, buffer: buffer, pageSize: pageSize,
                                        mapping: nil, body: body)
            let pages = (object.size + pageSize - 1) / pageSize
            for (first, count, location) in try side.locate(index: 0, pages: pages) {
                result.planned[location.state, default: 0] += count
                try copier.copy(start: first * pageSize, pages: count, planned: location)
            }
            try copier.flush()
            result.totals = copier.totals
        }
        return result
    }

    static func scanOptions(_ range: AddressRange?) -> ScanOptions {
        // `auto`: the BPF engine for shared memory wherever it loads (swap locations), else the
        // syscalls engine with its note; the copy then finds those pages without a location.
        ScanOptions(range: range, hugeAndZeroFlags: false)
    }
}
