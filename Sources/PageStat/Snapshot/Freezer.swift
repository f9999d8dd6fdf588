#if canImport(Glibc)
import Glibc
#endif

/// Stops the target for a point-in-time image: its own cgroup's freezer (cgroup v2
/// cgroup.freeze) where it is alone in a cgroup, else SIGSTOP; resumed by `thaw` or, on any
/// other way out (signals included), by `UndoOnExit`.
package struct Freezer {
    package let how: String
    package let cgroup: String?
    private let undo: UndoOnExit.Action

    package init(pid: Int32) throws(PageStatError) {
        let directory = Self.cgroupDirectory(pid)
        if let directory, access(directory + "/cgroup.freeze", W_OK) == 0,
           let procs = try? ProcFS.readText(directory + "/cgroup.procs", pid: pid, what: "cgroup.procs"),
           procs.split(separator: "\n").map(String.init) == [String(pid)] {
            undo = try UndoOnExit.write("0", to: directory + "/cgroup.freeze")
            how = "cgroup freezer"
            cgroup = directory
            guard Self.write("1", to: directory + "/cgroup.freeze") else {
                undo.run()
                throw .system(call: "write \(directory)/cgroup.freeze", errno: .init(rawValue: errno))
            }
            Self.wait { (try? ProcFS.readText(directory + "/cgroup.events", pid: pid, what: "cgroup.events"))?.contains("frozen 1") == true }
        } else {
            undo = try UndoOnExit.continueProcess(pid)
            how = "SIGSTOP"
            cgroup = directory
            guard kill(pid, SIGSTOP) == 0 else {
                undo.cancel()
                throw errno == ESRCH ? .noSuchProcess(pid: pid) : .system(call: "kill(\(pid), SIGSTOP)", errno: .init(rawValue: errno))
            }
            Self.wait { Self.allThreadsStopped(pid) }
        }
    }

    package func thaw() throws(PageStatError) {
        if let failure = undo.run() { throw failure }
    }

    /// The target's cgroup v2 directory, when it is not the root.
    package static func cgroupDirectory(_ pid: Int32) -> String? {
        guard let text = try? ProcFS.readText("/proc/\(pid)/cgroup", pid: pid, what: "cgroup"),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else { return nil }
        let path = line.dropFirst(3)
        guard path != "/" else { return nil }
        return "/sys/fs/cgroup" + path
    }

    private static func write(_ text: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var text = text
        return text.withUTF8 { Glibc.write(fd, $0.baseAddress, $0.count) } == text.utf8.count
    }

    /// Polls `done` every millisecond for up to two seconds.
    private static func wait(_ done: () -> Bool) {
        for _ in 0..<2000 where !done() { usleep(1000) }
    }

    /// Whether every thread of `pid` is in state T (stopped).
    private static func allThreadsStopped(_ pid: Int32) -> Bool {
        guard let directory = opendir("/proc/\(pid)/task") else { return true }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let tid = Int32(name),
                  let stat = try? ProcFS.readText("/proc/\(pid)/task/\(tid)/stat", pid: pid, what: "stat"),
                  let close = stat.lastIndex(of: ")") else { continue }
            let state = stat[stat.index(close, offsetBy: 2)...].first
            if state != "T" && state != "t" { return false }
        }
        return true
    }
}
