#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// Files' page caches, from their own side (no process involved).
public enum FileScanner {
    /// Reads one file's page-cache state; `withRuns` adds runs of page states. `engine`: the
    /// syscalls way is cachestat(2) for counts and lseek SEEK_DATA/SEEK_HOLE with cachestat or
    /// mincore for runs; the BPF engine walks the page-cache xarray (swap locations of swapped
    /// tmpfs pages; needed where cachestat is missing). `auto` walks shared memory (tmpfs,
    /// hugetlbfs) where the walker loads, and regular files only where cachestat is missing.
    public static func scan(path: String, withRuns: Bool,
                            engine: FileSideEngineChoice = .auto) throws(PageStatError) -> FileReport {
        let object: PageCacheObject
        do {
            object = try openExact(path)
        } catch .unsupported {
            throw .invalidInput("\(path): not a regular file")
        }
        let policy = EnginePolicy(engine)
        if let hugePageSize = object.hugePageSize {
            var notes = Notes()
            let walker = try policy.sharedMemoryWalker(notes: &notes)
            return hugetlbfs(path: path, object: object, hugePageSize: hugePageSize, withRuns: withRuns,
                             walker: walker, notes: notes.all)
        }
        let pageSize = object.pageSize
        let pages = (object.size + pageSize - 1) / pageSize
        var notes: [ScanNote] = []
        try policy.decideCounting(note: { notes.append($0) })
        let byBPF = policy.countsByBPF(object)
        let counter = policy.countingEngine(for: object)
        var runs: [FileRun] = []
        // Adjacent runs of one state merge, unless they carry swap locations (BPF).
        let counts = try counter.count(0..<pages, dirtyAndWriteback: true, eachRun: !withRuns ? nil : { run in
            if let last = runs.last, last.state == run.state, run.swap == nil, last.swap == nil {
                runs[runs.count - 1].pages += run.pages
            } else {
                runs.append(run)
            }
        })
        var report = FileReport(path: path, size: object.size, isShmem: object.isShmem, cached: counts.cached,
                                dirty: counts.dirty, writeback: counts.writeback)
        if object.isShmem {
            report.swapped = counts.swapped
            report.holes = counts.holes
        } else {
            report.evicted = counts.evicted
        }
        if withRuns { report.runs = runs }
        report.notes = byBPF ? notes + [.countedByBPF(dirtyAndWritebackUnknown: counts.dirty == nil)] : notes
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

    /// A hugetlbfs file, counted in base pages and told in whole huge pages: where the BPF walker
    /// loads, one walk of the hugetlbfs inode's `i_pages` says which huge pages the file holds
    /// (`cached`) and which are holes (`none`); else st_blocks counts the huge pages it holds,
    /// and that is all hugetlbfs tells without a mapping (no cachestat; SEEK_DATA calls every
    /// page data), so runs are known only when it holds none or all of them (see `HugetlbSide`).
    /// Neither reserves nor allocates a huge page.
    private static func hugetlbfs(path: String, object: PageCacheObject, hugePageSize: UInt64,
                                  withRuns: Bool, walker: XArrayWalker?, notes: [ScanNote]) -> FileReport {
        let pageSize = object.pageSize
        let pages = (object.size + pageSize - 1) / pageSize
        let perHugePage = hugePageSize / pageSize
        // Where the walk fails or shows what a hugetlbfs page cache cannot hold, the count answers.
        let resident = walker.flatMap { walker in
            (try? HugetlbSide.residentHugePages(object, walker: walker, pageSize: pageSize, hugePageSize: hugePageSize)) ?? nil
        }
        let held = resident.map { $0.reduce(0) { $0 + UInt64($1.count) * perHugePage } } ?? min(pages, object.allocatedPages)
        var report = FileReport(path: path, size: object.size, isShmem: false, cached: held, dirty: nil, writeback: nil)
        report.holes = pages - min(pages, held)
        report.hugePageSize = hugePageSize
        report.notes = notes
        if withRuns && pages > 0 {
            if let resident {
                var runs: [FileRun] = []
                var next: UInt64 = 0
                for range in resident {
                    let first = range.lowerBound * perHugePage, end = min(pages, range.upperBound * perHugePage)
                    if first > next { runs.append(FileRun(first: next, pages: first - next, state: .none)) }
                    if end > first { runs.append(FileRun(first: first, pages: end - first, state: .cached)) }
                    next = max(next, end)
                }
                if pages > next { runs.append(FileRun(first: next, pages: pages - next, state: .none)) }
                report.runs = runs
            } else {
                let state: PageState = held == 0 ? .none : held == pages ? .cached : .unknown
                report.runs = [FileRun(first: 0, pages: pages, state: state)]
            }
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
