#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// What one pass over a stretch of a mapping's page table carries along.
struct PageTablePass {
    let decoder: PagemapDecoder
    /// THP and zero-page regions from PAGEMAP_SCAN, in address order.
    var extra: [(AddressRange, PageFlags)] = []
    var extraIndex = 0
    /// /proc/kpagecount, for PSS and USS.
    var counts: KPageTable?
    var use: MemoryUse?
    /// /proc/kpageflags, to split runs by the kernel's page flags.
    var flags: KPageTable?
    /// Privileged: THP and zero pages told from the PFNs themselves (and /proc/kpageflags for
    /// THP candidates) instead of a second walk with PAGEMAP_SCAN.
    var flagsFromPFNs: PFNFlagSource?
    /// Whether long empty stretches are skipped with PAGEMAP_SCAN instead of read entry by entry
    /// (not on device mappings, whose VM_PFNMAP pages PAGEMAP_SCAN does not walk).
    var skipEmpty = false

    init(decoder: PagemapDecoder) { self.decoder = decoder }
}

/// THP and zero-page flags from PFNs, for privileged scans: the zero page is one known PFN; a
/// huge page is 512 present entries at a 2 MiB-aligned address with consecutive PFNs from a
/// 512-aligned one, which /proc/kpageflags then confirms (THP or huge; zero page for the huge
/// zero page). One compare per page, one pread per candidate, no second page-table walk.
struct PFNFlagSource {
    let zeroPFN: UInt64
    let kpageflags: KPageTable
    let pageSize: UInt64

    static let hugePages = 512

    /// The shared zero page's PFN: a read fault on a private anonymous page of our own maps it,
    /// and our own pagemap (privileged) names it.
    static let zeroPageFrame: UInt64? = {
        let length = ProcFS.pageSize
        guard let page = mmap(nil, length, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), page != MAP_FAILED else { return nil }
        defer { munmap(page, length) }
        // MADV_POPULATE_READ (5.14+) read-faults it; a plain load could be optimized away.
        if madvise(page, length, 22) != 0 { PFNFlagSource.touch(page) }
        guard let entry = Pagemap.ownEntry(page) else { return nil }
        return entry.isPresent && entry.pfn != 0 ? entry.pfn : nil
    }()

    @inline(never)
    static func touch(_ page: UnsafeMutableRawPointer) {
        withExtendedLifetime(page.load(as: UInt8.self)) {}
    }

    /// Flag regions of a batch of entries starting at `firstAddress`, in address order.
    func regions(_ batch: UnsafeBufferPointer<UInt64>, firstAddress: UInt64) throws(PageStatError) -> [(AddressRange, PageFlags)] {
        var found: [(AddressRange, PageFlags)] = []
        let hugeBytes = UInt64(Self.hugePages) * pageSize
        var index = 0
        while index < batch.count {
            let entry = PagemapEntry(rawValue: batch[index])
            guard entry.isPresent else { index += 1; continue }
            let address = firstAddress + UInt64(index) * pageSize
            if entry.pfn == zeroPFN {
                var end = index + 1
                while end < batch.count && batch[end] == batch[index] { end += 1 }
                found.append((AddressRange(start: address, end: firstAddress + UInt64(end) * pageSize), .zeroPage))
                index = end
                continue
            }
            if address % hugeBytes == 0, entry.pfn % UInt64(Self.hugePages) == 0, index + Self.hugePages <= batch.count,
               isContiguous(batch, from: index, pfn: entry.pfn) {
                var value: UInt64 = 0
                try withUnsafeMutablePointer(to: &value) { pointer throws(PageStatError) in
                    try kpageflags.lookUp(entries: UnsafeBufferPointer(rebasing: batch[index..<index + 1]),
                                          into: UnsafeMutableBufferPointer(start: pointer, count: 1))
                }
                let kernel = KPageFlags(rawValue: value)
                var flags = PageFlags()
                if kernel.contains(KPageFlags(rawValue: 1 << 22)) || kernel.contains(KPageFlags(rawValue: 1 << 17)) { flags.insert(.thp) }
                if kernel.contains(KPageFlags(rawValue: 1 << 24)) { flags.insert(.zeroPage) }
                if !flags.isEmpty {
                    found.append((AddressRange(start: address, end: address + hugeBytes), flags))
                    index += Self.hugePages
                    continue
                }
            }
            index += 1
        }
        return found
    }

    private func isContiguous(_ batch: UnsafeBufferPointer<UInt64>, from index: Int, pfn: UInt64) -> Bool {
        for offset in 1..<Self.hugePages {
            let next = PagemapEntry(rawValue: batch[index + offset])
            if !next.isPresent || next.pfn != pfn + UInt64(offset) { return false }
        }
        return true
    }
}

/// One worker's share of a page-table scan: its own buffers, reading /proc/PID/pagemap in large
/// batches (pread) and PAGEMAP_SCAN, decoding into runs. Workers share only the descriptors.
final class PageTableWorker {
    let pid: Int32
    let pageSize: UInt64
    let pagemap: FileDescriptor
    let scanCategories: PagemapScan.Categories
    private let entries: UnsafeMutableBufferPointer<UInt64>
    /// Per-entry side values of a batch: kpagecount or kpageflags.
    private let sideValues: UnsafeMutableBufferPointer<UInt64>
    private let regions: UnsafeMutableBufferPointer<PagemapScan.Region>

    init(pid: Int32, pageSize: UInt64, pagemap: FileDescriptor, scanCategories: PagemapScan.Categories, batchPages: Int) {
        self.pid = pid
        self.pageSize = pageSize
        self.pagemap = pagemap
        self.scanCategories = scanCategories
        entries = .allocate(capacity: max(1, batchPages))
        sideValues = .allocate(capacity: max(1, batchPages))
        regions = .allocate(capacity: 4096)
    }

    deinit {
        entries.deallocate()
        sideValues.deallocate()
        regions.deallocate()
    }

    /// THP and zero-page regions of `range` from PAGEMAP_SCAN, in address order.
    func hugeAndZeroRegions(_ range: AddressRange) throws(PageStatError) -> [(AddressRange, PageFlags)] {
        let wanted = scanCategories.intersection([.huge, .pfnZero])
        guard !wanted.isEmpty else { return [] }
        var found: [(AddressRange, PageFlags)] = []
        try PagemapScan.scan(fd: pagemap, pid: pid, start: range.start, end: range.end,
                             anyOf: wanted, returnMask: wanted, buffer: regions) { batch in
            for region in batch {
                var flags = PageFlags()
                if region.categories & PagemapScan.Categories.huge.rawValue != 0 { flags.insert(.thp) }
                if region.categories & PagemapScan.Categories.pfnZero.rawValue != 0 { flags.insert(.zeroPage) }
                found.append((AddressRange(start: region.start, end: region.end), flags))
            }
        }
        return found
    }

    /// Reads pagemap over `range` in batches and feeds the decoded pages to `builder`. Pages with
    /// equal state-relevant bits are decoded once per stretch, not once per page.
    ///
    /// With `pass.skipEmpty`, the page table is read only where it is populated: at the start and
    /// after every batch that ends in a long empty stretch, PAGEMAP_SCAN finds the next populated
    /// page and the stretch before it becomes one run, so a 64 TiB reservation costs what its
    /// populated pages cost. Dense memory never pays for the probe beyond one call per chunk.
    func readPageTable(_ range: AddressRange, pass: inout PageTablePass,
                       into builder: inout RunBuilder) throws(PageStatError) {
        var address = range.start
        let hugeBytes = UInt64(PFNFlagSource.hugePages) * pageSize
        var probe = pass.skipEmpty && !scanCategories.isEmpty
        while address < range.end {
            if probe {
                probe = false
                address = try skipEmpty(from: address, to: range.end, decoder: pass.decoder, into: &builder)
                if address >= range.end { return }
            }
            var wanted = Int(min(UInt64(entries.count), (range.end - address) / pageSize))
            // End batches on 2 MiB boundaries, so that no huge page straddles two of them.
            let end = address + UInt64(wanted) * pageSize
            if pass.flagsFromPFNs != nil, end < range.end, end % hugeBytes != 0, end - end % hugeBytes > address {
                wanted = Int((end - end % hugeBytes - address) / pageSize)
            }
            var got = try read(at: address, count: wanted)
            // Nothing at a user address: the address space is gone (exit or exec); the scanner
            // tells which.
            if got == 0 { throw .processExited(pid: pid) }
            // A long empty tail: decode up to it, then let PAGEMAP_SCAN find what follows.
            if pass.skipEmpty && !scanCategories.isEmpty && address + UInt64(got) * pageSize < range.end {
                let empty = Self.emptyTail(UnsafeBufferPointer(rebasing: entries[0..<got]))
                if empty >= Self.skipThreshold && empty < got {
                    got -= empty
                    probe = true
                } else if empty == got {
                    probe = true
                }
            }
            let batch = UnsafeBufferPointer(rebasing: entries[0..<got])
            if let source = pass.flagsFromPFNs {
                pass.extra = try source.regions(batch, firstAddress: address)
                pass.extraIndex = 0
            }
            if let counts = pass.counts {
                try counts.lookUp(entries: batch, into: sideValues)
                pass.use?.addMapcounts(UnsafeBufferPointer(rebasing: sideValues[0..<got]), pageSize: pageSize)
            }
            var kernelFlags: UnsafeBufferPointer<UInt64>?
            if let flags = pass.flags {
                try flags.lookUp(entries: batch, into: sideValues)
                kernelFlags = UnsafeBufferPointer(rebasing: sideValues[0..<got])
            }
            var index = 0
            while index < got {
                // The segment of this batch with one set of extra flags.
                let pageAddress = address + UInt64(index) * pageSize
                while pass.extraIndex < pass.extra.count && pass.extra[pass.extraIndex].0.end <= pageAddress {
                    pass.extraIndex += 1
                }
                var segmentEnd = got
                var extraFlags = PageFlags()
                if pass.extraIndex < pass.extra.count {
                    let region = pass.extra[pass.extraIndex].0
                    if region.start <= pageAddress {
                        extraFlags = pass.extra[pass.extraIndex].1
                        segmentEnd = min(got, index + Int((region.end - pageAddress) / pageSize))
                    } else {
                        segmentEnd = min(got, index + Int((region.start - pageAddress) / pageSize))
                    }
                }
                decodeSegment(batch, kernelFlags: kernelFlags, from: index, to: segmentEnd, firstAddress: address,
                              decoder: pass.decoder, extraFlags: extraFlags, into: &builder)
                index = segmentEnd
            }
            address += UInt64(got) * pageSize
        }
    }

    /// Bits 5-54 of a swap entry: its offset.
    static let swapOffsetMask = SwapLocation.pagemapOffsetMask

    /// Empty stretches shorter than this (in pages) are read, not probed: one PAGEMAP_SCAN call
    /// costs about what reading 512 empty entries does.
    static let skipThreshold = 512

    /// How many entries at the end of `batch` read "empty" (no page-table entry; bit 55 may be
    /// set on a VM_SOFTDIRTY mapping), all alike.
    static func emptyTail(_ batch: UnsafeBufferPointer<UInt64>) -> Int {
        guard let last = batch.last, last & ~PagemapEntry.softDirtyBit == 0 else { return 0 }
        var index = batch.count - 1
        while index > 0 && batch[index - 1] == last { index -= 1 }
        return batch.count - index
    }

    /// Skips the empty stretch that starts at `address`: PAGEMAP_SCAN names the next populated
    /// page, and the stretch before it is appended as one run of the entry pagemap gives there
    /// (read once, so a VM_SOFTDIRTY mapping keeps its bit). Returns where reading resumes.
    private func skipEmpty(from address: UInt64, to end: UInt64, decoder: PagemapDecoder,
                           into builder: inout RunBuilder) throws(PageStatError) -> UInt64 {
        let next = try PagemapScan.firstPopulated(fd: pagemap, pid: pid, start: address, end: end) ?? end
        guard next > address else { return address }
        guard try read(at: address, count: 1) == 1 else { throw .processExited(pid: pid) }
        let empty = entries[0]
        // Populated since the probe: read it instead.
        guard empty & ~PagemapEntry.softDirtyBit == 0 else { return address }
        let decoded = decoder.decode(empty)
        builder.append(start: address, pages: (next - address) / pageSize, state: decoded.state, flags: decoded.flags)
        return next
    }

    /// pread(2) of `count` entries from the page at `address`; fewer at the end of the address
    /// space, zero when the process's memory is gone.
    private func read(at address: UInt64, count: Int) throws(PageStatError) -> Int {
        try Pagemap.read(pagemap, pid: pid, pageSize: pageSize, at: address,
                         into: UnsafeMutableBufferPointer(rebasing: entries[0..<count]))
    }

    @inline(__always)
    private func decodeSegment(_ batch: UnsafeBufferPointer<UInt64>, kernelFlags: UnsafeBufferPointer<UInt64>?,
                               from: Int, to: Int, firstAddress: UInt64,
                               decoder: PagemapDecoder, extraFlags: PageFlags, into builder: inout RunBuilder) {
        var index = from
        while index < to {
            let raw = batch[index]
            // Bits 55-63 and, for non-present entries, the swap type decide state and flags.
            let mask: UInt64 = raw >> 63 == 1 ? 0xFF80_0000_0000_0000 : 0xFF80_0000_0000_001F
            let key = raw & mask
            let kernelKey = kernelFlags.map { $0[index] & KPageFlags.documentedMask }
            // A privileged swap entry's run goes on only at the next swap slot.
            let swapRun = decoder.privileged && raw >> 62 == 1 && !PagemapEntry(rawValue: raw).isSpecialSwapType
            var end = index + 1
            while end < to {
                let next = batch[end]
                let nextMask: UInt64 = next >> 63 == 1 ? 0xFF80_0000_0000_0000 : 0xFF80_0000_0000_001F
                if next & nextMask != key { break }
                if swapRun && (next & Self.swapOffsetMask) != (batch[end - 1] & Self.swapOffsetMask) &+ (1 << 5) { break }
                if let kernelFlags, kernelFlags[end] & KPageFlags.documentedMask != kernelKey { break }
                end += 1
            }
            let decoded = decoder.decode(raw)
            builder.append(start: firstAddress + UInt64(index) * pageSize, pages: UInt64(end - index),
                           state: decoded.state, flags: decoded.flags.union(extraFlags),
                           pfn: decoded.pfn, swap: decoded.swap,
                           kernelFlags: decoded.state == .present ? kernelKey.map(KPageFlags.init(rawValue:)) : nil)
            index = end
        }
    }
}
