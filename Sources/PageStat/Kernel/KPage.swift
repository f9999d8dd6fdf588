#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// /proc/kpagecount or /proc/kpageflags: one u64 per PFN, readable by root only.
package final class KPageTable {
    package let path: String
    let fd: FileDescriptor

    package init(path: String) throws(PageStatError) {
        self.path = path
        do {
            fd = try system { try FileDescriptor.open(path, .readOnly, options: [.closeOnExec]) }
        } catch {
            switch error {
            case .permissionDenied, .notPermitted: throw .permissionDenied(.rootOnly(path: path))
            case .noSuchFileOrDirectory: throw .unsupported(path)
            default: throw .system(call: "open \(path)", errno: error)
            }
        }
    }

    deinit { try? fd.close() }

    package static func kpagecount() throws(PageStatError) -> KPageTable { try KPageTable(path: "/proc/kpagecount") }
    package static func kpageflags() throws(PageStatError) -> KPageTable { try KPageTable(path: "/proc/kpageflags") }

    /// For each pagemap entry of `entries` that is present with a PFN, the table's value for that
    /// PFN; zero for the others. PFNs that follow each other are read with one pread(2).
    package func lookUp(entries: UnsafeBufferPointer<UInt64>, into values: UnsafeMutableBufferPointer<UInt64>) throws(PageStatError) {
        try lookUp(entries: entries, into: values, known: { _ in nil }, read: { _, _ in })
    }

    /// The same, where `known` may already have a PFN's value (then it is not read, and it ends a
    /// run), and `read` sees each run of values read: its first PFN and the values.
    package func lookUp(entries: UnsafeBufferPointer<UInt64>, into values: UnsafeMutableBufferPointer<UInt64>,
                        known: (UInt64) -> UInt64?,
                        read: (_ firstPFN: UInt64, _ values: UnsafeMutableBufferPointer<UInt64>) -> Void) throws(PageStatError) {
        precondition(values.count >= entries.count)
        var index = 0
        while index < entries.count {
            let entry = PagemapEntry(rawValue: entries[index])
            guard entry.isPresent, entry.pfn != 0 else {
                values[index] = 0
                index += 1
                continue
            }
            if let value = known(entry.pfn) {
                values[index] = value
                index += 1
                continue
            }
            var end = index + 1
            while end < entries.count {
                let next = PagemapEntry(rawValue: entries[end])
                if !next.isPresent || next.pfn != entry.pfn + UInt64(end - index) || known(next.pfn) != nil { break }
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
            read(entry.pfn, UnsafeMutableBufferPointer(rebasing: values[index..<(index + got / 8)]))
            index = end
        }
    }
}
