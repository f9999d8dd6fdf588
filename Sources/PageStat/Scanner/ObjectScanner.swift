#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

extension SystemScanner {
    /// Every shared-memory object on the machine, found through the processes that map it or hold
    /// it open, and SysV segments from /proc/sysvipc/shm. Each process's maps are read once and
    /// each mapping is filed under its object (device, inode) in a dictionary, so the work is
    /// linear in the mappings; each object is then opened and counted once (the BPF walk of its
    /// xarray, or cachestat: resident pages in nr_cache, swapped ones in nr_evicted). What could not be read is said in the notes.
    ///
    /// `engine`: `syscalls` counts with cachestat; `bpf` walks each object's page-cache xarray
    /// (and fails with the reason where it cannot load); `auto` walks where the walker loads
    /// (the same counts, without cachestat's cost per swapped page), cachestat where it does not.
    public static func objects(engine: FileSideEngineChoice = .auto) throws(PageStatError) -> ObjectsReport {
        let pageSize = UInt64(ProcFS.pageSize)
        var notes = Notes()
        let policy = EnginePolicy(engine)
        try policy.decideCounting { notes.add($0) }
        if engine == .bpf { notes.add(.countedByBPFAsAsked) }
        // tmpfs mounts, and the kernel's internal shm mount of memfds and shared anonymous memory.
        let devices = shmemDevices { notes.add($0) }

        struct Found {
            var path: String
            /// Every way to open the object, in the order found.
            var openers: [ObjectOpener] = []
            var users: [Int32: ObjectUser] = [:]

            mutating func add(_ opener: ObjectOpener?, user: ObjectUser, maps: Bool) {
                if let opener { openers.append(opener) }
                var entry = users[user.pid] ?? user
                if maps {
                    entry.maps = true
                    entry.mappings += 1
                } else {
                    entry.holdsOpen = true
                }
                users[user.pid] = entry
            }
        }
        // Filed in place (`found[id, default:]`): an entry's arrays are never copied, whatever the
        // number of mappings.
        var found: [ObjectID: Found] = [:]
        var sysvFound: [UInt64: Found] = [:]  // by shmid
        var unreadable = 0
        var unreadableProcesses: [UnreadableProcess] = []
        for pid in ProcFS.pids() where pid != getpid() {
            let maps: [Mapping]
            do {
                maps = try ProcMaps.read(pid: pid)
            } catch {
                // A kernel thread has no memory to show; others are counted and named.
                if case .noAddressSpace = error {} else if ProcFS.processExists(pid) {
                    unreadable += 1
                    unreadableProcesses.append(UnreadableProcess(pid: pid, command: ProcFS.command(pid) ?? "?", reason: error))
                }
                continue
            }
            let command = ProcFS.command(pid) ?? "?"
            let user = ObjectUser(pid: pid, command: command, maps: false, holdsOpen: false)
            for mapping in maps where mapping.kind.isShmem || mapping.path.hasPrefix("/SYSV") {
                if mapping.path.hasPrefix("/SYSV") {
                    sysvFound[mapping.inode, default: Found(path: mapping.path)].add(nil, user: user, maps: true)
                } else {
                    found[ObjectID(mapping), default: Found(path: mapping.path)]
                        .add(.mapFiles(pid: pid, range: mapping.range), user: user, maps: true)
                }
            }
            for (id, fd) in heldObjects(pid, devices: devices) {
                guard let target = ProcFS.linkTarget("/proc/\(pid)/fd/\(fd)") else { continue }
                found[id, default: Found(path: target)].add(.descriptor(pid: pid, fd: fd), user: user, maps: false)
            }
        }

        var objects: [SharedObject] = []
        var refused = 0
        for (id, entry) in found {
            var object = SharedObject(kind: kind(of: entry.path), path: entry.path, id: id, size: nil,
                                      users: entry.users.values.sorted { $0.pid < $1.pid })
            switch ObjectOpener.openFirst(entry.openers) {
            case .success(let opened):
                object.size = opened.size
                let pages = (opened.size + pageSize - 1) / pageSize
                let byBPF = policy.countsByBPF(opened)
                do {
                    let counts = try policy.countingEngine(for: opened).count(0..<pages, dirtyAndWriteback: false, eachRun: nil)
                    object.resident = counts.cached
                    object.swapped = counts.swapped
                    object.holes = counts.holes
                } catch {
                    notes.add(.objectNotCounted(object: id.label(entry.path), byBPF: byBPF, error))
                    object.unknown = "\(byBPF ? "the BPF walk" : "cachestat(2)") failed (\(error))"
                }
            case .failure(.permissionDenied):
                refused += 1
                object.unknown = "it could not be opened (map_files and other processes' descriptors need root)"
            case .failure(let error):
                notes.add(.objectNotOpenedForCount(object: id.label(entry.path), error))
                object.unknown = "it could not be opened (\(error))"
            }
            objects.append(object)
        }
        if refused > 0 {
            notes.add(.objectsNeedRoot(count: refused))
        }
        // SysV segments: the kernel counts their resident and swapped bytes itself.
        let segments: [SysVShm.Segment]
        do {
            segments = SysVShm.parse(try ProcFS.readText("/proc/sysvipc/shm", pid: 0, what: "/proc/sysvipc/shm"))
        } catch {
            segments = []
            notes.add(.sysvShmUnreadable(error))
        }
        for segment in segments {
            let pages = (segment.size + pageSize - 1) / pageSize
            let resident = segment.rss / pageSize
            let swapped = segment.swap / pageSize
            let users = (sysvFound[segment.shmid]?.users ?? [:]).values.sorted { $0.pid < $1.pid }
            objects.append(SharedObject(
                kind: "sysv", path: "/SYSV" + hex8(segment.key), id: ObjectID(deviceMajor: 0, deviceMinor: 0, inode: segment.shmid),
                size: segment.size, resident: resident, swapped: swapped,
                holes: pages - min(pages, resident + swapped), users: users))
        }
        objects.sort { ($0.size ?? 0, $1.path) > ($1.size ?? 0, $0.path) }
        var report = ObjectsReport(objects: objects, unreadable: unreadable, notes: notes.all)
        report.unreadableProcesses = unreadableProcesses
        return report
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
