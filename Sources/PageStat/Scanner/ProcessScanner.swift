#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// What to scan and how.
public struct ScanOptions: Sendable {
    /// Only mappings overlapping this range, clamped to it; nil for the whole address space.
    public var range: AddressRange?
    /// The joined truth, or the raw page table alone.
    public var view: ReportView
    /// Ask PAGEMAP_SCAN for THP and zero-page flags (Linux 6.7+).
    public var hugeAndZeroFlags: Bool
    /// Entries per pagemap read.
    public var batchPages: Int
    /// Count RSS, PSS, USS and swap per mapping (PSS and USS from /proc/kpagecount, root only).
    public var accounting: Bool
    /// Split runs by the kernel's page flags from /proc/kpageflags (root only).
    public var kernelPageFlags: Bool
    /// Whether to ask objects' page caches about pages the page table leaves open. Without it,
    /// those pages stay `unknown` (for callers that settle shared objects once, themselves).
    public var fileSide: Bool = true

    public init(range: AddressRange? = nil, view: ReportView = .truth, hugeAndZeroFlags: Bool = true,
                batchPages: Int = 1 << 16, accounting: Bool = false, kernelPageFlags: Bool = false) {
        self.range = range
        self.view = view
        self.hugeAndZeroFlags = hugeAndZeroFlags
        self.batchPages = batchPages
        self.accounting = accounting
        self.kernelPageFlags = kernelPageFlags
    }
}

/// Joins a process's kernel views into the true state of every page: /proc/PID/maps for the
/// mappings, /proc/PID/pagemap (batched pread) for the page table, PAGEMAP_SCAN for THP and
/// zero-page flags, and each shared object's page cache through /proc/PID/map_files.
/// Reads metadata only: the target's memory is never read, faulted or swapped in.
public final class ProcessScanner {
    public let pid: Int32
    public let pageSize: UInt64
    /// CAP_SYS_ADMIN: PFNs, swap locations, map_files.
    public let privileged: Bool
    let pagemap: Pagemap
    let scanCategories: PagemapScan.Categories
    private let entries: UnsafeMutableBufferPointer<UInt64>
    /// Per-entry side values of a batch: kpagecount or kpageflags.
    private let sideValues: UnsafeMutableBufferPointer<UInt64>
    private let regions: UnsafeMutableBufferPointer<PagemapScan.Region>
    private var kpagecount: Result<KPageTable, PageStatError>?
    private var kpageflags: Result<KPageTable, PageStatError>?

    public init(pid: Int32, batchPages: Int = 1 << 16) throws(PageStatError) {
        guard pid > 0 else { throw .invalidInput("invalid pid \(pid)") }
        guard ProcFS.processExists(pid) else { throw .noSuchProcess(pid: pid) }
        self.pid = pid
        pageSize = UInt64(ProcFS.pageSize)
        privileged = ProcFS.hasSysAdmin()
        pagemap = try Pagemap(pid: pid)
        scanCategories = PagemapScan.supportedCategories(fd: pagemap.fileDescriptor)
        entries = .allocate(capacity: max(1, batchPages))
        sideValues = .allocate(capacity: max(1, batchPages))
        regions = .allocate(capacity: 4096)
    }

    deinit {
        entries.deallocate()
        sideValues.deallocate()
        regions.deallocate()
    }

    /// Opens a /proc/kpage* table once; its failure is remembered and said once in the notes.
    private func table(_ cached: inout Result<KPageTable, PageStatError>?, open: () throws(PageStatError) -> KPageTable,
                       notes: inout Notes, missing: String) -> KPageTable? {
        if cached == nil {
            do { cached = .success(try open()) } catch { cached = .failure(error) }
        }
        switch cached! {
        case .success(let table): return table
        case .failure(let error):
            notes.add("\(missing) unknown: \(error)")
            return nil
        }
    }

    /// Scans every mapping (or those overlapping `options.range`).
    public func scan(_ options: ScanOptions = ScanOptions()) throws(PageStatError) -> ProcessReport {
        do {
            return try scanOrFail(options)
        } catch .noSuchProcess {
            // It was there when the scanner opened its pagemap.
            throw .processExited(pid: pid)
        }
    }

    private func scanOrFail(_ options: ScanOptions) throws(PageStatError) -> ProcessReport {
        var mappings = try ProcMaps.read(pid: pid)
        if mappings.isEmpty && !ProcFS.processExists(pid) { throw .processExited(pid: pid) }
        if let range = options.range {
            mappings = mappings.filter { $0.range.overlaps(range) }
            if mappings.isEmpty { throw .rangeNotMapped(pid: pid, range: range) }
        }
        var notes = Notes()
        if !privileged {
            notes.add("not privileged (CAP_SYS_ADMIN): no PFNs or swap locations; a non-present page-table entry of private memory is taken as swap (it may be a PTE marker or migration entry)")
        }
        if !PageCacheObject.cachestatSupported {
            notes.add("cachestat(2) is not available (Linux 6.5+): a swapped shared page still in the swap cache is reported as cached")
        }
        if options.hugeAndZeroFlags && !scanCategories.contains([.huge, .pfnZero]) {
            notes.add("PAGEMAP_SCAN with PAGE_IS_HUGE and PAGE_IS_PFNZERO is not available (Linux 6.7+): no thp or zero-page flags")
        }
        var reports: [MappingReport] = []
        reports.reserveCapacity(mappings.count)
        for mapping in mappings {
            let scanned = options.range.map { mapping.range.clamped(to: $0) } ?? mapping.range
            reports.append(try scan(mapping: mapping, scanned: scanned, options: options, notes: &notes))
        }
        if !ProcFS.processExists(pid) { throw .processExited(pid: pid) }
        return ProcessReport(pid: pid, pageSize: Int(pageSize), privileged: privileged, view: options.view,
                             notes: notes.lines, mappings: reports)
    }

    /// Scans one mapping's `scanned` part.
    public func scan(mapping: Mapping, scanned: AddressRange, options: ScanOptions,
                     notes: inout Notes) throws(PageStatError) -> MappingReport {
        let decoder = PagemapDecoder(kind: mapping.kind, shared: mapping.isShared, privileged: privileged,
                                     view: options.view)
        let extra = options.hugeAndZeroFlags ? try hugeAndZeroRegions(scanned) : []
        var pass = PageTablePass(decoder: decoder, extra: extra)
        if options.accounting && privileged {
            pass.counts = table(&kpagecount, open: KPageTable.kpagecount, notes: &notes, missing: "PSS and USS are")
            if pass.counts != nil { pass.use = MemoryUse() }
        }
        if options.kernelPageFlags {
            pass.flags = privileged
                ? table(&kpageflags, open: KPageTable.kpageflags, notes: &notes, missing: "kernel page flags are")
                : nil
            if !privileged { notes.add("kernel page flags are unknown: /proc/kpageflags and PFNs need root") }
        }
        var builder = RunBuilder(pageSize: pageSize)
        try readPageTable(scanned, pass: &pass, into: &builder)
        var runs = builder.runs
        if options.fileSide && runs.contains(where: { $0.flags.contains(.pendingFileSide) }) {
            runs = resolveFileSide(runs, mapping: mapping, notes: &notes)
        } else if !options.fileSide {
            runs = runs.map { run in
                var run = run
                run.flags.remove(.pendingFileSide)
                return run
            }
        }
        var report = MappingReport(mapping: mapping, scanned: scanned, runs: runs)
        if options.accounting {
            report.use = MemoryUse(runs: runs, pageSize: pageSize, mapcounts: pass.use, shmem: mapping.kind.isShmem)
        }
        return report
    }

    /// What one pass over a mapping's page table carries along.
    struct PageTablePass {
        let decoder: PagemapDecoder
        let extra: [(AddressRange, PageFlags)]
        var extraIndex = 0
        /// /proc/kpagecount, for PSS and USS.
        var counts: KPageTable?
        var use: MemoryUse?
        /// /proc/kpageflags, to split runs by the kernel's page flags.
        var flags: KPageTable?

        init(decoder: PagemapDecoder, extra: [(AddressRange, PageFlags)]) {
            self.decoder = decoder
            self.extra = extra
        }
    }

    // MARK: page table

    /// THP and zero-page regions of `range` from PAGEMAP_SCAN, in address order.
    private func hugeAndZeroRegions(_ range: AddressRange) throws(PageStatError) -> [(AddressRange, PageFlags)] {
        let wanted = scanCategories.intersection([.huge, .pfnZero])
        guard !wanted.isEmpty else { return [] }
        var found: [(AddressRange, PageFlags)] = []
        try PagemapScan.scan(fd: pagemap.fileDescriptor, pid: pid, start: range.start, end: range.end,
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
    private func readPageTable(_ range: AddressRange, pass: inout PageTablePass,
                               into builder: inout RunBuilder) throws(PageStatError) {
        var address = range.start
        while address < range.end {
            let wanted = Int(min(UInt64(entries.count), (range.end - address) / pageSize))
            let batchEntries = UnsafeMutableBufferPointer(rebasing: entries[0..<wanted])
            let got = try pagemap.read(at: address, into: batchEntries)
            if got == 0 {
                if !ProcFS.processExists(pid) { throw .processExited(pid: pid) }
                // Past the address space pagemap covers (e.g. [vsyscall]).
                builder.append(start: address, pages: (range.end - address) / pageSize, state: .unknown, flags: [])
                return
            }
            let batch = UnsafeBufferPointer(rebasing: entries[0..<got])
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
            var end = index + 1
            while end < to {
                let next = batch[end]
                let nextMask: UInt64 = next >> 63 == 1 ? 0xFF80_0000_0000_0000 : 0xFF80_0000_0000_001F
                if next & nextMask != key { break }
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

    // MARK: file side

    /// Replaces the pending runs with what the object's page cache says.
    private func resolveFileSide(_ runs: [PageRun], mapping: Mapping, notes: inout Notes) -> [PageRun] {
        var builder = RunBuilder(pageSize: pageSize)
        let fileSide: FileSide
        do {
            fileSide = FileSide(object: try openObject(mapping))
        } catch {
            notes.add(unknownReason(error, mapping: mapping))
            for var run in runs {
                run.flags.remove(.pendingFileSide)
                builder.append(run)
            }
            return builder.runs
        }
        for run in runs {
            guard run.flags.contains(.pendingFileSide) else {
                builder.append(run)
                continue
            }
            let flags = run.flags.subtracting(.pendingFileSide)
            let firstPage = (mapping.offset + (run.start - mapping.range.start)) / pageSize
            var address = run.start
            do {
                try fileSide.resolve(first: firstPage, count: run.pages) { pages, state, fileFlags in
                    builder.append(start: address, pages: pages, state: state, flags: flags.union(fileFlags))
                    address += pages * pageSize
                }
            } catch {
                notes.add("\(mapping.path.isEmpty ? mapping.range.description : mapping.path): file side failed (\(error)); its pages there are unknown")
                builder.append(start: address, pages: (run.start + run.pages * pageSize - address) / pageSize,
                               state: .unknown, flags: flags)
            }
        }
        return builder.runs
    }

    /// The object behind a mapping: /proc/PID/map_files when privileged, else the mapped path if
    /// it still names the very same inode.
    private func openObject(_ mapping: Mapping) throws(PageStatError) -> PageCacheObject {
        var mapFilesError: PageStatError?
        do {
            return try PageCacheObject.open(pid: pid, range: mapping.range)
        } catch {
            if error == .processExited(pid: pid) || !ProcFS.processExists(pid) { throw .processExited(pid: pid) }
            mapFilesError = error
        }
        let path = mapping.path
        if path.hasPrefix("/") && !path.hasSuffix(" (deleted)"),
           let object = try? PageCacheObject.open(path: path, pid: pid, what: path) {
            var st = stat()
            if fstat(object.fd.rawValue, &st) == 0, UInt64(st.st_ino) == mapping.inode,
               Self.major(UInt64(st.st_dev)) == mapping.deviceMajor, Self.minor(UInt64(st.st_dev)) == mapping.deviceMinor {
                return object
            }
        }
        throw mapFilesError ?? .unsupported("no way to open the object")
    }

    private func unknownReason(_ error: PageStatError, mapping: Mapping) -> String {
        let what = mapping.kind.isShmem ? "swapped or cached shared pages" : "cached file pages"
        switch error {
        case .permissionDenied:
            return "\(what) are unknown: opening /proc/\(pid)/map_files needs CAP_SYS_ADMIN (run as root)"
        default:
            return "\(what) are unknown where the object could not be opened: \(error)"
        }
    }

    static func major(_ dev: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)) }
    static func minor(_ dev: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: (dev & 0xff) | ((dev >> 12) & ~0xff)) }
}

/// Report notes, each said once.
public struct Notes: Sendable {
    public private(set) var lines: [String] = []
    public init() {}
    public mutating func add(_ line: String) {
        if !lines.contains(line) { lines.append(line) }
    }
}
