#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// Reading a wave: its chunks' page tables in parallel (`PageTableWorker`), joined into one
/// report per piece of a mapping, before the file side settles them.
extension ProcessScanner {
    /// Reads the page tables of `wave`'s chunks on up to `threads` threads and joins them into a
    /// report per piece (a mapping, or its part in this wave), with the piece's mapcount sums.
    /// `carry`, the last run of the previous wave held back, opens the first piece.
    func readWave(_ wave: Wave, chunks: [Chunk], mappings: [Mapping], scanned: [AddressRange], options: ScanOptions,
                  tables: (counts: KPageTable?, flags: KPageTable?, pfnFlags: PFNFlagSource?), threads: Int,
                  carry: inout PageRun?) throws(PageStatError) -> (reports: [MappingReport], mapcounts: [MemoryUse?]) {
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
                    builder.append(built: chunkRuns)
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
        return (reports, mapcounts)
    }

    func makeWorker() -> PageTableWorker {
        PageTableWorker(pid: pid, pageSize: pageSize, pagemap: pagemap.fileDescriptor, scanCategories: scanCategories,
                        batchPages: batchPages)
    }

    /// kpagecount and kpageflags, opened before the workers start, when the options need them.
    func kpageTables(_ options: ScanOptions, notes: inout Notes)
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
}
