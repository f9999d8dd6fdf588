/// Turns pagemap entries into page states and flags for one mapping: the page-table half of the
/// truth. Pages that only the object's page cache can settle (shared memory and files that the
/// page table does not map) come out as `.unknown` with `PageFlags.pendingFileSide`.
struct PagemapDecoder {
    let kind: MappingKind
    let shared: Bool
    let privileged: Bool
    let view: ReportView

    /// Whether a page-table entry that reads "empty" leaves the question to the file side.
    var emptyGoesToFileSide: Bool { view == .truth && kind.hasFileSide }
    /// Whether a bit-62 entry can be real swap here: shmem and shared file pages never get swap
    /// entries in a page table (the kernel clears the entry and keeps swap in the page cache),
    /// and hugetlb pages are never swapped at all.
    var swapEntriesPossible: Bool { !(kind.isShmem && shared) && !(kind == .file && shared) && kind != .hugetlb }

    @inline(__always)
    func decode(_ raw: UInt64) -> (state: PageState, flags: PageFlags, pfn: UInt64?, swap: SwapLocation?) {
        let entry = PagemapEntry(rawValue: raw)
        var flags = entry.flags
        if entry.isPresent {
            return (.present, flags, privileged ? entry.pfn : nil, nil)
        }
        if entry.isSwap {
            if view == .kernel {
                return (.swapped, flags, nil, privileged ? SwapLocation(pagemapBits: raw) : nil)
            }
            if entry.isGuard { return (.none, flags, nil, nil) }
            if privileged {
                if entry.isSpecialSwapType {
                    flags.insert(.nonSwapEntry)
                    // Type 31 is a PTE marker (uffd-wp, guard); the rest are migration, device and
                    // hwpoison entries: a page being moved, in device memory or lost, which no
                    // state here describes (the scanner notes why).
                    if entry.swapType == 31 {
                        return emptyGoesToFileSide ? (.unknown, flags.union(.pendingFileSide), nil, nil) : (.none, flags, nil, nil)
                    }
                    return (.unknown, flags, nil, nil)
                }
                return (.swapped, flags, nil, SwapLocation(pagemapBits: raw))
            }
            if !swapEntriesPossible {
                flags.insert(.nonSwapEntry)
                return emptyGoesToFileSide ? (.unknown, flags.union(.pendingFileSide), nil, nil) : (.none, flags, nil, nil)
            }
            return (.swapped, flags, nil, nil)
        }
        if emptyGoesToFileSide { return (.unknown, flags.union(.pendingFileSide), nil, nil) }
        return (.none, flags, nil, nil)
    }
}

extension PageFlags {
    /// Internal: the page table could not settle this page; the object's page cache will.
    static let pendingFileSide = PageFlags(rawValue: 1 << 15)
}
