import Dispatch
import PageStat
import Prometheus

/// What the exporter serves: one scan of the machine at a time, its exposition reused for
/// `minInterval` seconds. A scrape that arrives while a scan runs waits for that scan instead of
/// starting another, so any number of concurrent scrapes cost one scan.
actor ScrapeCache {
    struct Settings: Sendable {
        var grouping: TopGrouping
        var objects: Int
        var minInterval: Double
    }

    private let settings: Settings
    private var latest: (body: [UInt8], at: UInt64)?
    private var running: Task<[UInt8], Never>?
    // The exporter's own counters, carried from scan to scan.
    private var scans = 0
    private var scrapes = 0
    private var refused: [Int: Int] = [:]
    private var lastDuration = 0.0

    init(settings: Settings) {
        self.settings = settings
    }

    /// The exposition to answer a scrape with: the last one if it is recent enough, else the
    /// running scan's, else a new scan's.
    func exposition() async -> [UInt8] {
        scrapes += 1
        if let latest, Double(Stopwatch.now() - latest.at) / 1e9 < settings.minInterval { return latest.body }
        if let running { return await running.value }
        let task = Task { await self.scan() }
        running = task
        let body = await task.value
        running = nil
        return body
    }

    /// A request the exporter refused (404, 405): counted in the errors metric.
    func refusedRequest(status: Int) { refused[status, default: 0] += 1 }

    /// Scans the machine on a thread of its own (the scan blocks: it reads /proc), then renders.
    private func scan() async -> [UInt8] {
        let settings = self.settings
        let start = Stopwatch.now()
        let report = await withCheckedContinuation { (continuation: CheckedContinuation<TopReport, Never>) in
            DispatchQueue.global().async { continuation.resume(returning: SystemScanner.top()) }
        }
        let families = FleetMetrics.families(report, by: settings.grouping, objects: settings.objects, swapAreas: SwapArea.active())
        lastDuration = Double(Stopwatch.now() - start) / 1e9
        scans += 1
        let body = render(families)
        latest = (body, Stopwatch.now())
        return body
    }

    /// The families and the exporter's own metrics through a registry of their own: each scan
    /// starts from an empty registry, so a cgroup or object that went away leaves no stale series.
    private func render(_ families: [Prometheus.Family]) -> [UInt8] {
        let registry = PrometheusCollectorRegistry()
        for family in families where !family.samples.isEmpty {
            let descriptor = MetricNameDescriptor(metricName: family.name, unitName: "", helpText: family.help)
            for sample in family.samples {
                registry.makeGauge(descriptor: descriptor, labels: sample.labels).set(sample.value)
            }
        }
        func counter(_ name: String, _ help: String, _ labels: [(String, String)] = [], _ value: Int) {
            registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "total", helpText: help), labels: labels)
                .increment(by: Int64(value))
        }
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "pagestat_exporter_scan_duration", unitName: "seconds",
                                                            helpText: "How long the last scan of the machine took."))
            .set(lastDuration)
        counter("pagestat_exporter_scans", "Scans of the machine since the exporter started.", [], scans)
        counter("pagestat_exporter_scrapes", "Scrapes of /metrics answered since the exporter started (shared scans and reused results included).", [], scrapes)
        for status in [404, 405] {
            counter("pagestat_exporter_errors", "Requests refused since the exporter started, by HTTP status.", [("code", String(status))], refused[status] ?? 0)
        }
        return registry.emitToBuffer()
    }
}
