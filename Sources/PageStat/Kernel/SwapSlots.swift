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

/// A run of consecutive slots to read, and the page-aligned buffer its pages go to.
package struct SlotRun {
    package var offset: UInt64
    package var count: Int
    package var buffer: UnsafeMutableRawBufferPointer

    package init(offset: UInt64, count: Int, buffer: UnsafeMutableRawBufferPointer) {
        self.offset = offset
        self.count = count
        self.buffer = buffer
    }
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
/// /sys/dev/block/MAJ:MIN/uevent), every read one O_DIRECT preadv per stretch of slots that is
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

    /// The area of swap type `type` if its slots can be read; throws `.swapAreaRefused` for an
    /// area whose backend is refused.
    package func readableArea(type: Int) throws(PageStatError) -> SwapAreaAccess {
        let area = try area(type: type)
        if case .refused(let refusal) = area.backend { throw .swapAreaRefused(area: area.path, refusal: refusal) }
        return area
    }

    /// Reads `count` consecutive slots of area `type` from slot `offset` into `buffer`
    /// (page-aligned, at least count * page size bytes). See `read(type:runs:)`.
    package func read(type: Int, offset: UInt64, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(PageStatError) {
        try read(type: type, runs: [SlotRun(offset: offset, count: count, buffer: buffer)])
    }

    /// Reads runs of consecutive slots of area `type`, each into its own page-aligned buffer, in
    /// device order: pieces that are contiguous on the device become one O_DIRECT preadv(2) whose
    /// iovecs put each page where its run wants it, so slots scattered over a window of memory
    /// cost one read per stretch of the device. Throws `.swapAreaRefused` for an area whose
    /// backend is refused, `.invalidInput` for slots outside the area or a buffer that is not
    /// aligned or too small.
    package func read(type: Int, runs: [SlotRun]) throws(PageStatError) {
        let area = try readableArea(type: type)
        guard let handle = readable[type] else { throw .objectChanged("swap area \(area.path) has no open device") }
        var pieces: [(device: UInt64, buffer: UnsafeMutableRawBufferPointer)] = []
        pieces.reserveCapacity(runs.count)
        for run in runs {
            guard run.count >= 0, run.offset < area.slots, UInt64(run.count) <= area.slots - run.offset else {
                throw .invalidInput("slots \(run.offset)+\(run.count) are outside swap area \(area.path) (\(area.slots) slots)")
            }
            let bytes = UInt64(run.count) * pageSize
            guard UInt64(run.buffer.count) >= bytes, let base = run.buffer.baseAddress,
                  UInt(bitPattern: base) % UInt(pageSize) == 0 else {
                throw .invalidInput("swap slot reads need a page-aligned buffer of \(bytes) bytes")
            }
            var done: UInt64 = 0
            while done < bytes {
                let fileOffset = run.offset * pageSize + done
                var (deviceOffset, length) = (fileOffset, bytes - done)
                if let extents = handle.extents {
                    guard let piece = Self.locate(fileOffset, in: extents) else {
                        throw .objectChanged("swap file \(area.path) has no extent for slot \(fileOffset / pageSize)")
                    }
                    deviceOffset = piece.device
                    length = min(length, piece.length)
                }
                pieces.append((deviceOffset, UnsafeMutableRawBufferPointer(rebasing: run.buffer[Int(done)..<Int(done + length)])))
                done += length
            }
        }
        pieces.sort { $0.device < $1.device }
        var first = 0
        while first < pieces.count {
            var end = first + 1
            var next = pieces[first].device + UInt64(pieces[first].buffer.count)
            while end < pieces.count, end - first < Self.maxVectors, pieces[end].device == next {
                next += UInt64(pieces[end].buffer.count)
                end += 1
            }
            try Self.readFully(handle.fd, at: pieces[first].device, into: pieces[first..<end].map(\.buffer), what: area.path)
            first = end
        }
    }

    /// iovecs in one preadv(2) (IOV_MAX is 1024).
    static let maxVectors = 1024

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

    /// preadv(2) of `buffers`, one after the other on the device from `offset`, until all are full.
    private static func readFully(_ fd: FileDescriptor, at offset: UInt64, into buffers: [UnsafeMutableRawBufferPointer],
                                  what: String) throws(PageStatError) {
        var vectors = buffers.map { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }
        var index = 0
        var position = offset
        while index < vectors.count {
            let result = vectors.withUnsafeMutableBufferPointer { vectors in
                retryingInterrupts {
                    preadv(fd.rawValue, vectors.baseAddress! + index, Int32(vectors.count - index), off_t(position))
                }
            }
            var got: Int
            switch result {
            case .failure(let error): throw .system(call: "preadv \(what) at \(position)", errno: error)
            case .success(0): throw .system(call: "preadv \(what) at \(position) (end of device)", errno: .ioError)
            case .success(let count): got = count
            }
            position += UInt64(got)
            // Past the vectors filled, and into the one filled in part.
            while index < vectors.count, got >= vectors[index].iov_len {
                got -= vectors[index].iov_len
                index += 1
            }
            if got > 0 {
                vectors[index].iov_base = vectors[index].iov_base! + got
                vectors[index].iov_len -= got
            }
        }
    }

    /// Whether zswap is enabled now (/sys/module/zswap/parameters/enabled).
    static func zswapEnabled() -> Bool {
        let text = (try? ProcFS.readText("/sys/module/zswap/parameters/enabled", pid: getpid(), what: "zswap")) ?? "N"
        return text.hasPrefix("Y") || text.hasPrefix("1")
    }
}
