#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

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
    package let handle: ProcessHandle
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
    package var workers: Int
    var kpagecount: Result<KPageTable, PageStatError>?
    var kpageflags: Result<KPageTable, PageStatError>?

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
    func readMappings() throws(PageStatError) -> [Mapping] {
        ProcMaps.parse(maps: try handle.readAll(maps, name: "maps", what: "/proc/\(pid)/maps (needs ptrace read access)"), pid: pid)
    }

    /// Whether the process still has the address space the scanner was opened on; throws the
    /// error that says what became of it.
    func checkAddressSpace() throws(PageStatError) {
        try handle.checkAddressSpace(identity)
    }

    /// Opens a /proc/kpage* table once; its failure is remembered and said once in the notes.
    func table(_ cached: inout Result<KPageTable, PageStatError>?, open: () throws(PageStatError) -> KPageTable,
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
        // The policy (and the walker it loaded) is kept from one scan to the next of this
        // scanner: `raw` scans batch by batch.
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
        let waveLimit = options.wavePages ?? Self.wavePages
        let chunks = try planChunks(mappings, scanned: scanned, waveLimit: waveLimit, fileSided: fileSided)
        let totalPages = scanned.reduce(UInt64(0)) { $0 + $1.length / pageSize }
        let threads = totalPages >= Self.parallelThreshold ? min(workers, chunks.count) : 1
        lap("plan")

        // Waves: consecutive chunks, about `wavePages` of address space each, read in parallel,
        // settled, checked against maps and handed on before the next wave is read. A mapping
        // may span waves; each part is settled on its own (a shared object's counts settle a
        // part where they leave no choice).
        let chunksOf = Self.chunkRanges(chunks.map(\.mapping), mappings: mappings.count)
        let waves = planWaves(chunks, chunksOf: chunksOf, mappings: mappings, waveLimit: waveLimit, fileSided: fileSided)

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
        for wave in waves where !wave.isEmpty {
            var clock = Stopwatch.now()
            let read = try readWave(wave, chunks: chunks, mappings: mappings, scanned: scanned, options: options,
                                    tables: tables, threads: threads, carry: &carry)
            var reports = read.reports
            let mapcounts = read.mapcounts
            special += reports.reduce(UInt64(0)) { total, report in
                report.runs.reduce(total) { $0 + ($1.state == .unknown && $1.flags.contains(.nonSwapEntry) ? $1.pages : 0) }
            }
            // Mappings that changed while their page tables were read: their answers may be of
            // another mapping.
            for index in try unstandingPieces(&reports) { changedMappings.insert(wave[index].mapping) }
            readSeconds += Double(Stopwatch.now() - clock) / 1e9
            clock = Stopwatch.now()
            // hugetlb mappings first, in whole huge pages and without a mapping of our own.
            let hugetlbPending = options.fileSide && reports.contains { report in
                report.mapping.kind == .hugetlb && report.runs.contains { $0.flags.contains(.pendingFileSide) }
            }
            try HugetlbSide.settle(&reports, pageSize: pageSize, enabled: options.fileSide,
                                   walker: hugetlbPending ? try policy.sharedMemoryWalker(notes: &notes) : nil,
                                   notes: &notes, open: openObject) {
                (mapping, hugePageSize) throws(PageStatError) -> [Range<UInt64>]? in
                try mappedHugePages(of: ObjectID(mapping), in: mappings, hugePageSize: hugePageSize)
            }
            // Then each piece in order: the file side of what the page tables left open, handed
            // on as it is settled, a run never split between two hand-overs.
            for (pieceIndex, piece) in wave.enumerated() {
                let index = piece.mapping
                if piece.chunks.lowerBound == chunksOf[index].lowerBound {
                    consumer.begin(mappings[index], scanned: scanned[index])
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
        return ScanResult(notes: notes.all, timings: timings)
    }

    /// Address space per wave, in pages (512 MiB), and chunks per wave: a wave where every other
    /// page differs holds 128 Ki runs (4 MiB), and the BPF engine's walk of it as much again.
    static let wavePages: UInt64 = 1 << 17
    static let waveChunks = 1 << 16
    /// Settled runs are handed on in batches of about this many.
    static let handOverRuns = 1 << 14

    /// Which engine answers for the scan's file side (`ScanOptions.engine`), and the walker it
    /// loaded, kept between this scanner's scans.
    var policy = EnginePolicy(.auto)

    /// The BPF walker that reads the page cache of shared memory under `engine` (`EnginePolicy`):
    /// loaded, or nil for `syscalls` and for `auto` where it cannot load (the note says why);
    /// `bpf` that cannot load throws the reason.
    package func sharedMemoryWalker(engine: FileSideEngineChoice, notes: inout Notes) throws(PageStatError) -> XArrayWalker? {
        if policy.choice != engine { policy = EnginePolicy(engine) }
        return try policy.sharedMemoryWalker(notes: &notes)
    }
}
