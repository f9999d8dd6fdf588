#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// How the slots of a swap area are read: where slot N's bytes are on a device.
package enum SwapBackend: Sendable, Equatable {
    /// A swap partition or any block device (zram, loop, dm-*): slot N is at N * page size of
    /// the device at `path`, read with O_DIRECT.
    case blockDevice(path: String)
    /// A swap file on `fileSystem` (ext4, xfs): FIEMAP maps the slot's file offset to blocks of
    /// `device`, which is read with O_DIRECT (swap I/O bypasses the file system).
    case fileOnDevice(fileSystem: String, device: String)
    /// A swap file on `fileSystem` whose device cannot be opened but whose extents are all
    /// written: the file itself is read with O_DIRECT (never buffered: its page cache is stale).
    case fileDirect(fileSystem: String)
    /// Its slots cannot be read correctly.
    case refused(SwapRefusal)
}

/// One active swap area and how its slots are read.
package struct SwapAreaAccess: Sendable {
    /// The kernel's swap type: the area's index in swap_info, as swap entries name it.
    package let type: Int
    /// The path /proc/swaps names.
    package let path: String
    package let backend: SwapBackend
    /// Slots in the area (swap_info_struct.max), the header's slot 0 included.
    package let slots: UInt64
    /// Where per-slot states come from: the BPF reader (with or without a zeromap), or why not.
    package let slotStates: SlotStateSource
}

/// Reads swapped pages straight from their swap slots, without swapping anything in: the active
/// swap areas from /proc/swaps, each area's backend found once (stat, statfs, FIEMAP,
/// /sys/dev/block/MAJ:MIN/uevent), every read one O_DIRECT pread per run of slots that is
/// contiguous on the device. Needs root (the devices, FIEMAP, the BPF slot-state reader).
///
/// A slot's bytes are the page only when the kernel wrote them there: check `slotStates` (the
/// zeromap, the swap cache) before trusting a read, and the swap entry again after it.
package final class SwapSlotReader: Sendable {
    /// An area whose slots can be read: its open descriptor and, for a swap file, its extents.
    struct Readable: Sendable {
        let fd: FileDescriptor
        /// Slot extents (`slotExtents`: slot byte offset to device byte offset); nil for a block
        /// device or a file read through the file system, where slot N is at N * page size.
        let extents: [Extent]?
    }

    struct Extent: Sendable {
        var logical: UInt64
        var physical: UInt64
        var length: UInt64
    }

    package let areas: [SwapAreaAccess]
    private let readable: [Int: Readable]
    /// zswap was enabled when the areas were resolved: every area is refused.
    private let zswap: Bool
    private let pageSize = UInt64(ProcFS.pageSize)

    /// Resolves every active swap area: each one's backend found and its device opened (a swap
    /// block device open here is one way the BPF slot-state reader reaches its area), then its
    /// swap type and slot states from that reader; without it the type is the area's line in
    /// /proc/swaps, which is right only while no earlier area was turned off.
    package init() throws(PageStatError) {
        let zswap = Self.zswapEnabled()
        var opened: [String: (backend: SwapBackend, readable: Readable?)] = [:]
        for entry in SwapArea.active() where opened[entry.path] == nil {
            opened[entry.path] = zswap ? (.refused(.zswapEnabled), nil) : Self.open(entry.path)
        }
        let listed: [SwapSlotStates.Listed]
        do { listed = try SwapSlotStates.listAreas() } catch {
            for handle in opened.values { try? handle.readable?.fd.close() }
            throw error
        }
        var areas: [SwapAreaAccess] = []
        var readable: [Int: Readable] = [:]
        for area in listed {
            let (backend, handle) = opened.removeValue(forKey: area.entry.path) ?? Self.open(area.entry.path)
            if case .refused = backend { try? handle?.fd.close() } else if let handle { readable[area.type] = handle }
            areas.append(SwapAreaAccess(type: area.type, path: area.entry.path, backend: backend,
                                        slots: area.slots, slotStates: area.source))
        }
        for handle in opened.values { try? handle.readable?.fd.close() }
        self.areas = areas
        self.readable = readable
        self.zswap = zswap
    }

    deinit {
        for handle in readable.values { try? handle.fd.close() }
    }

    /// The area of swap type `type`.
    package func area(type: Int) throws(PageStatError) -> SwapAreaAccess {
        guard let area = areas.first(where: { $0.type == type }) else {
            if zswap { throw .swapAreaRefused(area: "swap type \(type)", refusal: .zswapEnabled) }
            throw .objectChanged("no active swap area is known to be of swap type \(type): turned off since it was listed, or "
                                 + "an area the slot-state reader does not reach, whose type is taken from its line in /proc/swaps")
        }
        return area
    }

    /// Reads `count` consecutive slots of area `type` from slot `offset` into `buffer`
    /// (page-aligned, at least count * page size bytes): one O_DIRECT pread(2) per run of slots
    /// that is contiguous on the device. Throws `.swapAreaRefused` for an area whose backend is
    /// refused, `.invalidInput` for slots outside the area or a buffer that is not aligned.
    package func read(type: Int, offset: UInt64, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(PageStatError) {
        let area = try area(type: type)
        if case .refused(let refusal) = area.backend { throw .swapAreaRefused(area: area.path, refusal: refusal) }
        guard let handle = readable[type] else { throw .objectChanged("swap area \(area.path) has no open device") }
        guard count >= 0, offset < area.slots, UInt64(count) <= area.slots - offset else {
            throw .invalidInput("slots \(offset)+\(count) are outside swap area \(area.path) (\(area.slots) slots)")
        }
        let bytes = UInt64(count) * pageSize
        guard UInt64(buffer.count) >= bytes, let base = buffer.baseAddress,
              UInt(bitPattern: base) % UInt(pageSize) == 0 else {
            throw .invalidInput("swap slot reads need a page-aligned buffer of \(bytes) bytes")
        }
        var done: UInt64 = 0
        while done < bytes {
            let fileOffset = offset * pageSize + done
            var (deviceOffset, length) = (fileOffset, bytes - done)
            if let extents = handle.extents {
                guard let piece = Self.locate(fileOffset, in: extents) else {
                    throw .objectChanged("swap file \(area.path) has no extent for slot \(fileOffset / pageSize)")
                }
                deviceOffset = piece.device
                length = min(length, piece.length)
            }
            try Self.readFully(handle.fd, at: deviceOffset, into: UnsafeMutableRawBufferPointer(
                rebasing: buffer[Int(done)..<Int(done + length)]), what: area.path)
            done += length
        }
    }

    /// The device offset of `fileOffset` and how many bytes from there stay contiguous.
    static func locate(_ fileOffset: UInt64, in extents: [Extent]) -> (device: UInt64, length: UInt64)? {
        var low = 0, high = extents.count
        while low < high {
            let middle = (low + high) / 2
            if extents[middle].logical + extents[middle].length <= fileOffset { low = middle + 1 } else { high = middle }
        }
        guard low < extents.count, extents[low].logical <= fileOffset else { return nil }
        var extent = extents[low]
        let skip = fileOffset - extent.logical
        var length = extent.length - skip
        // Extents that continue on the device (a file system splits them at its own limits).
        var next = low + 1
        while next < extents.count, extents[next].logical == extent.logical + extent.length,
              extents[next].physical == extent.physical + extent.length {
            length += extents[next].length
            extent = extents[next]
            next += 1
        }
        return (extents[low].physical + skip, length)
    }

    private static func readFully(_ fd: FileDescriptor, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer,
                                  what: String) throws(PageStatError) {
        var filled = 0
        while filled < buffer.count {
            let result = retryingInterrupts {
                pread(fd.rawValue, buffer.baseAddress! + filled, buffer.count - filled, off_t(offset) + off_t(filled))
            }
            switch result {
            case .failure(let error): throw .system(call: "pread \(what) at \(offset + UInt64(filled))", errno: error)
            case .success(0): throw .system(call: "pread \(what) at \(offset + UInt64(filled)) (end of device)", errno: .ioError)
            case .success(let count): filled += count
            }
        }
    }

    /// Whether zswap is enabled now (/sys/module/zswap/parameters/enabled).
    static func zswapEnabled() -> Bool {
        let text = (try? ProcFS.readText("/sys/module/zswap/parameters/enabled", pid: getpid(), what: "zswap")) ?? "N"
        return text.hasPrefix("Y") || text.hasPrefix("1")
    }
}
