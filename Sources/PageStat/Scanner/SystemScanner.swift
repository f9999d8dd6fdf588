#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// A file or shmem object, by device and inode (as maps and stat(2) name it).
public struct ObjectID: Hashable, Sendable, Comparable {
    public var deviceMajor: UInt32
    public var deviceMinor: UInt32
    public var inode: UInt64

    public init(deviceMajor: UInt32, deviceMinor: UInt32, inode: UInt64) {
        self.deviceMajor = deviceMajor
        self.deviceMinor = deviceMinor
        self.inode = inode
    }

    init(_ mapping: Mapping) {
        self.init(deviceMajor: mapping.deviceMajor, deviceMinor: mapping.deviceMinor, inode: mapping.inode)
    }

    init(_ st: stat) {
        self.init(deviceMajor: ProcessScanner.major(UInt64(st.st_dev)), deviceMinor: ProcessScanner.minor(UInt64(st.st_dev)),
                  inode: UInt64(st.st_ino))
    }

    public static func < (a: ObjectID, b: ObjectID) -> Bool {
        (a.deviceMajor, a.deviceMinor, a.inode) < (b.deviceMajor, b.deviceMinor, b.inode)
    }
}

/// One process's memory use, with swapped shared memory split fairly among its mappers.
public struct ProcessUse: Sendable {
    public var pid: Int32
    public var command: String
    public var use: MemoryUse
}

/// Every process on the machine, like procrank, with swapped shared memory counted.
public struct TopReport: Sendable {
    public var processes: [ProcessUse]
    /// Processes that exist but could not be read (permission), counted, not dropped silently.
    public var unreadable: Int
    /// Processes that went away while being scanned.
    public var vanished: Int
    public var privileged: Bool
    public var notes: [String]
}

/// Where a process maps part of a shared object: pages `[first, end)` of the object.
struct ObjectMapping: Sendable {
    var pid: Int32
    var range: AddressRange
    var first: UInt64
    var end: UInt64
}

/// System-wide views: every process (`top`) and every shared-memory object (`objects`).
/// Each shared object's page cache is asked once, whatever the number of its mappers.
public enum SystemScanner {
    /// Scans every process with both cores. Shared objects are settled once each: the swapped
    /// pages of every stretch of an object are split evenly among the processes mapping it.
    public static func top(progress: (@Sendable (Int, Int) -> Void)? = nil) -> TopReport {
        let pids = ProcFS.pids().filter { $0 != getpid() }
        let pageSize = UInt64(ProcFS.pageSize)
        struct Collected {
            var processes: [ProcessUse] = []
            var objects: [ObjectID: [ObjectMapping]] = [:]
            var unreadable = 0
            var vanished = 0
            var done = 0
            var notes = Notes()
        }
        let collected = Mutex(Collected())
        DispatchQueue.concurrentPerform(iterations: 2) { worker in
            for index in stride(from: worker, to: pids.count, by: 2) {
                let pid = pids[index]
                let outcome = scanForTop(pid)
                collected.withLock { state in
                    state.done += 1
                    switch outcome {
                    case .success(let result):
                        if let result {
                            state.processes.append(result.0)
                            for (id, mapping) in result.1 { state.objects[id, default: []].append(mapping) }
                            for note in result.2 { state.notes.add(note) }
                        }
                    case .failure(.noSuchProcess), .failure(.processExited): state.vanished += 1
                    case .failure(.noAddressSpace): break  // kernel threads have no memory to show
                    case .failure: state.unreadable += 1
                    }
                    progress?(state.done, pids.count)
                }
            }
        }
        var state = collected.withLock { $0 }
        // Settle each shared object once and split its swapped pages among its mappers.
        var shares: [Int32: UInt64] = [:]
        for (_, mappings) in state.objects.sorted(by: { $0.key < $1.key }) {
            guard let object = mappings.lazy.compactMap({ try? PageCacheObject.open(pid: $0.pid, range: $0.range) }).first else {
                state.notes.add("some shared objects could not be opened (map_files needs CAP_SYS_ADMIN): their swapped pages are not counted")
                continue
            }
            for (interval, pids) in coverage(mappings) {
                guard let stat = try? object.cachestat(offset: interval.lowerBound * pageSize,
                                                       length: UInt64(interval.count) * pageSize),
                      stat.nr_evicted > 0 else { continue }
                let share = stat.nr_evicted * pageSize / UInt64(pids.count)
                for pid in pids { shares[pid, default: 0] += share }
            }
        }
        for index in state.processes.indices {
            let share = shares[state.processes[index].pid] ?? 0
            state.processes[index].use.shmemSwap = share
            state.processes[index].use.swap += share
        }
        return TopReport(processes: state.processes, unreadable: state.unreadable, vanished: state.vanished,
                         privileged: ProcFS.hasSysAdmin(), notes: state.notes.lines)
    }

    /// One process for `top`: its page table only (shared objects are settled by the caller).
    private static func scanForTop(_ pid: Int32) -> Result<(ProcessUse, [(ObjectID, ObjectMapping)], [String])?, PageStatError> {
        do {
            let scanner = try ProcessScanner(pid: pid, batchPages: 1 << 14)
            var options = ScanOptions(accounting: true)
            options.fileSide = false
            let report = try scanner.scan(options)
            guard !report.mappings.isEmpty else { return .success(nil) }  // a kernel thread
            var use = MemoryUse.zero
            var objects: [(ObjectID, ObjectMapping)] = []
            let pageSize = UInt64(report.pageSize)
            for mapping in report.mappings {
                if let mappingUse = mapping.use { use += mappingUse }
                let m = mapping.mapping
                if m.kind.isShmem {
                    let first = m.offset / pageSize
                    objects.append((ObjectID(m), ObjectMapping(pid: pid, range: m.range, first: first,
                                                               end: first + m.range.length / pageSize)))
                }
            }
            if !report.privileged { use.pss = nil; use.uss = nil }
            let command = ProcFS.command(pid) ?? "?"
            return .success((ProcessUse(pid: pid, command: command, use: use), objects, report.notes))
        } catch {
            return .failure(error)
        }
    }

    /// Splits the mapped pages of one object into intervals with a constant set of mapping processes.
    static func coverage(_ mappings: [ObjectMapping]) -> [(Range<UInt64>, [Int32])] {
        var points = Set<UInt64>()
        for mapping in mappings { points.insert(mapping.first); points.insert(mapping.end) }
        let sorted = points.sorted()
        var result: [(Range<UInt64>, [Int32])] = []
        for (low, high) in zip(sorted, sorted.dropFirst()) {
            let pids = Set(mappings.filter { $0.first <= low && high <= $0.end }.map(\.pid)).sorted()
            if !pids.isEmpty { result.append((low..<high, pids)) }
        }
        return result
    }
}

extension MemoryUse {
    /// A sum to add to: PSS and USS start at zero and turn nil if any part lacks them.
    public static var zero: MemoryUse {
        var use = MemoryUse()
        use.pss = 0
        use.uss = 0
        return use
    }
}
