/// One /proc/PID/pagemap entry: a little-endian u64 per virtual page
/// (Documentation/admin-guide/mm/pagemap.rst).
public struct PagemapEntry: RawRepresentable, Sendable, Hashable {
    /// The entry as pagemap gives it.
    public var rawValue: UInt64
    /// An entry from its 64 bits.
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit 63: the page is present in the page table.
    public var isPresent: Bool { rawValue & (1 << 63) != 0 }
    /// Bit 62: a non-present, non-empty entry: swap, or (privileged: swap type >= MAX_SWAPFILES)
    /// a migration or hwpoison entry or a PTE marker.
    public var isSwap: Bool { rawValue & (1 << 62) != 0 }
    /// Bit 61: a file page or shared anonymous page.
    public var isFile: Bool { rawValue & (1 << 61) != 0 }
    /// Bit 58 (6.15+): a guard region.
    public var isGuard: Bool { rawValue & (1 << 58) != 0 }
    /// Bit 57 (5.13+): userfaultfd write-protected.
    public var isUffdWP: Bool { rawValue & (1 << 57) != 0 }
    /// Bit 56 (4.2+): exclusively mapped.
    public var isExclusive: Bool { rawValue & (1 << 56) != 0 }
    /// Bit 55: soft-dirty.
    public var isSoftDirty: Bool { rawValue & Self.softDirtyBit != 0 }
    /// Bit 55, which pagemap also sets on empty entries of a VM_SOFTDIRTY mapping.
    public static let softDirtyBit: UInt64 = 1 << 55
    /// Bits 0-54: the PFN when present; zero without CAP_SYS_ADMIN.
    public var pfn: UInt64 { rawValue & ((1 << 55) - 1) }
    /// Bits 0-4 of a swap entry: the swap type (the index of the swap area).
    public var swapType: UInt8 { UInt8(truncatingIfNeeded: rawValue & 0x1f) }
    /// Bits 5-54 of a swap entry: the offset in the swap area, in pages.
    public var swapOffset: UInt64 { (rawValue & ((1 << 55) - 1)) >> 5 }

    /// The lowest swap type that is not a swap area but a special entry. The kernel takes the
    /// special types (device, migration, hwpoison, PTE marker) from the top of the 5-bit field:
    /// MAX_SWAPFILES is 32 minus their number, 24 with every option built in; a PTE marker (guard,
    /// uffd-wp) is always type 31.
    public static let firstSpecialSwapType: UInt8 = 24

    /// Whether a privileged read shows a special entry rather than swap.
    public var isSpecialSwapType: Bool { swapType >= Self.firstSpecialSwapType }

    /// The flags that the entry itself carries (soft-dirty, exclusive, uffd-wp, guard, file).
    public var flags: PageFlags {
        var flags = PageFlags()
        if isSoftDirty { flags.insert(.softDirty) }
        if isExclusive { flags.insert(.exclusive) }
        if isUffdWP { flags.insert(.uffdWP) }
        if isGuard { flags.insert(.guardRegion) }
        if isFile { flags.insert(.file) }
        return flags
    }
}
