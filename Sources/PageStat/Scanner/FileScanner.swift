#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// A run of a file's pages with one state, by page offset into the file.
public struct FileRun: Sendable, Hashable {
    public var first: UInt64
    public var pages: UInt64
    public var state: PageState
    /// Swapped tmpfs pages, read by the BPF engine: the swap type and offset of the first page
    /// (the run's pages sit at consecutive offsets).
    public var swap: SwapLocation? = nil
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
}

/// Files' page caches, from their own side (no process involved).
public enum FileScanner {
    /// Reads one file's page-cache state; `withRuns` adds runs of page states. `engine`: the
    /// syscalls way is cachestat(2) for counts and lseek SEEK_DATA/SEEK_HOLE with cachestat or
    /// mincore for runs; the BPF engine walks the page-cache xarray (swap locations of swapped
    /// tmpfs pages; needed where cachestat is missing). `auto` walks only where cachestat is
    /// missing.
    public static func scan(path: String, withRuns: Bool,
                            engine: FileSideEngineChoice = .auto) throws(PageStatError) -> FileReport {
        let object: PageCacheObject
        do {
            object = try openExact(path)
        } catch .unsupported {
            throw .invalidInput("\(path): not a regular file")
        }
        if let hugePageSize = object.hugePageSize { return hugetlbfs(path: path, object: object, hugePageSize: hugePageSize, withRuns: withRuns) }
        let pageSize = object.pageSize
        let pages = (object.size + pageSize - 1) / pageSize
        var notes: [ScanNote] = []
        if let walker = try engine.walkerForCounting(note: { notes.append($0) }) {
            return try walked(path: path, object: object, pages: pages, walker: walker, withRuns: withRuns, notes: notes)
        }
        let stat = try object.cachestat(offset: 0, length: pages * pageSize)
        var report = FileReport(path: path, size: object.size, isShmem: object.isShmem, cached: stat.cache,
                                dirty: stat.dirty, writeback: stat.writeback)
        report.notes = notes
        if object.isShmem {
            report.swapped = stat.evicted
            report.holes = pages - min(pages, stat.cache + stat.evicted)
        } else {
            report.evicted = stat.evicted
        }
        if withRuns {
            var runs: [FileRun] = []
            var next: UInt64 = 0
            try SyscallFileSide(object: object).resolve(first: 0, count: pages) { count, state, _, _ in
                if let last = runs.last, last.state == state {
                    runs[runs.count - 1].pages += count
                } else {
                    runs.append(FileRun(first: next, pages: count, state: state))
                }
                next += count
            }
            report.runs = runs
        }
        return report
    }

    /// The BPF engine's report: counts and runs from one walk of the xarray; dirty and writeback
    /// from cachestat where it exists (the walk does not read folio flags).
    private static func walked(path: String, object: PageCacheObject, pages: UInt64, walker: XArrayWalker,
                               withRuns: Bool, notes: [ScanNote]) throws(PageStatError) -> FileReport {
        var runs: [FileRun] = []
        let counts = try XArrayCounts.walk(object, pages: pages, walker: walker) { run in
            guard withRuns else { return }
            let state: PageState
            var swap: SwapLocation?
            switch run.kind {
            case .hole, .shadow: state = .none
            case .resident: state = .cached
            case .swap(let type, let offset):
                state = .swapped
                swap = SwapLocation(type: type, offset: offset)
            }
            if let last = runs.last, last.state == state, swap == nil, last.swap == nil {
                runs[runs.count - 1].pages += run.pages
            } else {
                runs.append(FileRun(first: run.first, pages: run.pages, state: state, swap: swap))
            }
        }
        let stat = PageCacheObject.cachestatSupported ? try? object.cachestat(offset: 0, length: pages * object.pageSize) : nil
        var report = FileReport(path: path, size: object.size, isShmem: object.isShmem, cached: counts.resident,
                                dirty: stat?.dirty, writeback: stat?.writeback)
        if object.isShmem {
            report.swapped = counts.swapped
            report.holes = counts.holes
        } else {
            report.evicted = counts.evicted
        }
        if withRuns { report.runs = runs }
        report.notes = notes + [.countedByBPF(dirtyAndWritebackUnknown: stat == nil)]
        return report
    }

    /// Opens `path` by its exact bytes (`NameBytes`): a name that is not UTF-8 is first opened
    /// O_PATH by its bytes, then reopened through /proc/self/fd (which opens nothing else).
    private static func openExact(_ path: String) throws(PageStatError) -> PageCacheObject {
        guard NameBytes.containsByteScalars(path) else {
            return try PageCacheObject.open(path: path, pid: getpid(), what: path)
        }
        let fd: FileDescriptor
        do {
            fd = try system { try NameBytes.withCString(path) { try FileDescriptor.open($0, .readOnly, options: [.init(rawValue: CPagestat_O_PATH), .closeOnExec]) } }
        } catch {
            throw error == .noSuchFileOrDirectory ? .invalidInput("\(path): no such file") : .system(call: "open \(path)", errno: error)
        }
        defer { try? fd.close() }
        return try PageCacheObject.open(path: "/proc/self/fd/\(fd.rawValue)", pid: getpid(), what: path)
    }

    /// A hugetlbfs file: st_blocks counts the huge pages it holds, and that is all hugetlbfs tells
    /// without a mapping (no cachestat; SEEK_DATA calls every page data), so runs are known only
    /// when it holds none or all of them (see `HugetlbSide`).
    private static func hugetlbfs(path: String, object: PageCacheObject, hugePageSize: UInt64,
                                  withRuns: Bool) -> FileReport {
        let pageSize = object.pageSize
        let pages = (object.size + pageSize - 1) / pageSize
        let held = min(pages, object.allocatedPages)
        var report = FileReport(path: path, size: object.size, isShmem: false, cached: held, dirty: nil, writeback: nil)
        report.holes = pages - held
        report.hugePageSize = hugePageSize
        if withRuns && pages > 0 {
            let state: PageState = held == 0 ? .none : held == pages ? .cached : .unknown
            report.runs = [FileRun(first: 0, pages: pages, state: state)]
        }
        return report
    }

    /// The regular files named by `paths`, directories walked when `recursive` (symbolic links
    /// to directories are not followed). Unreadable entries are reported through `failure`.
    public static func expand(_ paths: [String], recursive: Bool,
                              failure: (String, PageStatError) -> Void) -> [String] {
        var files: [String] = []
        for path in paths {
            var st = stat()
            guard NameBytes.withCString(path, { stat($0, &st) }) == 0 else {
                failure(path, errno == ENOENT ? .invalidInput("\(path): no such file") : .permissionDenied(.path(path)))
                continue
            }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                guard recursive else {
                    failure(path, .invalidInput("\(path): is a directory (use --recursive)"))
                    continue
                }
                walk(path, into: &files, failure: failure)
            } else {
                files.append(path)
            }
        }
        return files
    }

    private static func walk(_ directory: String, into files: inout [String], failure: (String, PageStatError) -> Void) {
        guard let names = Directory.names(directory) else {
            failure(directory, .permissionDenied(.path(directory)))
            return
        }
        for name in names.sorted() {
            let path = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            var st = stat()
            guard NameBytes.withCString(path, { lstat($0, &st) }) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR: walk(path, into: &files, failure: failure)
            case S_IFREG: files.append(path)
            default: continue
            }
        }
    }
}
