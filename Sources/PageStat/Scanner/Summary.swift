/// Per-mapping and per-process memory use, checked against the kernel's own smaps counters.
public struct SummaryReport: Sendable {
    public var report: ProcessReport
    /// Disagreements with /proc/PID/smaps (Rss, Pss, Swap), one line each, naming the mapping.
    public var warnings: [String]

    public var totals: MemoryUse {
        var total = MemoryUse.zero
        for mapping in report.mappings { if let use = mapping.use { total += use } }
        if !report.privileged { total.pss = nil; total.uss = nil }
        return total
    }

    /// Scans a process with accounting (and kernel page flags when asked), then compares each
    /// mapping's RSS, PSS and swap with smaps at its kB granularity.
    public static func make(pid: Int32, kernelPageFlags: Bool = false,
                            engine: FileSideEngineChoice = .auto) throws(PageStatError) -> SummaryReport {
        let scanner = try ProcessScanner(pid: pid)
        var options = ScanOptions(accounting: true, kernelPageFlags: kernelPageFlags)
        options.engine = engine
        let report = try scanner.scan(options)
        do {
            let smaps = try ProcMaps.readSmaps(pid: pid)
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
