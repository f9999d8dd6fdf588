#if canImport(Glibc)
import Glibc
#endif
import CPagestat

/// A process that maps a shared object or holds it open.
public struct ObjectUser: Sendable, Hashable {
    public var pid: Int32
    public var command: String
    public var maps: Bool
    public var holdsOpen: Bool
}

/// A shared-memory object, seen from its file side: "did someone write to this page, is it
/// swapped", independent of any one process's page table.
public struct SharedObject: Sendable {
    /// memfd, shared-anon, tmpfs or sysv.
    public var kind: String
    public var path: String
    public var id: ObjectID
    public var size: UInt64
    /// Pages in memory, swapped, and holes (never written, or beyond what was written); nil when
    /// the object could not be opened.
    public var resident: UInt64?
    public var swapped: UInt64?
    public var holes: UInt64?
    public var users: [ObjectUser]
}

public struct ObjectsReport: Sendable {
    public var objects: [SharedObject]
    public var unreadable: Int
    public var notes: [String]
}

extension SystemScanner {
    /// Every shared-memory object on the machine, found through the processes that map it or hold
    /// it open, and SysV segments from /proc/sysvipc/shm. Each object is opened and counted once
    /// (cachestat: resident pages in nr_cache, swapped ones in nr_evicted).
    public static func objects() -> ObjectsReport {
        let pageSize = UInt64(ProcFS.pageSize)
        var shmemDevices = Set<ObjectID>()  // devices only (inode 0)
        let mountinfo = (try? ProcFS.readText("/proc/self/mountinfo", pid: getpid(), what: "mountinfo")) ?? ""
        for device in ProcMaps.shmemDevices(mountinfo: mountinfo) {
            shmemDevices.insert(ObjectID(deviceMajor: device.major, deviceMinor: device.minor, inode: 0))
        }
        // memfds and shared anonymous memory live on the kernel's internal shm mount: learn its
        // device from a memfd of our own.
        let probe = CPagestat_memfd_create("pagestat-probe", 1)
        if probe >= 0 {
            var st = stat()
            if fstat(probe, &st) == 0 {
                var id = ObjectID(st)
                id.inode = 0
                shmemDevices.insert(id)
            }
            close(probe)
        }

        struct Found {
            var path: String
            var openers: [String]
            var users: [Int32: ObjectUser]
        }
        var found: [ObjectID: Found] = [:]
        var unreadable = 0
        var notes = Notes()
        for pid in ProcFS.pids() where pid != getpid() {
            guard let maps = try? ProcMaps.read(pid: pid) else {
                if ProcFS.processExists(pid) { unreadable += 1 }
                continue
            }
            let command = ProcFS.command(pid) ?? "?"
            for mapping in maps where mapping.kind.isShmem && !mapping.path.hasPrefix("/SYSV") {
                let id = ObjectID(mapping)
                var entry = found[id] ?? Found(path: mapping.path, openers: [], users: [:])
                entry.openers.append("/proc/\(pid)/map_files/\(String(mapping.range.start, radix: 16))-\(String(mapping.range.end, radix: 16))")
                entry.users[pid, default: ObjectUser(pid: pid, command: command, maps: false, holdsOpen: false)].maps = true
                found[id] = entry
            }
            for (fd, target) in ProcFS.openFiles(pid) {
                var st = stat()
                let path = "/proc/\(pid)/fd/\(fd)"
                guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                var device = ObjectID(st)
                device.inode = 0
                guard shmemDevices.contains(device) else { continue }
                let id = ObjectID(st)
                var entry = found[id] ?? Found(path: target, openers: [], users: [:])
                entry.openers.append(path)
                entry.users[pid, default: ObjectUser(pid: pid, command: command, maps: false, holdsOpen: false)].holdsOpen = true
                found[id] = entry
            }
        }

        var objects: [SharedObject] = []
        for (id, entry) in found {
            var object = SharedObject(kind: kind(of: entry.path), path: entry.path, id: id, size: 0,
                                      users: entry.users.values.sorted { $0.pid < $1.pid })
            if let opened = entry.openers.lazy.compactMap({ try? PageCacheObject.open(path: $0, pid: 0, what: $0) }).first {
                object.size = opened.size
                let pages = (opened.size + pageSize - 1) / pageSize
                if let stat = try? opened.cachestat(offset: 0, length: pages * pageSize) {
                    object.resident = stat.nr_cache
                    object.swapped = stat.nr_evicted
                    object.holes = pages - min(pages, stat.nr_cache + stat.nr_evicted)
                } else {
                    notes.add("some objects' pages are unknown: cachestat(2) failed on them")
                }
            } else {
                notes.add("some objects could not be opened (map_files and other processes' fds need root): their pages are unknown")
            }
            objects.append(object)
        }
        // SysV segments: the kernel counts their resident and swapped bytes itself.
        var sysvUsers: [UInt64: [ObjectUser]] = [:]
        for pid in ProcFS.pids() where pid != getpid() {
            guard let maps = try? ProcMaps.read(pid: pid) else { continue }
            for mapping in maps where mapping.path.hasPrefix("/SYSV") {
                let user = ObjectUser(pid: pid, command: ProcFS.command(pid) ?? "?", maps: true, holdsOpen: false)
                if !(sysvUsers[mapping.inode] ?? []).contains(user) { sysvUsers[mapping.inode, default: []].append(user) }
            }
        }
        for segment in SysVShm.segments() {
            let pages = (segment.size + pageSize - 1) / pageSize
            let resident = segment.rss / pageSize
            let swapped = segment.swap / pageSize
            objects.append(SharedObject(
                kind: "sysv", path: "/SYSV" + hex8(segment.key), id: ObjectID(deviceMajor: 0, deviceMinor: 0, inode: segment.shmid),
                size: segment.size, resident: resident, swapped: swapped,
                holes: pages - min(pages, resident + swapped), users: sysvUsers[segment.shmid] ?? []))
        }
        objects.sort { ($0.size, $1.path) > ($1.size, $0.path) }
        return ObjectsReport(objects: objects, unreadable: unreadable, notes: notes.lines)
    }

    static func kind(of path: String) -> String {
        if path.hasPrefix("/memfd:") { return "memfd" }
        if path.hasPrefix("/dev/zero") || path.hasPrefix("[anon_shmem:") { return "shared-anon" }
        if path.hasPrefix("/SYSV") { return "sysv" }
        return "tmpfs"
    }

    /// A SysV key as maps prints it: eight hex digits.
    static func hex8(_ key: Int64) -> String {
        let digits = String(UInt32(truncatingIfNeeded: key), radix: 16)
        return String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }
}
