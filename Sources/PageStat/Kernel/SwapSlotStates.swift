#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import Synchronization
import SystemPackage

/// What a swap slot holds, as its swap area's bitmaps say (swap_info_struct: swap_map, zeromap).
package enum SlotState: Sendable, Equatable {
    /// The slot holds the page: it is in use, was written, and is not in the swap cache.
    case onDevice
    /// The page was all zeros when it was swapped out (6.12+): only its zeromap bit is set, and
    /// the slot holds stale bytes. Its content is zeros.
    case zero
    /// A folio for the slot is in the swap cache (SWAP_HAS_CACHE): its writeback may not have
    /// finished, so the slot may not hold it yet. Take the page from memory.
    case inSwapCache
    /// The slot is free: no swap entry names it (the page moved since it was located).
    case free
    /// The state cannot be told, and why.
    case unknown(String)
}

/// Where an area's slot states come from.
package enum SlotStateSource: Sendable, Equatable {
    /// The BPF reader reached the area's swap_info_struct; `zeromap` false on kernels before
    /// 6.12, which have no zeromap and write zero pages to their slots like any other.
    case bpf(zeromap: Bool)
    /// The BPF reader cannot read this area: the reason. Every slot state is then `.unknown`.
    /// `zeromapEmpty`: /proc/vmstat swpout_zero is 0, so no zeromap bit is set on any area
    /// (no page was swapped out as a zero page since boot); the swap cache stays unknown.
    case unavailable(String, zeromapEmpty: Bool)
}

extension SwapSlotReader {
    /// The state of `count` slots of area `type` from slot `offset`: their swap_map bytes and
    /// zeromap bits, read by the BPF slot-state reader (a task_file iterator). A state is what
    /// the slot held at that moment: check the swap entry again after reading its slot.
    package func slotStates(type: Int, offset: UInt64, count: Int) throws(PageStatError) -> [SlotState] {
        let area = try area(type: type)
        guard count >= 0, offset < area.slots, UInt64(count) <= area.slots - offset else {
            throw .invalidInput("slots \(offset)+\(count) are outside swap area \(area.path) (\(area.slots) slots)")
        }
        // An area out of reach when the reader was made may be reachable now (a CPU allocated
        // from a non-rotational area since): every call runs the iterator again.
        var states: [SlotState] = []
        states.reserveCapacity(count)
        while states.count < count {
            let first = offset + UInt64(states.count)
            let chunk = min(count - states.count, Int(CPAGESTAT_SS_MAX_SLOTS))
            let read: SwapSlotStates.Read
            do { read = try SwapSlotStates.read(type: type, offset: first, count: chunk) } catch {
                guard case .unsupported(let reason) = error else { throw error }
                return Array(repeating: .unknown("no BPF slot-state reader for \(area.path): \(reason)"), count: count)
            }
            guard read.entries.map(\.path).contains(area.path) else {
                throw .objectChanged("swap area \(area.path) (type \(type)) was turned off")
            }
            guard read.area.seen != 0, SwapSlotStates.matches(read.area, path: area.path) else {
                states += Array(repeating: .unknown("swap area \(area.path) is \(read.unreachable)"), count: chunk)
                continue
            }
            guard read.area.max == area.slots else {
                throw .objectChanged("swap area \(area.path) (type \(type)) was replaced")
            }
            guard read.swapMap.count == chunk else {
                states += Array(repeating: .unknown("this kernel's swap_info_struct has no swap_map the reader knows"), count: chunk)
                continue
            }
            for index in 0..<chunk {
                let slot = first + UInt64(index)
                let zero = read.zeromap.isEmpty ? false
                    : read.zeromap[Int(slot / 64 - first / 64)] >> (slot % 64) & 1 != 0
                states.append(Self.state(swapMap: read.swapMap[index], zero: zero))
            }
        }
        return states
    }

    /// A slot's state from its swap_map byte (include/linux/swap.h: the use count in the low six
    /// bits, SWAP_MAP_BAD 0x3f, SWAP_HAS_CACHE 0x40, COUNT_CONTINUED 0x80) and its zeromap bit.
    static func state(swapMap byte: UInt8, zero: Bool) -> SlotState {
        if byte == 0 { return .free }
        if byte == 0x3f { return .unknown("a bad slot (SWAP_MAP_BAD)") }
        if zero { return .zero }
        if byte & 0x40 != 0 { return .inSwapCache }
        return .onDevice
    }
}

/// The BPF slot-state reader (BPF/swapslots.bpf.c, a task_file iterator over this process's
/// files): loaded once per process, one run at a time.
enum SwapSlotStates {
    /// One run: /proc/swaps around it, every area the program reached, and for the area asked
    /// for its zeromap words and swap_map bytes.
    struct Read {
        var entries: [SwapArea.Entry]
        var areas: [CPagestat_ss_area]
        var area: CPagestat_ss_area
        var zeromap: [UInt64]
        var swapMap: [UInt8]
        /// Why an area the run did not reach is out of reach.
        var unreachable: String
    }

    private struct Program: @unchecked Sendable {
        var loaded: CPagestat_ss_loaded
    }

    private enum Loaded: Sendable {
        case loaded(Program)
        case failed(String)
    }

    private static let program: Mutex<Loaded> = Mutex(load())

    private static func load() -> Loaded {
        var reason = [CChar](repeating: 0, count: 1024)
        var loaded = CPagestat_ss_loaded()
        guard CPagestat_ss_load(getpid(), &loaded, &reason, reason.count) == 0, loaded.io != nil else {
            return .failed(String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return .loaded(Program(loaded: loaded))
    }

    /// Runs the iterator, recording every area it reaches and, for `type`, the slots
    /// [offset, offset + count). Throws `.unsupported` when the program cannot be loaded, and
    /// `.objectChanged` when an area was turned on or off during the run.
    static func read(type: Int, offset: UInt64, count: Int) throws(PageStatError) -> Read {
        let outcome: Result<Read, PageStatError> = program.withLock { loaded in
            guard case .loaded(let program) = loaded else {
                if case .failed(let reason) = loaded { return .failure(.unsupported(reason)) }
                return .failure(.unsupported("BPF swap slot reader"))
            }
            let io = program.loaded.io!
            io.pointee.args.tgid = getpid()
            io.pointee.args.type = Int32(type)
            io.pointee.args.offset = offset
            io.pointee.args.count = UInt32(count)
            io.pointee.result = CPagestat_ss_result()
            withUnsafeMutableBytes(of: &io.pointee.area) { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
            let before: String, after: String
            do throws(PageStatError) {
                before = try ProcFS.readText("/proc/swaps", pid: getpid(), what: "/proc/swaps")
                var loaded = program.loaded
                let status = CPagestat_ss_run(&loaded)
                if status < 0 {
                    return .failure(.system(call: "read of the BPF swap slot iterator", errno: Errno(rawValue: -status)))
                }
                after = try ProcFS.readText("/proc/swaps", pid: getpid(), what: "/proc/swaps")
            } catch { return .failure(error) }
            let entries = SwapArea.parse(after)
            guard SwapArea.parse(before).map(\.path) == entries.map(\.path) else {
                return .failure(.objectChanged("a swap area was turned on or off while its slot states were read"))
            }
            let areas = withUnsafeBytes(of: io.pointee.area) { Array($0.bindMemory(to: CPagestat_ss_area.self)) }
            let area = type >= 0 && type < areas.count ? areas[type] : CPagestat_ss_area()
            let copied = Int(min(io.pointee.result.copied, UInt32(count)))
            let swapMap = Array(UnsafeBufferPointer(start: CPagestat_ss_swap_map(io), count: copied))
            var zeromap: [UInt64] = []
            if io.pointee.result.has_zeromap != 0 && copied > 0 {
                let words = Int((offset + UInt64(copied) + 63) / 64 - offset / 64)
                zeromap = Array(UnsafeBufferPointer(start: CPagestat_ss_zeromap(io), count: words))
            }
            let note = withUnsafeBytes(of: program.loaded.percpu_note) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return .success(Read(entries: entries, areas: areas, area: area, zeromap: zeromap, swapMap: swapMap,
                                 unreachable: unreachable(io.pointee.result, percpuNote: note)))
        }
        return try outcome.get()
    }

    /// Why the run reached no area, from what it looked at.
    static func unreachable(_ result: CPagestat_ss_result, percpuNote: String) -> String {
        let percpu: String
        if !percpuNote.isEmpty {
            percpu = percpuNote
        } else if result.no_percpu != 0 {
            percpu = "this kernel has no task->se.cfs_rq (CONFIG_FAIR_GROUP_SCHED) or no percpu_swap_cluster"
        } else if result.cpus_read == 0 {
            percpu = "no CPU's runqueue could be read"
        } else {
            percpu = "no CPU's percpu_swap_cluster names a swap area (only non-rotational areas are kept there, once a page was swapped out to one)"
        }
        let holder = result.block_files == 0 ? "no swap block device is open here"
            : "no open swap block device is claimed by its swap_info_struct (since 6.10 the kernel claims it with the swap file when the area is turned on)"
        return "not reachable from the BPF iterator: \(holder); \(percpu)"
    }

    /// One active area: its /proc/swaps line, swap type, slots and where its slot states come from.
    struct Listed {
        var entry: SwapArea.Entry
        var type: Int
        var slots: UInt64
        var source: SlotStateSource
    }

    /// The active areas with their swap types. An area the program reached is matched to its
    /// /proc/swaps line by the path's inode and device; /proc/swaps lists areas in swap-type
    /// order, skipping unused types, so a line no record matched takes its index as its type,
    /// which is right only while every matched line's type is its index too (no area before it
    /// was turned off). Its slot states are then unavailable, with the reason.
    static func listAreas() throws(PageStatError) -> [Listed] {
        let read: Read?
        let failure: String?
        do {
            read = try Self.read(type: -1, offset: 0, count: 0)
            failure = nil
        } catch {
            guard case .unsupported(let reason) = error else { throw error }
            read = nil
            failure = reason
        }
        let entries = read?.entries ?? SwapArea.active()
        let reached = (read?.areas ?? []).filter { $0.seen != 0 }
        let zeromapEmpty = swappedOutNoZeroPage()
        let page = UInt64(ProcFS.pageSize)
        var areas: [Listed] = []
        for (index, entry) in entries.enumerated() {
            if let match = reached.first(where: { matches($0, path: entry.path) }) {
                areas.append(Listed(entry: entry, type: Int(match.type), slots: UInt64(match.max),
                                    source: .bpf(zeromap: match.has_zeromap != 0)))
                continue
            }
            let reason = failure ?? read.map { $0.unreachable } ?? ""
            areas.append(Listed(entry: entry, type: index, slots: entry.sizeKiB * 1024 / page + 1,
                                source: .unavailable(reason, zeromapEmpty: zeromapEmpty)))
        }
        // Types of unmatched lines are their indexes: only where no matched line says otherwise.
        if areas.contains(where: { if case .unavailable = $0.source { true } else { false } }),
           areas.enumerated().contains(where: { $0.element.type != $0.offset }) {
            throw .objectChanged("the swap types of areas BPF cannot reach are not known (an earlier area was turned off)")
        }
        return areas
    }

    /// Whether a record is the area at `path`: swap_file's inode and device are the path's.
    static func matches(_ area: CPagestat_ss_area, path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        let id = ObjectID(info)
        return UInt64(info.st_ino) == area.ino && id.deviceMajor << 20 | id.deviceMinor == area.dev
    }

    /// Whether /proc/vmstat says no page was swapped out as a zero page since boot
    /// (swpout_zero 0, 6.12+): then no zeromap bit is set on any area.
    static func swappedOutNoZeroPage() -> Bool {
        let text = (try? ProcFS.readText("/proc/vmstat", pid: getpid(), what: "/proc/vmstat")) ?? ""
        return text.split(separator: "\n").contains("swpout_zero 0")
    }
}

extension SwapSlotReader {
    /// One fact per active swap area for `doctor`: whether its slots can be read in place (the
    /// backend, or why not) and where slot states come from.
    static func facts() -> [HostFact] {
        let reader: SwapSlotReader
        do { reader = try SwapSlotReader() } catch {
            return [HostFact(name: "swap slots", available: false, detail: "\(error)",
                             consequence: "swapped pages cannot be read from their slots")]
        }
        return reader.areas.map { area in
            let states = switch area.slotStates {
            case .bpf(zeromap: true): "zero pages and the swap cache told by BPF"
            case .bpf(zeromap: false): "the swap cache told by BPF; no zeromap (zero pages are written to their slots)"
            case .unavailable(let reason, zeromapEmpty: true):
                "no zeromap bit set (swpout_zero 0); the swap cache unknown: \(reason)"
            case .unavailable(let reason, zeromapEmpty: false): "slot states unknown: \(reason)"
            }
            let detail: String
            switch area.backend {
            case .blockDevice(let path): detail = "\(area.path) (type \(area.type)): read from the block device \(path); \(states)"
            case .fileOnDevice(let fileSystem, let device):
                detail = "\(area.path) (type \(area.type)): a swap file on \(fileSystem), read from \(device) at its FIEMAP extents; \(states)"
            case .fileDirect(let fileSystem):
                detail = "\(area.path) (type \(area.type)): a swap file on \(fileSystem), its extents all written, read through the file with O_DIRECT; \(states)"
            case .refused(let refusal): detail = "\(area.path) (type \(area.type)): \(refusal)"
            }
            var readable = true
            if case .refused = area.backend { readable = false }
            if case .unavailable = area.slotStates { readable = false }
            return HostFact(name: "swap slots", available: readable, detail: detail,
                            consequence: readable ? "" : "snapshot cannot read this area's swapped pages in place")
        }
    }
}
