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
    /// Reads runs of consecutive slots of swap area `type`, each into its buffer, in slot order.
    /// Throws `.swapAreaRefused` for an area it cannot read.
    func read(type: UInt8, runs: [SlotRun]) throws(PageStatError)
    /// Throws `.swapAreaRefused` when the slots of area `type` cannot be read (asked before
    /// their states, which a refused area may not tell).
    func checkReadable(type: UInt8) throws(PageStatError)
    /// What the slots hold, one state per slot; nil where the area's bookkeeping cannot be read.
    func slotStates(type: UInt8, offset: UInt64, count: Int) -> [SnapshotSlotState]?
}

/// The Kernel layer's `SwapSlotReader` as the snapshot's slot source: O_DIRECT reads from the
/// right device for every backend (refusing those it cannot read: `.swapAreaRefused`), and the
/// slot states from the areas' swap_map and zeromap (BPF). A slot whose state cannot be told is
/// reported as in the swap cache: the page is planned again, and reported if it stays so, never
/// read as data that may be stale.
final class SwapSlotSource: SnapshotSlotSource {
    private let reader: SwapSlotReader

    init() throws(PageStatError) {
        reader = try SwapSlotReader()
    }

    func read(type: UInt8, runs: [SlotRun]) throws(PageStatError) {
        try reader.read(type: Int(type), runs: runs)
    }

    func checkReadable(type: UInt8) throws(PageStatError) {
        _ = try reader.readableArea(type: Int(type))
    }

    func slotStates(type: UInt8, offset: UInt64, count: Int) -> [SnapshotSlotState]? {
        guard let states = try? reader.slotStates(type: Int(type), offset: offset, count: count) else {
            return Array(repeating: .swapCache, count: count)
        }
        return states.map { state in
            switch state {
            case .onDevice: .data
            case .zero: .zero
            case .inSwapCache, .free, .unknown: .swapCache
            }
        }
    }
}
