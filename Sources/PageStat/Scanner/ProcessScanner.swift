#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// What to scan and how.
public struct ScanOptions: Sendable {
    /// Only mappings overlapping this range, clamped to it; nil for the whole address space.
    public var range: AddressRange?
    /// The joined truth, or the raw page table alone.
    public var view: ReportView
    /// THP and zero-page flags: as root from the PFNs and /proc/kpageflags, otherwise from
    /// PAGEMAP_SCAN (Linux 6.7+), a second walk of the page table.
    public var hugeAndZeroFlags: Bool
    /// Count RSS, PSS, USS and swap per mapping (PSS and USS from /proc/kpagecount, root only).
    public var accounting: Bool
    /// With `accounting`: PSS and USS too. They cost one /proc/kpagecount read per present page
    /// whose PFN does not follow the previous one's, most of a whole-machine scan's time.
    public var proportional: Bool = true
    /// Split runs by the kernel's page flags from /proc/kpageflags (root only).
    public var kernelPageFlags: Bool
    /// Whether to ask objects' page caches about pages the page table leaves open. Without it,
    /// those pages stay `unknown` (for callers that settle shared objects once, themselves).
    public var fileSide: Bool = true
    /// Which engine asks them.
    public var engine: FileSideEngineChoice = .auto
    /// With `auto`: end the scan at the first wave boundary after the scan turned to the BPF
    /// engine (the current mapping's runs so far handed on and the mapping ended there), so that
    /// `raw` can take the rest without the scanner. `ScanResult.endedAt` says where.
    package var endOnceBPFTakesOver = false
    /// Address space per wave, in pages, where not the default (`ProcessScanner.wavePages`).
    package var wavePages: UInt64?

    public init(range: AddressRange? = nil, view: ReportView = .truth, hugeAndZeroFlags: Bool = true,
                accounting: Bool = false, kernelPageFlags: Bool = false) {
        self.range = range
        self.view = view
        self.hugeAndZeroFlags = hugeAndZeroFlags
        self.accounting = accounting
        self.kernelPageFlags = kernelPageFlags
    }
}

/// Joins a process's kernel views into the true state of every page: /proc/PID/maps for the
/// mappings, /proc/PID/pagemap (batched pread) for the page table, PAGEMAP_SCAN for THP and
/// zero-page flags, and each shared object's page cache through /proc/PID/map_files.
/// Reads metadata only: the target's memory is never read, faulted or swapped in.
/// Large scans are split into chunks that every online core works on.
///
/// A scanner is pinned to one process and one address space: the process through a pidfd and a
/// `/proc/PID` directory descriptor (`ProcessHandle`), the address space through the maps and
/// pagemap descriptors opened together at init. A scan that finds the process exited or its
/// address space replaced (exec, a vfork child's exec) throws instead of answering for another
/// one; mappings that changed while they were read come back `unknown`, with a note.
public final class ProcessScanner {
    public let pid: Int32
    /// The pinned process.
    public let handle: ProcessHandle
    public let pageSize: UInt64
    /// CAP_SYS_ADMIN: PFNs, swap locations, map_files.
    public let privileged: Bool
    let pagemap: Pagemap
    /// /proc/PID/maps, opened with pagemap: both read the same address space.
    private let maps: FileDescriptor
    /// The address space's fingerprint when the descriptors were opened.
    private let identity: AddressSpaceIdentity?
    let scanCategories: PagemapScan.Categories
    let batchPages: Int
    /// Worker threads for large scans (the online cores, at most 8).
    public var workers: Int
    private var kpagecount: Result<KPageTable, PageStatError>?
    private var kpageflags: Result<KPageTable, PageStatError>?

    /// Pages per chunk of page-table work handed to a worker.
    static let chunkPages: UInt64 = 1 << 16
    /// Below this many pages a scan stays on one thread.
    static let parallelThreshold: UInt64 = 1 << 15

    public init(pid: Int32, batchPages: Int = 1 << 16) throws(PageStatError) {
        handle = try ProcessHandle(pid: pid)
        self.pid = pid
        pageSize = UInt64(ProcFS.pageSize)
        privileged = ProcFS.hasSysAdmin()
        // Open both views of the address space between two looks at its fingerprint: equal
        // fingerprints mean no exec came between the opens.
        let views = try Self.openViews(handle)
        pagemap = views.pagemap
        maps = views.maps
        identity = views.identity
        scanCategories = PagemapScan.supportedCategories(fd: pagemap.fileDescriptor)
        self.batchPages = batchPages
        workers = max(1, min(8, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
    }

    deinit { try? maps.close() }

    /// pagemap and maps of one address space, and its fingerprint.
    struct Views: ~Copyable {
        var pagemap: Pagemap
        var maps: FileDescriptor
        var identity: AddressSpaceIdentity?
    }

    /// Opens both views of the address space between two looks at its fingerprint: equal
    /// fingerprints mean no exec came between the opens, and so does every process that shared
    /// the address space before them (a vfork parent) sharing it still after them, where an
    /// exec of the same program left the fingerprint equal. A process caught in the middle of an
    /// exec (its new layout still being set up, as right after posix_spawn returns) is given a
    /// few milliseconds to finish.
    static func openViews(_ handle: ProcessHandle) throws(PageStatError) -> Views {
        var attempt = 0
        while true {
            let before = try handle.identity()
            let sharers = handle.addressSpaceSharers()
            let pagemap = try Pagemap(handle: handle)
            let maps = try handle.open("maps", what: "/proc/\(handle.pid)/maps (needs ptrace read access)")
            var after: AddressSpaceIdentity?
            do { after = try handle.identity() } catch { try? maps.close(); throw error }
            let stillShared = sharers.allSatisfy { handle.sharesAddressSpace(with: $0) != false }
            attempt += 1
            // No fingerprint yet is a layout still being set up, unless it stays so.
            if before == after && stillShared && (after != nil || attempt == 5) {
                after?.sharers = sharers
                return Views(pagemap: pagemap, maps: maps, identity: after)
            }
            try? maps.close()
            if attempt == 5 { throw .addressSpaceReplaced(pid: handle.pid) }
            usleep(2000)
        }
    }

    /// The mappings, read through the descriptor opened with pagemap.
    private func readMappings() throws(PageStatError) -> [Mapping] {
        ProcMaps.parse(maps: try handle.readAll(maps, name: "maps", what: "/proc/\(pid)/maps (needs ptrace read access)"), pid: pid)
    }

    /// Whether the process still has the address space the scanner was opened on; throws the
    /// error that says what became of it.
    private func checkAddressSpace() throws(PageStatError) {
        try handle.checkAddressSpace(identity)
    }

    /// Opens a /proc/kpage* table once; its failure is remembered and said once in the notes.
    private func table(_ cached: inout Result<KPageTable, PageStatError>?, open: () throws(PageStatError) -> KPageTable,
                       notes: inout Notes, name: ScanNote.KPageTable) -> KPageTable? {
        if cached == nil {
            do { cached = .success(try open()) } catch { cached = .failure(error) }
        }
        switch cached! {
        case .success(let table): return table
        case .failure(let error):
            notes.add(.kpageTableUnavailable(name, error))
            return nil
        }
    }

    /// Scans every mapping (or those overlapping `options.range`) into one report.
    public func scan(_ options: ScanOptions = ScanOptions()) throws(PageStatError) -> ProcessReport {
        var collector = ReportCollector()
        let result = try scan(options, into: &collector)
        var report = ProcessReport(pid: pid, pageSize: Int(pageSize), privileged: privileged, view: options.view,
                                   notes: result.notes, mappings: collector.mappings)
        report.timings = result.timings
        return report
    }

    /// Scans every mapping (or those overlapping `options.range`) and hands each one to
    /// `consumer` as soon as it is settled, in address order. Memory is bounded by a wave of
    /// page-table chunks (about 1 GiB of address space), never by a mapping or the whole report.
    public func scan<Consumer: ScanConsumer>(_ options: ScanOptions,
                                             into consumer: inout Consumer) throws(PageStatError) -> ScanResult {
        do {
            return try scanOrFail(options, into: &consumer)
        } catch .noSuchProcess, .processExited {
            throw vanished()
        }
    }

    /// What became of an address space that a read found gone: the process exited, or it
    /// replaced its address space with exec (the descriptors then read nothing).
    func vanished() -> PageStatError {
        handle.vanished(from: identity)
    }

    /// Whether PROCMAP_QUERY answers on the maps descriptor; nil until it was tried.
    private var procmapQuery: Bool?

    /// The mappings of the pinned address space now that overlap `range`, asked one VMA at a
    /// time with PROCMAP_QUERY (Linux 6.11+) on the maps descriptor opened with pagemap: a few
    /// ioctls instead of a read of all of maps. Their paths are empty (not asked for). Nil where
    /// the kernel lacks it; throws what became of the address space if it is gone.
    func mappings(overlapping range: AddressRange) throws(PageStatError) -> [Mapping]? {
        guard procmapQuery != false else { return nil }
        try checkAddressSpace()
        var found: [Mapping] = []
        var address = range.start
        while address < range.end {
            var query = CPagestat_procmap_query()
            query.size = UInt64(MemoryLayout<CPagestat_procmap_query>.size)
            query.query_flags = CPagestat_PROCMAP_QUERY_COVERING_OR_NEXT_VMA
            query.query_addr = address
            guard CPagestat_procmap_query(maps.rawValue, &query) == 0 else {
                let error = Errno(rawValue: errno)
                if error == .noSuchFileOrDirectory { break }  // no mapping at or above
                if procmapQuery == nil && (error.rawValue == ENOTTY || error == .invalidArgument) {
                    procmapQuery = false
                    return nil
                }
                if error == .noSuchProcess { throw vanished() }
                throw .system(call: "ioctl(PROCMAP_QUERY) /proc/\(pid)/maps", errno: error)
            }
            procmapQuery = true
            guard query.vma_start < range.end, query.vma_end > address else { break }
            let flags = query.vma_flags
            let permissions = (flags & 1 != 0 ? "r" : "-") + (flags & 2 != 0 ? "w" : "-")
                + (flags & 4 != 0 ? "x" : "-") + (flags & 8 != 0 ? "s" : "p")
            found.append(Mapping(range: AddressRange(start: query.vma_start, end: query.vma_end), permissions: permissions,
                                 offset: query.vma_offset, deviceMajor: query.dev_major, deviceMinor: query.dev_minor,
                                 inode: query.inode, path: "", kind: query.inode == 0 ? .privateAnon : .file))
            address = query.vma_end
        }
        return found
    }

    /// The mappings of the pinned address space now, read through the maps descriptor opened
    /// with pagemap (for `raw`, which reads pagemap itself); throws what became of it if gone.
    func currentMappings() throws(PageStatError) -> [Mapping] {
        do throws(PageStatError) {
            try checkAddressSpace()
            let mappings = try readMappings()
            if mappings.isEmpty { throw PageStatError.processExited(pid: pid) }
            return mappings
        } catch .noSuchProcess, .processExited {
            throw vanished()
        }
    }

    private func scanOrFail<Consumer: ScanConsumer>(_ options: ScanOptions,
                                                    into consumer: inout Consumer) throws(PageStatError) -> ScanResult {
        var clock = Stopwatch.now()
        var timings: [(phase: String, seconds: Double)] = []
        func lap(_ phase: String) {
            let now = Stopwatch.now()
            timings.append((phase, Double(now - clock) / 1e9))
            clock = now
        }
        // The policy is kept from one scan to the next of this scanner: `raw` scans batch by
        // batch, and its lseek calls add up to what makes the BPF engine pay.
        if policy.choice != options.engine { policy = EnginePolicy(options.engine) }
        // `--engine bpf` that cannot load fails the scan with the reason, whether or not a
        // mapping would have asked it (without root the file side is never reached).
        try policy.beginScan(fileSide: options.view == .truth && options.fileSide)
        try checkAddressSpace()
        var mappings = try readMappings()
        // An address space that has mappings never reads empty: it is gone (exit or exec).
        if mappings.isEmpty { throw .processExited(pid: pid) }
        if let range = options.range {
            mappings = mappings.filter { $0.range.overlaps(range) }
            if mappings.isEmpty { throw .rangeNotMapped(pid: pid, range: range) }
        }
        var notes = Notes()
        if !privileged {
            notes.add(.notPrivileged)
        }
        if !PageCacheObject.cachestatSupported {
            notes.add(.cachestatMissing)
        }
        let tables = kpageTables(options, notes: &notes)
        if options.hugeAndZeroFlags && tables.pfnFlags == nil && !scanCategories.contains([.huge, .pfnZero]) {
            notes.add(.pagemapScanFlagsMissing)
        }
        lap("maps")
        let scanned = mappings.map { mapping in options.range.map { mapping.range.clamped(to: $0) } ?? mapping.range }
        for mapping in mappings where mapping.range.start >= Self.userSpaceEnd {
            notes.add(.aboveUserAddressSpace(mapping: mapping.path.isEmpty ? mapping.range.description : mapping.path))
        }

        func fileSided(_ mapping: Mapping) -> Bool { options.view == .truth && options.fileSide && mapping.kind.hasFileSide }
        // The page tables, in chunks, on every core. Where PAGEMAP_SCAN finds a long stretch
        // with no page-table entries, the stretch is one chunk whatever its size.
        var chunks: [(mapping: Int, range: AddressRange, empty: Bool)] = []
        let waveLimit = options.wavePages ?? Self.wavePages
        for (index, range) in scanned.enumerated() where mappings[index].range.start < Self.userSpaceEnd {
            var start = range.start
            let chunkBytes = Self.chunkPages * pageSize
            let huge = UInt64(PFNFlagSource.hugePages) * pageSize
            while start < range.end {
                if Self.skipsEmpty(mappings[index]) && !scanCategories.isEmpty && range.end - start > chunkBytes {
                    let next = try PagemapScan.firstPopulated(fd: pagemap.fileDescriptor, pid: pid, start: start,
                                                              end: range.end) ?? range.end
                    var aligned = next == range.end ? next : max(start, next - next % huge)
                    if aligned - start >= chunkBytes {
                        // Where the file side may split the stretch (swapped shared pages read
                        // empty), at most a wave of it: the file side asks a wave at a time.
                        if fileSided(mappings[index]) && aligned - start > waveLimit * pageSize {
                            aligned = start + waveLimit * pageSize
                        }
                        chunks.append((index, AddressRange(start: start, end: aligned), true))
                        start = aligned
                        continue
                    }
                }
                var end = range.end - start > chunkBytes ? start + chunkBytes : range.end
                // Chunks end on 2 MiB boundaries: a huge page is seen whole by one worker.
                if end < range.end && end % huge != 0 && end - end % huge > start { end -= end % huge }
                chunks.append((index, AddressRange(start: start, end: end), false))
                start = end
            }
        }
        let totalPages = scanned.reduce(UInt64(0)) { $0 + $1.length / pageSize }
        let threads = totalPages >= Self.parallelThreshold ? min(workers, chunks.count) : 1
        lap("plan")

        // Waves: consecutive chunks, about `wavePages` of address space each, read in parallel,
        // settled, checked against maps and handed on before the next wave is read. A mapping
        // may span waves; each part is settled on its own (a shared object's counts settle a
        // part where they leave no choice).
        let chunksOf = Self.chunkRanges(chunks.map(\.mapping), mappings: mappings.count)
        var waves: [[(mapping: Int, chunks: Range<Int>)]] = [[]]
        var wavePages: UInt64 = 0
        var waveChunks = 0
        for index in mappings.indices {
            let fileSided = fileSided(mappings[index])
            var start = chunksOf[index].lowerBound
            repeat {
                var end = start
                while end < chunksOf[index].upperBound {
                    // An empty stretch found by PAGEMAP_SCAN costs one run, whatever its size,
                    // unless the file side may split it (swapped shared pages read empty).
                    wavePages += chunks[end].empty && !fileSided ? 1 : chunks[end].range.length / pageSize
                    waveChunks += 1
                    end += 1
                    if wavePages >= waveLimit || waveChunks >= Self.waveChunks { break }
                }
                waves[waves.count - 1].append((index, start..<end))
                start = end
                if wavePages >= waveLimit || waveChunks >= Self.waveChunks {
                    waves.append([])
                    wavePages = 0
                    waveChunks = 0
                }
            } while start < chunksOf[index].upperBound
        }

        var special: UInt64 = 0
        var changedMappings = Set<Int>()
        /// The last run of a mapping that goes on in the next wave, held back so that no run is
        /// split between two hand-overs.
        var carry: PageRun?
        var readSeconds = 0.0
        var settleSeconds = 0.0
        /// The memory use of the mapping being handed on, and its mapcount sums (PSS, USS).
        var use: MemoryUse?
        var mapcountsOfMapping: MemoryUse?
        var objectCounts = ObjectCountCache(mappings: mappings)
        /// Whether a mapping has begun and not ended (a wave boundary inside it), and where the
        /// scan ended early (`endOnceBPFTakesOver`).
        var mappingOpen = false
        var endedAt: UInt64?
        for wave in waves where !wave.isEmpty {
            if options.endOnceBPFTakesOver && policy.turnedToBPF {
                if mappingOpen {
                    if let held = carry { consumer.runs([held]) }
                    consumer.end(use: nil)
                }
                endedAt = carry.map { $0.start + $0.pages * pageSize } ?? chunks[wave[0].chunks.lowerBound].range.start
                break
            }
            var clock = Stopwatch.now()
            let waveChunkIndices = wave.flatMap { Array($0.chunks) }
            var chunkResults = try parallelMap(count: waveChunkIndices.count, threads: min(threads, waveChunkIndices.count),
                                               makeWorker: makeWorker) {
                (worker: PageTableWorker, position: Int) throws(PageStatError) -> ([PageRun], MemoryUse?) in
                let chunk = chunks[waveChunkIndices[position]]
                let mapping = mappings[chunk.mapping]
                var pass = PageTablePass(decoder: PagemapDecoder(kind: mapping.kind, shared: mapping.isShared,
                                                                 privileged: privileged, view: options.view))
                if options.hugeAndZeroFlags {
                    if let source = tables.pfnFlags {
                        pass.flagsFromPFNs = source
                    } else {
                        pass.extra = try worker.hugeAndZeroRegions(chunk.range)
                    }
                }
                pass.counts = tables.counts
                pass.flags = tables.flags
                pass.skipEmpty = Self.skipsEmpty(mapping)
                if pass.counts != nil { pass.use = MemoryUse() }
                var builder = RunBuilder(pageSize: pageSize)
                try worker.readPageTable(chunk.range, pass: &pass, into: &builder)
                return (builder.runs, pass.use)
            }
            // Each piece of the wave as a report of the stretch it covers; chunks joined where a
            // run goes on across a boundary.
            var reports: [MappingReport] = []
            var mapcounts: [MemoryUse?] = []
            var position = 0
            for (pieceIndex, piece) in wave.enumerated() {
                let index = piece.mapping
                let mapping = mappings[index]
                var pieceCounts: MemoryUse? = tables.counts != nil ? MemoryUse() : nil
                var builder = RunBuilder(pageSize: pageSize)
                var runs: [PageRun] = []
                if piece.chunks.count > 1 || carry != nil {
                    var total = pieceIndex == 0 && carry != nil ? 1 : 0
                    for offset in 0..<piece.chunks.count { total += chunkResults[position + offset].0.count }
                    builder.reserveCapacity(total)
                }
                // The run held back at the end of the last wave opens this one (settled already).
                if pieceIndex == 0, let held = carry { builder.append(held) }
                carry = nil
                for _ in piece.chunks {
                    if let chunkUse = chunkResults[position].1 { pieceCounts?.merge(mapcounts: chunkUse) }
                    // Moved out, so that a fragmented scan never holds its runs twice.
                    let chunkRuns = chunkResults[position].0
                    chunkResults[position].0 = []
                    if builder.runs.isEmpty && runs.isEmpty && piece.chunks.count == 1 {
                        runs = chunkRuns
                    } else {
                        builder.append(contentsOf: chunkRuns)
                    }
                    position += 1
                }
                if !builder.runs.isEmpty { runs = builder.runs }
                if mapping.range.start >= Self.userSpaceEnd {
                    runs = [PageRun(start: scanned[index].start, pages: scanned[index].length / pageSize, state: .unknown, flags: [])]
                }
                let start = runs.first?.start ?? scanned[index].start
                let end = runs.last.map { $0.start + $0.pages * pageSize } ?? scanned[index].start
                reports.append(MappingReport(mapping: mapping, scanned: AddressRange(start: start, end: end), runs: runs))
                mapcounts.append(pieceCounts)
            }
            special += reports.reduce(UInt64(0)) { total, report in
                report.runs.reduce(total) { $0 + ($1.state == .unknown && $1.flags.contains(.nonSwapEntry) ? $1.pages : 0) }
            }
            // Mappings that changed while their page tables were read: their answers may be of
            // another mapping.
            try checkAddressSpace()
            let now = try readMappings()
            if now.isEmpty { throw .processExited(pid: pid) }
            for (index, standing) in Self.standing(reports.map(\.mapping), now: now).enumerated() {
                if let standing {
                    // The same object under a new name (renamed, unlinked): opened by the name
                    // maps gives it now, where it is opened by path.
                    reports[index].mapping.path = now[standing].path
                    continue
                }
                changedMappings.insert(wave[index].mapping)
                let part = reports[index].scanned
                reports[index].runs = [PageRun(start: part.start, pages: part.length / pageSize, state: .unknown, flags: [])]
            }
            readSeconds += Double(Stopwatch.now() - clock) / 1e9
            clock = Stopwatch.now()
            // hugetlb mappings first, in whole huge pages and without a mapping of our own.
            try HugetlbSide.settle(&reports, pageSize: pageSize, enabled: options.fileSide, notes: &notes, open: openObject) {
                (mapping, hugePageSize) throws(PageStatError) -> [Range<UInt64>]? in
                try mappedHugePages(of: ObjectID(mapping), in: mappings, hugePageSize: hugePageSize)
            }
            // Then each piece in order: the file side of what the page tables left open, handed
            // on as it is settled, a run never split between two hand-overs.
            for (pieceIndex, piece) in wave.enumerated() {
                let index = piece.mapping
                if piece.chunks.lowerBound == chunksOf[index].lowerBound {
                    consumer.begin(mappings[index], scanned: scanned[index])
                    mappingOpen = true
                    use = options.accounting ? MemoryUse() : nil
                    mapcountsOfMapping = tables.counts != nil ? MemoryUse() : nil
                }
                if let pieceCounts = mapcounts[pieceIndex] { mapcountsOfMapping?.merge(mapcounts: pieceCounts) }
                var out = RunBuilder(pageSize: pageSize)
                func handOver(_ out: inout RunBuilder, keepingLast: Bool) {
                    let runs = out.take(keepingLast: keepingLast)
                    // A full batch: the next one will be full too, so grow the builder once.
                    if keepingLast && runs.count >= Self.handOverRuns - 1 { out.reserveCapacity(2 * Self.handOverRuns) }
                    guard !runs.isEmpty else { return }
                    if use != nil { for run in runs { use!.add(run, pageSize: pageSize) } }
                    consumer.runs(runs)
                }
                let report = reports[pieceIndex]
                reports[pieceIndex].runs = []
                try settle(report, all: mappings, counts: &objectCounts, enabled: options.fileSide, notes: &notes,
                           into: &out) { handOver(&$0, keepingLast: true) }
                if piece.chunks.upperBound == chunksOf[index].upperBound {
                    handOver(&out, keepingLast: false)
                    use?.finish(mapcounts: mapcountsOfMapping, shmem: mappings[index].kind.isShmem)
                    consumer.end(use: use)
                    mappingOpen = false
                } else {
                    handOver(&out, keepingLast: true)
                    carry = out.runs.last
                }
            }
            settleSeconds += Double(Stopwatch.now() - clock) / 1e9
        }
        timings.append(("page table", readSeconds))
        timings.append(("file side", settleSeconds))
        if special > 0 {
            notes.add(.nonSwapEntries(pages: UInt64(special)))
        }
        if !changedMappings.isEmpty {
            notes.add(.mappingsChanged(count: changedMappings.count))
        }
        var result = ScanResult(notes: notes.all, timings: timings)
        result.endedAt = endedAt
        return result
    }

    /// Address space per wave, in pages (512 MiB), and chunks per wave: a wave where every other
    /// page differs holds 128 Ki runs (4 MiB), and the BPF engine's walk of it as much again.
    static let wavePages: UInt64 = 1 << 17
    static let waveChunks = 1 << 16
    /// Settled runs are handed on in batches of about this many.
    static let handOverRuns = 1 << 14

    /// For each mapping, the range of its chunks in `owners` (the mapping of each chunk, in order).
    static func chunkRanges(_ owners: [Int], mappings: Int) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(mappings)
        var cursor = 0
        for index in 0..<mappings {
            let start = cursor
            while cursor < owners.count && owners[cursor] == index { cursor += 1 }
            ranges.append(start..<cursor)
        }
        return ranges
    }

    /// Mappings at or above this address lie outside what pagemap covers ([vsyscall]).
    static let userSpaceEnd: UInt64 = 1 << 63

    /// Whether empty stretches of a mapping may be skipped with PAGEMAP_SCAN: not on device
    /// mappings (VM_PFNMAP and VM_IO pages are not walked by PAGEMAP_SCAN) or special ones.
    static func skipsEmpty(_ mapping: Mapping) -> Bool {
        mapping.kind != .special && !(mapping.kind == .file && mapping.path.hasPrefix("/dev/"))
    }

    /// Indices of `before` whose line no longer stands in `now` (both in address order).
    /// A mapping stands when one mapping of `now` still covers all of it the same way: the same
    /// permissions, object (device, inode) and offset at its start (`Mapping.covers`). One that
    /// only grew, or merged with a new neighbour, or whose file was renamed, still maps the same
    /// pages the same way; one unmapped, moved, shrunk, reprotected or replaced does not.
    static func changedMappings(_ before: [Mapping], now: [Mapping]) -> [Int] {
        let found = standing(before, now: now)
        return found.indices.filter { found[$0] == nil }
    }

    /// For each mapping of `before`, the index of the mapping of `now` that covers it the same
    /// way (see `changedMappings`), or nil where it changed.
    static func standing(_ before: [Mapping], now: [Mapping]) -> [Int?] {
        var found: [Int?] = []
        found.reserveCapacity(before.count)
        var cursor = 0
        for mapping in before {
            // The last mapping of `now` that starts at or below this one's start.
            while cursor + 1 < now.count && now[cursor + 1].range.start <= mapping.range.start { cursor += 1 }
            found.append(cursor < now.count && now[cursor].covers(mapping) ? cursor : nil)
        }
        return found
    }

    private func makeWorker() -> PageTableWorker {
        PageTableWorker(pid: pid, pageSize: pageSize, pagemap: pagemap.fileDescriptor, scanCategories: scanCategories,
                        batchPages: batchPages)
    }

    /// kpagecount and kpageflags, opened before the workers start, when the options need them.
    private func kpageTables(_ options: ScanOptions, notes: inout Notes)
        -> (counts: KPageTable?, flags: KPageTable?, pfnFlags: PFNFlagSource?) {
        var counts: KPageTable?
        var flags: KPageTable?
        var pfnFlags: PFNFlagSource?
        if options.hugeAndZeroFlags && privileged, let zeroPFN = PFNFlagSource.zeroPageFrame,
           let table = table(&kpageflags, open: KPageTable.kpageflags, notes: &notes, name: .kpageflags) {
            pfnFlags = PFNFlagSource(zeroPFN: zeroPFN, kpageflags: table, pageSize: pageSize)
        }
        if options.accounting && options.proportional && privileged {
            counts = table(&kpagecount, open: KPageTable.kpagecount, notes: &notes, name: .kpagecount)
        }
        if options.kernelPageFlags {
            if privileged {
                flags = table(&kpageflags, open: KPageTable.kpageflags, notes: &notes, name: .kpageflags)
            } else {
                notes.add(.kpageflagsNeedRoot)
            }
        }
        return (counts, flags, pfnFlags)
    }

    // MARK: file side

    /// Emits the runs of `report` (a mapping, or a piece of one) in order, each pending run
    /// replaced by what its object's page cache says. Shared memory mapped whole is first settled
    /// from the object's counts where they leave no doubt. Where the object cannot be opened or
    /// asked, pending pages are `unknown` and a note says why.
    private func settle(_ report: MappingReport, all mappings: [Mapping], counts objectCounts: inout ObjectCountCache,
                        enabled: Bool, notes: inout Notes, into out: inout RunBuilder,
                        handOver: (inout RunBuilder) -> Void) throws(PageStatError) {
        func emit(_ run: PageRun) {
            out.append(run)
            if out.runs.count >= Self.handOverRuns { handOver(&out) }
        }
        let mapping = report.mapping
        let pendingPages = report.runs.reduce(UInt64(0)) { $0 + ($1.flags.contains(.pendingFileSide) ? $1.pages : 0) }
        // hugetlb pages were settled (or left unknown, with their note) by HugetlbSide.
        guard enabled, pendingPages > 0, mapping.kind != .hugetlb else {
            for var run in report.runs {
                run.flags.remove(.pendingFileSide)
                emit(run)
            }
            return
        }
        var fileSide: (any PageCacheEngine)?
        var settledAs: PageState?
        do throws(PageStatError) {
            let object = try openObject(mapping)
            guard object.residencyVisible else { throw PageStatError.permissionDenied(what: "residency") }
            var mode = FileSide.DataMode.perPage
            var bpf = false
            if policy.choice == .bpf {
                // Asked for: every page from the xarray, swap locations included.
                bpf = try policy.bpfFromStart(for: object, notes: &notes)
            } else {
                // The object's counts settle pages without walking them (but know no swap
                // locations); where they leave pages to ask one by one, `auto` weighs the BPF
                // engine's load against the lseek calls of that many stretches.
                if let shortcut = objectCounts.shortcut(report: report, object: object, pageSize: pageSize,
                                                        presentPages: presentPages) {
                    switch shortcut {
                    case .all(let state): settledAs = state
                    case .data(let dataMode): mode = dataMode
                    }
                }
                if settledAs == nil { bpf = try policy.bpfFromStart(for: object, notes: &notes) }
            }
            if settledAs == nil {
                let engine = policy.engine(for: object, bpf: bpf, dataMode: mode)
                var span: Range<UInt64>?
                var long: [(first: UInt64, pages: UInt64)] = []
                for run in report.runs where run.flags.contains(.pendingFileSide) {
                    let first = (mapping.offset + (run.start - mapping.range.start)) / pageSize
                    span = (span?.lowerBound ?? first)..<(first + run.pages)
                    if run.pages >= SyscallFileSide.countedStretchPages { long.append((first, run.pages)) }
                }
                try engine.prepare(span: span ?? 0..<0, long: long)
                fileSide = engine
            }
        } catch {
            if error == .processExited(pid: pid) { throw error }
            // `--engine bpf` where the BPF engine cannot load: the scan fails, with the reason.
            if policy.choice == .bpf, case .unsupported = error { throw error }
            notes.add(unknownReason(error, mapping: mapping))
        }
        let runs = report.runs
        /// Pages still to ask in this piece: what `auto` projects its lseek calls over.
        var pendingLeft = runs.reduce(UInt64(0)) { $1.flags.contains(.pendingFileSide) ? $0 + $1.pages : $0 }
        for index in runs.indices {
            var run = runs[index]
            guard run.flags.contains(.pendingFileSide) else {
                emit(run)
                continue
            }
            run.flags.remove(.pendingFileSide)
            if let settledAs {
                run.state = settledAs
                emit(run)
                continue
            }
            guard let engine = fileSide else {
                emit(run)  // unknown, with the note that says why
                continue
            }
            let end = run.start + run.pages * pageSize
            var next = run.start
            do throws(PageStatError) {
                // The engine is asked a stretch at a time: the BPF engine a whole run, the
                // syscalls engine in stretches of at most 64 Ki pages (4 Ki while `auto` is still
                // weighing), so that `auto` can turn to the BPF engine as soon as lseek has
                // cost, or is on course to cost, about what its load does.
                var current = engine
                while next < end {
                    let first = (mapping.offset + (next - mapping.range.start)) / pageSize
                    if let turned = policy.turn(from: current, pendingPages: pendingLeft, notes: &notes) {
                        let last = runs.last.map { mapping.offset + ($0.start + $0.pages * pageSize - mapping.range.start) } ?? 0
                        try turned.prepare(span: first..<last / pageSize, long: [])
                        current = turned
                        fileSide = turned
                    }
                    let pages = current.knowsSwapLocations ? (end - next) / pageSize : min((end - next) / pageSize, policy.stretchPages)
                    try current.resolve(first: first, count: pages, at: next, flags: run.flags, into: &out)
                    next += pages * pageSize
                    if !current.knowsSwapLocations {
                        pendingLeft -= pages
                        policy.asked(pages)
                    }
                    if out.runs.count >= Self.handOverRuns { handOver(&out) }
                }
            } catch {
                if error == .processExited(pid: pid) { throw error }
                let label = mapping.path.isEmpty ? mapping.range.description : mapping.path
                notes.add(.fileSideFailed(mapping: label, error))
                fileSide = nil
                // What the engine appended before it failed stands.
                if let last = out.runs.last, last.start + last.pages * pageSize > next { next = last.start + last.pages * pageSize }
                if next < end { emit(PageRun(start: next, pages: (end - next) / pageSize, state: .unknown, flags: run.flags)) }
            }
        }
        if let engine = fileSide { policy.finished(engine) }
    }

    /// Which engine answers for the scan's file side (`ScanOptions.engine`), and what `auto`
    /// has weighed so far in this scanner's scans.
    private var policy = EnginePolicy(.auto)
    /// The BPF engine, where this scanner has already loaded it (an `auto` scan turned to it).
    package var loadedWalker: XArrayWalker? { policy.loadedWalker }
    /// lseek calls on shared memory that cost about what the BPF engine's load does.
    static var bpfPaysLseeks: Int { EnginePolicy.bpfPaysLseeks }

    /// The present pages of `mapping` in the page table (PAGEMAP_SCAN, present), or nil without
    /// PAGEMAP_SCAN: cheaper than a wave's page-table read, as it copies out regions, not entries.
    private func presentPages(_ mapping: Mapping) -> UInt64? {
        guard scanCategories.contains(.present) else { return nil }
        let buffer = UnsafeMutableBufferPointer<PagemapScan.Region>.allocate(capacity: 1024)
        defer { buffer.deallocate() }
        var present: UInt64 = 0
        do {
            try PagemapScan.scan(fd: pagemap.fileDescriptor, pid: pid, start: mapping.range.start, end: mapping.range.end,
                                 allOf: [.present], anyOf: [], returnMask: [.present], buffer: buffer) { regions in
                for region in regions { present += (region.end - region.start) / pageSize }
            }
        } catch {
            return nil
        }
        return present
    }

    /// The huge pages (object indices) of hugetlb object `id` that the process maps as file
    /// pages, in any of its mappings of it: PAGEMAP_SCAN (present and file) over each whole
    /// mapping. nil without PAGEMAP_SCAN.
    private func mappedHugePages(of id: ObjectID, in mappings: [Mapping], hugePageSize: UInt64) throws(PageStatError) -> [Range<UInt64>]? {
        guard scanCategories.contains([.present, .file]) else { return nil }
        let buffer = UnsafeMutableBufferPointer<PagemapScan.Region>.allocate(capacity: 1024)
        defer { buffer.deallocate() }
        var ranges: [Range<UInt64>] = []
        for mapping in mappings where mapping.kind == .hugetlb && ObjectID(mapping) == id {
            try PagemapScan.scan(fd: pagemap.fileDescriptor, pid: pid, start: mapping.range.start, end: mapping.range.end,
                                 allOf: [.present, .file], anyOf: [], returnMask: [.present], buffer: buffer) { regions in
                for region in regions {
                    ranges.append(HugetlbSide.hugePages(mapping, AddressRange(start: region.start, end: region.end),
                                                        hugePageSize: hugePageSize))
                }
            }
        }
        return HugetlbSide.merged(ranges)
    }

    /// The object behind a mapping: /proc/PID/map_files when privileged, else the mapped path if
    /// it still names the very same inode; never a device or FIFO (see `PageCacheObject.open`).
    func openObject(_ mapping: Mapping) throws(PageStatError) -> PageCacheObject {
        try PageCacheObject.open(mapping: mapping, pid: pid)
    }

    private func unknownReason(_ error: PageStatError, mapping: Mapping) -> ScanNote {
        let pages: ScanNote.FileSidePages = mapping.kind.isShmem ? .sharedSwappedOrCached : .fileCached
        switch error {
        case .permissionDenied(what: "residency"): return .residencyHidden(pages)
        case .permissionDenied: return .mapFilesNeedsSysAdmin(pages, pid: pid)
        case .objectChanged(let message): return .objectChanged(pages, range: mapping.range, detail: message)
        default: return .objectNotOpened(pages, error)
        }
    }

}
