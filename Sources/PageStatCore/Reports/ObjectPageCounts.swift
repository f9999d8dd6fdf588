/// A shared object's or a file's page cache counted over its pages (all of them, or a stretch):
/// the one definition of the states `file`, `objects`, `top` and the exporter report for whole
/// objects. Every page counted is in exactly one of `cached`, `swapped`, `evicted` and `holes`.
public struct ObjectPageCounts: Sendable, Hashable {
    /// Pages in the page cache, in memory (on shmem, pages in the swap cache too).
    public var cached: UInt64 = 0
    /// shmem: pages in swap (the page cache holds their swap entries).
    public var swapped: UInt64 = 0
    /// Regular files: pages evicted from the cache (the page cache holds their shadows).
    public var evicted: UInt64 = 0
    /// Pages with no entry: never written (or punched out), or beyond what was written.
    public var holes: UInt64 = 0
    /// Dirty and under-writeback pages, where they were read (cachestat(2)); nil otherwise.
    public var dirty: UInt64?
    public var writeback: UInt64?

    public init() {}

    /// From cachestat(2) over `pages` pages: `cache` (nr_cache) and `evicted` (nr_evicted, which
    /// counts shmem's swap entries and a regular file's shadows alike).
    public init(pages: UInt64, cache: UInt64, evicted: UInt64, shmem: Bool, dirty: UInt64? = nil, writeback: UInt64? = nil) {
        cached = cache
        if shmem { swapped = evicted } else { self.evicted = evicted }
        holes = pages - min(pages, cache + evicted)
        self.dirty = dirty
        self.writeback = writeback
    }

    /// Counts the pages of one run of xarray entries.
    @inline(__always)
    package mutating func add(_ run: XArrayRun) {
        switch run.kind {
        case .hole: holes += run.pages
        case .resident: cached += run.pages
        case .swap: swapped += run.pages
        case .shadow: evicted += run.pages
        }
    }
}
