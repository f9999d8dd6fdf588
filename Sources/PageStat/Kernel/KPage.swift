#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

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

/// /proc/kpagecount or /proc/kpageflags: one u64 per PFN, readable by root only.
public final class KPageTable {
    public let path: String
    let fd: FileDescriptor

    public init(path: String) throws(PageStatError) {
        self.path = path
        do {
            fd = try system { try FileDescriptor.open(path, .readOnly, options: [.closeOnExec]) }
        } catch {
            switch error {
            case .permissionDenied, .notPermitted: throw .permissionDenied(what: "\(path) (root only)")
            case .noSuchFileOrDirectory: throw .unsupported(path)
            default: throw .system(call: "open \(path)", errno: error)
            }
        }
    }

    deinit { try? fd.close() }

    public static func kpagecount() throws(PageStatError) -> KPageTable { try KPageTable(path: "/proc/kpagecount") }
    public static func kpageflags() throws(PageStatError) -> KPageTable { try KPageTable(path: "/proc/kpageflags") }

    /// For each pagemap entry of `entries` that is present with a PFN, the table's value for that
    /// PFN; zero for the others. PFNs that follow each other are read with one pread(2).
    public func lookUp(entries: UnsafeBufferPointer<UInt64>, into values: UnsafeMutableBufferPointer<UInt64>) throws(PageStatError) {
        precondition(values.count >= entries.count)
        var index = 0
        while index < entries.count {
            let entry = PagemapEntry(rawValue: entries[index])
            guard entry.isPresent, entry.pfn != 0 else {
                values[index] = 0
                index += 1
                continue
            }
            var end = index + 1
            while end < entries.count {
                let next = PagemapEntry(rawValue: entries[end])
                if !next.isPresent || next.pfn != entry.pfn + UInt64(end - index) { break }
                end += 1
            }
            let target = UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: values[index..<end]))
            let got: Int
            do {
                got = try system { try fd.read(fromAbsoluteOffset: Int64(entry.pfn * 8), into: target, retryOnInterrupt: true) }
            } catch {
                throw .system(call: "pread \(path)", errno: error)
            }
            for missing in (index + got / 8)..<end { values[missing] = 0 }
            index = end
        }
    }
}
