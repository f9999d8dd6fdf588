#if canImport(Glibc)
import Glibc
#endif

/// pswpin counters: the machine's (/proc/vmstat) and a cgroup's (memory.stat).
package enum SwapIns {
    package static func machine() -> UInt64? { field("/proc/vmstat") }
    package static func cgroup(_ directory: String) -> UInt64? { field(directory + "/memory.stat") }

    private static func field(_ path: String) -> UInt64? {
        guard let text = try? ProcFS.readText(path, pid: getpid(), what: path) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("pswpin ") {
            return UInt64(line.dropFirst(7))
        }
        return nil
    }
}
