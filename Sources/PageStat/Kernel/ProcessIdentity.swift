#if canImport(Glibc)
import Glibc
#endif

/// The readers of a process's identity: /proc/PID/comm, cmdline, status and cgroup.
extension ProcessIdentity {
    /// Reads the identity of `pid`; nil when the process is gone.
    public static func read(pid: Int32) -> ProcessIdentity? {
        guard let comm = ProcFS.command(pid) else { return nil }
        let cmdline = (try? ProcFS.readBytes("/proc/\(pid)/cmdline", pid: pid, what: "cmdline")) ?? []
        let status = try? ProcFS.readText("/proc/\(pid)/status", pid: pid, what: "status")
        // A cgroup's name is bytes (any but NUL and '/'): decoded so that none is lost.
        let cgroup = (try? ProcFS.readBytes("/proc/\(pid)/cgroup", pid: pid, what: "cgroup")).map { NameBytes.decode($0) }
        return ProcessIdentity(name: displayName(cmdline: cmdline, comm: comm),
                               comm: comm,
                               uid: status.flatMap(effectiveUID(status:)),
                               cgroup: cgroup.flatMap(memoryCgroup(_:)))
    }

    /// Reads the identity of a pinned process through its /proc directory (no path lookup of
    /// /proc/PID per file); nil when it is gone.
    package static func read(handle: ProcessHandle) -> ProcessIdentity? {
        guard let bytes = try? handle.readBytes("comm") else { return nil }
        let comm = NameBytes.decode(bytes.last == 0x0a ? Array(bytes.dropLast()) : bytes)
        let cmdline = (try? handle.readBytes("cmdline")) ?? []
        let status = try? handle.readBytes("status")
        let cgroup = (try? handle.readBytes("cgroup")).map { NameBytes.decode($0) }
        return ProcessIdentity(name: displayName(cmdline: cmdline, comm: comm),
                               comm: comm,
                               uid: status.flatMap { effectiveUID(status: $0) },
                               cgroup: cgroup.flatMap(memoryCgroup(_:)))
    }

    /// The login name of `uid` (getpwuid_r), or the number when it has none.
    public static func userName(_ uid: UInt32) -> String {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        if getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, let result, let name = result.pointee.pw_name {
            return String(cString: name)
        }
        return String(uid)
    }
}
