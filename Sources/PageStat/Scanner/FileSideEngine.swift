/// The file side of a scan: what a shared object's or a file's page cache says about the pages
/// that a process's page table leaves open. The scanner asks through this seam only; two engines
/// answer: `SyscallFileSide` (lseek SEEK_DATA/SEEK_HOLE, cachestat, mincore on a window of our
/// own, our own smaps) and `BPFFileSide` (the object's page-cache xarray, walked by a BPF
/// iterator: swap locations included).
protocol FileSideEngine: AnyObject {
    /// Counts ahead what the engine can count in bulk for these stretches (page offsets into
    /// the object), before they are resolved one by one.
    func prepare(stretches: [(first: UInt64, pages: UInt64)]) throws(PageStatError)
    /// Classifies the object's pages `[first, first + count)` and emits them in order as runs of
    /// `swapped` (with the first page's swap location where the engine knows it), `cached` or
    /// `none`.
    func resolve(first: UInt64, count: UInt64, emit: FileSideEmit) throws(PageStatError)
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

    init(object: PageCacheObject, walker: XArrayWalker) {
        self.object = object
        self.walker = walker
    }

    func prepare(stretches: [(first: UInt64, pages: UInt64)]) throws(PageStatError) {}

    func resolve(first: UInt64, count: UInt64, emit: FileSideEmit) throws(PageStatError) {
        let pageSize = object.pageSize
        let end = first + count
        let inFileEnd = min(end, max(first, (object.size + pageSize - 1) / pageSize))
        if first < inFileEnd {
            // The walker takes one walk at a time itself.
            try walker.walk(fd: object.fd.rawValue, first: first, count: inFileEnd - first) { run in
                switch run.kind {
                case .hole, .shadow: emit(run.pages, .none, [], nil)
                case .resident: emit(run.pages, .cached, [], nil)
                case .swap(let type, let offset): emit(run.pages, .swapped, [], SwapLocation(type: type, offset: offset))
                }
            }
        }
        // Pages of the mapping beyond the end of the object (touching them raises SIGBUS).
        if end > inFileEnd { emit(end - inFileEnd, .none, [], nil) }
    }
}
