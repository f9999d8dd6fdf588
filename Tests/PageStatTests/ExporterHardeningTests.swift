import CPagestat
import Foundation
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore
@testable import PageStatLab

/// The families of an exposition that carry samples, the exporter's own left out.
func seriesFamilies(_ text: String) throws -> Set<String> {
    Set(try Prometheus.parse(text).filter { !$0.samples.isEmpty && !$0.name.hasPrefix("pagestat_exporter_") }.map(\.name))
}

/// One request on an open connection (keep-alive), and its whole response.
func request(on fd: Int32, _ path: String = "/metrics") -> HTTPResponse? {
    sendAll(fd, "GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
    return readResponse(fd)
}

/// The exporter's resident set, from /proc/PID/status.
func residentKiB(_ pid: Int32) throws -> Int {
    let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
    return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
}

/// Seconds a closure took.
func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = Stopwatch.now()
    try body()
    return Double(Stopwatch.now() - start) / 1e9
}

@Suite("pagestat-exporter: a scan deadline, connection limits, loopback and IPv6", .serialized)
struct ExporterHardeningTests {
    static var descriptorsForAFlood: Bool {
        var limit = rlimit()
        return getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 && limit.rlim_max >= 1700
    }

    /// A real scan of this machine takes far longer than 1 ms: every scrape that needs a new
    /// scan misses the deadline. The first is answered 503 (nothing to serve yet); once a scan
    /// has finished by itself, a scrape that misses the deadline gets its series and their age.
    @Test func aScrapeWaitsForAScanAtMostTheDeadline() throws {
        let exporter = try ExporterProcess(["--min-interval", "0", "--scan-deadline", "0.001"])
        defer { exporter.stop() }
        var first: HTTPResponse?
        let took = seconds { first = httpRequest(exporter.port, "/metrics") }
        let refused = try #require(first)
        #expect(refused.status == 503, "\(refused.status) \(refused.body)")
        #expect(refused.body.contains("no scan has finished yet"), "\(refused.body)")
        #expect(refused.headers.lowercased().contains("retry-after:"))
        #expect(took < 1, "the first scrape took \(took) s with a 1 ms deadline")
        // The scan goes on off the request path; once it has ended, later scrapes (each starting
        // a scan that again misses the deadline) serve its series.
        var served: HTTPResponse?
        for _ in 0..<600 {
            usleep(100_000)
            var answer: HTTPResponse?
            let took = seconds { answer = httpRequest(exporter.port, "/metrics") }
            #expect(took < 1, "a scrape took \(took) s with a 1 ms deadline")
            if answer?.status == 200 { served = answer; break }
            #expect(answer?.status == 503)
        }
        let stale = try #require(served, "no scan ended within a minute")
        #expect(try seriesFamilies(stale.body).contains("pagestat_processes_unreadable"))
        #expect(try sampleValue(stale.body, "pagestat_exporter_scan_timeouts_total") ?? 0 >= 2)
        #expect(try sampleValue(stale.body, "pagestat_exporter_last_scan_age_seconds") ?? -1 >= 0)
        #expect(try sampleValue(stale.body, "pagestat_exporter_scans_total") ?? 0 >= 1)
        #expect(try sampleValue(stale.body, "pagestat_exporter_scan_failures_total") == 0)
        #expect(exporter.stop() == 0)
    }

    /// With a deadline the scan meets, nothing times out and the age is that of a fresh scan.
    @Test func aScanThatEndsInTimeIsServedFresh() throws {
        let exporter = try ExporterProcess(["--min-interval", "0", "--scan-deadline", "300"])
        defer { exporter.stop() }
        let answer = try #require(httpRequest(exporter.port, "/metrics"))
        #expect(answer.status == 200)
        #expect(try sampleValue(answer.body, "pagestat_exporter_scan_timeouts_total") == 0)
        #expect(try sampleValue(answer.body, "pagestat_exporter_last_scan_age_seconds") ?? 99 < 5)
        #expect(try sampleValue(answer.body, "pagestat_exporter_scan_running_seconds") == 0)
        // The whole exposition, the exporter's own series included, as Prometheus's own linter reads it.
        guard let promtool = TestEnvironment.tool("promtool") else {
            try notRunHere("promtool (Debian's prometheus package) to check the whole exposition")
        }
        let check = Process()
        check.executableURL = URL(fileURLWithPath: promtool)
        check.arguments = ["check", "metrics"]
        let input = Pipe()
        let output = Pipe()
        check.standardInput = input
        check.standardOutput = output
        check.standardError = output
        try check.run()
        input.fileHandleForWriting.write(Data(answer.body.utf8))
        try input.fileHandleForWriting.close()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        check.waitUntilExit()
        #expect(check.terminationStatus == 0 && said.isEmpty, "\(said)")
    }

    /// An exporter held to 512 descriptors (prlimit(1)), flooded by 1500 idle connections from
    /// one client: a scrape on a connection opened before answers with every family it had
    /// (the scan still has descriptors), or fails openly; the exporter never holds more
    /// connections than --max-connections (one more is closed at once); idle ones are closed
    /// after --idle-timeout; its memory comes back.
    @Test(.requires(Self.descriptorsForAFlood, "an RLIMIT_NOFILE hard limit of at least the 1700 descriptors the flood needs"))
    func idleConnectionsCannotStarveAScan() throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let flood = 1500
        try #require(limit.rlim_max >= rlim_t(flood + 200), "the test needs \(flood + 200) descriptors of its own")
        let saved = limit
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        defer { var restore = saved; setrlimit(Int32(RLIMIT_NOFILE.rawValue), &restore) }

        // A shared object of the test's own for the whole test: the per-object families exist
        // only while some object does, and another test's may come and go between two scrapes.
        let held = CPagestat_memfd_create("pagestat-flood-\(getpid())", 1)
        try #require(held >= 0)
        defer { close(held) }
        try #require(pwrite(held, [UInt8](repeating: 0x5a, count: 4096), 4096, 0) == 4096)
        let exporter = try ExporterProcess(["--min-interval", "0", "--scan-deadline", "120", "--idle-timeout", "15", "--max-connections", "64"],
                                           wrapper: ["/usr/bin/prlimit", "--nofile=512:512", "--"])
        defer { exporter.stop() }
        let pid = exporter.process.processIdentifier
        let kept = connectLoopback(exporter.port)
        try #require(kept >= 0)
        defer { close(kept) }
        let before = try #require(request(on: kept))
        #expect(before.status == 200)
        let families = try seriesFamilies(before.body)
        #expect(families.contains("pagestat_shared_resident_bytes"), "\(families)")
        #expect(families.contains("pagestat_object_resident_bytes"), "the held memfd gives no object series: \(families)")
        let baselineKiB = try residentKiB(pid)

        // Non-blocking connects: past the backlog the kernel leaves them in SYN_SENT.
        var idle: [Int32] = []
        defer { for fd in idle { close(fd) } }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(exporter.port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        for _ in 0..<flood {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { break }
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            idle.append(fd)
        }
        #expect(idle.count == flood)
        // SYNs past the backlog are sent again after 1 and 3 s: by then an exporter without a
        // limit has accepted all it can.
        let flooded = Stopwatch.now()
        usleep(3_500_000)
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
        #expect(open < 64 + 64, "the exporter holds \(open) descriptors with --max-connections 64")
        /// Whether the exporter has closed a connection: EOF or a reset, not "no data yet".
        func closedByExporter(_ fd: Int32) -> Bool {
            var byte: UInt8 = 0
            let count = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
            return count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        }
        // The first connections were accepted and are kept until --idle-timeout; the last ones,
        // past the limit, were closed at once.
        #expect(idle.prefix(16).allSatisfy { !closedByExporter($0) }, "a connection under the limit was closed before --idle-timeout")
        // The last ones may still wait in the kernel's backlog or SYN_SENT (SYNs are sent again
        // after 1, 3 and 7 s) on a busy machine: give them until well before --idle-timeout.
        var pastTheLimitClosed = false
        while !pastTheLimitClosed && Stopwatch.now() - flooded < 12_000_000_000 {
            pastTheLimitClosed = idle.suffix(16).allSatisfy { closedByExporter($0) }
            if !pastTheLimitClosed { usleep(250_000) }
        }
        #expect(pastTheLimitClosed, "a connection past the limit is still open")

        // The scrape on the connection opened before the flood (as Prometheus keeps one open).
        let during = try #require(request(on: kept), "no answer under the flood")
        if during.status == 200 {
            let missing = families.subtracting(try seriesFamilies(during.body))
            #expect(missing.isEmpty, "a 200 without \(missing)")
            #expect(try sampleValue(during.body, "pagestat_processes_unreadable") ?? 1e9
                        <= (try sampleValue(before.body, "pagestat_processes_unreadable") ?? 0) + 5)
        } else {
            #expect(during.status == 503, "\(during.status): \(during.body)")
        }

        // Idle connections are closed after --idle-timeout: the accepted ones read EOF.
        let waited = Double(Stopwatch.now() - flooded) / 1e9
        if waited < 16.5 { usleep(UInt32((16.5 - waited) * 1e6)) }
        #expect(idle.prefix(16).allSatisfy { closedByExporter($0) }, "an idle connection is still open after --idle-timeout")
        for fd in idle { close(fd) }
        idle = []
        usleep(4_000_000)
        let afterKiB = try residentKiB(pid)
        #expect(afterKiB - baselineKiB < 32 * 1024, "RSS went from \(baselineKiB) KiB to \(afterKiB) KiB after the flood")
        #expect(exporter.stop() == 0)
    }

    /// IPv6 addresses are printed in brackets, as a URL has them, and served.
    @Test func anIPv6AddressIsPrintedInBrackets() throws {
        let exporter = try ExporterProcess(["--min-interval", "600"], listen: "[::1]:0")
        defer { exporter.stop() }
        #expect(exporter.url == "http://[::1]:\(exporter.port)/metrics", "\(exporter.url)")
        let run = try runCommand("/usr/bin/curl", ["-sS", "-g", "-o", "/dev/null", "-w", "%{http_code}", exporter.url])
        #expect(run.stdout == "200", "\(run.stdout) \(run.stderr)")
    }

    /// Off loopback, without a web configuration that sets TLS and basic auth, it refuses to
    /// start, before it binds anything.
    @Test func itRefusesToServeOffLoopbackInTheClear() throws {
        for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:0"] {
            let run = try runCommand(exporterPath, ["--listen", listen])
            #expect(run.status == 64, "\(listen): \(run.stderr)")
            #expect(run.stderr.hasPrefix("Error: ") && run.stderr.contains("not a loopback address"), "\(listen): \(run.stderr)")
            #expect(run.stderr.split(separator: "\n").count == 1, "\(run.stderr)")
        }
        for arguments in [["--scan-deadline", "0"], ["--idle-timeout", "-1"], ["--max-connections", "0"]] {
            let run = try runCommand(exporterPath, arguments)
            #expect(run.status == 64, "\(arguments): \(run.stderr)")
        }
    }

    @Test func listenAddressesKnowLoopback() throws {
        // Through the refusal: a loopback address starts (port 0), any other is refused.
        for listen in ["127.0.0.2:0", "localhost:0"] {
            let exporter = try ExporterProcess(["--min-interval", "600"], listen: listen)
            exporter.stop()
        }
    }

    /// The systemd unit's privilege, exactly: its CapabilityBoundingSet and AmbientCapabilities,
    /// NoNewPrivileges, SecureBits, and a non-root uid for DynamicUser (setpriv(1); this machine
    /// runs no systemd). Its scrape must equal root's on memory a `lab hold` child arranged as
    /// root (a memfd, tmpfs files, shared anonymous memory, a quarter of each paged out):
    /// cachestat(2) answers a caller who does not own the object only with CAP_FOWNER.
    @Test(.needsSwapAndRoot)
    func theSystemdUnitsPrivilegeScrapesWhatRootDoes() throws {
        let unit = try String(contentsOf: ContribTests.root.appendingPathComponent("contrib/pagestat-exporter.service"), encoding: .utf8)
        func setting(_ key: String) -> String? {
            unit.split(separator: "\n").last { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
        }
        func capabilities(_ key: String) throws -> String {
            let names = try #require(setting(key), "the unit has no \(key)").split(separator: " ")
            return "-all," + names.map { "+" + $0.lowercased().replacingOccurrences(of: "cap_", with: "") }.joined(separator: ",")
        }
        #expect(setting("DynamicUser") == "yes" && setting("User") == nil, "the test runs the unit's DynamicUser as uid 61184")
        #expect(setting("NoNewPrivileges") == "yes")
        #expect(setting("SecureBits") == "noroot-locked")
        // 61184: the first of systemd's dynamic users (61184-65519), owning nothing here.
        let wrapper = ["/usr/bin/setpriv", "--reuid=61184", "--regid=61184", "--clear-groups", "--no-new-privs",
                       "--securebits=+noroot,+noroot_locked",
                       "--bounding-set=\(try capabilities("CapabilityBoundingSet"))",
                       "--inh-caps=\(try capabilities("AmbientCapabilities"))",
                       "--ambient-caps=\(try capabilities("AmbientCapabilities"))"]

        let fixture = try FixtureProcess()
        defer { fixture.stop() }
        let arguments = ["--min-interval", "600", "--by", "process", "--objects", "100000"]
        let root = try ExporterProcess(arguments)
        defer { root.stop() }
        let confined = try ExporterProcess(arguments, wrapper: wrapper)
        defer { confined.stop() }
        let status = try String(contentsOfFile: "/proc/\(confined.process.processIdentifier)/status", encoding: .utf8)
        #expect(status.contains("Uid:\t61184"), "\(status)")
        #expect(!confined.startLines.contains { $0.contains("degraded") }, "\(confined.startLines)")

        let rootScrape = try #require(httpRequest(root.port, "/metrics"))
        let confinedScrape = try #require(httpRequest(confined.port, "/metrics"))
        #expect(rootScrape.status == 200 && confinedScrape.status == 200)
        /// The fixture's samples: those of its pid, and those of the objects it maps or holds.
        func fixtureSamples(_ text: String) throws -> [String: Double] {
            let inodes = Set(fixture.paths.values.compactMap { path -> String? in
                var st = stat()
                return stat(path, &st) == 0 ? String(st.st_ino) : nil
            })
            var samples: [String: Double] = [:]
            for family in try Prometheus.parse(text) where family.name != "pagestat_pss_bytes" {
                for sample in family.samples {
                    let ours = sample.labels.contains { $0 == ("pid", String(fixture.pid)) }
                        || (family.name.hasPrefix("pagestat_object_") && sample.labels.contains { $0.0 == "inode" && inodes.contains($0.1) })
                    if ours { samples[family.name + "\(sample.labels)"] = sample.value }
                }
            }
            return samples
        }
        let expected = try fixtureSamples(rootScrape.body)
        #expect(expected.count >= 8, "root's scrape has \(expected.count) series of the fixture")
        #expect(expected.contains { $0.key.hasPrefix("pagestat_shared_swapped_bytes") && $0.value > 0 }, "\(expected)")
        #expect(try fixtureSamples(confinedScrape.body) == expected)
        #expect(try sampleValue(confinedScrape.body, "pagestat_privileged") == 1)
        #expect(try sampleValue(confinedScrape.body, "pagestat_notes") ?? 0 <= (try sampleValue(rootScrape.body, "pagestat_notes") ?? 0))
    }
}
