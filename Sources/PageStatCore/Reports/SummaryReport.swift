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

    public init(report: ProcessReport, warnings: [String]) {
        self.report = report
        self.warnings = warnings
    }
}

extension MemoryUse {
    /// A sum to add to: PSS and USS start at zero and turn nil if any part lacks them.
    public static var zero: MemoryUse {
        var use = MemoryUse()
        use.pss = 0
        use.uss = 0
        return use
    }
}
