import Dispatch
import PageStat
import PageStatRender
import Prometheus

/// What the exporter serves: one scan of the machine at a time, its exposition reused for
/// `minInterval` seconds. A scrape that arrives while a scan runs waits for that scan instead of
/// starting another, so any number of concurrent scrapes cost one scan.
actor ScrapeCache {
    struct Settings: Sendable {
        var grouping: TopGrouping
        var objects: Int
        var minInterval: Double
        var proportional: Bool
    }

    private let settings: Settings
    private var latest: (body: [UInt8], at: UInt64)?
    private var running: Task<[UInt8], Never>?
    /// The exporter's own metrics, live: rendered with every answer, never cached.
    private let own = PrometheusCollectorRegistry()
    private let scans: Counter
    private let scrapes: Counter
    private let duration: Gauge

    init(settings: Settings) {
        self.settings = settings
        scans = own.makeCounter(descriptor: MetricNameDescriptor(
            metricName: "pagestat_exporter_scans", unitName: "total", helpText: "Scans of the machine since the exporter started."))
        scrapes = own.makeCounter(descriptor: MetricNameDescriptor(
            metricName: "pagestat_exporter_scrapes", unitName: "total",
            helpText: "Scrapes of /metrics answered since the exporter started (shared scans and reused results included)."))
        duration = own.makeGauge(descriptor: MetricNameDescriptor(
            metricName: "pagestat_exporter_scan_duration", unitName: "seconds", helpText: "How long the last scan of the machine took."))
        for status in [404, 405] { _ = Self.refusals(own, status) }
    }

    private static func refusals(_ own: PrometheusCollectorRegistry, _ status: Int) -> Counter {
        own.makeCounter(descriptor: MetricNameDescriptor(metricName: "pagestat_exporter_errors", unitName: "total",
                                                         helpText: "Requests refused since the exporter started, by HTTP status."),
                        labels: [("code", String(status))])
    }

    /// The exposition to answer a scrape with: the last one if it is recent enough, else the
    /// running scan's, else a new scan's.
    func exposition() async -> [UInt8] {
        scrapes.increment()
        return await machine() + own.emitToBuffer()
    }

    private func machine() async -> [UInt8] {
        if let latest, Double(Stopwatch.now() - latest.at) / 1e9 < settings.minInterval { return latest.body }
        if let running { return await running.value }
        let task = Task { await self.scan() }
        running = task
        let body = await task.value
        running = nil
        return body
    }

    /// A request the exporter refused (404, 405): counted in the errors metric.
    func refusedRequest(status: Int) { Self.refusals(own, status).increment() }

    /// Scans the machine on a thread of its own (the scan blocks: it reads /proc), then renders.
    private func scan() async -> [UInt8] {
        let settings = self.settings
        let start = Stopwatch.now()
        let report = await withCheckedContinuation { (continuation: CheckedContinuation<TopReport, Never>) in
            DispatchQueue.global().async { continuation.resume(returning: SystemScanner.top(proportional: settings.proportional)) }
        }
        let families = FleetMetrics.families(report, by: settings.grouping, objects: settings.objects, swapAreas: SwapArea.active())
        duration.set(Double(Stopwatch.now() - start) / 1e9)
        scans.increment()
        let body = render(families)
        latest = (body, Stopwatch.now())
        return body
    }

    /// The scan's families through a registry of their own: each scan
    /// starts from an empty registry, so a cgroup or object that went away leaves no stale series.
    private func render(_ families: [Prometheus.Family]) -> [UInt8] {
        let registry = PrometheusCollectorRegistry()
        for family in families where !family.samples.isEmpty {
            let descriptor = MetricNameDescriptor(metricName: family.name, unitName: "", helpText: family.help)
            for sample in family.samples {
                registry.makeGauge(descriptor: descriptor, labels: sample.labels).set(sample.value)
            }
        }
        return registry.emitToBuffer()
    }
}
