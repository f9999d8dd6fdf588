import ArgumentParser
import Hummingbird
import Logging
import PageStat
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// `pagestat-exporter`: pagestat's fleet view over HTTP, for Prometheus to scrape.
@main
struct Exporter: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pagestat-exporter",
        abstract: "Serves pagestat's fleet view on /metrics for Prometheus: shared memory resident and swapped, per group.",
        discussion: """
        Each scan reads every process's page table and asks each shared object's page cache once \
        (the same scan as `pagestat top`): swapped and resident shared memory by kind (shmem, \
        shared-anon, sysv) per group, split evenly among the processes mapping each page, and \
        cached (in memory, mapped by no one), split among each object's mappers; the largest \
        objects; system totals of every shared-memory object as `pagestat objects` lists them \
        (mapped, held open, SysV); swap areas; and the exporter's own counters. One scan runs at a time: \
        scrapes that arrive during a scan share it, and its result is reused for --min-interval.

        Needs root, or CAP_SYS_ADMIN + CAP_SYS_PTRACE + CAP_DAC_READ_SEARCH; without them it runs \
        degraded (other users' processes unreadable, swapped shared memory not counted) and \
        says so at start and in pagestat_privileged and pagestat_processes_unreadable. It serves \
        GET /metrics only (404 elsewhere, 405 for other methods) and stops gracefully on SIGTERM.

        Examples:
          pagestat-exporter
          pagestat-exporter --listen 0.0.0.0:9792 --by cgroup --objects 50
        """
    )

    @Option(help: "Address to listen on, HOST:PORT (port 0: any free port, printed at start).")
    var listen: ListenAddress = ListenAddress(host: "127.0.0.1", port: 9792)

    @Option(help: "Group rows by process, command, user or cgroup (--by process adds a pid label per process).")
    var by: TopGrouping = .cgroup

    @Option(help: "Per-object series for at most this many shared objects, those with the most swap.")
    var objects: Int = 20

    @Option(help: "Seconds a scan's result is reused for before a scrape starts a new one.")
    var minInterval: Double = 10

    @Flag(help: "Also export PSS (pagestat_pss_bytes): a /proc/kpagecount read per scattered present page (once a scan for a page several processes map), about half a scan's cost.")
    var pss = false

    func validate() throws {
        if objects < 0 { throw ValidationError("--objects must be 0 or more") }
        if !(minInterval >= 0) { throw ValidationError("--min-interval must be 0 or more seconds") }
    }

    func run() async throws {
        for line in Privilege.lacking() { printError("pagestat-exporter: \(line)") }
        let cache = ScrapeCache(settings: .init(grouping: by, objects: objects, minInterval: minInterval, proportional: pss))
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            guard request.uri.path == "/metrics" else {
                await cache.refusedRequest(status: 404)
                return Response(status: .notFound, body: ResponseBody(byteBuffer: ByteBuffer(string: "not found: only /metrics is served\n")))
            }
            guard request.method == .get else {
                await cache.refusedRequest(status: 405)
                return Response(status: .methodNotAllowed, headers: [.allow: "GET"],
                                body: ResponseBody(byteBuffer: ByteBuffer(string: "method not allowed: GET /metrics\n")))
            }
            let body = await cache.exposition()
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
        }
        var logger = Logger(label: "pagestat-exporter")
        logger.logLevel = .warning
        let app = Application(
            responder: responder,
            configuration: ApplicationConfiguration(address: .hostname(listen.host, port: listen.port), serverName: "pagestat-exporter"),
            onServerRunning: { channel in
                let address = channel.localAddress.map { "\($0.ipAddress ?? listen.host):\($0.port ?? listen.port)" } ?? "\(listen)"
                printError("pagestat-exporter: serving http://\(address)/metrics")
            },
            logger: logger
        )
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        printError("pagestat-exporter: stopped")
    }
}

extension TopGrouping: ExpressibleByArgument {}

/// HOST:PORT, as --listen takes it ([::1]:PORT for IPv6).
struct ListenAddress: ExpressibleByArgument, CustomStringConvertible {
    var host: String
    var port: Int

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    init?(argument: String) {
        guard let colon = argument.lastIndex(of: ":"), let port = Int(argument[argument.index(after: colon)...]),
              (0...65535).contains(port) else { return nil }
        var host = String(argument[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.init(host: host, port: port)
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// What the exporter needs from the kernel, and what it lacks.
enum Privilege {
    /// One line per missing capability, saying what its absence costs.
    static func lacking() -> [String] {
        let status = (try? ProcFS.readText("/proc/self/status", pid: getpid(), what: "/proc/self/status")) ?? ""
        var effective: UInt64 = 0
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            effective = UInt64(line.dropFirst(7).trimmingPrefix(while: { $0 == "\t" || $0 == " " }), radix: 16) ?? 0
        }
        let needs: [(bit: UInt64, name: String, cost: String)] = [
            (21, "CAP_SYS_ADMIN", "shared objects cannot be opened through /proc/PID/map_files: swapped shared memory is not counted; no PSS"),
            (19, "CAP_SYS_PTRACE", "other users' processes cannot be read: they are counted in pagestat_processes_unreadable"),
            (2, "CAP_DAC_READ_SEARCH", "other users' /proc files may not be readable"),
        ]
        var lines: [String] = []
        for need in needs where effective & (1 << need.bit) == 0 {
            lines.append("running degraded without \(need.name): \(need.cost)")
        }
        if lines.isEmpty && !ProcFS.hasSysAdmin() {
            lines.append("running degraded: map_files does not open and pagemap gives no PFNs despite CAP_SYS_ADMIN (a user namespace?)")
        }
        if !lines.isEmpty { lines.append("run as root, or with CAP_SYS_ADMIN, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (contrib/pagestat-exporter.service)") }
        return lines
    }
}

func printError(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
