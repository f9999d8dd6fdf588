import PageStat
#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// Memory that this process arranges for itself, page by page, to show or test what the kernel
/// reports: anonymous (private or shared) mappings and memfd-backed ones, written, written through
/// the fd only, paged out with MADV_PAGEOUT, or guarded with MADV_GUARD_INSTALL.
package final class ArrangedMemory: @unchecked Sendable {
    package enum Backing: Sendable {
        case privateAnonymous
        case sharedAnonymous
        /// A memfd mapped MAP_SHARED (or MAP_PRIVATE when `shared` is false).
        case memfd(name: String, shared: Bool)
        /// A file descriptor the caller opened (a tmpfs or regular file), mapped shared or private.
        case file(fd: Int32, shared: Bool)
    }

    package let pages: Int
    package let pageSize: Int
    package let base: UnsafeMutableRawPointer
    /// The memfd's descriptor, for memfd backings.
    package let fd: Int32?
    private let ownsFD: Bool

    package var address: UInt64 { UInt64(UInt(bitPattern: base)) }
    package var range: AddressRange { AddressRange(start: address, end: address + UInt64(pages * pageSize)) }

    /// Maps `pages` pages of `backing`. `reserve: false` maps with MAP_NORESERVE: no commit
    /// accounting, for reservations larger than memory and swap.
    package init(pages: Int, backing: Backing, reserve: Bool = true) throws(PageStatError) {
        self.pages = pages
        pageSize = ProcFS.pageSize
        let length = pages * pageSize
        var flags: Int32
        var fd: Int32 = -1
        var ownsFD = false
        switch backing {
        case .privateAnonymous: flags = MAP_PRIVATE | MAP_ANONYMOUS
        case .sharedAnonymous: flags = MAP_SHARED | MAP_ANONYMOUS
        case .memfd(let name, let shared):
            fd = CPagestat_memfd_create(name, 1 /* MFD_CLOEXEC */)
            guard fd >= 0 else { throw .system(call: "memfd_create", errno: Errno(rawValue: errno)) }
            guard ftruncate(fd, off_t(length)) == 0 else {
                let error = Errno(rawValue: errno)
                close(fd)
                throw .system(call: "ftruncate", errno: error)
            }
            ownsFD = true
            flags = shared ? MAP_SHARED : MAP_PRIVATE
        case .file(let descriptor, let shared):
            fd = descriptor
            flags = shared ? MAP_SHARED : MAP_PRIVATE
        }
        if !reserve { flags |= MAP_NORESERVE }
        guard let pointer = mmap(nil, length, PROT_READ | PROT_WRITE, flags, fd, 0), pointer != MAP_FAILED else {
            let error = Errno(rawValue: errno)
            if ownsFD { close(fd) }
            throw .system(call: "mmap", errno: error)
        }
        base = pointer
        self.fd = fd >= 0 ? fd : nil
        self.ownsFD = ownsFD
    }

    deinit {
        munmap(base, pages * pageSize)
        if ownsFD, let fd { close(fd) }
    }

    /// Writes one non-zero byte into each page of `pages` through the mapping (faults them in;
    /// an all-zero page would not swap like data).
    package func write(_ pages: Range<Int>, value: UInt8 = 0x5a) {
        for page in pages {
            base.storeBytes(of: (value &+ UInt8(truncatingIfNeeded: page)) | 1, toByteOffset: page * pageSize, as: UInt8.self)
        }
    }

    /// Reads one byte from each page (a read fault: private anonymous memory gets the zero page).
    package func read(_ pages: Range<Int>) -> UInt64 {
        var sum: UInt64 = 0
        for page in pages { sum &+= UInt64(base.load(fromByteOffset: page * pageSize, as: UInt8.self)) }
        return sum
    }

    /// Writes pages through the file descriptor with pwrite(2), never through the mapping.
    package func pwrite(_ pages: Range<Int>, value: UInt8 = 0xa5) throws(PageStatError) {
        guard let fd else { throw .invalidInput("pwrite needs a file-backed region") }
        var page = [UInt8](repeating: value, count: pageSize)
        for index in pages {
            page[0] = value &+ UInt8(truncatingIfNeeded: index)
            let written = page.withUnsafeBytes { Glibc.pwrite(fd, $0.baseAddress, pageSize, off_t(index * pageSize)) }
            guard written == pageSize else { throw .system(call: "pwrite", errno: Errno(rawValue: errno)) }
        }
    }

    /// madvise(2) over `pages`.
    package func advise(_ pages: Range<Int>, _ advice: Int32) throws(PageStatError) {
        guard !pages.isEmpty else { return }
        if madvise(base + pages.lowerBound * pageSize, pages.count * pageSize, advice) != 0 {
            throw .system(call: "madvise(\(advice))", errno: Errno(rawValue: errno))
        }
    }

    /// Reclaims `pages` now with MADV_PAGEOUT (Linux 5.4+): to swap when swap is on.
    package func pageOut(_ pages: Range<Int>) throws(PageStatError) {
        try advise(pages, CPagestat_MADV_PAGEOUT)
    }

    /// MADV_PAGEOUT on `pages`, again until smaps (the kernel's own count) shows `expected`
    /// swapped pages in this mapping: the kernel skips folios it cannot isolate at once (still in
    /// another CPU's LRU batch). Tries 10 times, 20 ms apart; returns whether it got there.
    @discardableResult
    package func pageOut(_ pages: Range<Int>, untilSwapped expected: Int) throws(PageStatError) -> Bool {
        try Self.pageOut(base + pages.lowerBound * pageSize, length: pages.count * pageSize,
                         mappingStart: address, untilSwapped: expected)
    }

    /// The same for any mapping of our own that starts at `mappingStart`.
    @discardableResult
    package static func pageOut(_ start: UnsafeMutableRawPointer, length: Int, mappingStart: UInt64,
                               untilSwapped expected: Int) throws(PageStatError) -> Bool {
        for _ in 0..<10 {
            guard madvise(start, length, CPagestat_MADV_PAGEOUT) == 0 else {
                throw .system(call: "madvise(MADV_PAGEOUT)", errno: Errno(rawValue: errno))
            }
            let swap = try ProcMaps.smapsField(pid: getpid(), vmaStart: mappingStart, key: "Swap") ?? 0
            if swap >= UInt64(expected * ProcFS.pageSize) { return true }
            usleep(20_000)
        }
        return false
    }

    /// Write-protects `pages` with userfaultfd; the returned descriptor keeps the protection
    /// registered until it is closed.
    package func writeProtect(_ pages: Range<Int>) throws(PageStatError) -> Int32 {
        let uffd = CPagestat_uffd_writeprotect(base + pages.lowerBound * pageSize, pages.count * pageSize)
        guard uffd >= 0 else { throw .system(call: "userfaultfd write-protect", errno: Errno(rawValue: errno)) }
        return uffd
    }

    /// Installs guard pages with MADV_GUARD_INSTALL (Linux 6.13+).
    package func installGuard(_ pages: Range<Int>) throws(PageStatError) {
        try advise(pages, CPagestat_MADV_GUARD_INSTALL)
    }
}
