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
///   reads gives what the kernel gives for unmapped pages (0) from then on. A mapping replaced
///   by another one while it reads (mmap MAP_FIXED, mremap onto it) ends the stream with
///   `.mappingReplaced` before a batch of the other mapping's entries is written: maps, read
///   again through the pinned descriptor after every batch, must still cover the batch with
///   the mappings it had at the start (the same object, offset and permissions).
///
/// How: pagemap is read in large batches. In a shmem mapping (shared anonymous, memfd, tmpfs,
/// SysV), the entries that the kernel left neither present (bit 63) nor swapped (bit 62) and
/// whose page is swapped get bit 62. With the `bpf` engine, a shared mapping's batch is matched
/// against one walk of the same indices of the object's xarray (one pagemap read and one walk
/// per batch); otherwise one streamed `ProcessScanner` scan of the mapping says which pages are
/// swapped, as its runs arrive, and with `auto` that scan ends at the first wave after it has
/// turned to the BPF engine, the rest of the mapping then read the `bpf` way. Memory is one batch buffer plus one hand-over of runs, whatever
/// the size of the range. It is a snapshot: pages that change while it reads may come out
/// either way.
package final class RawPagemap {
    /// Bit 62, PM_SWAP.
    package static let swapBit: UInt64 = 1 << 62
    /// Bit 63, PM_PRESENT.
    package static let presentBit: UInt64 = 1 << 63

    package let pid: Int32
    package let pageSize: UInt64
    /// What could not be known (from the scanner) and where the kernel gave fewer entries.
    package private(set) var notes = Notes()
    private let scanner: ProcessScanner
    private let engine: FileSideEngineChoice
    private let buffer: UnsafeMutableBufferPointer<UInt64>
    /// The mappings of the range when `stream` started, which every batch is checked against.
    private var pinnedMappings: [Mapping] = []

    /// Receives the entries, a batch at a time, as raw bytes.
    package typealias Sink = (UnsafeRawBufferPointer) throws(PageStatError) -> Void

    package init(pid: Int32, batchPages: Int = 1 << 16, engine: FileSideEngineChoice = .auto) throws(PageStatError) {
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
    package func stream(_ range: AddressRange, kernelOnly: Bool = false, to sink: Sink) throws(PageStatError) -> UInt64 {
        guard let range = range.pageAligned(pageSize: pageSize), !range.isEmpty else {
            throw .invalidInput("range \(range): empty, or its end rounds up past the top of the address space (2^64)")
        }
        // `bpf` that cannot load fails with the reason, whether or not the range has shared memory.
        if engine == .bpf && !kernelOnly { _ = try XArrayWalker.shared() }
        let mappings = try overlappingMappings(range)
        if let gap = Self.firstUnmapped(range, mappings) { throw .rangeNotMapped(pid: pid, range: gap) }
        pinnedMappings = mappings
        var written: UInt64 = 0
        var cursor = range.start
        var complete = true
        for mapping in mappings where !kernelOnly && mapping.kind.isShmem {
            let part = mapping.range.clamped(to: range)
            complete = try copy(from: cursor, to: part.start, swapped: [], sink, &written)
            guard complete else { break }
            complete = try copyShmem(mapping, part, sink, &written)
            guard complete else { break }
            cursor = part.end
        }
        if complete { _ = try copy(from: cursor, to: range.end, swapped: [], sink, &written) }
        let expected = range.length / pageSize
        if written < expected {
            notes.add(.pagemapEnded(address: range.start + written * pageSize, missing: expected - written))
        } else if let now = try? scanner.currentMappings().filter({ $0.range.overlaps(range) }),
                  let gap = Self.firstUnmapped(range, now) {
            notes.add(.unmappedWhileRead(gap))
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

    /// The first mapping of `before` that lies in `batch` and that `now` maps otherwise, with what
    /// `now` maps there instead: a replacement, not an unmapping (where nothing of `now`
    /// overlaps it, pagemap's 0 is the truth for unmapped pages). Both in address order.
    static func replaced(in batch: AddressRange, before: [Mapping], now: [Mapping]) -> (was: Mapping, now: Mapping)? {
        let current = now.filter { $0.range.overlaps(batch) }
        for mapping in before where mapping.range.overlaps(batch) {
            for other in current where other.range.overlaps(mapping.range) {
                // The pages both hold in this batch must be mapped by `other` as they were.
                var part = mapping
                part.range = mapping.range.clamped(to: batch).clamped(to: other.range)
                guard !part.range.isEmpty else { continue }
                part.offset = mapping.offset &+ (part.range.start - mapping.range.start)
                if !other.covers(part) { return (mapping, other) }
            }
        }
        return nil
    }

    /// Throws `.mappingReplaced` if a mapping of `batch` was replaced since `stream` started.
    private func checkNotReplaced(_ batch: AddressRange) throws(PageStatError) {
        guard !batch.isEmpty else { return }
        // Where PROCMAP_QUERY asks the batch's mappings alone, maps is read whole only to name
        // a replacement it found.
        if let queried = try scanner.mappings(overlapping: batch),
           Self.replaced(in: batch, before: pinnedMappings, now: queried) == nil { return }
        guard let (was, now) = Self.replaced(in: batch, before: pinnedMappings, now: try scanner.currentMappings()) else { return }
        func line(_ mapping: Mapping) -> String {
            "\(mapping.range) \(mapping.permissions)\(mapping.path.isEmpty ? "" : " " + mapping.path)"
        }
        throw .mappingReplaced(pid: pid, detail: "\(line(was)) is now \(line(now)): its entries from 0x\(String(batch.start, radix: 16)) on would be the new mapping's, so they are not written; read it again")
    }

    /// The mappings of the pinned address space (the one pagemap is read from) overlapping `range`.
    private func overlappingMappings(_ range: AddressRange) throws(PageStatError) -> [Mapping] {
        try scanner.currentMappings().filter { $0.range.overlaps(range) }
    }

    /// Copies `part` of a shmem mapping, marking its swapped pages: one streamed scan of the part
    /// (so the file side is asked once, with one engine choice and one set of object counts),
    /// whose runs, as they arrive in address order, say which entries of the next stretch to
    /// mark; memory is bounded by one hand-over of runs. Returns false where pagemap ended early.
    private func copyShmem(_ mapping: Mapping, _ part: AddressRange, _ sink: Sink, _ written: inout UInt64) throws(PageStatError) -> Bool {
        // The BPF engine as the policy says (`bpf`, or `auto` where it loads): the part is matched
        // against its walks directly, without the scanner.
        if mapping.isShared, let walker = try scanner.sharedMemoryWalker(engine: engine, notes: &notes) {
            if engine == .bpf { notes.add(.bpfEngineAsAsked) }
            if let object = try? scanner.openObject(mapping) {
                return try copy(from: part.start, to: part.end, mapping: mapping, object: object, walker: walker, sink, &written)
            }
        }
        struct Writer: ScanConsumer {
            let raw: RawPagemap
            let sink: Sink
            var cursor: UInt64
            var written: UInt64 = 0
            var swapped: [SwappedRange] = []
            var failure: PageStatError?
            var complete = true

            mutating func begin(_ mapping: Mapping, scanned: AddressRange) {}
            mutating func end(use: MemoryUse?) {}
            mutating func runs(_ runs: [PageRun]) {
                guard failure == nil, complete, let last = runs.last else { return }
                let pageSize = raw.pageSize
                for run in runs where run.state == .swapped {
                    swapped.append(SwappedRange(range: AddressRange(start: run.start, end: run.start + run.pages * pageSize), swap: run.swap))
                }
                let end = last.start + last.pages * pageSize
                do throws(PageStatError) {
                    complete = try raw.copy(from: cursor, to: end, swapped: swapped, sink, &written)
                } catch {
                    failure = error
                }
                cursor = end
                swapped.removeAll(keepingCapacity: true)
            }
        }
        var options = ScanOptions(range: part, hugeAndZeroFlags: false)
        options.engine = engine
        return try withoutActuallyEscaping(sink) { (sink) throws(PageStatError) -> Bool in
            var writer = Writer(raw: self, sink: sink, cursor: part.start)
            do throws(PageStatError) {
                let result = try scanner.scan(options, into: &writer)
                for note in result.notes { notes.add(note) }
            } catch .rangeNotMapped {
                // Unmapped since: pagemap gives 0 there, and there is nothing to mark.
            }
            if let failure = writer.failure { throw failure }
            written += writer.written
            guard writer.complete else { return false }
            // What the scan did not cover (unmapped while it ran) is copied as pagemap has it.
            return try copy(from: writer.cursor, to: part.end, swapped: [], sink, &written)
        }
    }

    /// Swapped pages at consecutive addresses, and the swap slot of the first (the rest follow on).
    package struct SwappedRange: Sendable, Equatable {
        package var range: AddressRange
        package var swap: SwapLocation?

        package init(range: AddressRange, swap: SwapLocation? = nil) {
            self.range = range
            self.swap = swap
        }
    }

    /// Reads the entries of `[start, end)` in batches and hands each batch to `sink`, marking the
    /// entries of the pages in `swapped` (sorted, within the stretch). Returns false where the
    /// kernel's pagemap ended early.
    private func copy(from start: UInt64, to end: UInt64, swapped: [SwappedRange], _ sink: Sink,
                      _ written: inout UInt64) throws(PageStatError) -> Bool {
        var next = 0
        return try copy(from: start, to: end, sink, &written) { (batch, address) throws(PageStatError) in
            Self.markSwapped(batch, firstAddress: address, pageSize: pageSize, swapped: swapped, next: &next)
        }
    }

    /// The BPF engine's way for part of a shared shmem mapping: each batch of entries is matched
    /// against one walk of the same page indices of the object's xarray, whose swap runs are
    /// spread into `swapBits` (bit 62 and the slot's type and offset, per page) on a second thread
    /// while the batch's pagemap entries are read; an entry the kernel left empty then takes its
    /// page's bits.
    private func copy(from start: UInt64, to end: UInt64, mapping: Mapping, object: PageCacheObject, walker: XArrayWalker,
                      _ sink: Sink, _ written: inout UInt64) throws(PageStatError) -> Bool {
        let swapBits = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: buffer.count)
        defer { swapBits.deallocate() }
        let pageSize = self.pageSize
        return try copy(from: start, to: end, sink, &written, alongside: { (address, wanted) throws(PageStatError) in
            let first = (mapping.offset + (address - mapping.range.start)) / pageSize
            swapBits.initialize(repeating: 0)
            let last = first + UInt64(wanted)
            try walker.swapRuns(fd: object.fd, first: first, count: UInt64(wanted)) { runFirst, pages, location in
                let from = max(runFirst, first), to = min(runFirst + pages, last)
                guard from < to else { return }
                var bits = Self.swapBit | location.advanced(by: from - runFirst).pagemapBits
                for index in Int(from - first)..<Int(to - first) {
                    swapBits[index] = bits
                    bits += 1 << 5  // the next offset (bits 5-54)
                }
            }
        }) { (batch, address) throws(PageStatError) in
            let mask = Self.swapBit | Self.presentBit
            for index in batch.indices where batch[index] & mask == 0 { batch[index] |= swapBits[index] }
        }
    }

    /// The batch loop under both: reads pagemap a batch at a time from `start`, lets `mark` set
    /// bits in each batch (the entries of the pages from the address it is given), and hands the
    /// batch to `sink`. Returns false where the kernel's pagemap ended early.
    /// `alongside`, when given, runs for each batch (its address and entry count) on a second
    /// thread while the batch is read, before `mark`.
    private func copy(from start: UInt64, to end: UInt64, _ sink: Sink, _ written: inout UInt64,
                      alongside: ((UInt64, Int) throws(PageStatError) -> Void)? = nil,
                      mark: (UnsafeMutableBufferPointer<UInt64>, UInt64) throws(PageStatError) -> Void) throws(PageStatError) -> Bool {
        var address = start
        while address < end {
            let wanted = Int(min(UInt64(buffer.count), (end - address) / pageSize))
            let got: Int
            do {
                let into = UnsafeMutableBufferPointer(rebasing: buffer[0..<wanted])
                if let alongside {
                    let batchAddress = address
                    let read = try parallelMap(count: 2, threads: 2, makeWorker: {}) { (_, index) throws(PageStatError) -> Int in
                        if index == 0 { return try scanner.pagemap.read(at: batchAddress, into: into) }
                        try alongside(batchAddress, wanted)
                        return 0
                    }
                    got = read[0]
                } else {
                    got = try scanner.pagemap.read(at: address, into: into)
                }
            } catch .noSuchProcess, .processExited {
                throw scanner.vanished()
            }
            // Read from the mappings the range had at the start, or the batch is not written.
            try checkNotReplaced(AddressRange(start: address, end: address + UInt64(got) * pageSize))
            let batch = UnsafeMutableBufferPointer(rebasing: buffer[0..<got])
            try mark(batch, address)
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
    package static func markSwapped(_ entries: UnsafeMutableBufferPointer<UInt64>, firstAddress: UInt64,
                                   pageSize: UInt64, swapped: [AddressRange], next: inout Int) -> Int {
        markSwapped(entries, firstAddress: firstAddress, pageSize: pageSize,
                    swapped: swapped.map { SwappedRange(range: $0) }, next: &next)
    }

    /// The same, and where a range's swap location is known, its pages' type and offset in bits
    /// 0-4 and 5-54, as the patch encoded them.
    @discardableResult
    package static func markSwapped(_ entries: UnsafeMutableBufferPointer<UInt64>, firstAddress: UInt64,
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
                        entries[index] |= swap.advanced(by: (page - range.start) / pageSize).pagemapBits
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
