#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// Finds how a swap area's slots are read: stat(2) tells a block device from a file, statfs(2)
/// the file's file system, FIEMAP its extents, /sys/dev/block/MAJ:MIN/uevent its device.
extension SwapSlotReader {
    static func open(_ path: String) -> (backend: SwapBackend, readable: Readable?) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            return (.refused(.deviceNotOpened(device: path, errno: Errno(rawValue: errno))), nil)
        }
        if info.st_mode & S_IFMT == S_IFBLK {
            do {
                return (.blockDevice(path: path), Readable(fd: try openDirect(path), extents: nil))
            } catch {
                return (.refused(.deviceNotOpened(device: path, errno: error)), nil)
            }
        }
        let file: FileDescriptor
        do { file = try FileDescriptor.open(path: path, .readOnly, options: [.closeOnExec]) } catch {
            return (.refused(.deviceNotOpened(device: path, errno: error)), nil)
        }
        defer { try? file.close() }
        let fileSystem = fileSystemName(CPagestat_fstatfs_type(file.rawValue))
        guard fileSystem == "ext4" || fileSystem == "xfs" else { return (.refused(.fileSystem(fileSystem)), nil) }
        let mapped: (extents: [Extent], unwritten: Bool)
        do { mapped = try fiemap(file, path: path, bytes: UInt64(info.st_size)) } catch {
            return (.refused(error), nil)
        }
        let (fileExtents, unwritten) = mapped
        let extents = slotExtents(fileExtents)
        let page = UInt64(ProcFS.pageSize)
        let aligned = fileExtents.allSatisfy { ($0.logical | $0.physical | $0.length) % page == 0 }
        let id = ObjectID(info)
        let device = blockDevice(major: id.deviceMajor, minor: id.deviceMinor)
        var failure = Errno.noSuchFileOrDirectory
        if let device {
            do {
                let fd = try openDirect(device)
                var opened = stat()
                if fstat(fd.rawValue, &opened) == 0, opened.st_mode & S_IFMT == S_IFBLK, opened.st_rdev == info.st_dev {
                    return (.fileOnDevice(fileSystem: fileSystem, device: device), Readable(fd: fd, extents: extents))
                }
                try? fd.close()
                failure = .noSuchAddressOrDevice
            } catch {
                failure = error
            }
        }
        // The file through its file system: only where every extent is written (an unwritten
        // extent reads zeros there, whatever swap wrote to its blocks) and page-aligned on the
        // device (else slot N is not at file offset N * page size).
        if !unwritten, aligned, let fd = try? openDirect(path) {
            return (.fileDirect(fileSystem: fileSystem), Readable(fd: fd, extents: nil))
        }
        return (.refused(.deviceNotOpened(device: device ?? "\(id.deviceMajor):\(id.deviceMinor)", errno: failure)), nil)
    }

    private static func openDirect(_ path: String) throws(Errno) -> FileDescriptor {
        FileDescriptor(rawValue: try retryingInterrupts { Glibc.open(path, O_RDONLY | O_CLOEXEC | CPagestat_O_DIRECT) }.get())
    }

    /// The file system's name from its statfs magic (include/uapi/linux/magic.h).
    static func fileSystemName(_ magic: Int) -> String {
        switch UInt64(truncatingIfNeeded: magic) & 0xffff_ffff {
        case 0xEF53: "ext4"
        case 0x5846_5342: "xfs"
        case 0x9123_683E: "btrfs"
        case 0x6969: "nfs"
        case 0xFF53_4D42, 0xFE53_4D42: "cifs"
        case 0x0102_1994: "tmpfs"
        case 0x2FC1_2FC1: "zfs"
        case 0x6573_5546: "fuse"
        case 0x7461_636F: "ocfs2"
        case 0xF2F5_2010: "f2fs"
        case let other: "a file system of magic 0x\(String(other, radix: 16))"
        }
    }

    /// /dev/NAME of the block device MAJ:MIN (/sys/dev/block/MAJ:MIN/uevent, DEVNAME=).
    static func blockDevice(major: UInt32, minor: UInt32) -> String? {
        let uevent = (try? ProcFS.readText("/sys/dev/block/\(major):\(minor)/uevent", pid: getpid(), what: "uevent")) ?? ""
        for line in uevent.split(separator: "\n") where line.hasPrefix("DEVNAME=") {
            return "/dev/" + line.dropFirst("DEVNAME=".count)
        }
        return nil
    }

    /// Where the kernel put each slot of a swap file: turning it on (iomap_swapfile_activate) takes the
    /// file's extents in file order, joins those that continue on the device, keeps only the
    /// whole pages of each (a file system of blocks smaller than a page, such as a small ext4
    /// made with 1 KiB blocks, leaves extents that start or end inside a page) and numbers slots
    /// across them in order. So slot N is at file offset N * page size only where every extent
    /// is page-aligned. The result: extents whose `logical` is the slot's byte offset (slot *
    /// page size) and `physical` the device's.
    static func slotExtents(_ extents: [Extent]) -> [Extent] {
        let page = UInt64(ProcFS.pageSize)
        var joined: [Extent] = []
        for extent in extents where extent.length > 0 {
            if let last = joined.last, last.physical + last.length == extent.physical,
               last.logical + last.length == extent.logical {
                joined[joined.count - 1].length += extent.length
            } else {
                joined.append(extent)
            }
        }
        var slots: [Extent] = []
        var next: UInt64 = 0
        for extent in joined {
            let first = (extent.physical + page - 1) / page
            let end = (extent.physical + extent.length) / page
            guard end > first else { continue }
            slots.append(Extent(logical: next * page, physical: first * page, length: (end - first) * page))
            next += end - first
        }
        return slots
    }

    /// The file's extents (FS_IOC_FIEMAP), in file order, covering [0, bytes rounded down to
    /// pages) without a hole, and whether any is unwritten. Refuses extents it cannot read at.
    static func fiemap(_ fd: FileDescriptor, path: String, bytes: UInt64) throws(SwapRefusal) -> (extents: [Extent], unwritten: Bool) {
        let map = UnsafeMutablePointer<CPagestat_fiemap>.allocate(capacity: 1)
        defer { map.deallocate() }
        let unreadable = CPagestat_FIEMAP_EXTENT_UNKNOWN | CPagestat_FIEMAP_EXTENT_DELALLOC | CPagestat_FIEMAP_EXTENT_ENCODED
            | CPagestat_FIEMAP_EXTENT_NOT_ALIGNED | CPagestat_FIEMAP_EXTENT_DATA_INLINE
        let end = bytes / UInt64(ProcFS.pageSize) * UInt64(ProcFS.pageSize)
        var extents: [Extent] = [], unwritten = false, next: UInt64 = 0, last = false
        while !last && next < end {
            memset(map, 0, MemoryLayout<CPagestat_fiemap>.size)
            map.pointee.fm_start = next
            map.pointee.fm_length = end - next
            map.pointee.fm_extent_count = UInt32(CPAGESTAT_FIEMAP_EXTENTS)
            guard CPagestat_fiemap(fd.rawValue, map) == 0 else {
                throw .extentsUnmapped(path: path, detail: "FIEMAP: \(Errno(rawValue: errno))")
            }
            let mapped = Int(map.pointee.fm_mapped_extents)
            if mapped == 0 { break }
            // fm_extents follows the 32-byte header.
            let found = UnsafeBufferPointer(start: (UnsafeRawPointer(map) + 32).assumingMemoryBound(to: CPagestat_fiemap_extent.self),
                                            count: min(mapped, Int(CPAGESTAT_FIEMAP_EXTENTS)))
            for extent in found {
                if extent.fe_flags & unreadable != 0 {
                    throw .extentsUnmapped(path: path, detail: "extent at byte \(extent.fe_logical) has flags 0x\(String(extent.fe_flags, radix: 16))")
                }
                unwritten = unwritten || extent.fe_flags & CPagestat_FIEMAP_EXTENT_UNWRITTEN != 0
                last = last || extent.fe_flags & CPagestat_FIEMAP_EXTENT_LAST != 0
                extents.append(Extent(logical: extent.fe_logical, physical: extent.fe_physical, length: extent.fe_length))
                next = extent.fe_logical + extent.fe_length
            }
        }
        var covered: UInt64 = 0
        for extent in extents {
            guard extent.logical <= covered else {
                throw .extentsUnmapped(path: path, detail: "a hole at byte \(covered)")
            }
            covered = max(covered, extent.logical + extent.length)
        }
        guard covered >= end else { throw .extentsUnmapped(path: path, detail: "a hole at byte \(covered)") }
        return (extents, unwritten)
    }
}
