/// A run of a file's pages with one state, by page offset into the file.
public struct FileRun: Sendable, Hashable {
    public var first: UInt64
    public var pages: UInt64
    public var state: PageState
    /// Swapped tmpfs pages, read by the BPF engine: the swap type and offset of the first page
    /// (the run's pages sit at consecutive offsets).
    public var swap: SwapLocation? = nil

    public init(first: UInt64, pages: UInt64, state: PageState, swap: SwapLocation? = nil) {
        self.first = first
        self.pages = pages
        self.state = state
        self.swap = swap
    }
}

/// One file's page cache: cachestat's counts and, on tmpfs, swapped pages and holes.
public struct FileReport: Sendable {
    public var path: String
    public var size: UInt64
    /// Whether the file lives on tmpfs (shmem), where pages swap instead of being written back.
    public var isShmem: Bool
    /// Pages in the page cache; on hugetlbfs, the base pages of the huge pages the file holds.
    public var cached: UInt64
    /// Dirty and under-writeback pages (cachestat); nil on hugetlbfs, which has no writeback.
    public var dirty: UInt64?
    public var writeback: UInt64?
    /// Regular files: pages evicted from the cache (cachestat nr_evicted).
    public var evicted: UInt64?
    /// tmpfs: pages in swap (cachestat nr_evicted counts shmem swap entries).
    public var swapped: UInt64?
    /// tmpfs and hugetlbfs: pages never written (no memory, no swap).
    public var holes: UInt64?
    /// hugetlbfs: the huge page size; counts and runs stay in base pages, whole huge pages each.
    public var hugePageSize: UInt64?
    /// Runs of page states when asked for: cached, swapped or none.
    public var runs: [FileRun]?
    /// Which engine counted the pages, and what is unknown and why.
    public var notes: [ScanNote] = []

    public init(path: String, size: UInt64, isShmem: Bool, cached: UInt64, dirty: UInt64?, writeback: UInt64?,
                evicted: UInt64? = nil, swapped: UInt64? = nil, holes: UInt64? = nil, hugePageSize: UInt64? = nil,
                runs: [FileRun]? = nil, notes: [ScanNote] = []) {
        self.path = path
        self.size = size
        self.isShmem = isShmem
        self.cached = cached
        self.dirty = dirty
        self.writeback = writeback
        self.evicted = evicted
        self.swapped = swapped
        self.holes = holes
        self.hugePageSize = hugePageSize
        self.runs = runs
        self.notes = notes
    }
}
