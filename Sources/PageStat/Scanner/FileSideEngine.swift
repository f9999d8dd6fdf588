/// The file side of a scan: what a shared object's or a file's page cache says about the pages
/// that a process's page table leaves open. The scanner asks through this seam only; two engines
/// answer: `SyscallFileSide` (lseek SEEK_DATA/SEEK_HOLE, cachestat, mincore on a window of our
/// own, our own smaps) and `BPFFileSide` (the object's page-cache xarray, walked by a BPF
/// iterator: swap locations included).
protocol FileSideEngine: AnyObject {
    /// Asks ahead, in bulk, what the engine can for the pending stretches to come: they lie in
    /// `span` (page offsets into the object), and `long` are those of 64 pages or more.
    func prepare(span: Range<UInt64>, long: [(first: UInt64, pages: UInt64)]) throws(PageStatError)
    /// Classifies the object's pages `[first, first + count)` and appends them in order to `runs`
    /// as the pages of a mapping from address `start` on, each run with `flags` added: runs of
    /// `swapped` (with the first page's swap location where the engine knows it), `cached` or
    /// `none`.
    func resolve(first: UInt64, count: UInt64, at start: UInt64, flags: PageFlags,
                 into runs: inout RunBuilder) throws(PageStatError)
}

typealias FileSideEmit = (_ pages: UInt64, _ state: PageState, _ flags: PageFlags, _ swap: SwapLocation?) -> Void

/// Which engine answers for the file side.
public enum FileSideEngineChoice: String, Sendable, CaseIterable {
    /// BPF where it loads and where it pays (shared memory left for page-by-page answers);
    /// syscalls otherwise, with a note that says why.
    case auto
    /// The page-cache xarray through a BPF iterator (root, BTF, libbpf.so.1); fails when it cannot load.
    case bpf
    /// lseek, cachestat, mincore and smaps: no swap locations for shared memory.
    case syscalls
}

enum FileSide {
    enum DataMode: Sendable {
        /// Ask page by page (mincore, cachestat; or the xarray).
        case perPage
        /// The object holds no resident page that this process does not map.
        case swapped
        /// The object holds no swapped page.
        case cached
    }
}

/// The `bpf` engine of the file side: the object's page-cache xarray, slot by slot, through a BPF
/// iterator (`XArrayWalker`). A folio is `cached` (in memory, not mapped here), a shmem value
/// entry `swapped` with its swap type and offset, no entry (or a regular file's shadow of an
/// evicted page) `none`.
final class BPFFileSide: FileSideEngine {
    let object: PageCacheObject
    let walker: XArrayWalker
    /// The object's slots over the span of the stretches to come, walked once in `prepare`
    /// (one iterator pass per 32 Ki runs, not one per stretch), and where the next `resolve`
    /// starts looking.
    private var walked: [XArrayRun] = []
    private var cursor = 0

    /// `storage`: an array whose capacity the walks may reuse (see `takeStorage`).
    init(object: PageCacheObject, walker: XArrayWalker, storage: [XArrayRun] = []) {
        self.object = object
        self.walker = walker
        walked = storage
        walked.removeAll(keepingCapacity: true)
    }

    /// The walked runs' storage, emptied, for the next engine: a scan of many waves then grows
    /// (and faults in) that storage once.
    func takeStorage() -> [XArrayRun] {
        walked.removeAll(keepingCapacity: true)
        cursor = 0
        return walked
    }

    func prepare(span: Range<UInt64>, long: [(first: UInt64, pages: UInt64)]) throws(PageStatError) {
        // The storage stays for the next span: the scanner prepares a wave at a time.
        walked.removeAll(keepingCapacity: true)
        cursor = 0
        let end = min(span.upperBound, (object.size + object.pageSize - 1) / object.pageSize)
        guard span.lowerBound < end else { return }
        try walker.walk(fd: object.fd, first: span.lowerBound, count: end - span.lowerBound) { walked.append($0) }
    }

    func resolve(first: UInt64, count: UInt64, at start: UInt64, flags: PageFlags,
                 into runs: inout RunBuilder) throws(PageStatError) {
        let pageSize = object.pageSize
        let end = first + count
        let inFileEnd = min(end, max(first, (object.size + pageSize - 1) / pageSize))
        var page = first
        func address(_ page: UInt64) -> UInt64 { start + (page - first) * runs.pageSize }
        if page < inFileEnd {
            // Stretches come in order: go on from where the last one ended, or walk afresh for a
            // stretch that `prepare` did not cover.
            if cursor < walked.count && walked[cursor].first > page { cursor = 0 }
            while cursor < walked.count && walked[cursor].first + walked[cursor].pages <= page { cursor += 1 }
            if cursor == walked.count || walked[cursor].first > page {
                var fresh: [XArrayRun] = []
                try walker.walk(fd: object.fd, first: page, count: inFileEnd - page) { fresh.append($0) }
                walked = fresh
                cursor = 0
            }
            // Local copies: no access to the class's storage per run.
            var at = cursor
            walked.withUnsafeBufferPointer { walked in
                // Room for the walked runs still ahead, where the builder would otherwise grow
                // by doubling (copying a fragmented wave's runs several times over); at most the
                // walk's own length, and geometric: Array.reserveCapacity allocates exactly what
                // it is asked, and short stretches between present pages come one call each.
                let wanted = runs.runs.count + (walked.count - at) + 1
                if wanted > runs.runs.capacity { runs.reserveCapacity(max(wanted, 2 * runs.runs.capacity)) }
                while page < inFileEnd && at < walked.count {
                    let run = walked[at]
                    let stop = min(inFileEnd, run.first + run.pages)
                    let pages = stop - page
                    switch run.kind {
                    case .hole, .shadow:
                        runs.append(start: address(page), pages: pages, state: .none, flags: flags)
                    case .resident:
                        runs.append(start: address(page), pages: pages, state: .cached, flags: flags)
                    case .swap(let type, let offset):
                        runs.append(start: address(page), pages: pages, state: .swapped, flags: flags,
                                    swap: SwapLocation(type: type, offset: offset + (page - run.first)))
                    }
                    page = stop
                    if stop == run.first + run.pages { at += 1 }
                }
            }
            cursor = at
        }
        // Pages of the mapping beyond the end of the object (touching them raises SIGBUS).
        if end > page { runs.append(start: address(page), pages: end - page, state: .none, flags: flags) }
    }
}

/// An object's page cache counted from one walk of its xarray (the `bpf` engine): what `file`
/// and `objects` need where cachestat(2) is missing, or where they are asked to walk.
struct XArrayCounts: Sendable, Equatable {
    /// Folios: in memory (on shmem, pages in the swap cache too).
    var resident: UInt64 = 0
    /// shmem swap entries.
    var swapped: UInt64 = 0
    /// No entry.
    var holes: UInt64 = 0
    /// Regular files: shadows of evicted pages.
    var evicted: UInt64 = 0

    /// Walks the pages [0, pages) of `object`; `body` sees each run too.
    static func walk(_ object: PageCacheObject, pages: UInt64, walker: XArrayWalker,
                     _ body: (XArrayRun) -> Void = { _ in }) throws(PageStatError) -> XArrayCounts {
        var counts = XArrayCounts()
        try walker.walk(fd: object.fd, first: 0, count: pages) { run in
            switch run.kind {
            case .hole: counts.holes += run.pages
            case .resident: counts.resident += run.pages
            case .swap: counts.swapped += run.pages
            case .shadow: counts.evicted += run.pages
            }
            body(run)
        }
        return counts
    }
}

extension FileSideEngineChoice {
    /// For `file` and `objects`, which count whole objects: the BPF walker when asked for, or
    /// with `auto` where cachestat(2) is missing (Linux before 6.5) and the walker loads; nil for
    /// the syscalls (cachestat) way. `note` says which ran and why, when it is not the usual.
    func walkerForCounting(note: (ScanNote) -> Void) throws(PageStatError) -> XArrayWalker? {
        switch self {
        case .syscalls:
            return nil
        case .bpf:
            return try XArrayWalker.shared()
        case .auto:
            guard !PageCacheObject.cachestatSupported else { return nil }
            do {
                let walker = try XArrayWalker.shared()
                note(.cachestatMissingCountedByBPF)
                return walker
            } catch {
                note(.cachestatMissingAndBPFUnavailable(error))
                return nil
            }
        }
    }
}
