import Foundation
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore

/// What the TLS and basic-auth tests need from the machine: openssl(1) for a self-signed
/// certificate, htpasswd(1) (Debian's apache2-utils) for bcrypt hashes, curl(1) as the client.
enum WebTools {
    static let openssl = ["/usr/bin/openssl"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let htpasswd = ["/usr/bin/htpasswd", "/usr/sbin/htpasswd"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let curl = ["/usr/bin/curl"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static var missing: String? {
        if openssl == nil { return "openssl is not installed" }
        if htpasswd == nil { return "htpasswd is not installed (Debian's apache2-utils; Scripts/test.sh installs it as root)" }
        if curl == nil { return "curl is not installed" }
        return nil
    }
}

/// A folder of the test's own with a self-signed certificate for 127.0.0.1 and a web
/// configuration; removed by `remove()`.
final class WebConfigFolder {
    let path: String
    var configPath: String { path + "/web.yml" }
    var certificatePath: String { path + "/cert.pem" }

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("pagestat-web-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let made = try runCommand(try #require(WebTools.openssl), [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", path + "/key.pem", "-out", path + "/cert.pem",
        ])
        try #require(made.status == 0, "openssl: \(made.stderr)")
    }

    /// A bcrypt hash of `password` (cost 10), by htpasswd -nbB.
    func hash(_ user: String, _ password: String) throws -> String {
        let run = try runCommand(try #require(WebTools.htpasswd), ["-nbBC", "10", user, password])
        try #require(run.status == 0, "htpasswd: \(run.stderr)")
        let line = run.stdout.split(separator: "\n").first ?? ""
        return String(line.dropFirst(user.count + 1))
    }

    func write(_ text: String) throws {
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// curl's answer: the HTTP status it printed (000 when there was none) and its exit status.
func curl(_ arguments: [String]) throws -> (code: String, status: Int32, stderr: String) {
    let run = try runCommand(try #require(WebTools.curl), ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "60"] + arguments)
    return (run.stdout, run.status, run.stderr)
}

@Suite("pagestat-exporter: TLS and basic auth from --web.config.file", .serialized,
       .requires(WebTools.missing == nil, WebTools.missing ?? ""))
struct ExporterWebConfigTests {
    @Test func tlsAndBasicAuthGuardMetrics() throws {
        let folder = try WebConfigFolder()
        defer { folder.remove() }
        // Relative file names are relative to the configuration's folder, as exporter-toolkit has them.
        try folder.write("""
        tls_server_config:
          cert_file: cert.pem
          key_file: key.pem
        basic_auth_users:
          prometheus: \(try folder.hash("prometheus", "scrape-secret"))
          other: \(try folder.hash("other", "another secret"))

        """)
        let exporter = try ExporterProcess(["--min-interval", "600", "--web.config.file", folder.configPath])
        defer { exporter.stop() }
        #expect(exporter.url == "https://127.0.0.1:\(exporter.port)/metrics", "\(exporter.url)")
        let url = exporter.url
        let ca = ["--cacert", folder.certificatePath]
        #expect(try curl(ca + ["-u", "prometheus:scrape-secret", url]).code == "200")
        #expect(try curl(ca + ["-u", "other:another secret", url]).code == "200")
        // The body, once: the exposition.
        let body = try runCommand(try #require(WebTools.curl), ["-sS", "--max-time", "60"] + ca + ["-u", "prometheus:scrape-secret", url])
        #expect(try seriesFamilies(body.stdout).contains("pagestat_processes_unreadable"))
        // No credentials, a wrong password, an unknown user, another user's password: 401.
        for credentials in [[], ["-u", "prometheus:wrong"], ["-u", "nobody:scrape-secret"], ["-u", "other:scrape-secret"], ["-u", "prometheus:"]] {
            #expect(try curl(ca + credentials + [url]).code == "401", "\(credentials)")
        }
        let challenge = try runCommand(try #require(WebTools.curl), ["-sS", "-D", "-", "-o", "/dev/null"] + ca + [url])
        #expect(challenge.stdout.lowercased().contains("www-authenticate: basic"), "\(challenge.stdout)")
        // Without trusting the self-signed certificate: curl refuses it (60: peer certificate).
        #expect(try curl(["-u", "prometheus:scrape-secret", url]).status == 60)
        // Plain HTTP on the TLS port: no HTTP answer at all.
        let plain = try curl(["-u", "prometheus:scrape-secret", "http://127.0.0.1:\(exporter.port)/metrics"])
        #expect(plain.code == "000" && plain.status != 0, "\(plain)")
        let fd = connectLoopback(exporter.port)
        defer { close(fd) }
        sendAll(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = recv(fd, &buffer, buffer.count, 0)
        #expect(count <= 0 || !String(decoding: buffer[..<count], as: UTF8.self).hasPrefix("HTTP/1.1 200"))
        // The refusals are counted.
        let metrics = try runCommand(try #require(WebTools.curl), ["-sS", "--max-time", "60"] + ca + ["-u", "prometheus:scrape-secret", url])
        #expect(try sampleValue(metrics.stdout, "pagestat_exporter_errors_total", [("code", "401")]) ?? 0 >= 5)
        #expect(exporter.stop() == 0)
    }

    @Test func basicAuthWithoutTLSOnLoopback() throws {
        let folder = try WebConfigFolder()
        defer { folder.remove() }
        try folder.write("basic_auth_users:\n  prometheus: \(try folder.hash("prometheus", "s3cret"))\n")
        let exporter = try ExporterProcess(["--min-interval", "600", "--web.config.file", folder.configPath])
        defer { exporter.stop() }
        #expect(exporter.url.hasPrefix("http://127.0.0.1:"))
        #expect(try curl(["-u", "prometheus:s3cret", exporter.url]).code == "200")
        #expect(try curl([exporter.url]).code == "401")
        // Off loopback this file is not enough: it sets no TLS.
        let refused = try runCommand(exporterPath, ["--listen", "0.0.0.0:0", "--web.config.file", folder.configPath])
        #expect(refused.status == 64 && refused.stderr.contains("not a loopback address"), "\(refused.stderr)")
    }

    /// A file that is missing, not YAML, or asks for what pagestat does not do: one line, exit 78.
    @Test func aBadWebConfigIsOneLineAndExit78() throws {
        let folder = try WebConfigFolder()
        defer { folder.remove() }
        let cases: [(String, String)] = [
            ("tls_server_config:\n  cert_file: cert.pem\n", "needs both cert_file and key_file"),
            ("tls_server_config:\n  cert_file: cert.pem\n  key_file: missing.pem\n", "cannot load"),
            ("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_auth_type: RequireAndVerifyClientCert\n", "client_auth_type: not supported"),
            ("basic_auth_users:\n  prometheus: plaintext\n", "expected a bcrypt hash"),
            ("http_server_config:\n  http2: false\n", "http_server_config: not supported"),
            ("basic_auth_users: [\n", "not YAML"),
            ("- a\n- b\n", "expected a mapping"),
        ]
        for (text, says) in cases {
            try folder.write(text)
            let run = try runCommand(exporterPath, ["--listen", "127.0.0.1:0", "--web.config.file", folder.configPath])
            #expect(run.status == 78, "\(text): \(run.stderr)")
            #expect(run.stderr.contains(says), "\(text): \(run.stderr)")
            #expect(run.stderr.split(separator: "\n").count == 1, "\(run.stderr)")
        }
        let missing = try runCommand(exporterPath, ["--listen", "127.0.0.1:0", "--web.config.file", folder.path + "/none.yml"])
        #expect(missing.status == 78 && missing.stderr.contains("No such file or directory"), "\(missing.stderr)")
    }
}
