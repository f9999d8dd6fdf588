/// The one state every page of a mapping gets in a report.
///
/// `present` and private `swapped` pages come straight from the page table
/// (`/proc/PID/pagemap`); `swapped`, `cached` and `none` for shared memory and files come from
/// the object's page cache (lseek SEEK_DATA/SEEK_HOLE, mincore, cachestat), because the kernel
/// clears the page-table entry of a shared page when it swaps it out.
public enum PageState: UInt8, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    /// Mapped in this process's page table.
    case present = 0
    /// The content lives in swap: a swap entry in the page table (private memory) or in the
    /// object's page cache (shared memory), although pagemap reads zero there.
    case swapped = 1
    /// In memory (page cache) but not mapped by this process.
    case cached = 2
    /// No memory and no swap behind it: a hole, a never-touched page, a file page not cached.
    case none = 3
    /// pagestat could not look; the report says which facts are missing and why.
    case unknown = 4

    public var description: String { staticName.description }

    /// The name, for writers that want no String.
    public var staticName: StaticString {
        switch self {
        case .present: "present"
        case .swapped: "swapped"
        case .cached: "cached"
        case .none: "none"
        case .unknown: "unknown"
        }
    }

    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = match
    }

    public static func < (lhs: PageState, rhs: PageState) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Per-page flags, named after the kernel's pagemap bits (Documentation/admin-guide/mm/pagemap.rst)
/// and PAGEMAP_SCAN categories.
public struct PageFlags: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// pagemap bit 55: written since the soft-dirty bits were last cleared.
    public static let softDirty = PageFlags(rawValue: 1 << 0)
    /// pagemap bit 56: mapped by this process only.
    public static let exclusive = PageFlags(rawValue: 1 << 1)
    /// pagemap bit 57: userfaultfd write-protected (a uffd-wp PTE marker included).
    public static let uffdWP = PageFlags(rawValue: 1 << 2)
    /// pagemap bit 58 (6.15+): a guard region installed with MADV_GUARD_INSTALL.
    public static let guardRegion = PageFlags(rawValue: 1 << 3)
    /// pagemap bit 61: a file page or shared anonymous page.
    public static let file = PageFlags(rawValue: 1 << 4)
    /// PAGEMAP_SCAN PAGE_IS_HUGE: mapped by a huge page (THP or hugetlb).
    public static let thp = PageFlags(rawValue: 1 << 5)
    /// PAGEMAP_SCAN PAGE_IS_PFNZERO: the shared zero page.
    public static let zeroPage = PageFlags(rawValue: 1 << 6)
    /// A non-present page-table entry that is not swap: a migration or hwpoison entry, a PTE marker.
    public static let nonSwapEntry = PageFlags(rawValue: 1 << 7)

    /// Names used in every output format, in a fixed order.
    public static let names: [(PageFlags, String)] = staticNames.map { ($0.0, $0.1.description) }

    public var names: [String] { Self.names.compactMap { contains($0.0) ? $0.1 : nil } }

    /// The same names, in the same order, for writers that want no String.
    public static let staticNames: [(PageFlags, StaticString)] = [
        (.softDirty, "soft-dirty"), (.exclusive, "exclusive"), (.uffdWP, "uffd-wp"),
        (.guardRegion, "guard"), (.file, "file"), (.thp, "thp"), (.zeroPage, "zero-page"),
        (.nonSwapEntry, "non-swap-entry"),
    ]

    public init(names: [String]) throws(PageStatError) {
        var flags = PageFlags()
        for name in names {
            guard let match = Self.names.first(where: { $0.1 == name }) else {
                throw .invalidInput("unknown page flag '\(name)'")
            }
            flags.insert(match.0)
        }
        self = flags
    }

    public var description: String { names.isEmpty ? "-" : names.joined(separator: ",") }
}
