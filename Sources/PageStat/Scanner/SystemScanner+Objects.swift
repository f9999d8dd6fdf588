#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// Where a process maps part of a shared object: pages `[first, end)` of the object.
struct ObjectMapping: Sendable {
    var pid: Int32
    var range: AddressRange
    var first: UInt64
    var end: UInt64
    /// The path maps shows, for notes.
    var path: String = ""
    var kind: SharedMemoryKind = .shmem
}

/// A way to open a shared object: one mapping's /proc/PID/map_files entry, or a descriptor that
/// a process holds (/proc/PID/fd/N).
enum ObjectOpener: Sendable {
    case mapFiles(pid: Int32, range: AddressRange)
    case descriptor(pid: Int32, fd: Int32)

    var pid: Int32 {
        switch self {
        case .mapFiles(let pid, _), .descriptor(let pid, _): pid
        }
    }

    func open() throws(PageStatError) -> PageCacheObject {
        switch self {
        case .mapFiles(let pid, let range):
            return try PageCacheObject.open(pid: pid, range: range)
        case .descriptor(let pid, let fd):
            let path = "/proc/\(pid)/fd/\(fd)"
            return try PageCacheObject.open(path: path, pid: 0, what: path)
        }
    }

    /// Whether `error` says the object's processes, or their mapping or descriptor of it, went
    /// away while it was being opened: nothing is left unknown then, there is nothing to count.
    static func vanished(_ error: PageStatError) -> Bool {
        switch error {
        case .noSuchProcess, .processExited, .addressSpaceReplaced, .noAddressSpace, .objectChanged, .unsupported: true
        case .system(_, let errno): errno == .noSuchFileOrDirectory
        default: false
        }
    }

    /// Opens the object through the first opener that works. A process that refused once (no
    /// permission) or went away is not asked again, so the cost stays linear in the openers
    /// however many mappings fail; the first error is returned when none works.
    static func openFirst<Openers: Sequence<ObjectOpener>>(_ openers: Openers) -> Result<PageCacheObject, PageStatError> {
        var refused = Set<Int32>()
        var firstError: PageStatError?
        for opener in openers where !refused.contains(opener.pid) {
            do {
                return .success(try opener.open())
            } catch {
                switch error {
                case .permissionDenied, .noSuchProcess, .processExited, .addressSpaceReplaced, .noAddressSpace: refused.insert(opener.pid)
                default: break
                }
                firstError = firstError ?? error
            }
        }
        return .failure(firstError ?? .unsupported("no process maps or holds it any more"))
    }
}

/// System-wide views: every process (`top`) and every shared-memory object (`objects`).
/// Each shared object's page cache is asked once, whatever the number of its mappers.

/// Shared objects for `top` and `objects`: where they are found (mounts, descriptors) and how
/// their pages are split among the processes that map them.
extension SystemScanner {
    /// The devices whose regular files are shmem objects: every tmpfs mount this process sees
    /// (/proc/self/mountinfo) and the kernel's internal mount of memfds and shared anonymous
    /// memory (learnt from a memfd of our own). What could not be read goes to `note`.
    static func shmemDevices(note: (ScanNote) -> Void) -> Set<ObjectID> {
        var devices = Set<ObjectID>()  // devices only (inode 0)
        do {
            let mountinfo = try ProcFS.readText("/proc/self/mountinfo", pid: getpid(), what: "mountinfo")
            for device in ProcMaps.shmemDevices(mountinfo: mountinfo) {
                devices.insert(ObjectID(deviceMajor: device.major, deviceMinor: device.minor, inode: 0))
            }
        } catch {
            note(.mountinfoUnreadable(error))
        }
        let probe = CPagestat_memfd_create("pagestat-probe", 1)
        if probe >= 0 {
            var st = stat()
            if fstat(probe, &st) == 0 {
                var id = ObjectID(st)
                id.inode = 0
                devices.insert(id)
            } else {
                note(.memfdProbeFailed(call: "fstat of a memfd", Errno(rawValue: errno)))
            }
            close(probe)
        } else {
            note(.memfdProbeFailed(call: "memfd_create", Errno(rawValue: errno)))
        }
        return devices
    }

    /// The shmem objects process `pid` holds open: each descriptor of a regular file on one of
    /// `devices`, with the object's id (a stat(2) each; the links are read later, for the objects
    /// no one maps).
    static func heldObjects(_ pid: Int32, devices: Set<ObjectID>) -> [(ObjectID, Int32)] {
        var held: [(ObjectID, Int32)] = []
        let directory = "/proc/\(pid)/fd/"
        for name in Directory.names(directory) ?? [] {
            guard let fd = Int32(name) else { continue }
            var st = stat()
            let path = directory + name
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            var device = ObjectID(st)
            device.inode = 0
            guard devices.contains(device) else { continue }
            held.append((ObjectID(st), fd))
        }
        return held
    }

    /// Pages of an object per cachestat(2) call at most, so that both cores share a large object
    /// (an object of one piece or less is asked on the calling thread).
    static let piecePages: UInt64 = 1 << 16

    /// `bytes` split evenly among `pids`, exactly: the remainder of the division goes one byte
    /// each to the first pids, so the shares always add up to `bytes`.
    static func split(_ bytes: UInt64, among pids: [Int32]) -> [(Int32, UInt64)] {
        guard !pids.isEmpty else { return [] }
        let count = UInt64(pids.count)
        let (base, remainder) = bytes.quotientAndRemainder(dividingBy: count)
        return pids.enumerated().map { index, pid in (pid, base + (UInt64(index) < remainder ? 1 : 0)) }
    }

    /// Splits the mapped pages of one object into intervals with a constant set of mapping
    /// processes: one interval between each two neighbouring ends of mappings that some mapping
    /// covers, with its processes in order. A sweep over the sorted ends, keeping how many of
    /// each process's mappings are open: O(m log m) for m mappings, plus the processes listed.
    static func coverage(_ mappings: [ObjectMapping]) -> [(Range<UInt64>, [Int32])] {
        // Where each mapping starts (+1) and ends (-1); at one page, starts first.
        var ends: [(page: UInt64, delta: Int, pid: Int32)] = []
        ends.reserveCapacity(2 * mappings.count)
        for mapping in mappings {
            ends.append((mapping.first, 1, mapping.pid))
            ends.append((mapping.end, -1, mapping.pid))
        }
        ends.sort { ($0.page, $1.delta) < ($1.page, $0.delta) }
        var open: [Int32: Int] = [:]
        var pids: [Int32] = []  // the processes with a mapping open, in order
        var result: [(Range<UInt64>, [Int32])] = []
        var index = 0
        while index < ends.count {
            let page = ends[index].page
            while index < ends.count && ends[index].page == page {
                let (_, delta, pid) = ends[index]
                let count = open[pid, default: 0] + delta
                open[pid] = count
                if delta > 0 && count == 1 {
                    pids.insert(pid, at: pids.partitioningIndex { $0 >= pid })
                } else if delta < 0 && count == 0 {
                    pids.remove(at: pids.partitioningIndex { $0 >= pid })
                }
                index += 1
            }
            if index < ends.count && !pids.isEmpty { result.append((page..<ends[index].page, pids)) }
        }
        return result
    }
}

extension Array {
    /// The first index whose element satisfies `belongs`, in an array where every element that
    /// does comes after every one that does not (a binary search).
    func partitioningIndex(where belongs: (Element) -> Bool) -> Int {
        var low = 0
        var high = count
        while low < high {
            let middle = (low + high) / 2
            if belongs(self[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
