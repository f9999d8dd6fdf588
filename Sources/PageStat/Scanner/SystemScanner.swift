#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage
import Dispatch
import Synchronization

/// One process's memory use, with swapped shared memory split fairly among its mappers.
public struct ProcessUse: Sendable {
    public var pid: Int32
    /// The command as `ps` shows it (see `ProcessIdentity.name`).
    public var command: String
    public var use: MemoryUse
    /// Its user, memory cgroup and command name, for grouping.
    public var identity: ProcessIdentity
    /// Its fair share of the shared memory it maps, by kind: each page of a shared object's
    /// stretch, in memory or swapped, split evenly among the processes mapping that stretch; and
    /// (`cached`) of the object's pages in memory that no process maps, split evenly among all
    /// the processes mapping the object.
    public var shared: [SharedMemoryKind: SharedShare] = [:]
    /// The kinds of shared memory it maps whose share could not be counted (an object that could
    /// not be opened, without CAP_SYS_ADMIN, or a cachestat(2) that failed), with the reason: its
    /// `shared` entry of that kind, and `use.swap` and `use.shmemSwap`, are then only what could
    /// be counted, a lower bound, and are shown as unknown.
    public var sharedUnknown: [SharedMemoryKind: String] = [:]
}

/// Every process on the machine, like procrank, with swapped shared memory counted.
public struct TopReport: Sendable {
    public var processes: [ProcessUse]
    /// Processes that exist but could not be read (permission), counted, not dropped silently.
    public var unreadable: Int
    /// Which they are and why, in pid order.
    public var unreadableProcesses: [UnreadableProcess] = []
    /// Processes that went away while being scanned.
    public var vanished: Int
    public var privileged: Bool
    public var notes: [ScanNote]
    /// Every shared object some scanned process maps or holds open and that could be counted,
    /// largest swap first.
    public var objects: [MappedObject] = []
    /// Every shared-memory object, by kind, as `pagestat objects` counts them: those above, those
    /// that could not be counted (in `objects` of the totals only), and SysV segments from
    /// /proc/sysvipc/shm (all of them when the whole machine is scanned; else those the scanned
    /// processes attach), with the kernel's own resident and swapped counts.
    public var objectTotals: [SharedMemoryKind: ObjectTotals] = [:]
}

public enum SystemScanner {
    /// Scans every process with both cores. Shared objects are settled once each: the swapped
    /// pages of every stretch of an object are split evenly among the processes mapping it.
    /// Without `proportional`, PSS and USS are left out (nil): the scan then reads no
    /// /proc/kpagecount, most of its cost on a busy machine.
    public static func top(proportional: Bool = true, progress: (@Sendable (Int, Int) -> Void)? = nil) -> TopReport {
        top(pids: ProcFS.pids().filter { $0 != getpid() }, wholeMachine: true, proportional: proportional, progress: progress)
    }

    /// `top` over the processes `pids` alone: each shared object's swapped pages are split among
    /// those of them that map it; the object totals are of the objects they map or hold open
    /// and the SysV segments they attach.
    public static func top(pids: [Int32], proportional: Bool = true, progress: (@Sendable (Int, Int) -> Void)? = nil) -> TopReport {
        top(pids: pids, wholeMachine: false, proportional: proportional, progress: progress)
    }

    /// `engine` counts the shared objects (`auto`; the others for tests that compare them).
    static func top(pids: [Int32], wholeMachine: Bool, proportional: Bool, progress: (@Sendable (Int, Int) -> Void)?,
                    engine: FileSideEngineChoice = .auto) -> TopReport {
        let pageSize = UInt64(ProcFS.pageSize)
        struct Collected {
            var processes: [ProcessUse] = []
            var objects: [ObjectID: [ObjectMapping]] = [:]
            /// Objects processes hold open by descriptor (mapped or not), and their descriptors.
            var held: [ObjectID: [ObjectOpener]] = [:]
            var unreadable: [UnreadableProcess] = []
            var vanished = 0
            var done = 0
            var notes = Notes()
        }
        // The devices of shmem (tmpfs mounts, and the kernel's internal mount of memfds), for the
        // objects held open by descriptor, as `objects` finds them.
        var deviceNotes = Notes()
        let devices = shmemDevices { deviceNotes.add($0) }
        let collected = Mutex(Collected(notes: deviceNotes))
        // Processes are handed out one at a time to a worker per core, each with its own tally
        // (buffers, mapcounts); without PAGEMAP_SCAN's categories, the process scanner.
        let next = Atomic<Int>(0)
        let tallies = FleetTally.supported
        DispatchQueue.concurrentPerform(iterations: max(1, min(2, pids.count))) { _ in
            let tally = tallies ? FleetTally(proportional: proportional) : nil
            while true {
                let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard index < pids.count else { break }
                let pid = pids[index]
                let outcome: Result<(ProcessUse, [(ObjectID, ObjectMapping)], [ScanNote])?, PageStatError>
                if let tally {
                    outcome = Result { () throws(PageStatError) in try tally.scan(pid) }
                } else {
                    outcome = scanForTop(pid, proportional: proportional)
                }
                // Its descriptors on shmem, where its address space could be read (as `objects`).
                let held = (try? outcome.get()) != nil ? heldObjects(pid, devices: devices) : []
                collected.withLock { state in
                    state.done += 1
                    switch outcome {
                    case .success(let result):
                        if let result {
                            state.processes.append(result.0)
                            for (id, mapping) in result.1 { state.objects[id, default: []].append(mapping) }
                            for note in result.2 { state.notes.add(note) }
                        }
                        for (id, fd) in held { state.held[id, default: []].append(.descriptor(pid: pid, fd: fd)) }
                    case .failure(.noSuchProcess), .failure(.processExited), .failure(.addressSpaceReplaced): state.vanished += 1
                    case .failure(.noAddressSpace): break  // kernel threads have no memory to show
                    case .failure(let error):
                        // Named with the reason; without root there are many.
                        state.unreadable.append(UnreadableProcess(pid: pid, command: ProcFS.command(pid) ?? "?", reason: error))
                    }
                    progress?(state.done, pids.count)
                }
            }
        }
        var state = collected.withLock { $0 }
        // Settle each shared object once and split its pages, in memory and swapped, among its mappers.
        var shares: [Int32: [SharedMemoryKind: SharedShare]] = [:]
        var unknown: [Int32: [SharedMemoryKind: String]] = [:]
        /// The processes `pids`' share of `kind` could not be counted, for `reason`.
        func unknownShare(_ kind: SharedMemoryKind, of pids: some Sequence<Int32>, _ reason: @autoclosure () -> String) {
            for pid in pids where unknown[pid]?[kind] == nil { unknown[pid, default: [:]][kind] = reason() }
        }
        var objects: [MappedObject] = []
        var totals: [SharedMemoryKind: ObjectTotals] = [:]
        var refused = 0
        // `top` counts shared objects a stretch at a time through the seam: the BPF walk where it
        // loads (loaded once per process: the exporter and `--interval` keep it), cachestat(2)
        // where it does not; the counts are the same.
        let countingPolicy = EnginePolicy(engine)
        /// A cachestat(2) call: part of one of the object's stretches with a constant set of
        /// mappers, or of the pages no one maps (nil).
        struct Ask {
            var stretch: Int?
            var pages: Range<UInt64>
        }
        for (id, mappings) in state.objects.sorted(by: { $0.key < $1.key }) {
            // SysV segments are added up from /proc/sysvipc/shm below, as `objects` does.
            if mappings[0].kind != .sysv { totals[mappings[0].kind, default: ObjectTotals()].objects += 1 }
            let object: PageCacheObject
            switch ObjectOpener.openFirst(mappings.lazy.map { ObjectOpener.mapFiles(pid: $0.pid, range: $0.range) }) {
            case .success(let opened): object = opened
            case .failure(.permissionDenied):
                refused += 1
                if mappings[0].kind != .sysv { totals[mappings[0].kind, default: ObjectTotals()].uncounted += 1 }
                unknownShare(mappings[0].kind, of: mappings.map(\.pid),
                             "a shared object could not be opened (/proc/PID/map_files needs CAP_SYS_ADMIN)")
                continue
            case .failure(let error):
                state.notes.add(.sharedObjectNotOpened(object: id.label(mappings[0].path), error))
                // Gone during the scan (its mappers exited or unmapped it): nothing left to count.
                guard !ObjectOpener.vanished(error) else { continue }
                if mappings[0].kind != .sysv { totals[mappings[0].kind, default: ObjectTotals()].uncounted += 1 }
                unknownShare(mappings[0].kind, of: mappings.map(\.pid), "\(id.label(mappings[0].path)) could not be opened (\(error))")
                continue
            }
            // What cachestat asks: the stretches, and the pages no one maps (each page is asked
            // once: cachestat costs per swapped page), in pieces that both cores share when the
            // object is large. The object is open only while it is asked, as before.
            let stretches = coverage(mappings)
            var asks: [Ask] = []
            func ask(_ stretch: Int?, _ pages: Range<UInt64>) {
                var start = pages.lowerBound
                while start < pages.upperBound {
                    // Pieces end on multiples of `piecePages`, so no large folio or swap entry straddles two.
                    let end = min(pages.upperBound, (start / piecePages + 1) * piecePages)
                    asks.append(Ask(stretch: stretch, pages: start..<end))
                    start = end
                }
            }
            let pages = (object.size + pageSize - 1) / pageSize
            var asked: UInt64 = 0  // the next page not yet asked about
            for (stretch, (interval, _)) in stretches.enumerated() {
                let gapEnd = min(interval.lowerBound, pages)
                if gapEnd > asked { ask(nil, asked..<gapEnd) }
                asked = max(asked, interval.upperBound)
                ask(stretch, interval)
            }
            if pages > asked { ask(nil, asked..<pages) }
            let allAsks = asks
            // Counted through the seam (`auto`: the walk for shared memory where it loads).
            let counter = countingPolicy.countingEngine(for: object)
            // The body never throws (each answer is a Result); were it to, every ask counts as failed.
            let answers: [Result<ObjectPageCounts, PageStatError>] = (try? parallelMap(
                count: allAsks.count, threads: pages > piecePages ? min(2, allAsks.count) : 1, makeWorker: { () }) { (_, position) throws(PageStatError) in
                let ask = allAsks[position]
                return Result { () throws(PageStatError) in
                    try counter.count(ask.pages, dirtyAndWriteback: false, eachRun: nil)
                }
            }) ?? allAsks.map { _ in .failure(.unsupported("cachestat(2) was not asked")) }

            let kind = mappings[0].kind
            var total = (cache: UInt64(0), evicted: UInt64(0))
            var unmapped = (cache: UInt64(0), failed: false)  // the pages no one maps
            var complete = true
            var stretchSums = [(cache: UInt64, evicted: UInt64)?](repeating: (0, 0), count: stretches.count)
            var failures = 0
            var firstFailure: PageStatError?
            for (ask, answer) in zip(allAsks, answers) {
                switch answer {
                case .success(let counts):
                    if let stretch = ask.stretch {
                        stretchSums[stretch]?.cache += counts.cached
                        stretchSums[stretch]?.evicted += counts.swapped
                    } else {
                        total.cache += counts.cached
                        total.evicted += counts.swapped
                        unmapped.cache += counts.cached
                    }
                case .failure(let error):
                    complete = false
                    if let stretch = ask.stretch, stretchSums[stretch] != nil {
                        stretchSums[stretch] = nil
                        failures += 1
                        firstFailure = firstFailure ?? error
                    } else if ask.stretch == nil && !unmapped.failed {
                        unmapped.failed = true
                        failures += 1
                        firstFailure = firstFailure ?? error
                    }
                }
            }
            if let firstFailure {
                // Those whose share lacks a stretch, or (the pages no one maps) every mapper.
                var lacking = Set<Int32>()
                for (stretch, (_, pids)) in stretches.enumerated() where stretchSums[stretch] == nil { lacking.formUnion(pids) }
                if unmapped.failed { lacking.formUnion(mappings.map(\.pid)) }
                unknownShare(kind, of: lacking, "cachestat(2) failed on \(id.label(mappings[0].path)) (\(firstFailure))")
                if kind != .sysv { totals[kind, default: ObjectTotals()].uncounted += 1 }
            }
            // The pages in memory that no one maps: split among every process mapping the object.
            if !unmapped.failed && unmapped.cache > 0 {
                for (pid, bytes) in split(unmapped.cache * pageSize, among: Set(mappings.map(\.pid)).sorted()) where bytes > 0 {
                    shares[pid, default: [:]][kind, default: SharedShare()].cached += bytes
                }
            }
            for (stretch, (_, pids)) in stretches.enumerated() {
                guard let stat = stretchSums[stretch] else { continue }
                total.cache += stat.cache
                total.evicted += stat.evicted
                for (pid, bytes) in split(stat.evicted * pageSize, among: pids) where bytes > 0 {
                    shares[pid, default: [:]][kind, default: SharedShare()].swapped += bytes
                }
                for (pid, bytes) in split(stat.cache * pageSize, among: pids) where bytes > 0 {
                    shares[pid, default: [:]][kind, default: SharedShare()].resident += bytes
                }
            }
            if complete {
                objects.append(MappedObject(kind: kind, path: mappings[0].path, id: id, size: object.size,
                                            resident: total.cache * pageSize, swapped: total.evicted * pageSize,
                                            mappers: Set(mappings.map(\.pid)).count))
                if kind != .sysv {
                    totals[kind, default: ObjectTotals()].resident += total.cache * pageSize
                    totals[kind, default: ObjectTotals()].swapped += total.evicted * pageSize
                }
            }
            if let firstFailure {
                state.notes.add(.cachestatFailed(object: id.label(mappings[0].path), stretches: failures, firstFailure))
            }
        }
        // Objects held open and mapped by none of the scanned processes: counted whole, once each.
        for (id, openers) in state.held.sorted(by: { $0.key < $1.key }) where state.objects[id] == nil {
            totals[.shmem, default: ObjectTotals()].objects += 1
            // Its name as the descriptors' links give it (as `objects` shows it), read only here.
            let path = openers.lazy.compactMap { opener -> String? in
                guard case .descriptor(let pid, let fd) = opener else { return nil }
                return ProcFS.linkTarget("/proc/\(pid)/fd/\(fd)")
            }.first ?? "?"
            switch ObjectOpener.openFirst(openers) {
            case .success(let object):
                let pages = (object.size + pageSize - 1) / pageSize
                do {
                    let counts = try countingPolicy.countingEngine(for: object).count(0..<pages, dirtyAndWriteback: false, eachRun: nil)
                    objects.append(MappedObject(kind: .shmem, path: path, id: id, size: object.size,
                                                resident: counts.cached * pageSize, swapped: counts.swapped * pageSize, mappers: 0))
                    totals[.shmem, default: ObjectTotals()].resident += counts.cached * pageSize
                    totals[.shmem, default: ObjectTotals()].swapped += counts.swapped * pageSize
                } catch {
                    state.notes.add(.cachestatFailed(object: id.label(path), stretches: 1, error))
                    totals[.shmem, default: ObjectTotals()].uncounted += 1
                }
            case .failure(.permissionDenied):
                refused += 1
                totals[.shmem, default: ObjectTotals()].uncounted += 1
            case .failure(let error):
                state.notes.add(.sharedObjectNotOpened(object: id.label(path), error))
                if !ObjectOpener.vanished(error) { totals[.shmem, default: ObjectTotals()].uncounted += 1 }
            }
        }
        if refused > 0 {
            state.notes.add(.sharedObjectsNeedSysAdmin(count: refused))
        }
        // SysV segments: the kernel's own counts, every segment on the machine (attached or not)
        // when the whole machine is scanned, else those the scanned processes attach.
        do {
            let attached = Set(state.objects.filter { $0.value[0].kind == .sysv }.map(\.key.inode))
            let segments = SysVShm.parse(try ProcFS.readText("/proc/sysvipc/shm", pid: 0, what: "/proc/sysvipc/shm"))
            for segment in segments where wholeMachine || attached.contains(segment.shmid) {
                totals[.sysv, default: ObjectTotals()].objects += 1
                totals[.sysv, default: ObjectTotals()].resident += segment.rss
                totals[.sysv, default: ObjectTotals()].swapped += segment.swap
            }
        } catch {
            state.notes.add(.sysvShmUnreadable(error))
        }
        for index in state.processes.indices {
            let shared = shares[state.processes[index].pid] ?? [:]
            let swapped = shared.values.reduce(0) { $0 + $1.swapped }
            state.processes[index].shared = shared
            state.processes[index].sharedUnknown = unknown[state.processes[index].pid] ?? [:]
            state.processes[index].use.shmemSwap = swapped
            state.processes[index].use.swap += swapped
        }
        objects.sort { ($0.swapped, $0.resident, $1.id) > ($1.swapped, $1.resident, $0.id) }
        var report = TopReport(processes: state.processes, unreadable: state.unreadable.count, vanished: state.vanished,
                               privileged: ProcFS.hasSysAdmin(), notes: state.notes.all, objects: objects, objectTotals: totals)
        report.unreadableProcesses = state.unreadable.sorted { $0.pid < $1.pid }
        return report
    }

    /// One process for `top`: its page table only (shared objects are settled by the caller).
    private static func scanForTop(_ pid: Int32, proportional: Bool) -> Result<(ProcessUse, [(ObjectID, ObjectMapping)], [ScanNote])?, PageStatError> {
        do {
            let scanner = try ProcessScanner(pid: pid, batchPages: 1 << 14)
            var options = ScanOptions(accounting: true)
            options.fileSide = false
            options.proportional = proportional
            let report = try scanner.scan(options)
            guard !report.mappings.isEmpty else { return .success(nil) }  // a kernel thread
            var account = TopAccount(pid: pid, pageSize: UInt64(report.pageSize))
            for mapping in report.mappings { account.add(mapping.mapping, use: mapping.use) }
            let (process, objects) = account.finish(proportional: report.privileged && proportional,
                                                    identity: ProcessIdentity.read(pid: pid))
            return .success((process, objects, report.notes))
        } catch {
            return .failure(error)
        }
    }
}
