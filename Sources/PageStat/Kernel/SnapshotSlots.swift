#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// What a swap slot holds, as far as its swap area says.
enum SnapshotSlotState: Sendable, Equatable {
    /// The page's bytes (its writeback completed).
    case data
    /// A page that was all zeros when it was swapped out (the area's zeromap, 6.12+): the slot
    /// holds stale bytes.
    case zero
    /// The page is still in the swap cache (writeback may not have finished): the slot may not
    /// hold it yet.
    case swapCache
}

/// Reads pages straight from their swap slots, for `PageSnapshot`.
protocol SnapshotSlotSource {
    /// Reads `count` consecutive slots of swap area `type` from `offset` into `buffer`
    /// (`count` pages), in one read. Throws `.unsupported` for an area it cannot read.
    func read(type: UInt8, offset: UInt64, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(PageStatError)
    /// What the slots hold, one state per slot; nil where the area's bookkeeping cannot be read.
    func slotStates(type: UInt8, offset: UInt64, count: Int) -> [SnapshotSlotState]?
}

/// The slot reader used until the swap-slot reader of the Kernel layer is in: reads each swap
/// area listed in /proc/swaps with O_DIRECT (a block device at slot * page size; a swap file
/// through its file system at the slot's file offset, which is right only for a file whose
/// extents were written, as `dd` writes them). The swap type is the area's line in /proc/swaps.
/// It cannot read the zeromap or the swap cache: `slotStates` is nil.
final class DirectSwapSlots: SnapshotSlotSource {
    private let areas: [SwapArea.Entry]
    private var open: [UInt8: FileDescriptor] = [:]
    private let pageSize = ProcFS.pageSize

    init() {
        areas = SwapArea.active()
    }

    deinit {
        for fd in open.values { try? fd.close() }
    }

    private func descriptor(_ type: UInt8) throws(PageStatError) -> FileDescriptor {
        if let fd = open[type] { return fd }
        guard Int(type) < areas.count else {
            throw .unsupported("swap area of type \(type): not in /proc/swaps")
        }
        let area = areas[Int(type)]
        if let zswap = try? ProcFS.readText("/sys/module/zswap/parameters/enabled", pid: getpid(), what: "zswap"),
           zswap.hasPrefix("Y") {
            throw .unsupported("reading swap area \(area.path): zswap is enabled (its slots hold nothing valid while pages sit compressed in RAM); turn it off or use --allow-swap-in")
        }
        do {
            let fd = try FileDescriptor.open(FilePath(area.path), .readOnly,
                                             options: [.closeOnExec, .init(rawValue: CPagestat_O_DIRECT)])
            open[type] = fd
            return fd
        } catch {
            throw .unsupported("reading swap area \(area.path): open with O_DIRECT: \(error); use --allow-swap-in to read its pages through the memory instead")
        }
    }

    func read(type: UInt8, offset: UInt64, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(PageStatError) {
        let fd = try descriptor(type)
        let length = count * pageSize
        precondition(buffer.count >= length)
        var done = 0
        while done < length {
            let got: Int
            do {
                got = try system {
                    try fd.read(fromAbsoluteOffset: Int64(offset * UInt64(pageSize)) + Int64(done),
                                into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<length]), retryOnInterrupt: true)
                }
            } catch {
                throw .system(call: "O_DIRECT read of swap area \(areas[Int(type)].path) at slot \(offset)", errno: error)
            }
            guard got > 0 else {
                throw .system(call: "O_DIRECT read of swap area \(areas[Int(type)].path) at slot \(offset) (end of area)", errno: .ioError)
            }
            done += got
        }
    }

    func slotStates(type: UInt8, offset: UInt64, count: Int) -> [SnapshotSlotState]? { nil }
}
