extension SysVShm {
    /// The segments of /proc/sysvipc/shm; none when it cannot be read.
    public static func segments() -> [Segment] {
        parse((try? ProcFS.readText("/proc/sysvipc/shm", pid: 0, what: "/proc/sysvipc/shm")) ?? "")
    }
}
