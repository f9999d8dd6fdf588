#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// /proc/PID/pagemap, read with pread(2) in large batches.
package struct Pagemap: ~Copyable {
    package let pid: Int32
    package let pageSize: UInt64
    let fd: FileDescriptor

    /// Opens /proc/PID/pagemap (ptrace read access is checked here, once).
    package init(pid: Int32, pageSize: Int = ProcFS.pageSize) throws(PageStatError) {
        self.pid = pid
        self.pageSize = UInt64(pageSize)
        do {
            fd = try FileDescriptor.open(path: "/proc/\(pid)/pagemap", .readOnly, options: [.closeOnExec])
        } catch {
            throw .fromProc(error, pid: pid, call: "open /proc/\(pid)/pagemap",
                            what: "/proc/\(pid)/pagemap (needs ptrace read access to the process)")
        }
    }

    /// Opens pagemap relative to a pinned process's /proc directory.
    package init(handle: ProcessHandle, pageSize: Int = ProcFS.pageSize) throws(PageStatError) {
        pid = handle.pid
        self.pageSize = UInt64(pageSize)
        fd = try handle.open("pagemap", what: "/proc/\(handle.pid)/pagemap (needs ptrace read access to the process)")
    }

    deinit { try? fd.close() }

    /// The entry of a page of this process's own, from /proc/self/pagemap (one pread), or nil
    /// where it cannot be read.
    static func ownEntry(_ page: UnsafeRawPointer) -> PagemapEntry? {
        guard let fd = try? FileDescriptor.open(path: "/proc/self/pagemap", .readOnly, options: [.closeOnExec]) else { return nil }
        defer { try? fd.close() }
        var entry: UInt64 = 0
        let offset = Int64(UInt(bitPattern: page) / UInt(ProcFS.pageSize) * 8)
        guard let got = try? withUnsafeMutableBytes(of: &entry, { try fd.read(fromAbsoluteOffset: offset, into: $0) }),
              got == 8 else { return nil }
        return PagemapEntry(rawValue: entry)
    }

    /// The raw descriptor, for PAGEMAP_SCAN.
    package var fileDescriptor: FileDescriptor { fd }

    /// Reads the entries of the pages starting at `address` into `buffer` (one u64 per page).
    /// Returns how many entries the kernel gave: fewer than asked means the address space ended;
    /// zero at a mapped address means the process's memory is gone (it exited).
    /// The corresponding C function is `pread`.
    package func read(at address: UInt64, into buffer: UnsafeMutableBufferPointer<UInt64>) throws(PageStatError) -> Int {
        try Self.read(fd, pid: pid, pageSize: pageSize, at: address, into: buffer)
    }

    /// pread(2) of the entries of the pages from `address` into `buffer`, on an open pagemap.
    static func read(_ fd: FileDescriptor, pid: Int32, pageSize: UInt64, at address: UInt64,
                     into buffer: UnsafeMutableBufferPointer<UInt64>) throws(PageStatError) -> Int {
        let raw = UnsafeMutableRawBufferPointer(buffer)
        var filled = 0
        let offset = Int64(bitPattern: (address / pageSize) * 8)
        while filled < raw.count {
            let count: Int
            do {
                count = try system {
                    try fd.read(fromAbsoluteOffset: offset + Int64(filled),
                                into: UnsafeMutableRawBufferPointer(rebasing: raw[filled...]),
                                retryOnInterrupt: true)
                }
            } catch {
                if ProcFS.exited(pid, failedWith: error) { throw .processExited(pid: pid) }
                throw .system(call: "pread /proc/\(pid)/pagemap", errno: error)
            }
            if count == 0 { break }
            filled += count
        }
        return filled / 8
    }
}

/// The kernel's raw read of a range of /proc/PID/pagemap, as `dd ibs=8*BATCH` does it.
public enum RawPagemapRead {
    /// Reads the entries of `range` with one pread(2) of `entriesPerRead` entries at a time;
    /// returns how many entries came back.
    public static func read(pid: Int32, range: AddressRange, entriesPerRead: Int) throws(PageStatError) -> UInt64 {
        let pagemap = try Pagemap(pid: pid)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: entriesPerRead * 8, alignment: 8)
        defer { buffer.deallocate() }
        let pageSize = pagemap.pageSize
        var offset = Int64((range.start / pageSize) * 8)
        let end = Int64((range.end / pageSize) * 8)
        var total: UInt64 = 0
        while offset < end {
            let want = Int(min(Int64(buffer.count), end - offset))
            let got = (try? pagemap.fileDescriptor.read(fromAbsoluteOffset: offset,
                                                         into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<want]))) ?? 0
            guard got > 0 else { break }
            total += UInt64(got / 8)
            offset += Int64(got)
        }
        return total
    }
}
