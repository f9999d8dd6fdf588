/// Who a process is, as `ps` and the memory cgroup hierarchy name it: its command line, its
/// effective user and its memory cgroup. The parsers of /proc/PID/cmdline, status and cgroup,
/// pure (the library's `ProcessIdentity.read` reads them).
public struct ProcessIdentity: Sendable, Hashable {
    /// The command as `ps -o args` shows it: /proc/PID/cmdline with its NULs as spaces (a process
    /// may rewrite it, as PostgreSQL's "postgres: checkpointer" does), or `[comm]` when it is empty
    /// (kernel threads, zombies).
    public var name: String
    /// /proc/PID/comm: the executable's name, at most 15 bytes.
    public var comm: String
    /// The effective user id (the second field of `Uid:` in /proc/PID/status), nil when unread.
    public var uid: UInt32?
    /// The memory cgroup's path as /proc/PID/cgroup gives it ("/system.slice/postgresql.service"),
    /// relative to the root of the hierarchy this process's cgroup namespace shows, every byte kept
    /// (`NameBytes`); nil when unread.
    public var cgroup: String?

    /// An identity from its parts.
    public init(name: String, comm: String, uid: UInt32?, cgroup: String?) {
        self.name = name
        self.comm = comm
        self.uid = uid
        self.cgroup = cgroup
    }

    /// ps's rule: the arguments joined by spaces, trailing NULs (and the padding a process that
    /// rewrote its title leaves) dropped; `[comm]` for an empty command line.
    public static func displayName(cmdline: [UInt8], comm: String) -> String {
        var bytes = cmdline
        while let last = bytes.last, last == 0 || last == 0x20 { bytes.removeLast() }
        guard !bytes.isEmpty else { return "[\(comm)]" }
        for index in bytes.indices where bytes[index] == 0 { bytes[index] = 0x20 }
        return NameBytes.decode(bytes)
    }

    /// The effective uid from /proc/PID/status text (`Uid:\treal\teffective\tsaved\tfs`).
    public static func effectiveUID(status: String) -> UInt32? {
        effectiveUID(status: Array(status.utf8))
    }

    /// The same from the bytes of /proc/PID/status: only the `Uid:` line is looked at.
    package static func effectiveUID(status bytes: [UInt8]) -> UInt32? {
        let key: [UInt8] = Array("Uid:".utf8)
        var start = 0
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: 0x0a) ?? bytes.count
            if end - start >= key.count && bytes[start..<start + key.count].elementsEqual(key) {
                let fields = bytes[(start + key.count)..<end].split(whereSeparator: { $0 == 0x09 || $0 == 0x20 })
                guard fields.count >= 2 else { return nil }
                return UInt32(String(decoding: fields[1], as: UTF8.self))
            }
            start = end + 1
        }
        return nil
    }

    /// The memory cgroup from /proc/PID/cgroup text: the v1 line whose controllers include
    /// `memory` (hybrid systems keep the controller there), else the v2 line (`0::PATH`). A line's
    /// path may hold colons; it is everything after the second one.
    public static func memoryCgroup(_ text: String) -> String? {
        var unified: String?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            if parts[1].split(separator: ",").contains("memory") { return String(parts[2]) }
            if parts[0] == "0" && parts[1].isEmpty { unified = String(parts[2]) }
        }
        return unified
    }
}
