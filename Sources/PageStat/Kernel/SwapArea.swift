#if canImport(Glibc)
import Glibc
#endif

extension SwapArea {
    /// The active swap areas.
    public static func active() -> [Entry] {
        parse((try? ProcFS.readText("/proc/swaps", pid: getpid(), what: "/proc/swaps")) ?? "")
    }
}
