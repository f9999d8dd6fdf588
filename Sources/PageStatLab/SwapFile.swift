#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import PageStat
import SystemPackage

/// A temporary swap file for the lab: mkswap's header and swapon(2), swapoff(2) again. Never the
/// library's: it only reads.
extension SwapArea {
    /// Makes a swap file of `bytes` at `path` (allocated, mode 0600, a version-1 swap header
    /// written the way mkswap writes it) and turns it on with swapon(2), at the lowest priority.
    /// Needs root. `created` runs right after open(2) created the file, before it is filled: the
    /// moment from which the caller owns the path (to remove it, should it be interrupted). On
    /// failure the file is removed again.
    ///
    /// An active swap file cannot be unlinked (the kernel marks its inode S_SWAPFILE: EPERM), so
    /// whoever turns one on must turn it off again before removing it.
    package static func enableFile(at path: String, bytes: UInt64, created: () -> Void = {}) throws(PageStatError) {
        let pageSize = UInt64(ProcFS.pageSize)
        let pages = bytes / pageSize
        guard pages >= 10 else { throw .invalidInput("swap file too small") }
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path: path, .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec],
                                         permissions: [.ownerReadWrite])
        } catch {
            throw .system(call: "open \(path)", errno: error)
        }
        created()
        var failure: PageStatError?
        // posix_fallocate returns the error; it does not set errno.
        let allocated = posix_fallocate(fd.rawValue, 0, off_t(pages * pageSize))
        if allocated != 0 {
            failure = .system(call: "fallocate \(path)", errno: Errno(rawValue: allocated))
        } else {
            // union swap_header: bootbits[1024], then version, last_page, nr_badpages (u32 each),
            // uuid and label; the signature "SWAPSPACE2" in the last 10 bytes of the first page.
            var header = [UInt8](repeating: 0, count: Int(pageSize))
            func put32(_ value: UInt32, at offset: Int) {
                withUnsafeBytes(of: value.littleEndian) { header.replaceSubrange(offset..<offset + 4, with: $0) }
            }
            put32(1, at: 1024)
            put32(UInt32(truncatingIfNeeded: pages - 1), at: 1028)
            header.replaceSubrange(Int(pageSize) - 10..<Int(pageSize), with: Array("SWAPSPACE2".utf8))
            do throws(Errno) {
                _ = try system { try fd.writeAll(toAbsoluteOffset: 0, header) }
                guard fsync(fd.rawValue) == 0 else { throw Errno(rawValue: errno) }
            } catch {
                failure = .system(call: "write \(path)", errno: error)
            }
        }
        try? fd.close()
        if failure == nil && CPagestat_swapon(path) != 0 {
            failure = .system(call: "swapon \(path)", errno: Errno(rawValue: errno))
        }
        if let failure {
            unlink(path)
            throw failure
        }
    }

    /// Turns a swap file off and removes it.
    package static func disableFile(at path: String) {
        _ = CPagestat_swapoff(path)
        _ = unlink(path)
    }
}
