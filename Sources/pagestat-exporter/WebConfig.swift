import Foundation
import HummingbirdBcrypt
import NIOSSL
import Yams

/// `--web.config.file`: TLS and basic authentication, in the shape of the Prometheus
/// exporter-toolkit's web configuration file (node_exporter's), the part of it pagestat serves:
///
///     tls_server_config:
///       cert_file: server.crt     # PEM certificate chain; relative to the file's folder
///       key_file: server.key      # PEM private key
///     basic_auth_users:
///       prometheus: $2y$10$...    # bcrypt hash: htpasswd -nbBC 10 USER PASSWORD
///
/// Any other key is refused, not ignored, so that a setting that would not take effect says so.
struct WebConfig: Sendable {
    var certificateFile: String?
    var keyFile: String?
    /// User name to bcrypt hash.
    var users: [String: String] = [:]

    var tls: Bool { certificateFile != nil }
    var authentication: Bool { !users.isEmpty }

    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    /// Reads and checks the file: its YAML, its keys, and that the certificate and key load.
    static func load(_ path: String) throws(Invalid) -> WebConfig {
        let text = try readText(path)
        let root: Any?
        do { root = try Yams.load(yaml: text) } catch {
            // Yams's message quotes the line and marks the column on lines of their own: the first two say it.
            let said = "\(error)".split(separator: "\n").prefix(2).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ": ")
            throw Invalid(description: "\(path): not YAML: \(said)")
        }
        guard let root else { return WebConfig() }  // an empty file: no TLS, no authentication
        guard let top = root as? [String: Any] else { throw Invalid(description: "\(path): expected a mapping at the top") }
        var config = WebConfig()
        let folder = (path as NSString).deletingLastPathComponent
        func resolve(_ file: String) -> String { file.hasPrefix("/") || folder.isEmpty ? file : folder + "/" + file }
        for (key, value) in top {
            switch key {
            case "tls_server_config":
                guard let tls = value as? [String: Any] else { throw Invalid(description: "\(path): tls_server_config: expected a mapping") }
                for (tlsKey, tlsValue) in tls {
                    guard let file = tlsValue as? String, !file.isEmpty else {
                        throw Invalid(description: "\(path): tls_server_config.\(tlsKey): expected a file name")
                    }
                    switch tlsKey {
                    case "cert_file": config.certificateFile = resolve(file)
                    case "key_file": config.keyFile = resolve(file)
                    default: throw Invalid(description: "\(path): tls_server_config.\(tlsKey): not supported (only cert_file and key_file)")
                    }
                }
                if (config.certificateFile == nil) != (config.keyFile == nil) {
                    throw Invalid(description: "\(path): tls_server_config needs both cert_file and key_file")
                }
            case "basic_auth_users":
                guard let users = value as? [String: Any] else { throw Invalid(description: "\(path): basic_auth_users: expected a mapping of user to bcrypt hash") }
                for (user, hash) in users {
                    guard let hash = hash as? String, hash.hasPrefix("$2"), hash.count == 60 else {
                        throw Invalid(description: "\(path): basic_auth_users.\(user): expected a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters)")
                    }
                    guard !user.contains(":") else { throw Invalid(description: "\(path): basic_auth_users.\(user): a user name cannot contain ':'") }
                    // $2y$ (htpasswd's) is $2b$: the same algorithm, which the bcrypt code knows by that name.
                    config.users[user] = hash.hasPrefix("$2y$") ? "$2b$" + hash.dropFirst(4) : hash
                }
            default:
                throw Invalid(description: "\(path): \(key): not supported (only tls_server_config and basic_auth_users)")
            }
        }
        if config.tls { _ = try config.tlsConfiguration() }
        return config
    }

    /// The file's text (at most 1 MiB), by open(2) and read(2), or why it cannot be read.
    private static func readText(_ path: String) throws(Invalid) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Invalid(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw Invalid(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            bytes += buffer[..<count]
            guard bytes.count <= 1 << 20 else { throw Invalid(description: "\(path): larger than 1 MiB") }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw Invalid(description: "\(path): not UTF-8") }
        return text
    }

    /// The TLS server configuration (TLS 1.2 or newer) from the certificate chain and key files.
    func tlsConfiguration() throws(Invalid) -> TLSConfiguration {
        guard let certificateFile, let keyFile else { throw Invalid(description: "no tls_server_config") }
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { NIOSSLCertificateSource.certificate($0) }
            guard !chain.isEmpty else { throw Invalid(description: "\(certificateFile): no PEM certificate in it") }
            let key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            configuration.minimumTLSVersion = .tlsv12
            return configuration
        } catch let invalid as Invalid {
            throw invalid
        } catch {
            throw Invalid(description: "tls_server_config: cannot load \(certificateFile) and \(keyFile): \(error)")
        }
    }

    /// Whether an Authorization header's Basic credentials name a user whose bcrypt hash the
    /// password matches. An unknown user costs a bcrypt check too, so timing does not tell
    /// which users exist.
    func authorizes(_ authorization: String?) -> Bool {
        guard let authorization, authorization.count < 4096,
              authorization.prefix(6).lowercased() == "basic ",
              let decoded = Data(base64Encoded: String(authorization.dropFirst(6).trimmingPrefix(while: { $0 == " " }))),
              let credentials = String(data: decoded, encoding: .utf8),
              let colon = credentials.firstIndex(of: ":") else { return false }
        let user = String(credentials[..<colon])
        let password = String(credentials[credentials.index(after: colon)...])
        guard let hash = users[user] else {
            _ = Bcrypt.verify(password, hash: Self.unknownUserHash)
            return false
        }
        return Bcrypt.verify(password, hash: hash)
    }

    /// A bcrypt hash (cost 10) no password is checked against for real.
    private static let unknownUserHash = "$2b$10$uSNmK0ti.3CdTTEwOzbUiu4YrVnncOo82m6jb2JCBON1r6YPkcNfu"
}
