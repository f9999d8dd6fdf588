/// The one encoding of a swap entry, as /proc/PID/pagemap carries it for a swapped page (and as
/// the 2021 patch for shared memory would have): the swap type in bits 0-4 and the swap offset in
/// bits 5-54. Every reader and writer of those bits goes through here.
extension SwapLocation {
    /// Bits 0-54 of a pagemap entry: where the type and offset of a swap entry sit.
    public static let pagemapSwapMask: UInt64 = (1 << 55) - 1
    /// The offset's bits of a pagemap entry (5-54).
    public static let pagemapOffsetMask: UInt64 = pagemapSwapMask & ~0x1f

    /// The swap location in a pagemap entry's bits 0-54 (the other bits are ignored).
    @inlinable
    public init(pagemapBits raw: UInt64) {
        self.init(type: UInt8(truncatingIfNeeded: raw & 0x1f), offset: (raw & Self.pagemapSwapMask) >> 5)
    }

    /// This location as a pagemap entry's bits 0-54 (bit 62, PM_SWAP, not included).
    @inlinable
    public var pagemapBits: UInt64 {
        (offset << 5) & Self.pagemapSwapMask | UInt64(type & 0x1f)
    }

    /// The location `pages` pages further on in the same swap area.
    @inlinable
    public func advanced(by pages: UInt64) -> SwapLocation {
        SwapLocation(type: type, offset: offset + pages)
    }
}
