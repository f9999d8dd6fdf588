import PageStat
#if canImport(Glibc)
import Glibc
#endif
import CPagestat

/// One of every page layout the scanner must get right, arranged in this process: what
/// `pagestat lab hold` holds for end-to-end tests and what `pagestat doctor --verify` checks.
/// Each region is `pages` pages (a multiple of 4), q = pages / 4:
/// - shared anonymous memory and a SysV segment: [0,q) written then paged out, [q,2q) written;
/// - a memfd and a /dev/shm file: [0,q) pwrite() only (cached, never mapped), [q,2q) written,
///   [2q,3q) written then paged out;
/// - private anonymous memory: [0,q) written then paged out, [q,2q) written, [2q,3q) read (the
///   zero page), the first half of [3q,4q) guard pages (where the kernel has them);
/// - a regular file in `fileDirectory`: [0,q) cached by pread, [2q,3q) mapped and read, the
///   rest dropped from the page cache;
/// - a /dev/shm file held open but never mapped: [0,q) written with pwrite.
/// The paged-out parts need swap. Files are unlinked when the layout goes.
package final class ArrangedLayout {
    package let pages: Int
    package let sharedAnon: ArrangedMemory
    package let memfd: ArrangedMemory
    package let tmpfs: ArrangedMemory
    package let privateAnon: ArrangedMemory
    package let file: ArrangedMemory
    package let sysv: UnsafeMutableRawPointer
    package let shmPath: String
    package let openPath: String
    package let filePath: String
    /// Whether the kernel installed the guard pages (MADV_GUARD_INSTALL, 6.13+).
    package let guards: Bool
    private var descriptors: [Int32] = []

    package static let regionNames = ["shared-anon", "memfd", "tmpfs", "sysv", "private-anon", "file"]

    package init(pages: Int, fileDirectory: String) throws(PageStatError) {
        guard pages >= 16 && pages % 16 == 0 else { throw .invalidInput("the layout takes a multiple of 16 pages") }
        self.pages = pages
        let q = pages / 4
        let pageSize = ProcFS.pageSize
        sharedAnon = try ArrangedMemory(pages: pages, backing: .sharedAnonymous)
        sharedAnon.write(0..<2 * q)
        try Self.swapped(sharedAnon.pageOut(0..<q, untilSwapped: q))
        memfd = try ArrangedMemory(pages: pages, backing: .memfd(name: "pagestat-fixture", shared: true))
        try Self.arrangeShmemFile(memfd, q: q)
        shmPath = "/dev/shm/pagestat-fixture-\(getpid())"
        let shmFD = try Self.createFile(shmPath, pages: pages)
        descriptors.append(shmFD)
        tmpfs = try ArrangedMemory(pages: pages, backing: .file(fd: shmFD, shared: true))
        try Self.arrangeShmemFile(tmpfs, q: q)
        openPath = "/dev/shm/pagestat-fixture-open-\(getpid())"
        let openFD = try Self.createFile(openPath, pages: pages)
        descriptors.append(openFD)
        var openBlock = [UInt8](repeating: 0x11, count: pageSize)
        for page in 0..<q {
            openBlock[0] = UInt8(truncatingIfNeeded: page)
            _ = openBlock.withUnsafeBytes { Glibc.pwrite(openFD, $0.baseAddress, $0.count, off_t(page * pageSize)) }
        }
        let shmid = shmget(IPC_PRIVATE, pages * pageSize, IPC_CREAT | 0o600)
        guard shmid >= 0 else { throw .system(call: "shmget", errno: .init(rawValue: errno)) }
        guard let segment = shmat(shmid, nil, 0), segment != UnsafeMutableRawPointer(bitPattern: -1) else {
            shmctl(shmid, IPC_RMID, nil)
            throw .system(call: "shmat", errno: .init(rawValue: errno))
        }
        shmctl(shmid, IPC_RMID, nil)
        sysv = segment
        for page in 0..<2 * q { segment.storeBytes(of: 0x33, toByteOffset: page * pageSize, as: UInt8.self) }
        try Self.swapped(ArrangedMemory.pageOut(segment, length: q * pageSize,
                                                mappingStart: UInt64(UInt(bitPattern: segment)), untilSwapped: q))
        privateAnon = try ArrangedMemory(pages: pages, backing: .privateAnonymous)
        privateAnon.write(0..<2 * q)
        try Self.swapped(privateAnon.pageOut(0..<q, untilSwapped: q))
        _ = privateAnon.read(2 * q..<3 * q)
        guards = (try? privateAnon.installGuard(3 * q..<3 * q + q / 2)) != nil
        // A regular file: readahead off (FADV_RANDOM, MADV_RANDOM), and the gaps keep
        // fault-around from mapping the pread pages.
        filePath = "\(fileDirectory)/pagestat-fixture-\(getpid()).data"
        let fileFD = open(filePath, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        guard fileFD >= 0 else { throw .system(call: "open \(filePath)", errno: .init(rawValue: errno)) }
        descriptors.append(fileFD)
        var block = [UInt8](repeating: 0x77, count: pageSize)
        for page in 0..<pages {
            guard block.withUnsafeBytes({ Glibc.pwrite(fileFD, $0.baseAddress, $0.count, off_t(page * pageSize)) }) == pageSize else {
                throw .system(call: "pwrite", errno: .init(rawValue: errno))
            }
        }
        fsync(fileFD)
        posix_fadvise(fileFD, 0, 0, POSIX_FADV_DONTNEED)
        posix_fadvise(fileFD, 0, 0, POSIX_FADV_RANDOM)
        for page in 0..<q {
            _ = block.withUnsafeMutableBytes { Glibc.pread(fileFD, $0.baseAddress, $0.count, off_t(page * pageSize)) }
        }
        file = try ArrangedMemory(pages: pages, backing: .file(fd: fileFD, shared: false))
        try file.advise(0..<pages, MADV_RANDOM)
        _ = file.read(2 * q..<3 * q)
    }

    deinit {
        shmdt(sysv)
        for fd in descriptors { close(fd) }
        unlink(shmPath)
        unlink(openPath)
        unlink(filePath)
    }

    /// The first address of a region, by its name in `regionNames`.
    package func address(_ region: String) -> UInt64? {
        switch region {
        case "shared-anon": sharedAnon.address
        case "memfd": memfd.address
        case "tmpfs": tmpfs.address
        case "sysv": UInt64(UInt(bitPattern: sysv))
        case "private-anon": privateAnon.address
        case "file": file.address
        default: nil
        }
    }

    /// What the layout arranged in a region, page by page: the truth a scan must report.
    package func expected(_ region: String) -> [PageState] {
        let q = pages / 4
        func run(_ count: Int, _ state: PageState) -> [PageState] { Array(repeating: state, count: count) }
        switch region {
        case "shared-anon", "sysv": return run(q, .swapped) + run(q, .present) + run(2 * q, .none)
        case "memfd", "tmpfs": return run(q, .cached) + run(q, .present) + run(q, .swapped) + run(q, .none)
        case "private-anon": return run(q, .swapped) + run(2 * q, .present) + run(q, .none)
        case "file": return run(q, .cached) + run(q, .none) + run(q, .present) + run(q, .none)
        default: return []
        }
    }

    /// A new file of `pages` pages (a hole), open read-write, named by the exact bytes of `path`
    /// (see `NameBytes`); the caller unlinks it.
    package static func createFile(_ path: String, pages: Int) throws(PageStatError) -> Int32 {
        let fd = NameBytes.withCString(path) { open($0, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600) }
        guard fd >= 0 else { throw .system(call: "open \(path)", errno: .init(rawValue: errno)) }
        guard ftruncate(fd, off_t(pages * ProcFS.pageSize)) == 0 else {
            let error = errno
            close(fd)
            _ = NameBytes.withCString(path) { unlink($0) }
            throw .system(call: "ftruncate \(path)", errno: .init(rawValue: error))
        }
        return fd
    }

    /// A layout whose paged-out parts did not all reach swap would be wrong about itself: fail.
    private static func swapped(_ done: Bool) throws(PageStatError) {
        guard done else {
            throw .system(call: "madvise(MADV_PAGEOUT) (pages still in memory after 10 tries: is swap on and not full?)",
                          errno: .resourceTemporarilyUnavailable)
        }
    }

    private static func arrangeShmemFile(_ memory: ArrangedMemory, q: Int) throws(PageStatError) {
        try memory.pwrite(0..<q)
        memory.write(q..<3 * q)
        try swapped(memory.pageOut(2 * q..<3 * q, untilSwapped: q))
    }
}
