/// The page-cache side of a shared object or a file: what its page cache says about its pages,
/// asked a stretch at a time, never a page at a time. Every consumer goes through this seam:
/// the process scanner (`show`, `summary`, `raw`, `top` without PAGEMAP_SCAN) for the pages a
/// page table leaves open, and `file`, `objects`, `top` and the exporter for whole objects.
///
/// Under each engine:
/// - `SyscallFileSide` (`syscalls`): lseek(2) SEEK_DATA/SEEK_HOLE, cachestat(2), mincore(2) on an
///   untouched mapping of pagestat's own, and pagestat's own /proc/self/smaps; it knows no swap
///   locations of shared memory.
/// - `BPFFileSide` (`bpf`): the object's `i_pages` xarray, walked by a BPF iterator (bpf(2),
///   libbpf.so.1; `XArrayWalker`): swap locations included; cachestat(2) for dirty and
///   writeback pages where it exists.
///
/// `EnginePolicy` decides which engine answers for which object (`auto`) and says why in the
/// notes. A snapshot plans with `count(_:dirtyAndWriteback:eachRun:)`: its runs, in page order,
/// say where each page's content is (memory, a swap slot, nowhere).
protocol PageCacheEngine: AnyObject {
    /// The object asked, open for as long as the engine is.
    var object: PageCacheObject { get }
    /// Asks ahead, in bulk, what the engine can for the pending stretches to come: they lie in
    /// `span` (page offsets into the object), and `long` are those of 64 pages or more.
    func prepare(span: Range<UInt64>, long: [(first: UInt64, pages: UInt64)]) throws(PageStatError)
    /// Classifies the object's pages `[first, first + count)` and appends them in order to `runs`
    /// as the pages of a mapping from address `start` on, each run with `flags` added: runs of
    /// `swapped` (with the first page's swap location where the engine knows it), `cached` or
    /// `none`.
    func resolve(first: UInt64, count: UInt64, at start: UInt64, flags: PageFlags,
                 into runs: inout RunBuilder) throws(PageStatError)
    /// Counts the object's pages `pages` (page indices; the caller keeps them within the object)
    /// by the one definition of `ObjectPageCounts`, with dirty and writeback pages where asked
    /// and the engine can read them; `eachRun`, when given, sees the object's runs in page order
    /// (`cached`, `swapped` with its swap location where known, `none`), as `file --runs` lists them.
    func count(_ pages: Range<UInt64>, dirtyAndWriteback: Bool,
               eachRun: ((FileRun) -> Void)?) throws(PageStatError) -> ObjectPageCounts
    /// Whether the engine reads the swap locations of swapped shared pages (the BPF engine does).
    var knowsSwapLocations: Bool { get }
}

typealias FileSideEmit = (_ pages: UInt64, _ state: PageState, _ flags: PageFlags, _ swap: SwapLocation?) -> Void

/// Which engine answers for the file side.
public enum FileSideEngineChoice: String, Sendable, CaseIterable {
    /// BPF for shared memory (tmpfs, memfd, shared anonymous, SysV shm, hugetlbfs) where it
    /// loads, syscalls for regular files; syscalls alone, with a note that says why, where it
    /// cannot load.
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
