#if canImport(Glibc)
import Glibc
#endif
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

    /// The range widened to whole pages: start rounded down, end rounded up; nil when the end
    /// would round up past 2^64.
    public func pageAligned(pageSize: UInt64) -> AddressRange? {
        let remainder = end % pageSize
        let (roundedEnd, overflow) = end.addingReportingOverflow(remainder == 0 ? 0 : pageSize - remainder)
        guard !overflow else { return nil }
        return AddressRange(start: start - start % pageSize, end: roundedEnd)
    }

    /// Parses `START-END` or `START+LENGTH` and widens it to whole pages of `pageSize` (start
    /// rounded down, end rounded up). `START-END` is hexadecimal, with or without `0x`, as
    /// /proc/PID/maps writes it (`10000000-10021000` is 0x10000000-0x10021000). In
    /// `START+LENGTH` a number is hexadecimal with `0x`, else decimal, except a START as maps
    /// writes it (see `isBareHex`); the length may carry a binary unit (K, M, G, T, optionally
    /// followed by B or iB). An error names the part that is wrong: start, end, length or unit.
    public init(parsing text: String, pageSize: UInt64 = UInt64(sysconf(Int32(_SC_PAGESIZE)))) throws(PageStatError) {
        func invalid(_ reason: String) -> PageStatError {
            .invalidInput("invalid range '\(escapedName(text))': \(reason)")
        }
        let start: UInt64
        let end: UInt64
        if let plus = text.firstIndex(of: "+") {
            // A start copied from maps (hex without 0x) is hexadecimal too when it says so.
            let startText = text[..<plus]
            start = try Self.number(startText, part: "start", allowUnit: false, bareHex: Self.isBareHex(startText)).get(invalid)
            let lengthText = text[text.index(after: plus)...]
            let length = try Self.number(lengthText, part: "length", allowUnit: true).get(invalid)
            guard length > 0 else { throw invalid("length '\(escapedName(String(lengthText)))': must be greater than 0") }
            let (sum, overflow) = start.addingReportingOverflow(length)
            guard !overflow else {
                throw invalid("length '\(escapedName(String(lengthText)))': START+LENGTH passes the top of the address space (2^64)")
            }
            end = sum
            guard AddressRange(start: start, end: end).pageAligned(pageSize: pageSize) != nil else {
                throw invalid("length '\(escapedName(String(lengthText)))': the end, rounded up to a whole page, passes the top of the address space (2^64)")
            }
        } else if let dash = text.firstIndex(of: "-") {
            let startText = text[..<dash]
            let endText = text[text.index(after: dash)...]
            start = try Self.number(startText, part: "start", allowUnit: false, bareHex: true).get(invalid)
            end = try Self.number(endText, part: "end", allowUnit: false, bareHex: true).get(invalid)
            guard end > start else {
                throw invalid("end '\(escapedName(String(endText)))': must be greater than start '\(escapedName(String(text[..<dash])))'")
            }
            guard AddressRange(start: start, end: end).pageAligned(pageSize: pageSize) != nil else {
                throw invalid("end '\(escapedName(String(endText)))': rounded up to a whole page, it passes the top of the address space (2^64)")
            }
        } else {
            throw invalid("expected START-END (hexadecimal, as /proc/PID/maps writes it) or START+LENGTH (0x-prefixed hex or decimal)")
        }
        self = AddressRange(start: start, end: end).pageAligned(pageSize: pageSize)!
    }

    /// Hexadecimal digits without `0x` that cannot be decimal as maps writes them: with a digit
    /// a-f, or a leading zero.
    static func isBareHex(_ text: Substring) -> Bool {
        var part = text.drop(while: { $0 == " " })
        while part.last == " " { part.removeLast() }
        return !part.hasPrefix("0x") && !part.hasPrefix("0X") && !part.isEmpty && part.allSatisfy(\.isHexDigit)
            && (part.contains { !$0.isNumber } || (part.count > 1 && part.hasPrefix("0")))
    }

    /// A number of a range: `0x` hexadecimal or decimal (or, `bareHex`, hexadecimal without
    /// `0x`), a length with an optional unit. Fails with the reason, naming the part.
    private static func number(_ raw: Substring, part: String, allowUnit: Bool, bareHex: Bool = false) -> NumberResult {
        var text = raw.drop(while: { $0 == " " })
        while text.last == " " { text.removeLast() }
        let shown = "\(part) '\(escapedName(String(text)))'"
        let prefixed = text.hasPrefix("0x") || text.hasPrefix("0X")
        let hexadecimal = prefixed || bareHex
        let body = prefixed ? text.dropFirst(2) : text
        let digits = body.prefix { character in
            guard let ascii = character.asciiValue else { return false }
            return (0x30...0x39).contains(ascii) || (hexadecimal && ((0x61...0x66).contains(ascii) || (0x41...0x46).contains(ascii)))
        }
        let suffix = body[digits.endIndex...]
        guard !digits.isEmpty, suffix.isEmpty || allowUnit else {
            return .failure(bareHex ? "\(shown) is not hexadecimal (START-END is hexadecimal, as /proc/PID/maps writes it; for decimal write START+LENGTH)"
                                    : "\(shown): not a number (0x-prefixed hex or decimal)")
        }
        var multiplier: UInt64 = 1
        if !suffix.isEmpty {
            var unit = suffix.uppercased()
            if unit.hasSuffix("IB") && unit.count == 3 { unit.removeLast(2) } else if unit.hasSuffix("B") { unit.removeLast() }
            let shifts: [String: UInt64] = ["": 0, "K": 10, "M": 20, "G": 30, "T": 40]
            guard let shift = shifts[unit] else {
                return .failure("\(shown): unknown unit '\(escapedName(String(suffix)))' (use K, M, G or T)")
            }
            multiplier = 1 << shift
        }
        guard let value = UInt64(digits, radix: hexadecimal ? 16 : 10) else {
            return .failure("\(shown): larger than 2^64 - 1")
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? .failure("\(shown): larger than 2^64 - 1") : .success(product)
    }

    private enum NumberResult {
        case success(UInt64)
        case failure(String)

        func get(_ error: (String) -> PageStatError) throws(PageStatError) -> UInt64 {
            switch self {
            case .success(let value): value
            case .failure(let reason): throw error(reason)
            }
        }
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

    /// Whether this mapping covers all of `other` and maps it the same way: the same permissions,
    /// object (device and inode) and (for an object: maps prints 0 for anonymous memory) the
    /// offset `other` had at its start. The path is not compared: it is the text maps prints
    /// for the object now (a rename, an unlink's " (deleted)", a new anonymous name change it;
    /// the mapping stays).
    public func covers(_ other: Mapping) -> Bool {
        range.start <= other.range.start && other.range.end <= range.end
            && permissions == other.permissions && deviceMajor == other.deviceMajor && deviceMinor == other.deviceMinor
            && inode == other.inode
            && (inode == 0 || offset &+ (other.range.start - range.start) == other.offset)
    }
}
