import ArgumentParser
import Hummingbird
import Logging
import PageStat
import HummingbirdCore
import HummingbirdTLS
import NIOCore
import ServiceLifecycle
import Synchronization

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

        A scrape waits for a scan at most --scan-deadline seconds: a scan that takes longer (a \
        /proc read can wait on a busy process's mmap_lock) goes on by itself, and the scrape is \
        answered with the last good scan's series and their age \
        (pagestat_exporter_last_scan_age_seconds), counted in \
        pagestat_exporter_scan_timeouts_total, or with 503 when no scan has finished yet. A scan \
        that ran out of file descriptors is thrown away (pagestat_exporter_scan_failures_total), \
        never served as a smaller answer; --max-connections keeps descriptors free for scans \
        and --idle-timeout closes connections that send nothing.

        It listens on loopback only unless --web.config.file sets TLS and basic authentication \
        (the series name processes, cgroups and memfds): a file in the shape of node_exporter's \
        web configuration, tls_server_config (cert_file, key_file) and basic_auth_users (user: \
        bcrypt hash).

        Needs root, or CAP_SYS_ADMIN + CAP_SYS_PTRACE + CAP_DAC_READ_SEARCH + CAP_FOWNER; without them it runs \
        degraded (other users' processes unreadable, swapped shared memory not counted) and \
        says so at start and in pagestat_privileged and pagestat_processes_unreadable. It serves \
        GET /metrics only (404 elsewhere, 405 for other methods, 401 without the credentials the \
        web configuration asks for) and stops gracefully on SIGTERM.

        Exit codes: 0 stopped on SIGTERM or SIGINT, 1 could not serve (the address in use), \
        64 usage error, 78 the web configuration file is unreadable or invalid.

        Examples:
          pagestat-exporter
          pagestat-exporter --listen [::1]:9792 --by cgroup --objects 50
          pagestat-exporter --listen 0.0.0.0:9792 --web.config.file /etc/pagestat/web.yml
        """
    )

    @Option(help: "Address to listen on, HOST:PORT or [IPv6]:PORT (port 0: any free port, printed at start). Not loopback: needs --web.config.file with TLS and basic auth.")
    var listen: ListenAddress = ListenAddress(host: "127.0.0.1", port: 9792)

    @Option(name: .customLong("web.config.file"),
            help: "YAML file with tls_server_config (cert_file, key_file) and basic_auth_users (name: bcrypt hash), as node_exporter's.")
    var webConfigFile: String?

    @Option(help: "Group rows by process, command, user or cgroup (--by process adds a pid label per process).")
    var by: TopGrouping = .cgroup

    @Option(help: "Per-object series for at most this many shared objects, those with the most swap.")
    var objects: Int = 20

    @Option(help: "Seconds a scan's result is reused for before a scrape starts a new one.")
    var minInterval: Double = 10

    @Option(help: "Seconds a scrape waits for a scan before it is answered with the last good scan's series (or 503 when there is none); below Prometheus's scrape_timeout.")
    var scanDeadline: Double = 8

    @Option(help: "Seconds a connection may stay idle (no request, or half a request) before it is closed.")
    var idleTimeout: Double = 30

    @Option(help: "Connections open at once; one more is closed at once. Kept well below RLIMIT_NOFILE so scans have descriptors.")
    var maxConnections: Int = 64

    @Flag(help: "Also export PSS (pagestat_pss_bytes): a /proc/kpagecount read per scattered present page (once a scan for a page several processes map), about half a scan's cost.")
    var pss = false

    /// Descriptors kept free for a scan, and for the exporter's own (event loops, stdio, files).
    static let scanDescriptors = 128
    static let ownDescriptors = 64

    func validate() throws {
        if objects < 0 { throw ValidationError("--objects must be 0 or more") }
        if !(minInterval >= 0) { throw ValidationError("--min-interval must be 0 or more seconds") }
        if !(scanDeadline > 0 && scanDeadline <= 3600) { throw ValidationError("--scan-deadline must be more than 0 and at most 3600 seconds") }
        if !(idleTimeout > 0 && idleTimeout <= 3600) { throw ValidationError("--idle-timeout must be more than 0 and at most 3600 seconds") }
        if !(1...65536).contains(maxConnections) { throw ValidationError("--max-connections must be 1 to 65536") }
    }

    func run() async throws {
        var web = WebConfig()
        if let webConfigFile {
            do { web = try WebConfig.load(webConfigFile) } catch {
                printError("pagestat-exporter: --web.config.file: \(error)")
                throw ExitCode(78)
            }
        }
        if !listen.isLoopback && !(web.tls && web.authentication) {
            printError("Error: --listen \(listen) is not a loopback address: the series name processes, cgroups and memfds, so off loopback --web.config.file must set tls_server_config and basic_auth_users")
            throw ExitCode(64)
        }
        let descriptors = Descriptors.raiseLimit()
        let needed = maxConnections + Self.scanDescriptors + Self.ownDescriptors
        if descriptors < needed {
            printError("Error: --max-connections \(maxConnections) leaves too few of RLIMIT_NOFILE's \(descriptors) file descriptors for scans: at most \(max(0, descriptors - Self.scanDescriptors - Self.ownDescriptors))")
            throw ExitCode(64)
        }
        for line in Privilege.lacking() { printError("pagestat-exporter: \(line)") }
        let cache = ScrapeCache(settings: .init(grouping: by, objects: objects, minInterval: minInterval, proportional: pss,
                                                deadline: scanDeadline, reservedDescriptors: Self.scanDescriptors))
        let gate = AuthenticationGate(web)
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            guard gate.authorizes(request.headers[.authorization]) else {
                await cache.refusedRequest(status: 401)
                return Response(status: .unauthorized, headers: [.wwwAuthenticate: "Basic realm=\"pagestat-exporter\", charset=\"UTF-8\""],
                                body: ResponseBody(byteBuffer: ByteBuffer(string: "unauthorized\n")))
            }
            guard request.uri.path == "/metrics" else {
                await cache.refusedRequest(status: 404)
                return Response(status: .notFound, body: ResponseBody(byteBuffer: ByteBuffer(string: "not found: only /metrics is served\n")))
            }
            guard request.method == .get else {
                await cache.refusedRequest(status: 405)
                return Response(status: .methodNotAllowed, headers: [.allow: "GET"],
                                body: ResponseBody(byteBuffer: ByteBuffer(string: "method not allowed: GET /metrics\n")))
            }
            let answer = await cache.exposition()
            guard answer.status == 200 else {
                return Response(status: .serviceUnavailable, headers: [.contentType: "text/plain; charset=utf-8", .retryAfter: "\(Int(scanDeadline.rounded(.up)))"],
                                body: ResponseBody(byteBuffer: ByteBuffer(bytes: answer.body)))
            }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: answer.body)))
        }
        var logger = Logger(label: "pagestat-exporter")
        logger.logLevel = .warning
        let connections = ConnectionLimit(maxConnections)
        let http1 = HTTPServerBuilder.http1(configuration: .init(additionalChannelHandlers: [ConnectionLimitHandler(connections)],
                                                                 idleTimeout: .nanoseconds(Int64(idleTimeout * 1e9))))
        let server: HTTPServerBuilder
        if web.tls {
            do { server = try .tls(http1, tlsConfiguration: try web.tlsConfiguration()) } catch {
                printError("pagestat-exporter: --web.config.file: \(error)")
                throw ExitCode(78)
            }
        } else {
            server = http1
        }
        let scheme = web.tls ? "https" : "http"
        let listen = listen
        let app = Application(
            responder: responder,
            server: server,
            configuration: ApplicationConfiguration(address: .hostname(listen.host, port: listen.port), serverName: "pagestat-exporter"),
            onServerRunning: { channel in
                var served = listen
                if let address = channel.localAddress, let ip = address.ipAddress, let port = address.port {
                    served = ListenAddress(host: ip, port: port)
                }
                printError("pagestat-exporter: serving \(scheme)://\(served)/metrics")
            },
            logger: logger
        )
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        printError("pagestat-exporter: stopped")
    }
}

/// The connections open now, and how many may be.
final class ConnectionLimit: Sendable {
    let limit: Int
    let open = Atomic<Int>(0)

    init(_ limit: Int) { self.limit = limit }
}

/// Closes a connection at once when `limit` others are open: a flood of idle clients costs the
/// exporter at most `limit` descriptors, never those a scan needs. (Pausing accept(2) instead,
/// as Hummingbird's MaximumAvailableConnections does, left the first connection accepted after
/// the pause unserved until the idle timeout.)
final class ConnectionLimitHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Never
    private let connections: ConnectionLimit
    private var counted = false

    init(_ connections: ConnectionLimit) { self.connections = connections }

    func handlerAdded(context: ChannelHandlerContext) {
        if connections.open.wrappingAdd(1, ordering: .relaxed).newValue > connections.limit {
            connections.open.wrappingSubtract(1, ordering: .relaxed)
            context.close(promise: nil)
        } else {
            counted = true
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if counted { connections.open.wrappingSubtract(1, ordering: .relaxed) }
        counted = false
    }
}

/// Basic authentication against the web configuration's bcrypt hashes; everyone passes when it
/// names no user. A header that passed is remembered (at most 64), so a scrape does not pay a
/// bcrypt check each time.
final class AuthenticationGate: Sendable {
    private let web: WebConfig
    private let passed = Mutex<Set<String>>([])

    init(_ web: WebConfig) { self.web = web }

    func authorizes(_ authorization: String?) -> Bool {
        guard web.authentication else { return true }
        guard let authorization else { return false }
        if passed.withLock({ $0.contains(authorization) }) { return true }
        guard web.authorizes(authorization) else { return false }
        passed.withLock { set in
            if set.count >= 64 { set.removeAll() }
            set.insert(authorization)
        }
        return true
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

    /// Whether the host is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x.y.z) or `localhost`.
    var isLoopback: Bool {
        if host == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, host, &v6) == 1 else { return false }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }
        return bytes[..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff && bytes[12] == 127
    }
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
            (3, "CAP_FOWNER", "cachestat(2) refuses shared objects it neither owns nor may write: their swapped pages are not counted"),
        ]
        var lines: [String] = []
        for need in needs where effective & (1 << need.bit) == 0 {
            lines.append("running degraded without \(need.name): \(need.cost)")
        }
        if lines.isEmpty && !ProcFS.hasSysAdmin() {
            lines.append("running degraded: map_files does not open and pagemap gives no PFNs despite CAP_SYS_ADMIN (a user namespace?)")
        }
        if !lines.isEmpty { lines.append("run as root, or with CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH and CAP_FOWNER (contrib/pagestat-exporter.service)") }
        return lines
    }
}

func printError(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
