#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import Synchronization
import SystemPackage

/// Where hugetlbfs lives, so that maps lines on it are classified `hugetlb`: the devices of its
/// superblocks, each with its huge page size.
///
/// Two kinds of superblock: hugetlbfs mounts a process sees (/proc/PID/mountinfo, fstype
/// `hugetlbfs`, super option `pagesize=`), and the kernel's internal mounts, one per huge page
/// size, behind MAP_HUGETLB memory, SHM_HUGETLB segments and MFD_HUGETLB memfds. Those are in no
/// mountinfo; their devices are learnt from an empty MFD_HUGETLB memfd of each size (an empty
/// file reserves and allocates no huge page).
package enum HugetlbFS {
    /// hugetlbfs mounts in mountinfo text (`MountInfo`): device → huge page size in bytes
    /// (`pagesize=`, else `defaultPageSize`, only then evaluated).
    package static func devices(mountinfo text: String, defaultPageSize: @autoclosure () -> UInt64) -> [ProcMaps.Device: UInt64] {
        devices(MountInfo.parse(text), defaultPageSize: defaultPageSize())
    }

    /// The hugetlbfs mounts among `mounts`, each device with its huge page size.
    static func devices(_ mounts: [MountInfoEntry], defaultPageSize: @autoclosure () -> UInt64) -> [ProcMaps.Device: UInt64] {
        var devices: [ProcMaps.Device: UInt64] = [:]
        for mount in mounts where mount.fileSystemType == "hugetlbfs" {
            let size = mount.superOption("pagesize").flatMap { try? ByteSize.parse(String($0)) }
            devices[ProcMaps.Device(of: mount)] = size ?? defaultPageSize()
        }
        return devices
    }

    /// The huge page sizes this kernel offers (/sys/kernel/mm/hugepages/hugepages-NkB), in bytes.
    package static let pageSizes: [UInt64] = {
        var sizes: [UInt64] = []
        for name in Directory.names("/sys/kernel/mm/hugepages") ?? [] {
            guard name.hasPrefix("hugepages-"), name.hasSuffix("kB"),
                  let kilobytes = UInt64(name.dropFirst("hugepages-".count).dropLast(2)) else { continue }
            sizes.append(kilobytes * 1024)
        }
        return sizes.sorted()
    }()

    /// The default huge page size (Hugepagesize in /proc/meminfo), or 2 MiB.
    package static let defaultPageSize: UInt64 = {
        let meminfo = (try? ProcFS.readText("/proc/meminfo", pid: getpid(), what: "/proc/meminfo")) ?? ""
        for line in meminfo.split(separator: "\n") where line.hasPrefix("Hugepagesize:") {
            let number = line.dropFirst("Hugepagesize:".count).split(separator: " ").first.flatMap { UInt64($0) }
            if let number { return number * 1024 }
        }
        return 2 << 20
    }()

    /// The devices of the kernel's internal hugetlbfs mounts, one per huge page size.
    package static let internalDevices: [ProcMaps.Device: UInt64] = {
        var devices: [ProcMaps.Device: UInt64] = [:]
        for size in pageSizes where size.nonzeroBitCount == 1 {
            let flags = 1 /* MFD_CLOEXEC */ | CPagestat_MFD_HUGETLB
                | (UInt32(size.trailingZeroBitCount) << CPagestat_MFD_HUGE_SHIFT)
            let memfd = CPagestat_memfd_create("pagestat-hugetlb-probe", flags)
            guard memfd >= 0 else { continue }
            let fd = FileDescriptor(rawValue: memfd)
            if let st = fd.status {
                let identity = PageCacheObject.Identity(st)
                devices[ProcMaps.Device(major: identity.deviceMajor, minor: identity.deviceMinor)] = size
            }
            try? fd.close()
        }
        return devices
    }()

    /// Every hugetlbfs device a process can map: its mounts and the internal ones (see
    /// `MountTable`).
    static func devices(pid: Int32) -> [ProcMaps.Device: UInt64] { MountTable.devices(pid: pid).hugetlb }
}
