/// The kernel's page flags from /proc/kpageflags (bits named as tools/mm/page-types names them).
public struct KPageFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit number and name, in bit order (include/uapi/linux/kernel-page-flags.h), as
    /// StaticStrings for writers that want no String.
    public static let staticNames: [(bit: Int, name: StaticString)] = [
        (0, "locked"), (1, "error"), (2, "referenced"), (3, "uptodate"), (4, "dirty"), (5, "lru"),
        (6, "active"), (7, "slab"), (8, "writeback"), (9, "reclaim"), (10, "buddy"), (11, "mmap"),
        (12, "anonymous"), (13, "swapcache"), (14, "swapbacked"), (15, "compound_head"),
        (16, "compound_tail"), (17, "huge"), (18, "unevictable"), (19, "hwpoison"), (20, "nopage"),
        (21, "ksm"), (22, "thp"), (23, "offline"), (24, "zero_page"), (25, "idle_page"), (26, "pgtable"),
    ]

    /// Bit number and name, in bit order.
    public static let names: [(bit: Int, name: String)] = staticNames.map { ($0.bit, $0.name.description) }

    public var names: [String] {
        Self.names.compactMap { rawValue & (1 << UInt64($0.bit)) != 0 ? $0.name : nil }
    }

    /// Parses page-types names; throws on an unknown one.
    public init(names: [String]) throws(PageStatError) {
        var value: UInt64 = 0
        for name in names {
            guard let match = Self.names.first(where: { $0.name == name }) else {
                throw .invalidInput("unknown kernel page flag '\(name)' (known: \(Self.names.map(\.name).joined(separator: ", ")))")
            }
            value |= 1 << UInt64(match.bit)
        }
        self.init(rawValue: value)
    }

    /// The bits pagestat shows: the documented ones (0-26); 32 and up are for kernel hackers.
    public static let documentedMask: UInt64 = (1 << 27) - 1
}
