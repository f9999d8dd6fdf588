import Foundation
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore
@testable import PageStatLab

/// The built `pagestat-exporter`, beside `pagestat`.
var exporterPath: String {
    URL(fileURLWithPath: TestEnvironment.pagestatPath).deletingLastPathComponent().appendingPathComponent("pagestat-exporter").path
}

/// `pagestat-exporter` running as a child on a free loopback port, until `stop()`.
final class ExporterProcess {
    let process = Process()
    let port: Int
    /// Where it said it serves: `http://127.0.0.1:PORT/metrics`, `https://[::1]:PORT/metrics`.
    let url: String
    /// What it printed before it served: the lines about missing privilege.
    private(set) var startLines: [String] = []
    private let errors = Pipe()

    /// Starts the exporter listening on `listen`; as another user without capabilities
    /// (setpriv(1)) when `uid` is given, or through `wrapper` (a command that runs the rest).
    init(_ arguments: [String], asUser uid: UInt32? = nil, listen: String = "127.0.0.1:0", wrapper: [String] = []) throws {
        var command = wrapper
        if let uid {
            command = ["/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "--inh-caps=-all"]
        }
        // A scan on a loaded machine can take longer than the default deadline (8 s): tests
        // that do not test the deadline wait for their scan.
        let deadline = arguments.contains("--scan-deadline") ? [] : ["--scan-deadline", "300"]
        command += [exporterPath, "--listen", listen] + deadline + arguments
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // Lines about missing privilege may come first; then the address it serves.
        var url: String?
        for _ in 0..<20 {
            let line = String(decoding: readLine(errors), as: UTF8.self)
            if line.isEmpty && !process.isRunning { break }
            startLines.append(line)
            if let range = line.range(of: "serving ") {
                url = String(line[range.upperBound...])
                break
            }
        }
        guard let url, let authority = url.split(separator: "/").dropFirst().first,
              let colon = authority.lastIndex(of: ":"), let port = Int(authority[authority.index(after: colon)...]) else {
            process.terminate()
            process.waitUntilExit()
            throw PageStatError.invalidInput("pagestat-exporter did not say where it listens: \(startLines)")
        }
        self.url = url
        self.port = port
    }

    /// SIGTERM, then waits: the exporter stops gracefully. Returns its exit status.
    @discardableResult
    func stop() -> Int32 {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { stop() }
}

/// A bounded HTTP/1.1 client over a loopback socket: one request, the whole response.
struct HTTPResponse {
    var status: Int
    var headers: String
    var body: String
}

/// A TCP connection to 127.0.0.1:`port`, or -1.
func connectLoopback(_ port: Int) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return -1 }
    // A full scan reads every process's page table; on a loaded machine with large processes
    // (PSS reads /proc/kpagecount per page) it can take many seconds.
    var timeout = timeval(tv_sec: 120, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if connected != 0 { close(fd); return -1 }
    return fd
}

func sendAll(_ fd: Int32, _ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let sent = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if sent <= 0 { return }
            offset += sent
        }
    }
}

/// Reads one response: its headers, then Content-Length bytes of body (or up to EOF without one).
func readResponse(_ fd: Int32) -> HTTPResponse? {
    var data = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    let separator: [UInt8] = [13, 10, 13, 10]
    var headerEnd: Int?
    var contentLength: Int?
    while true {
        if let headerEnd, let contentLength, data.count >= headerEnd + contentLength { break }
        let count = recv(fd, &buffer, buffer.count, 0)
        if count <= 0 { break }
        data += buffer[0..<count]
        if headerEnd == nil, let found = data.indices.dropLast(3).first(where: { data[$0..<$0 + 4].elementsEqual(separator) }) {
            headerEnd = found + 4
            let headers = String(decoding: data[..<found], as: UTF8.self).lowercased()
            if let line = headers.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }) {
                contentLength = Int(line.dropFirst(15).trimmingPrefix(while: { $0 == " " }))
            }
        }
    }
    guard let headerEnd, data.count >= 12 else { return nil }
    let headers = String(decoding: data[..<(headerEnd - 4)], as: UTF8.self)
    guard headers.hasPrefix("HTTP/1."), let status = Int(headers.dropFirst(9).prefix(3)) else { return nil }
    return HTTPResponse(status: status, headers: headers, body: String(decoding: data[headerEnd...], as: UTF8.self))
}

func httpRequest(_ port: Int, _ path: String) -> HTTPResponse? { httpRequest(port, "GET", path) }

func httpRequest(_ port: Int, _ method: String, _ path: String) -> HTTPResponse? {
    let fd = connectLoopback(port)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    sendAll(fd, "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n")
    return readResponse(fd)
}

/// The value of one sample of `name` whose labels include `labels`, from exposition text.
func sampleValue(_ text: String, _ name: String, _ labels: [(String, String)] = []) throws -> Double? {
    let family = try Prometheus.parse(text).first { $0.name == name }
    return family?.samples.first { sample in labels.allSatisfy { label in sample.labels.contains { $0 == label } } }?.value
}

@Suite("pagestat-exporter over HTTP on loopback", .serialized)
struct ExporterTests {
    @Test func servesMetricsOnlyAndRefusesTheRest() throws {
        let exporter = try ExporterProcess(["--min-interval", "600"])
        defer { exporter.stop() }
        let metrics = try #require(httpRequest(exporter.port, "/metrics"))
        #expect(metrics.status == 200)
        #expect(metrics.headers.lowercased().contains("content-type: text/plain; version=0.0.4"))
        let families = try Prometheus.parse(metrics.body)
        #expect(families.contains { $0.name == "pagestat_processes_unreadable" })
        #expect(families.contains { $0.name == "pagestat_exporter_scan_duration_seconds" })
        #expect(!families.contains { $0.name == "pagestat_pss_bytes" })  // only with --pss
        #expect(httpRequest(exporter.port, "/")?.status == 404)
        #expect(httpRequest(exporter.port, "/metrics/x")?.status == 404)
        #expect(httpRequest(exporter.port, "/favicon.ico")?.status == 404)
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let refused = httpRequest(exporter.port, method, "/metrics")
            #expect(refused?.status == 405, "\(method)")
            #expect(refused?.headers.lowercased().contains("allow: get") == true)
        }
        let after = try #require(httpRequest(exporter.port, "/metrics"))
        #expect(try sampleValue(after.body, "pagestat_exporter_errors_total", [("code", "405")]) == 4)
        #expect(try sampleValue(after.body, "pagestat_exporter_errors_total", [("code", "404")]) == 3)
        #expect(exporter.stop() == 0)  // SIGTERM: a graceful stop
    }

    @Test func concurrentScrapesShareOneScan() throws {
        let exporter = try ExporterProcess(["--min-interval", "600", "--max-connections", "256"])
        defer { exporter.stop() }
        // 200 connections, every request sent before any response is read: all pending at once.
        let connections = (0..<200).map { _ in connectLoopback(exporter.port) }
        defer { for fd in connections where fd >= 0 { close(fd) } }
        #expect(connections.allSatisfy { $0 >= 0 })
        for fd in connections { sendAll(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") }
        let statuses = connections.map { readResponse($0)?.status ?? 0 }
        #expect(statuses.allSatisfy { $0 == 200 }, "\(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))")
        let after = try #require(httpRequest(exporter.port, "/metrics"))
        #expect(try sampleValue(after.body, "pagestat_exporter_scans_total") == 1)
        #expect(try sampleValue(after.body, "pagestat_exporter_scrapes_total") == 201)
    }

    @Test func aClientThatNeverReadsBlocksNoOne() throws {
        let exporter = try ExporterProcess(["--min-interval", "600"])
        defer { exporter.stop() }
        // One asks and never reads, one sends half a request and waits, with tiny receive buffers.
        let silent = connectLoopback(exporter.port)
        let half = connectLoopback(exporter.port)
        defer { close(silent); close(half) }
        var small: Int32 = 1024
        setsockopt(silent, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        sendAll(silent, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        sendAll(half, "GET /metrics HTTP/1.1\r\nHost:")
        let start = Stopwatch.now()
        for _ in 0..<3 {
            #expect(httpRequest(exporter.port, "/metrics")?.status == 200)
        }
        #expect(Double(Stopwatch.now() - start) / 1e9 < 60)
    }

    @Test func memoryStaysBoundedOverAThousandScrapes() throws {
        let exporter = try ExporterProcess(["--min-interval", "600"])
        defer { exporter.stop() }
        func rssKiB() throws -> Int {
            let status = try String(contentsOfFile: "/proc/\(exporter.process.processIdentifier)/status", encoding: .utf8)
            let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        }
        for _ in 0..<100 { _ = httpRequest(exporter.port, "/metrics") }
        let before = try rssKiB()
        for _ in 0..<1000 { #expect(httpRequest(exporter.port, "/metrics")?.status == 200) }
        let after = try rssKiB()
        #expect(after - before < 16 * 1024, "RSS grew from \(before) KiB to \(after) KiB over 1000 scrapes")
    }

    @Test(.requires(TestEnvironment.isRoot, "root to start the exporter as another user"))
    func withoutPrivilegeItSaysWhatItLacksAndRunsDegraded() throws {
        let exporter = try ExporterProcess(["--min-interval", "600"], asUser: 65534)
        defer { exporter.stop() }
        let lines = exporter.startLines.joined(separator: "\n")
        #expect(lines.contains("running degraded without CAP_SYS_ADMIN"), "\(lines)")
        #expect(lines.contains("CAP_SYS_PTRACE") && lines.contains("CAP_DAC_READ_SEARCH"), "\(lines)")
        let metrics = try #require(httpRequest(exporter.port, "/metrics"))
        #expect(metrics.status == 200)
        #expect(try sampleValue(metrics.body, "pagestat_privileged") == 0)
        #expect(try sampleValue(metrics.body, "pagestat_processes_unreadable") ?? 0 > 0)
        // Root has none of those lines.
        let root = try ExporterProcess(["--min-interval", "600"])
        defer { root.stop() }
        #expect(!root.startLines.contains { $0.contains("degraded") }, "\(root.startLines)")
    }

    @Test(.requires(TestEnvironment.isRoot, "root: PSS reads /proc/kpagecount"))
    func pssOnlyWhenAskedFor() throws {
        let exporter = try ExporterProcess(["--min-interval", "600", "--pss"])
        defer { exporter.stop() }
        let metrics = try #require(httpRequest(exporter.port, "/metrics"))
        let pss = try #require(try Prometheus.parse(metrics.body).first { $0.name == "pagestat_pss_bytes" })
        #expect(!pss.samples.isEmpty && pss.samples.allSatisfy { $0.value >= 0 })
    }

    @Test func badArgumentsAreUsageErrors() throws {
        for arguments in [["--listen", "nowhere"], ["--listen", "127.0.0.1:99999"], ["--min-interval", "-1"], ["--by", "pod"]] {
            let run = try runCommand(exporterPath, arguments)
            #expect(run.status == 64, "\(arguments): \(run.stderr)")
            #expect(run.stderr.hasPrefix("Error: "), "\(arguments): \(run.stderr)")
        }
    }
}

/// A free loopback TCP port (bound, read back, released: another process may take it first).
func freeLoopbackPort() -> Int? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    return bound ? Int(UInt16(bigEndian: address.sin_port)) : nil
}

@Suite("pagestat-exporter scraped by a real Prometheus server (needs root, swap and prometheus)", .serialized,
       .needsSwapAndRoot, .needsTool("prometheus", package: "prometheus package"))
struct ExporterPrometheusTests {
    @Test func prometheusSeesTheSwappedSharedMemoryOfACgroup() throws {
        let prometheus = try #require(TestEnvironment.tool("prometheus"))
        // A memfd mapped by two processes, a quarter of its pages paged out (the fixture's
        // layout), both processes in a cgroup of the test's own.
        let a = try FixtureProcess()
        defer { a.stop() }
        let q = a.pages / 4
        let b = try FixtureProcess(arguments: ["lab", "hold", "--map", try #require(a.paths["memfd"]), "--read", "\(q)-\(2 * q)"])
        defer { b.stop() }
        let cgroup = try TestCgroup("pagestat-e2e-\(getpid())")
        defer { cgroup.remove() }
        try cgroup.enter(a.pid)
        try cgroup.enter(b.pid)
        let cgroupPath = try #require(ProcessIdentity.read(pid: a.pid)?.cgroup)
        var st = stat()
        #expect(stat(try #require(a.paths["memfd"]), &st) == 0)
        let inode = String(st.st_ino)
        let page = UInt64(TestEnvironment.pageSize)

        // A scan that takes longer than 2 s is answered with the last one's series, within
        // Prometheus's scrape timeout below.
        let exporter = try ExporterProcess(["--min-interval", "0.5", "--objects", "100000", "--scan-deadline", "2"])
        defer { exporter.stop() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pagestat-e2e-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try """
        global:
          scrape_interval: 1s
          evaluation_interval: 1s
        scrape_configs:
          # A scrape waits for a scan at most 2 s (the exporter's --scan-deadline above).
          - job_name: pagestat
            scrape_interval: 3s
            scrape_timeout: 3s
            static_configs:
              - targets: ['127.0.0.1:\(exporter.port)']

        """.write(toFile: directory + "/prometheus.yml", atomically: true, encoding: .utf8)
        let webPort = try #require(freeLoopbackPort())
        let server = Process()
        server.executableURL = URL(fileURLWithPath: prometheus)
        server.arguments = ["--config.file=\(directory)/prometheus.yml", "--storage.tsdb.path=\(directory)/data",
                            "--web.listen-address=127.0.0.1:\(webPort)", "--log.level=warn"]
        let log = FileHandle(forWritingAtPath: "/dev/null")
        server.standardOutput = log
        server.standardError = log
        try server.run()
        defer {
            if server.isRunning { server.terminate() }
            server.waitUntilExit()
        }

        /// The value of an instant query's only series, once Prometheus has one.
        func query(_ promql: String) -> Double? {
            var components = URLComponents()
            components.path = "/api/v1/query"
            components.queryItems = [URLQueryItem(name: "query", value: promql)]
            let path = (components.percentEncodedPath) + "?" + (components.percentEncodedQuery ?? "")
                .replacingOccurrences(of: "+", with: "%2B")
            guard let response = httpRequest(webPort, path), response.status == 200,
                  let json = try? JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any],
                  let data = json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]],
                  result.count == 1, let value = result[0]["value"] as? [Any], value.count == 2,
                  let text = value[1] as? String else { return nil }
            return Double(text)
        }
        let escaped = cgroupPath.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        let objectQuery = "pagestat_object_swapped_bytes{kind=\"shmem\",inode=\"\(inode)\",path=\"/memfd:pagestat-fixture (deleted)\"}"
        let cgroupQuery = "sum(pagestat_shared_swapped_bytes{cgroup=\"\(escaped)\"})"
        let shmemQuery = "pagestat_shared_swapped_bytes{cgroup=\"\(escaped)\",kind=\"shmem\"}"
        var object: Double?
        let deadline = Stopwatch.now() + 60_000_000_000
        while Stopwatch.now() < deadline {
            object = query(objectQuery)
            if object != nil { break }
            usleep(250_000)
        }
        // The memfd: q swapped pages. The cgroup: the memfd's q (both its mappers are in it), and
        // q each of A's shared anonymous memory, tmpfs file and SysV segment.
        #expect(object == Double(UInt64(q) * page), "Prometheus never had \(objectQuery)")
        #expect(query(cgroupQuery) == Double(UInt64(4 * q) * page))
        #expect(query(shmemQuery) == Double(UInt64(2 * q) * page))
        // Pages in memory that no one maps: none in A's and B's objects (each is mapped whole),
        // so the cgroup's series is there and 0.
        #expect(query("pagestat_shared_cached_bytes{cgroup=\"\(escaped)\",kind=\"shmem\"}") == 0)
        // A's /dev/shm file held open and never mapped: an object of its own, [0,q) in memory.
        let openPath = try #require(a.paths["tmpfs-open"])
        #expect(query("pagestat_object_resident_bytes{path=\"\(openPath)\"}") == Double(UInt64(q) * page))
        #expect(query("pagestat_object_mapping_processes{path=\"\(openPath)\"}") == 0)
        #expect(query("up{job=\"pagestat\"}") == 1)
        server.terminate()
        server.waitUntilExit()
        #expect(exporter.stop() == 0)
    }
}
