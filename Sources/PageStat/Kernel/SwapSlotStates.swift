#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import Synchronization

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
    /// The BPF reader; `zeromap` false on kernels before 6.12, which have no zeromap and write
    /// zero pages to their slots like any other.
    case bpf(zeromap: Bool)
    /// No BPF reader: the reason. Every slot state is then `.unknown`.
    case unavailable(String)
}

extension SwapSlotReader {
    /// The state of `count` slots of area `type` from slot `offset`: their swap_map bytes and
    /// zeromap bits, read by the BPF program on swap_show() while /proc/swaps is read. A state
    /// is what the slot held at that moment: check the swap entry again after reading its slot.
    package func slotStates(type: Int, offset: UInt64, count: Int) throws(PageStatError) -> [SlotState] {
        let area = try area(type: type)
        guard count >= 0, offset < area.slots, UInt64(count) <= area.slots - offset else {
            throw .invalidInput("slots \(offset)+\(count) are outside swap area \(area.path) (\(area.slots) slots)")
        }
        guard case .bpf = area.slotStates else {
            if case .unavailable(let reason) = area.slotStates {
                return Array(repeating: .unknown("no BPF slot-state reader: \(reason)"), count: count)
            }
            return []
        }
        var states: [SlotState] = []
        states.reserveCapacity(count)
        while states.count < count {
            let first = offset + UInt64(states.count)
            let chunk = min(count - states.count, Int(CPAGESTAT_SS_MAX_SLOTS))
            let read = try SwapSlotStates.read(type: type, offset: first, count: chunk)
            guard read.area.seen != 0, read.area.max == area.slots else {
                throw .objectChanged("swap area \(area.path) (type \(type)) was turned off or replaced")
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

/// The BPF slot-state reader (BPF/swapslots.bpf.c): loaded once per process, one read of
/// /proc/swaps at a time.
enum SwapSlotStates {
    /// One area as the program recorded it, its zeromap words and swap_map bytes.
    struct Read {
        var text: String
        var areas: [CPagestat_ss_area]
        var area: CPagestat_ss_area
        var zeromap: [UInt64]
        var swapMap: [UInt8]
    }

    private struct Program: @unchecked Sendable {
        let io: UnsafeMutablePointer<CPagestat_ss_io>
    }

    private enum Loaded: Sendable {
        case loaded(Program)
        case failed(String)
    }

    private static let program: Mutex<Loaded> = Mutex(load())

    private static func load() -> Loaded {
        var reason = [CChar](repeating: 0, count: 1024)
        var io: UnsafeMutablePointer<CPagestat_ss_io>?
        guard CPagestat_ss_load(&io, &reason, reason.count) == 0, let io else {
            return .failed(String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return .loaded(Program(io: io))
    }

    /// Reads /proc/swaps with the program recording every area and, for `type`, the slots
    /// [offset, offset + count). Throws `.unsupported` when the program cannot be loaded.
    static func read(type: Int, offset: UInt64, count: Int) throws(PageStatError) -> Read {
        let outcome: Result<Read, PageStatError> = program.withLock { loaded in
            guard case .loaded(let program) = loaded else {
                if case .failed(let reason) = loaded { return .failure(.unsupported(reason)) }
                return .failure(.unsupported("BPF swap slot reader"))
            }
            let io = program.io
            io.pointee.args = CPagestat_ss_args(tgid: getpid(), type: Int32(type), offset: offset, count: UInt32(count), pad: 0)
            io.pointee.copied = 0
            io.pointee.has_zeromap = 0
            withUnsafeMutableBytes(of: &io.pointee.area) { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
            let text: String
            do throws(PageStatError) { text = try ProcFS.readText("/proc/swaps", pid: getpid(), what: "/proc/swaps") } catch { return .failure(error) }
            let areas = withUnsafeBytes(of: io.pointee.area) { Array($0.bindMemory(to: CPagestat_ss_area.self)) }
            let area = type >= 0 && type < areas.count ? areas[type] : CPagestat_ss_area()
            let copied = Int(min(io.pointee.copied, UInt32(count)))
            let swapMap = Array(UnsafeBufferPointer(start: CPagestat_ss_swap_map(io), count: copied))
            var zeromap: [UInt64] = []
            if io.pointee.has_zeromap != 0 && copied > 0 {
                let words = Int((offset + UInt64(copied) + 63) / 64 - offset / 64)
                zeromap = Array(UnsafeBufferPointer(start: CPagestat_ss_zeromap(io), count: words))
            }
            return .success(Read(text: text, areas: areas, area: area, zeromap: zeromap, swapMap: swapMap))
        }
        return try outcome.get()
    }

    /// One active area: its /proc/swaps line, swap type, slots and whether it has a zeromap.
    struct Listed {
        var entry: SwapArea.Entry
        var type: Int
        var slots: UInt64
        var hasZeromap: Bool
    }

    struct Listing {
        var areas: [Listed]
        /// Why there is no BPF reader, if there is none.
        var failure: String?

        func source(hasZeromap: Bool) -> SlotStateSource {
            failure.map { .unavailable($0) } ?? .bpf(zeromap: hasZeromap)
        }
    }

    /// The active areas with their swap types. /proc/swaps lists areas in swap-type order,
    /// skipping unused types: the program's areas, sorted by type, are its lines; each is
    /// checked against the line's path by inode and device. Without the program, a line's
    /// type is its index.
    static func listAreas() throws(PageStatError) -> Listing {
        let read: Read
        do {
            read = try Self.read(type: -1, offset: 0, count: 0)
        } catch {
            guard case .unsupported(let reason) = error else { throw error }
            let page = UInt64(ProcFS.pageSize)
            let areas = SwapArea.active().enumerated().map { index, entry in
                Listed(entry: entry, type: index, slots: entry.sizeKiB * 1024 / page + 1, hasZeromap: false)
            }
            return Listing(areas: areas, failure: reason)
        }
        let entries = SwapArea.parse(read.text)
        let seen = read.areas.filter { $0.seen != 0 }.sorted { $0.type < $1.type }
        guard seen.count == entries.count else {
            throw .objectChanged("/proc/swaps listed \(entries.count) swap areas, its reader saw \(seen.count)")
        }
        var areas: [Listed] = []
        for (entry, area) in zip(entries, seen) {
            var info = stat()
            if stat(entry.path, &info) == 0 {
                let id = ObjectID(info)
                guard UInt64(info.st_ino) == area.ino, id.deviceMajor << 20 | id.deviceMinor == area.dev else {
                    throw .objectChanged("swap area \(entry.path) is not the file the kernel swaps to (inode \(area.ino))")
                }
            }
            areas.append(Listed(entry: entry, type: Int(area.type), slots: UInt64(area.max), hasZeromap: area.has_zeromap != 0))
        }
        return Listing(areas: areas, failure: nil)
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
            case .unavailable(let reason): "slot states unknown: \(reason)"
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
