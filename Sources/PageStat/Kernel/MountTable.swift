#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import SystemPackage

/// The filesystems behind mappings, per mount namespace, from /proc/PID/mountinfo: which devices
/// are tmpfs (shmem) and which hugetlbfs (with their huge page size).
///
/// Most processes share a namespace, so it is read once per namespace and kept with its file open:
/// the kernel marks an open mountinfo POLLPRI after every mount or unmount in that namespace
/// (proc(5)), and only then is it read again. A mount made since the last read is never missed.
enum MountTable {
    struct Devices: Sendable {
        var shmem: Set<ProcMaps.Device>
        var hugetlb: [ProcMaps.Device: UInt64]
    }

    private struct Entry {
        var fd: FileDescriptor
        var devices: Devices
    }

    private static let entries = Mutex<[String: Entry]>([:])

    /// The tmpfs and hugetlbfs devices that process `pid` sees.
    static func devices(pid: Int32) -> Devices {
        let namespace = (try? ProcFS.readLink("/proc/\(pid)/ns/mnt")) ?? "pid:\(pid)"
        if let known = entries.withLock({ $0[namespace] }), !changed(known.fd) { return known.devices }
        // Opened before it is read: a mount after the read marks this descriptor.
        let fd = try? FileDescriptor.open(path: "/proc/\(pid)/mountinfo", .readOnly, options: [.closeOnExec])
        let text = String(decoding: (try? fd?.readToEnd()) ?? [], as: UTF8.self)
        let mounts = MountInfo.parse(text)
        let devices = Devices(shmem: ProcMaps.shmemDevices(mounts),
                              hugetlb: HugetlbFS.pageSizes.isEmpty ? [:] : HugetlbFS.internalDevices.merging(
                                  HugetlbFS.devices(mounts, defaultPageSize: HugetlbFS.defaultPageSize)) { $1 })
        entries.withLock { table in
            if let old = table[namespace] { try? old.fd.close() }
            table[namespace] = fd.map { Entry(fd: $0, devices: devices) }
        }
        return devices
    }

    /// Whether the mount table behind `fd` changed since it was opened or last asked.
    private static func changed(_ fd: FileDescriptor) -> Bool {
        var poller = pollfd(fd: fd.rawValue, events: Int16(POLLPRI), revents: 0)
        return poll(&poller, 1, 0) != 0
    }
}
