#if canImport(Glibc)
import Glibc
#endif

/// /proc/PID/pagemap's own format, one u64 per page in the kernel's byte order (little-endian on
/// x86_64 and arm64), with the gap closed the way the unmerged 2021 patch would have closed it: a
/// page of shared memory that is swapped out, which pagemap reads as 0, gets bit 62 (PM_SWAP).
///
/// - Its swap type and offset (bits 0-4 and 5-54) are the patch's too, where the BPF engine read
///   them from the object's page-cache xarray (`engine`); with the syscalls engine, which cannot
///   see them, they stay 0.
/// - Every other entry is the kernel's own, bit for bit. That includes shared pages in memory but
///   not mapped by the process (`cached`): the patch only looked for swap entries, so they stay 0.
/// - Every page of the range must be mapped when it starts; a mapping that goes away while it
///   reads gives what the kernel gives for unmapped pages (0) from then on.
///
/// How: pagemap is read in large batches. For a batch in a shmem mapping (shared anonymous, memfd,
/// tmpfs, SysV), `ProcessScanner` first finds the batch's swapped pages, and those of its entries
/// that the kernel left neither present (bit 63) nor swapped (bit 62) get bit 62. Memory is one
/// batch buffer plus the runs of one batch, whatever the size of the range. It is a snapshot:
/// pages that change while it reads may come out either way.
public final class RawPagemap {
    /// Bit 62, PM_SWAP.
    public static let swapBit: UInt64 = 1 << 62
    /// Bit 63, PM_PRESENT.
    public static let presentBit: UInt64 = 1 << 63

    public let pid: Int32
    public let pageSize: UInt64
    /// What could not be known (from the scanner) and where the kernel gave fewer entries.
    public private(set) var notes = Notes()
    private let scanner: ProcessScanner
    private let engine: FileSideEngineChoice
    private let buffer: UnsafeMutableBufferPointer<UInt64>

    /// Receives the entries, a batch at a time, as raw bytes.
    public typealias Sink = (UnsafeRawBufferPointer) throws(PageStatError) -> Void

    public init(pid: Int32, batchPages: Int = 1 << 16, engine: FileSideEngineChoice = .auto) throws(PageStatError) {
        self.pid = pid
        self.engine = engine
        scanner = try ProcessScanner(pid: pid, batchPages: batchPages)
        pageSize = scanner.pageSize
        buffer = .allocate(capacity: max(1, batchPages))
    }

    deinit { buffer.deallocate() }

    /// Writes the entries of every page of `range` (widened to whole pages) to `sink`. With
    /// `kernelOnly`, the kernel's entries unchanged. Returns how many entries it wrote: fewer
    /// than the range has pages only where the kernel's pagemap ends (past the user address
    /// space, as for [vsyscall]). Throws `.processExited` when the process's memory goes away.
    ///
    /// Before writing anything it checks that every page of the range lies in a mapping, and
    /// throws `.rangeNotMapped` with the first part that does not (nothing written). A mapping
    /// that goes away while the range is read does not stop it: the entries of its pages are
    /// then what the kernel's pagemap gives for unmapped addresses (0), and a note names the
    /// part that was no longer mapped at the end.
    @discardableResult
    public func stream(_ range: AddressRange, kernelOnly: Bool = false, to sink: Sink) throws(PageStatError) -> UInt64 {
        guard let range = range.pageAligned(pageSize: pageSize), !range.isEmpty else {
            throw .invalidInput("range \(range): empty, or its end rounds up past the top of the address space (2^64)")
        }
        let mappings = try overlappingMappings(range)
        if let gap = Self.firstUnmapped(range, mappings) { throw .rangeNotMapped(pid: pid, range: gap) }
        var written: UInt64 = 0
        var cursor = range.start
        var complete = true
        for mapping in mappings where !kernelOnly && mapping.kind.isShmem {
            let part = mapping.range.clamped(to: range)
            complete = try copy(from: cursor, to: part.start, truthOf: nil, sink, &written)
            guard complete else { break }
            complete = try copy(from: part.start, to: part.end, truthOf: mapping, sink, &written)
            guard complete else { break }
            cursor = part.end
        }
        if complete { _ = try copy(from: cursor, to: range.end, truthOf: nil, sink, &written) }
        let expected = range.length / pageSize
        if written < expected {
            notes.add("pagemap ended at \(hex(range.start + written * pageSize)): \(expected - written) entries fewer than the range has pages (past the user address space)")
        } else if let now = try? scanner.currentMappings().filter({ $0.range.overlaps(range) }),
                  let gap = Self.firstUnmapped(range, now) {
            notes.add("\(gap) was unmapped while the range was read: from then on its entries are what pagemap gives for unmapped addresses (0)")
        }
        return written
    }

    /// The first part of `range` that lies in none of `mappings` (sorted, as maps lists them).
    static func firstUnmapped(_ range: AddressRange, _ mappings: [Mapping]) -> AddressRange? {
        var cursor = range.start
        for mapping in mappings where mapping.range.end > cursor {
            if mapping.range.start > cursor { return AddressRange(start: cursor, end: min(mapping.range.start, range.end)) }
            cursor = mapping.range.end
            if cursor >= range.end { return nil }
        }
        return cursor < range.end ? AddressRange(start: cursor, end: range.end) : nil
    }

    /// The mappings of the pinned address space (the one pagemap is read from) overlapping `range`.
    private func overlappingMappings(_ range: AddressRange) throws(PageStatError) -> [Mapping] {
        try scanner.currentMappings().filter { $0.range.overlaps(range) }
    }

    /// The swapped pages of `part` of a shmem mapping, as sorted ranges with the swap location of
    /// their first page where the engine knew it, from the scanner's truth.
    private func swappedPages(_ mapping: Mapping, _ part: AddressRange) throws(PageStatError) -> [SwappedRange] {
        let report: ProcessReport
        do {
            var options = ScanOptions(range: part, hugeAndZeroFlags: false)
            options.engine = engine
            report = try scanner.scan(options)
        } catch .rangeNotMapped {
            return []  // unmapped since: pagemap gives 0 there, and there is nothing to mark
        }
        for note in report.notes { notes.add(note) }
        return report.mappings.flatMap(\.runs).compactMap { run in
            run.state == .swapped
                ? SwappedRange(range: AddressRange(start: run.start, end: run.start + run.pages * pageSize), swap: run.swap)
                : nil
        }
    }

    /// Swapped pages at consecutive addresses, and the swap slot of the first (the rest follow on).
    public struct SwappedRange: Sendable, Equatable {
        public var range: AddressRange
        public var swap: SwapLocation?

        public init(range: AddressRange, swap: SwapLocation? = nil) {
            self.range = range
            self.swap = swap
        }
    }

    /// Reads the entries of `[start, end)` in batches and hands each batch to `sink`; with a shmem
    /// `mapping`, first asks the scanner for the batch's swapped pages and marks them. Returns
    /// false where the kernel's pagemap ended early.
    private func copy(from start: UInt64, to end: UInt64, truthOf mapping: Mapping?, _ sink: Sink,
                      _ written: inout UInt64) throws(PageStatError) -> Bool {
        var address = start
        while address < end {
            let wanted = Int(min(UInt64(buffer.count), (end - address) / pageSize))
            let swapped = try mapping.map { mapping throws(PageStatError) in
                try swappedPages(mapping, AddressRange(start: address, end: address + UInt64(wanted) * pageSize))
            } ?? []
            let got: Int
            do {
                got = try scanner.pagemap.read(at: address, into: UnsafeMutableBufferPointer(rebasing: buffer[0..<wanted]))
            } catch .noSuchProcess, .processExited {
                throw scanner.vanished()
            }
            let batch = UnsafeMutableBufferPointer(rebasing: buffer[0..<got])
            var next = 0
            Self.markSwapped(batch, firstAddress: address, pageSize: pageSize, swapped: swapped, next: &next)
            try sink(UnsafeRawBufferPointer(batch))
            written += UInt64(got)
            address += UInt64(got) * pageSize
            if got < wanted {
                // pagemap ends early past the user address space ([vsyscall]); below it, only
                // when the address space is gone (exit, or exec: then the scanner says which).
                if address < ProcessScanner.userSpaceEnd { throw scanner.vanished() }
                return false
            }
        }
        return true
    }

    /// Sets bit 62 on those entries of `entries` (the pages from `firstAddress` on) that lie in one
    /// of `swapped` (sorted, disjoint) and that the kernel left neither present nor swapped. `next`
    /// is the first range not yet passed: keep it from one batch to the next. Returns how many
    /// entries it marked.
    @discardableResult
    public static func markSwapped(_ entries: UnsafeMutableBufferPointer<UInt64>, firstAddress: UInt64,
                                   pageSize: UInt64, swapped: [AddressRange], next: inout Int) -> Int {
        markSwapped(entries, firstAddress: firstAddress, pageSize: pageSize,
                    swapped: swapped.map { SwappedRange(range: $0) }, next: &next)
    }

    /// The same, and where a range's swap location is known, its pages' type and offset in bits
    /// 0-4 and 5-54, as the patch encoded them.
    @discardableResult
    public static func markSwapped(_ entries: UnsafeMutableBufferPointer<UInt64>, firstAddress: UInt64,
                                   pageSize: UInt64, swapped: [SwappedRange], next: inout Int) -> Int {
        let batchEnd = firstAddress + UInt64(entries.count) * pageSize
        var marked = 0
        while next < swapped.count && swapped[next].range.start < batchEnd {
            let range = swapped[next].range
            let swap = swapped[next].swap
            let from = max(range.start, firstAddress)
            let to = min(range.end, batchEnd)
            if from < to {
                for index in Int((from - firstAddress) / pageSize)..<Int((to - firstAddress) / pageSize)
                where entries[index] & (swapBit | presentBit) == 0 {
                    entries[index] |= swapBit
                    if let swap {
                        let page = firstAddress + UInt64(index) * pageSize
                        let offset = swap.offset + (page - range.start) / pageSize
                        entries[index] |= (offset << 5) & ((1 << 55) - 1) | UInt64(swap.type & 0x1f)
                    }
                    marked += 1
                }
            }
            if range.end > batchEnd { break }
            next += 1
        }
        return marked
    }
}
