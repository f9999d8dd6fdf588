import PageStat
#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// One memfd mapped many times, one page per mapping, for measuring and testing the system
/// views (`objects`, `top`) on address spaces with many mappings of one object. Mapping `i`
/// maps page `i % objectPages` of the memfd MAP_SHARED, read-write, at `base + 2 * i` pages:
/// the page left unmapped after each keeps the kernel from merging neighbours, so the process
/// gets exactly `mappings` VMAs of the object (vm.max_map_count limits them, 65530 by default).
package final class RepeatedMappings: @unchecked Sendable {
    package let mappings: Int
    package let objectPages: Int
    package let pageSize: Int
    /// The memfd's descriptor.
    package let fd: Int32
    /// The first mapping's address; mapping `i` starts `2 * i` pages after it.
    package let base: UnsafeMutableRawPointer
    private var mapped = 0

    package var address: UInt64 { UInt64(UInt(bitPattern: base)) }

    package init(mappings: Int, objectPages: Int, name: String) throws(PageStatError) {
        guard mappings > 0, objectPages > 0, objectPages <= mappings else {
            throw .invalidInput("mappings and object pages must be positive, with no more object pages than mappings")
        }
        self.mappings = mappings
        self.objectPages = objectPages
        pageSize = ProcFS.pageSize
        fd = CPagestat_memfd_create(name, 1 /* MFD_CLOEXEC */)
        guard fd >= 0 else { throw .system(call: "memfd_create", errno: Errno(rawValue: errno)) }
        guard ftruncate(fd, off_t(objectPages * pageSize)) == 0 else {
            let error = Errno(rawValue: errno)
            close(fd)
            throw .system(call: "ftruncate", errno: error)
        }
        // Find room for every mapping and its gap, then give it back and map into it page by page.
        let span = 2 * mappings * pageSize
        guard let room = mmap(nil, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              room != MAP_FAILED else {
            let error = Errno(rawValue: errno)
            close(fd)
            throw .system(call: "mmap", errno: error)
        }
        munmap(room, span)
        base = room
        for index in 0..<mappings {
            let wanted = base + 2 * index * pageSize
            let page = mmap(wanted, pageSize, PROT_READ | PROT_WRITE, MAP_SHARED | CPagestat_MAP_FIXED_NOREPLACE, fd,
                            off_t((index % objectPages) * pageSize))
            guard page == wanted else {
                let error = page == MAP_FAILED ? Errno(rawValue: errno) : .fileExists
                if page != MAP_FAILED, let page { munmap(page, pageSize) }
                unmapAll()
                close(fd)
                throw .system(call: "mmap of mapping \(index) (vm.max_map_count is \(Self.maxMapCount() ?? 0))", errno: error)
            }
            mapped += 1
        }
    }

    deinit {
        unmapAll()
        close(fd)
    }

    private func unmapAll() {
        for index in 0..<mapped { munmap(base + 2 * index * pageSize, pageSize) }
        mapped = 0
    }

    /// The address of mapping `index`.
    package func mapping(_ index: Int) -> UnsafeMutableRawPointer { base + 2 * index * pageSize }

    /// Writes object pages `pages` through the first mapping of each (faults each in once).
    package func write(_ pages: Range<Int>) {
        for page in pages {
            mapping(page).storeBytes(of: UInt8(truncatingIfNeeded: page) | 1, as: UInt8.self)
        }
    }

    /// Reclaims object pages `pages` with MADV_PAGEOUT through the first mapping of each. The
    /// kernel pages out only pages mapped once, so do this before faulting other mappings in.
    package func pageOut(_ pages: Range<Int>) throws(PageStatError) {
        for page in pages where madvise(mapping(page), pageSize, CPagestat_MADV_PAGEOUT) != 0 {
            throw .system(call: "madvise(MADV_PAGEOUT)", errno: Errno(rawValue: errno))
        }
    }

    /// /proc/sys/vm/max_map_count: the most mappings a process may have.
    package static func maxMapCount() -> Int? {
        guard let text = try? ProcFS.readText("/proc/sys/vm/max_map_count", pid: 0, what: "vm.max_map_count") else { return nil }
        return Int(text.prefix { $0.isNumber })
    }
}
