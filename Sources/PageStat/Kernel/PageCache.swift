#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// The object behind a mapping, opened from its file side, and the kernel's page-cache views of
/// it: lseek SEEK_DATA/SEEK_HOLE, cachestat(2) and mincore(2) on a mapping of our own.
///
/// Nothing here faults, reads or allocates the object's pages: lseek and cachestat walk the page
/// cache's xarray; our own mapping is PROT_READ and never touched, only asked with mincore.
package final class PageCacheObject {
    package let fd: FileDescriptor
    package let pageSize: UInt64
    /// The object's size in bytes (st_size), when fstat gave it.
    package let size: UInt64
    /// Whether the object lives on tmpfs/shmem (statfs TMPFS_MAGIC), so its pages can be swapped.
    package let isShmem: Bool
    /// Whether the object is a regular file or shmem object whose page cache can be asked.
    package let isPageCacheBacked: Bool
    /// Pages the object holds (st_blocks): for shmem, resident and swapped pages and fallocated
    /// ones, not holes.
    package let allocatedPages: UInt64
    /// The huge page size when the object lives on hugetlbfs (statfs HUGETLBFS_MAGIC; f_bsize),
    /// else nil. Such an object has no cachestat (EOPNOTSUPP), SEEK_DATA calls all of it data,
    /// mincore sees only our own mapped pages, and mapping it may take huge pages from the pool:
    /// it is never mapped here (see `HugetlbSide`).
    package let hugePageSize: UInt64?
    /// Whether mincore(2) tells the truth about this file to us: the kernel reports every page of
    /// a file resident unless the caller owns it, may write it or has CAP_FOWNER (and cachestat
    /// refuses such callers since 2025).
    package let residencyVisible: Bool
    private var window: (address: UnsafeMutableRawPointer, offset: UInt64, length: UInt64)?

    static let tmpfsMagic: Int = 0x0102_1994

    /// Adopts an open descriptor.
    package init(fd: FileDescriptor, pageSize: Int = ProcFS.pageSize) {
        self.fd = fd
        self.pageSize = UInt64(pageSize)
        if let st = fd.status {
            size = UInt64(max(0, st.st_size))
            isPageCacheBacked = (st.st_mode & S_IFMT) == S_IFREG
            allocatedPages = UInt64(max(0, st.st_blocks)) * 512 / UInt64(pageSize)
            residencyVisible = geteuid() == 0 || st.st_uid == geteuid()
                || access("/proc/self/fd/\(fd.rawValue)", W_OK) == 0
        } else {
            size = 0
            isPageCacheBacked = false
            allocatedPages = 0
            residencyVisible = false
        }
        let filesystem = CPagestat_fstatfs_type(fd.rawValue)
        isShmem = filesystem == Self.tmpfsMagic
        if filesystem == CPagestat_HUGETLBFS_MAGIC, case let size = CPagestat_fstatfs_block_size(fd.rawValue), size > 0 {
            hugePageSize = UInt64(size)
        } else {
            hugePageSize = nil
        }
    }

    /// Whether the object lives on hugetlbfs.
    package var isHugetlb: Bool { hugePageSize != nil }

    deinit {
        if let window { Self.unmapWindow(window.address, length: Int(window.length)) }
        try? fd.close()
    }

    /// A file's identity as a maps line names it: the device (major:minor) and the inode.
    package typealias Identity = ObjectID

    /// Opens the object behind `mapping` of `pid`: through /proc/PID/map_files/START-END when
    /// privileged, else through the mapped path if it still names that very inode. Either way the
    /// object must be the one the maps line names (device and inode): otherwise the mapping (or
    /// the path) changed since maps was read, and this throws `.objectChanged`. With the pinned
    /// `handle`, map_files is opened relative to its /proc/PID directory.
    package static func open(mapping: Mapping, pid: Int32, handle: ProcessHandle? = nil) throws(PageStatError) -> PageCacheObject {
        let expected = Identity(mapping)
        let mapFilesError: PageStatError
        do {
            return try open(pid: pid, range: mapping.range, expecting: expected, handle: handle)
        } catch {
            if error == .processExited(pid: pid) || (handle?.hasExited ?? ProcFS.exited(pid)) { throw .processExited(pid: pid) }
            if case .objectChanged = error { throw error }
            mapFilesError = error
        }
        let path = mapping.path
        guard path.hasPrefix("/") && !path.hasSuffix(" (deleted)") else { throw mapFilesError }
        do {
            // The path as maps printed it has no symbolic link to follow; one there now is not the object.
            return try open(path: path, pid: pid, what: path, followingSymlinks: false, expecting: expected)
        } catch {
            if case .objectChanged = error { throw error }
            throw mapFilesError
        }
    }

    /// Opens the object behind the mapping at `range` of `pid` through
    /// /proc/PID/map_files/START-END (CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE), checked against
    /// `expected` when given; relative to the pinned `handle`'s /proc/PID directory when given.
    package static func open(pid: Int32, range: AddressRange, expecting expected: Identity? = nil,
                             handle: ProcessHandle? = nil) throws(PageStatError) -> PageCacheObject {
        let name = "map_files/\(String(range.start, radix: 16))-\(String(range.end, radix: 16))"
        let path = "/proc/\(pid)/\(name)"
        return try open(path: path, pid: pid, what: "\(path) (needs CAP_SYS_ADMIN)", expecting: expected,
                        under: handle.map { ($0, name) })
    }

    /// Opens `path` for reading its page cache, if it is a regular file (or a shared memory
    /// object, a regular file on tmpfs), without ever opening anything else: opening a FIFO
    /// blocks, opening a device runs its driver. The path is first opened with O_PATH, which
    /// opens nothing (no read access, no driver, no FIFO wait), and that descriptor is checked
    /// with fstat(2): against `expected` when given, then for S_ISREG. Only then is the very same
    /// inode opened for reading, through /proc/self/fd/N (O_RDONLY|O_NONBLOCK|O_NOCTTY, and
    /// O_NOATIME where allowed), and checked again. Symbolic links are followed unless
    /// `followingSymlinks` is false (then a link is not the object). `under`: a pinned process
    /// and the name of the file in its /proc/PID directory that `path` names, opened relative to
    /// that directory.
    package static func open(path: String, pid: Int32, what: String, followingSymlinks: Bool = true,
                             expecting expected: Identity? = nil,
                             under process: (handle: ProcessHandle, name: String)? = nil) throws(PageStatError) -> PageCacheObject {
        var pathOptions: FileDescriptor.OpenOptions = [.closeOnExec, .init(rawValue: CPagestat_O_PATH)]
        if !followingSymlinks { pathOptions.insert(.noFollow) }
        let pathFD: FileDescriptor
        do throws(Errno) {
            if let process {
                pathFD = try process.handle.openRelative(process.name, options: pathOptions)
            } else {
                pathFD = try FileDescriptor.open(path: path, .readOnly, options: pathOptions)
            }
        } catch {
            throw .fromProc(error, pid: pid, call: "open \(path)", what: what)
        }
        defer { try? pathFD.close() }
        let st: stat
        do { st = try pathFD.stat().rawValue } catch { throw .system(call: "fstat \(path)", errno: error) }
        let found = Identity(st)
        if let expected, found != expected {
            throw .objectChanged("\(path) is \(found), not the \(expected) that maps named: the mapping changed")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw .unsupported("\(path) is not a regular file or shared memory object (\(fileType(st.st_mode))): it is not opened and its page cache is not asked")
        }
        // Reopen the inode behind the O_PATH descriptor itself: nothing can be swapped in between.
        let reopen = "/proc/self/fd/\(pathFD.rawValue)"
        var lastError = Errno.noSuchFileOrDirectory
        attempts: for noatime in [true, false] {
            let options: FileDescriptor.OpenOptions = [.nonBlocking, .closeOnExec,
                                                       .init(rawValue: O_NOCTTY | (noatime ? CPagestat_O_NOATIME : 0))]
            switch Result(catching: { () throws(Errno) in try FileDescriptor.open(path: reopen, .readOnly, options: options) }) {
            case .success(let fd):
                guard let again = fd.status, Identity(again) == found, (again.st_mode & S_IFMT) == S_IFREG else {
                    try? fd.close()
                    throw .objectChanged("\(path) changed while it was opened")
                }
                return PageCacheObject(fd: fd)
            case .failure(let error):
                lastError = error
                // O_NOATIME is refused (EPERM) on a file we do not own: try once without it.
                if error != .notPermitted { break attempts }
            }
        }
        throw .fromProc(lastError, pid: pid, call: "open \(path)", what: what)
    }

    private static func fileType(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        case S_IFDIR: "a directory"
        case S_IFLNK: "a symbolic link"
        default: "not a regular file"
        }
    }

    // MARK: lseek SEEK_DATA / SEEK_HOLE

    /// The next offset at or after `offset` that holds data (a page in the cache or, for shmem, a
    /// swap entry), or nil when there is none before the end. The C call is `lseek(fd, off, SEEK_DATA)`.
    package func nextData(from offset: UInt64) throws(PageStatError) -> UInt64? {
        try seek(offset, whence: CPagestat_SEEK_DATA)
    }

    /// The next hole at or after `offset` (the end of the object counts as one).
    /// The C call is `lseek(fd, off, SEEK_HOLE)`.
    package func nextHole(from offset: UInt64) throws(PageStatError) -> UInt64? {
        try seek(offset, whence: CPagestat_SEEK_HOLE)
    }

    private func seek(_ offset: UInt64, whence: Int32) throws(PageStatError) -> UInt64? {
        do {
            return UInt64(try system { try fd.seek(offset: Int64(offset), from: .init(rawValue: whence)) })
        } catch .noSuchAddressOrDevice {
            return nil
        } catch {
            throw .system(call: "lseek", errno: error)
        }
    }

    // MARK: cachestat

    /// Whether the running kernel has cachestat(2) (6.5+): probed once, on a bad descriptor
    /// (EBADF means the call exists, ENOSYS that it does not).
    package static let cachestatSupported: Bool = {
        var range = CPagestat_cachestat_range(off: 0, len: 0)
        var result = CPagestat_cachestat()
        return CPagestat_cachestat(-1, &range, &result) == 0 || errno != ENOSYS
    }()

    /// Page-cache counts over `[offset, offset + length)` bytes: resident pages and, for shmem,
    /// swapped ones in `evicted`. Throws `.unsupported` before 6.5. The C call is `cachestat(2)`.
    package func cachestat(offset: UInt64, length: UInt64) throws(PageStatError) -> PageCacheStat {
        var range = CPagestat_cachestat_range(off: offset, len: length)
        var result = CPagestat_cachestat()
        switch retryingInterrupts({ CPagestat_cachestat(fd.rawValue, &range, &result) }) {
        case .success:
            return PageCacheStat(cache: result.nr_cache, dirty: result.nr_dirty, writeback: result.nr_writeback,
                                 evicted: result.nr_evicted, recentlyEvicted: result.nr_recently_evicted)
        case .failure(.noFunction), .failure(.notSupported):
            throw .unsupported("cachestat(2) (Linux 6.5+)")
        case .failure(.notPermitted), .failure(.permissionDenied):
            throw .permissionDenied(.cachestat)
        case .failure(let error): throw .system(call: "cachestat", errno: error)
        }
    }

    // MARK: a mapping of our own: mincore, and smaps' swap count

    /// Maps the whole object (at least `length` bytes) PROT_READ into this process, once; never
    /// touched, so nothing is faulted in.
    private func mapWindow(covering length: UInt64) throws(PageStatError) {
        let rounded = (max(size, length) + pageSize - 1) / pageSize * pageSize
        if let window, window.length >= rounded { return }
        if let window { Self.unmapWindow(window.address, length: Int(window.length)) }
        window = nil
        guard rounded > 0 else { throw .invalidInput("empty object") }
        guard let address = try mapWindow(offset: 0, length: Int(rounded))
        else { throw .system(call: "mmap (a window on the object)", errno: Errno(rawValue: errno)) }
        window = (address, 0, rounded)
    }

    /// Maps `length` bytes of the object from `offset` PROT_READ, MAP_SHARED|MAP_NORESERVE (no
    /// commitment is taken for it), followed by one PROT_NONE anonymous page: no two windows of
    /// ours are ever adjacent, so the kernel never merges two of them into one VMA (windows of
    /// one object at following offsets would merge, and smaps would count them as one). Never on
    /// hugetlbfs, where a shared mapping takes huge pages from the pool. Unmap with
    /// `unmapWindow`. nil with errno on failure.
    private func mapWindow(offset: UInt64, length: Int) throws(PageStatError) -> UnsafeMutableRawPointer? {
        guard !isHugetlb else { throw .unsupported("a window on a hugetlbfs object (it would reserve huge pages)") }
        let total = length + Int(pageSize)
        guard let area = mmap(nil, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), area != MAP_FAILED
        else { return nil }
        guard let address = mmap(area, length, PROT_READ, MAP_SHARED | MAP_NORESERVE | MAP_FIXED, fd.rawValue, off_t(offset)),
              address != MAP_FAILED else {
            let error = errno
            munmap(area, total)
            errno = error
            return nil
        }
        return address
    }

    /// Unmaps a window made by `mapWindow(offset:length:)` and its guard page.
    private static func unmapWindow(_ address: UnsafeMutableRawPointer, length: Int) {
        munmap(address, length + ProcFS.pageSize)
    }

    /// Swapped pages in each stretch `[first, first + pages)` of the object (page offsets): one
    /// mapping of our own per stretch, then one read of /proc/self/smaps, whose Swap line for such
    /// a partial shmem mapping the kernel counts from the object's xarray over that stretch only
    /// (shmem_partial_swap_usage), resident pages included in the walk but nothing outside it.
    package func swappedPages(inStretches stretches: [(first: UInt64, pages: UInt64)]) throws(PageStatError) -> [UInt64?] {
        guard isShmem, !stretches.isEmpty else { return stretches.map { _ in nil } }
        var windows: [(address: UnsafeMutableRawPointer?, length: Int)] = []
        defer { for window in windows { if let address = window.address { Self.unmapWindow(address, length: window.length) } } }
        var starts: [UInt64: Int] = [:]
        for (index, stretch) in stretches.enumerated() {
            let length = Int(stretch.pages * pageSize)
            if let address = try mapWindow(offset: stretch.first * pageSize, length: length) {
                windows.append((address, length))
                starts[UInt64(UInt(bitPattern: address))] = index
            } else {
                windows.append((nil, 0))
            }
        }
        var counts: [UInt64?] = stretches.map { _ in nil }
        let smaps = try ProcFS.readBytes("/proc/self/smaps", pid: getpid(), what: "/proc/self/smaps")
        smaps.withUnsafeBufferPointer { buffer in
            var current: Int?
            let swapKey = Array("Swap:".utf8)
            ProcMaps.forEachLine(buffer) { line in
                if let fields = ProcMaps.parseLine(bytes: line) {
                    current = starts[fields.range.start]
                    return
                }
                guard let index = current, line.starts(with: swapKey) else { return }
                counts[index] = (ProcMaps.smapsValue(UnsafeBufferPointer(rebasing: line[swapKey.count...])) ?? 0) / pageSize
                current = nil
            }
        }
        return counts
    }

    /// The object's swapped pages, as the kernel counts them (shmem's `info->swapped`): the Swap
    /// line of /proc/self/smaps for our own mapping of the whole object, which the kernel fills
    /// from that counter without walking the object. nil if not shmem or not found.
    package func swappedPagesFromSmaps() throws(PageStatError) -> UInt64? {
        guard isShmem, size > 0 else { return nil }
        try mapWindow(covering: size)
        let start = UInt64(UInt(bitPattern: window!.address))
        guard let swap = try ProcMaps.smapsField(pid: getpid(), vmaStart: start, key: "Swap") else { return nil }
        return swap / pageSize
    }

    /// Residency of the pages `[offset, offset + pages * pageSize)` of the object, one byte per
    /// page (bit 0: in the page cache or, for shmem, in the swap cache). Maps the object
    /// PROT_READ into this process (never touched) and asks `mincore(2)`.
    package func mincore(offset: UInt64, pages: Int, into vector: UnsafeMutableBufferPointer<UInt8>) throws(PageStatError) {
        precondition(vector.count >= pages)
        let length = UInt64(pages) * pageSize
        try mapWindow(covering: offset + length)
        let address = window!.address + Int(offset)
        switch retryingInterrupts({ CPagestat_mincore(address, Int(length), vector.baseAddress) }) {
        case .success: return
        case .failure(let error): throw .system(call: "mincore", errno: error)
        }
    }
}

/// What cachestat(2) counts over a range of a file, in pages: its `struct cachestat`.
package struct PageCacheStat: Sendable, Hashable {
    /// Pages in the page cache (nr_cache).
    package var cache: UInt64
    /// Of those, dirty pages (nr_dirty).
    package var dirty: UInt64
    /// Of those, pages under writeback (nr_writeback).
    package var writeback: UInt64
    /// Pages evicted (nr_evicted): for shmem, the swapped pages.
    package var evicted: UInt64
    /// Of the evicted pages, those evicted recently (nr_recently_evicted).
    package var recentlyEvicted: UInt64

    package init(cache: UInt64, dirty: UInt64, writeback: UInt64, evicted: UInt64, recentlyEvicted: UInt64) {
        self.cache = cache
        self.dirty = dirty
        self.writeback = writeback
        self.evicted = evicted
        self.recentlyEvicted = recentlyEvicted
    }
}
