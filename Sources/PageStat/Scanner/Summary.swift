extension SummaryReport {
    /// Scans a process with accounting (and kernel page flags when asked), then compares each
    /// mapping's RSS, PSS and swap with smaps at its kB granularity. The scan is streamed and each
    /// mapping's runs are added up as they come (`RunTotals`): a mapping's `runs` are its pages by
    /// state and flags, one run each, so memory is bounded by the scan in flight, never by the
    /// number of runs.
    public static func make(pid: Int32, kernelPageFlags: Bool = false,
                            engine: FileSideEngineChoice = .auto) throws(PageStatError) -> SummaryReport {
        let scanner = try ProcessScanner(pid: pid)
        var options = ScanOptions(accounting: true, kernelPageFlags: kernelPageFlags)
        options.engine = engine
        var totals = RunTotals(pageSize: scanner.pageSize)
        let result = try scanner.scan(options, into: &totals)
        var report = ProcessReport(pid: scanner.pid, pageSize: Int(scanner.pageSize), privileged: scanner.privileged,
                                   view: options.view, notes: result.notes, mappings: totals.mappings)
        report.timings = result.timings
        do {
            let smaps = try ProcMaps.readSmaps(scanner.handle)
            return SummaryReport(report: report, warnings: disagreements(report, smaps: smaps))
        } catch {
            return SummaryReport(report: report, warnings: ["smaps could not be read (\(error)): Rss, Pss and Swap are not cross-checked"])
        }
    }

    /// The lines where our counts and smaps' differ.
    static func disagreements(_ report: ProcessReport, smaps: [ProcMaps.SmapsEntry]) -> [String] {
        var byStart: [UInt64: ProcMaps.SmapsEntry] = [:]
        for entry in smaps { byStart[entry.range.start] = entry }
        var warnings: [String] = []
        for mapping in report.mappings {
            guard let use = mapping.use, let entry = byStart[mapping.mapping.range.start],
                  entry.range == mapping.mapping.range else { continue }
            var checks: [(String, UInt64, UInt64)] = [("Rss", use.rss, entry["Rss"]), ("Swap", use.swap, entry["Swap"])]
            if let pss = use.pss { checks.append(("Pss", pss, entry["Pss"])) }
            let label = mapping.mapping.path.isEmpty ? "[anonymous]" : mapping.mapping.path
            for (counter, ours, theirs) in checks where ours / 1024 != theirs / 1024 {
                warnings.append("\(mapping.mapping.range) \(label): \(counter) \(ours / 1024) kB here, smaps says \(theirs / 1024) kB")
            }
        }
        return warnings
    }
}

/// Collects a streamed scan as `summary` needs it: each mapping's pages added up by state, flags
/// and kernel flags, never its runs. A mapping's `runs` come out one per such combination, in the
/// order first seen, laid end to end from the start of what was scanned: they cover it exactly
/// and count its pages, but are no layout (`show` has that).
struct RunTotals: ScanConsumer {
    private(set) var mappings: [MappingReport] = []
    private let pageSize: UInt64
    private struct Key: Hashable {
        var state: PageState
        var flags: PageFlags
        var kernelFlags: KPageFlags?
    }
    private var pages: [Key: UInt64] = [:]
    private var order: [Key] = []

    init(pageSize: UInt64) { self.pageSize = pageSize }

    mutating func begin(_ mapping: Mapping, scanned: AddressRange) {
        mappings.append(MappingReport(mapping: mapping, scanned: scanned, runs: []))
    }

    mutating func runs(_ runs: [PageRun]) {
        for run in runs {
            let key = Key(state: run.state, flags: run.flags, kernelFlags: run.kernelFlags)
            if pages[key] == nil { order.append(key) }
            pages[key, default: 0] += run.pages
        }
    }

    mutating func end(use: MemoryUse?) {
        var start = mappings[mappings.count - 1].scanned.start
        var runs: [PageRun] = []
        runs.reserveCapacity(order.count)
        for key in order {
            let count = pages[key] ?? 0
            runs.append(PageRun(start: start, pages: count, state: key.state, flags: key.flags, kernelFlags: key.kernelFlags))
            start += count * pageSize
        }
        mappings[mappings.count - 1].runs = runs
        mappings[mappings.count - 1].use = use
        pages.removeAll(keepingCapacity: true)
        order.removeAll(keepingCapacity: true)
    }
}
