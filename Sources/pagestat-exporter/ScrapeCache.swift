import Dispatch
import Foundation
import PageStat
import PageStatRender
import Prometheus

#if canImport(Glibc)
import Glibc
#endif

/// What the exporter serves: one scan of the machine at a time, off the request path, its
/// exposition reused for `minInterval` seconds. A scrape that needs a new scan starts one (or
/// joins the running one) and waits for it at most `deadline` seconds; then it is answered with
/// the last good exposition and its age, or 503 when there is none yet. A scan that stays stuck
/// (a /proc read behind a process's mmap_lock) keeps running on its own thread and blocks no
/// scrape; no other scan starts until it ends.
actor ScrapeCache {
    struct Settings: Sendable {
        var grouping: TopGrouping
        var objects: Int
        var minInterval: Double
        var proportional: Bool
        /// Seconds a scrape waits for a scan before it is answered without it.
        var deadline: Double
        /// Descriptors that must be free when a scan starts (RLIMIT_NOFILE minus those open).
        var reservedDescriptors: Int
    }

    /// An answer to a scrape: 200 and an exposition, or 503 and why.
    struct Answer: Sendable {
        var status: Int
        var body: [UInt8]
    }

    private let settings: Settings
    /// The last good exposition and when its scan finished.
    private var latest: (body: [UInt8], at: UInt64)?
    /// When the running scan started, or nil.
    private var scanStarted: UInt64?
    /// Why the last scan failed, or nil when it succeeded.
    private var lastFailure: String?
    /// Scrapes waiting for the running scan: each is resumed once, by the scan's end or its deadline.
    private var waiters: [Int: (continuation: CheckedContinuation<Void, Never>, timer: Task<Void, Never>)] = [:]
    private var nextWaiter = 0
    /// The exporter's own metrics, live: rendered with every answer, never cached.
    private let own = PrometheusCollectorRegistry()
    private let scans: Counter
    private let scrapes: Counter
    private let duration: Gauge
    private let timeouts: Counter
    private let failures: Counter
    private let age: Gauge
    private let running: Gauge

    init(settings: Settings) {
        self.settings = settings
        scans = own.makeCounter(descriptor: MetricNameDescriptor(
            metricName: "pagestat_exporter_scans", unitName: "total", helpText: "Scans of the machine since the exporter started."))
        scrapes = own.makeCounter(descriptor: MetricNameDescriptor(
            metricName: "pagestat_exporter_scrapes", unitName: "total",
            helpText: "Scrapes of /metrics answered since the exporter started (shared scans and reused results included)."))
        duration = own.makeGauge(descriptor: MetricNameDescriptor(
            metricName: "pagestat_exporter_scan_duration", unitName: "seconds", helpText: "How long the last scan of the machine took."))
        timeouts = own.makeCounter(descriptor: MetricNameDescriptor(
            metricName: "pagestat_exporter_scan_timeouts", unitName: "total",
            helpText: "Scrapes answered without the scan they waited for, which missed the scan deadline."))
        failures = own.makeCounter(descriptor: MetricNameDescriptor(
            metricName: "pagestat_exporter_scan_failures", unitName: "total",
            helpText: "Scans whose result was thrown away as incomplete (no free descriptors, EMFILE or ENFILE, no process listed)."))
        age = own.makeGauge(descriptor: MetricNameDescriptor(
            metricName: "pagestat_exporter_last_scan_age", unitName: "seconds",
            helpText: "Seconds since the scan whose series this answer carries finished."))
        running = own.makeGauge(descriptor: MetricNameDescriptor(
            metricName: "pagestat_exporter_scan_running", unitName: "seconds",
            helpText: "How long the scan running now has been running (0: none is)."))
        for status in [401, 404, 405] { _ = Self.refusals(own, status) }
    }

    private static func refusals(_ own: PrometheusCollectorRegistry, _ status: Int) -> Counter {
        own.makeCounter(descriptor: MetricNameDescriptor(metricName: "pagestat_exporter_errors", unitName: "total",
                                                         helpText: "Requests refused since the exporter started, by HTTP status."),
                        labels: [("code", String(status))])
    }

    /// The answer to a scrape: the last exposition if it is recent enough; else that of the scan
    /// it starts or joins, if that ends within the deadline; else the last good one, or 503.
    func exposition() async -> Answer {
        scrapes.increment()
        if let latest, Double(Stopwatch.now() - latest.at) / 1e9 < settings.minInterval { return answer() }
        if scanStarted == nil { startScan() }
        await waitForScan()
        return answer()
    }

    /// A request the exporter refused (401, 404, 405): counted in the errors metric.
    func refusedRequest(status: Int) { Self.refusals(own, status).increment() }

    private func answer() -> Answer {
        let now = Stopwatch.now()
        running.set(scanStarted.map { Double(now - $0) / 1e9 } ?? 0)
        guard let latest else {
            let why = if let scanStarted {
                "no scan has finished yet: the first has been running for \(seconds(now - scanStarted)) s"
            } else {
                "no scan has succeeded yet: \(lastFailure ?? "none ran")"
            }
            return Answer(status: 503, body: Array("pagestat-exporter: \(why)\n".utf8))
        }
        age.set(Double(now - latest.at) / 1e9)
        return Answer(status: 200, body: latest.body + own.emitToBuffer())
    }

    private func seconds(_ nanoseconds: UInt64) -> String {
        let tenths = nanoseconds / 100_000_000
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// Waits until the running scan ends or `deadline` seconds have passed, whichever is first.
    private func waitForScan() async {
        let id = nextWaiter
        nextWaiter += 1
        let deadline = UInt64(settings.deadline * 1e9)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let timer = Task {
                try? await Task.sleep(nanoseconds: deadline)
                if !Task.isCancelled { self.deadlinePassed(id) }
            }
            waiters[id] = (continuation, timer)
        }
    }

    private func deadlinePassed(_ id: Int) {
        guard let waiter = waiters.removeValue(forKey: id) else { return }
        timeouts.increment()
        waiter.continuation.resume()
    }

    /// Starts a scan on a thread of its own (it blocks: it reads /proc, and a read may wait on a
    /// process's mmap_lock for as long as another thread holds it for writing).
    private func startScan() {
        scanStarted = Stopwatch.now()
        let settings = settings
        // A thread of its own, not one of Dispatch's global queues: a scan that keeps the
        // global pool's threads busy, or blocked, must not hold up the scrapes' deadlines.
        let thread = Thread {
            let start = Stopwatch.now()
            let outcome = Self.scan(settings)
            let took = Double(Stopwatch.now() - start) / 1e9
            Task { await self.scanEnded(outcome, took: took) }
        }
        thread.name = "pagestat-scan"
        thread.start()
    }

    private func scanEnded(_ outcome: Result<[UInt8], ScanFailure>, took: Double) {
        scanStarted = nil
        duration.set(took)
        scans.increment()
        switch outcome {
        case .success(let body):
            latest = (body, Stopwatch.now())
            lastFailure = nil
        case .failure(let failure):
            failures.increment()
            lastFailure = failure.reason
            printError("pagestat-exporter: scan failed, its result is not served: \(failure.reason)")
        }
        for waiter in waiters.values {
            waiter.timer.cancel()
            waiter.continuation.resume()
        }
        waiters = [:]
    }

    struct ScanFailure: Error {
        var reason: String
    }

    /// One scan of the machine and its exposition, or why it cannot be trusted whole: a scan
    /// that ran out of descriptors (EMFILE, ENFILE) lost processes or objects without a trace in
    /// its totals, so it is a failure, never a smaller answer.
    private static func scan(_ settings: Settings) -> Result<[UInt8], ScanFailure> {
        if let free = Descriptors.free(), free < settings.reservedDescriptors {
            return .failure(ScanFailure(reason: "only \(free) file descriptors free (RLIMIT_NOFILE), \(settings.reservedDescriptors) are kept for a scan"))
        }
        let report = SystemScanner.top(proportional: settings.proportional)
        if let reason = incomplete(report) { return .failure(ScanFailure(reason: reason)) }
        let families = FleetMetrics.families(report, by: settings.grouping, objects: settings.objects, swapAreas: SwapArea.active())
        return .success(render(families))
    }

    /// Why a scan's report is not whole, or nil: a read that failed for want of a descriptor
    /// (in a note, or as the reason a process could not be read),
    /// or /proc that listed no process at all (opendir(2) of /proc failed).
    static func incomplete(_ report: TopReport) -> String? {
        // EMFILE or ENFILE, by the errno the error kept.
        func exhausted(_ error: PageStatError?) -> Bool {
            error?.errno == .tooManyOpenFiles || error?.errno == .tooManyOpenFilesInSystem
        }
        for note in report.notes {
            if exhausted(note.error) {
                return "out of file descriptors during the scan: \(note.description)"
            }
        }
        for process in report.unreadableProcesses {
            if exhausted(process.reason) {
                return "out of file descriptors during the scan: process \(process.pid): \(process.reason)"
            }
        }
        if report.processes.isEmpty && report.unreadable == 0 && report.vanished == 0 && getpid() != 1 {
            return "/proc listed no process (opendir(2) of /proc failed)"
        }
        return nil
    }

    /// The scan's families in the exposition format, by the one writer `pagestat top --format
    /// prometheus` uses too; values written as the exporter has always served them (`4096.0`).
    /// Each scan's exposition is written afresh, so a cgroup or object that went away leaves no
    /// stale series.
    private static func render(_ families: [Prometheus.Family]) -> [UInt8] {
        Array(Prometheus.render(families, values: .double).utf8)
    }
}

/// The process's file descriptors: how many are free under RLIMIT_NOFILE.
enum Descriptors {
    /// RLIMIT_NOFILE's soft limit minus the descriptors open now (/proc/self/fd), or nil when
    /// that directory cannot be read (which itself means none is free).
    static func free() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        guard let open = Directory.names("/proc/self/fd") else { return 0 }
        let soft = limit.rlim_cur == rlim_t.max ? Int.max : Int(limit.rlim_cur)
        return soft - open.count
    }

    /// Raises RLIMIT_NOFILE's soft limit to its hard limit (at most 1 Mi) and returns the soft limit.
    static func raiseLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        let wanted = min(limit.rlim_max, 1 << 20)
        if limit.rlim_cur < wanted {
            var raised = limit
            raised.rlim_cur = wanted
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(min(limit.rlim_cur, 1 << 20))
    }
}
