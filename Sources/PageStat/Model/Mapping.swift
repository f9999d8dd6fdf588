/// A half-open range of virtual addresses, `[start, end)`, in bytes.
public struct AddressRange: Sendable, Hashable, CustomStringConvertible {
    public var start: UInt64
    public var end: UInt64

    public init(start: UInt64, end: UInt64) {
        self.start = start
        self.end = end
    }

    public var length: UInt64 { end - start }
    public var isEmpty: Bool { end <= start }

    public func overlaps(_ other: AddressRange) -> Bool { start < other.end && other.start < end }

    public func clamped(to other: AddressRange) -> AddressRange {
        AddressRange(start: max(start, other.start), end: max(max(start, other.start), min(end, other.end)))
    }

    public var description: String { "0x\(String(start, radix: 16))-0x\(String(end, radix: 16))" }

    /// Parses `START-END` or `START+LENGTH`; numbers are hexadecimal with `0x`, else decimal,
    /// and a length may carry a binary unit suffix (K, M, G, T).
    public init(parsing text: String) throws(PageStatError) {
        func number(_ s: Substring, allowUnit: Bool) -> UInt64? {
            var s = s.trimmingCharacters(in: " ")
            var multiplier: UInt64 = 1
            if allowUnit {
                // 4K, 4KB, 4KiB (binary units, case-insensitive).
                if s.uppercased().hasSuffix("IB") { s = String(s.dropLast(2)) } else if s.uppercased().hasSuffix("B") && !s.hasPrefix("0x") { s = String(s.dropLast()) }
                if let last = s.last, let shift = ["K": 10, "M": 20, "G": 30, "T": 40][last.uppercased()] {
                    multiplier = 1 << UInt64(shift)
                    s = String(s.dropLast())
                }
            }
            let value: UInt64?
            if s.hasPrefix("0x") || s.hasPrefix("0X") {
                value = UInt64(s.dropFirst(2), radix: 16)
            } else {
                value = UInt64(s, radix: 10)
            }
            guard let value else { return nil }
            let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
            return overflow ? nil : product
        }
        if let plus = text.firstIndex(of: "+") {
            guard let start = number(text[..<plus], allowUnit: false),
                  let length = number(text[text.index(after: plus)...], allowUnit: true),
                  length > 0, start <= UInt64.max - length
            else { throw .invalidInput("invalid range '\(text)': expected START+LENGTH with LENGTH > 0") }
            self.init(start: start, end: start + length)
        } else if let dash = text.firstIndex(of: "-") {
            guard let start = number(text[..<dash], allowUnit: false),
                  let end = number(text[text.index(after: dash)...], allowUnit: false),
                  end > start
            else { throw .invalidInput("invalid range '\(text)': expected START-END with END > START") }
            self.init(start: start, end: end)
        } else {
            throw .invalidInput("invalid range '\(text)': expected START-END or START+LENGTH (0x-prefixed hex or decimal)")
        }
    }
}

private extension Substring {
    func trimmingCharacters(in set: Character) -> String {
        String(drop(while: { $0 == set }).reversed().drop(while: { $0 == set }).reversed())
    }
}

/// What backs a mapping, in the words of the JSON contract.
public enum MappingKind: String, Sendable, CaseIterable {
    /// Private anonymous memory: heap, stack, MAP_PRIVATE|MAP_ANONYMOUS, private /dev/zero.
    case privateAnon = "private-anon"
    /// MAP_SHARED|MAP_ANONYMOUS: a shmem object the kernel made for the mapping.
    case sharedAnon = "shared-anon"
    /// A shmem object with a name: memfd, a tmpfs or /dev/shm file, a SysV segment.
    case shmem
    /// Any other file.
    case file
    /// [vdso], [vvar], [vsyscall] and the like: kernel-provided, no object to look at.
    case special
    /// hugetlbfs: MAP_HUGETLB memory (shared or private), SHM_HUGETLB segments, MFD_HUGETLB
    /// memfds and files on a hugetlbfs mount. Never swapped; not transparent huge pages.
    case hugetlb

    /// Whether pages not in the page table are looked up in the object's page cache.
    public var hasFileSide: Bool { self == .sharedAnon || self == .shmem || self == .file || self == .hugetlb }
    /// Whether the object's pages can be swapped (shmem), as opposed to written back to a file.
    public var isShmem: Bool { self == .sharedAnon || self == .shmem }
}

/// One line of /proc/PID/maps: a VMA.
public struct Mapping: Sendable, Hashable {
    public var range: AddressRange
    /// `rwxp` / `rwxs` exactly as maps prints them.
    public var permissions: String
    /// Offset into the backing object, in bytes.
    public var offset: UInt64
    public var deviceMajor: UInt32
    public var deviceMinor: UInt32
    public var inode: UInt64
    /// The path column, possibly empty, possibly ending in " (deleted)".
    public var path: String
    public var kind: MappingKind
    /// The huge page size of a `hugetlb` mapping (its KernelPageSize), else nil.
    public var hugePageSize: UInt64?

    public init(range: AddressRange, permissions: String, offset: UInt64, deviceMajor: UInt32,
                deviceMinor: UInt32, inode: UInt64, path: String, kind: MappingKind, hugePageSize: UInt64? = nil) {
        self.range = range
        self.permissions = permissions
        self.offset = offset
        self.deviceMajor = deviceMajor
        self.deviceMinor = deviceMinor
        self.inode = inode
        self.path = path
        self.kind = kind
        self.hugePageSize = hugePageSize
    }

    public var isShared: Bool { permissions.hasSuffix("s") }
}
