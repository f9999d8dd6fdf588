/// The readers of /proc/PID/maps and /proc/PID/smaps; the parsers are `ProcMaps`' in the core.
extension ProcMaps {
    /// Reads and parses /proc/PID/maps, classifying tmpfs files with the process's mountinfo.
    public static func read(pid: Int32) throws(PageStatError) -> [Mapping] {
        let maps = try ProcFS.readBytes("/proc/\(pid)/maps", pid: pid, what: "/proc/\(pid)/maps (needs ptrace read access)")
        return parse(maps: maps, pid: pid)
    }

    /// Parses maps bytes read from process `pid`, classifying tmpfs and hugetlbfs files with the
    /// process's mounts. The mount table (and the hugetlb probes behind it) is only read when a
    /// file lies on an anonymous device (major 0, minor 1 and up), where every tmpfs and
    /// hugetlbfs superblock lies; on any other device it could change no mapping's kind.
    package static func parse(maps: [UInt8], pid: Int32) -> [Mapping] {
        maps.withUnsafeBufferPointer { bytes in
            guard hasFileOnAnonymousDevice(bytes) else { return parse(bytes: bytes) }
            let devices = MountTable.devices(pid: pid)
            return parse(bytes: bytes, shmemDevices: devices.shmem, hugetlbDevices: devices.hugetlb)
        }
    }

    /// One counter of one VMA of /proc/PID/smaps (kB values in bytes), without parsing the rest.
    package static func smapsField(pid: Int32, vmaStart: UInt64, key: String) throws(PageStatError) -> UInt64? {
        ProcMaps.smapsField(try ProcFS.readBytes("/proc/\(pid)/smaps", pid: pid, what: "/proc/\(pid)/smaps"), vmaStart: vmaStart, key: key)
    }

    /// Reads and parses /proc/PID/smaps.
    public static func readSmaps(pid: Int32) throws(PageStatError) -> [SmapsEntry] {
        parseSmaps(bytes: try ProcFS.readBytes("/proc/\(pid)/smaps", pid: pid, what: "/proc/\(pid)/smaps (needs ptrace read access)"))
    }

    /// Reads and parses /proc/PID/smaps of a pinned process, through its /proc/PID directory.
    public static func readSmaps(_ handle: ProcessHandle) throws(PageStatError) -> [SmapsEntry] {
        parseSmaps(bytes: try handle.readBytes("smaps", what: "/proc/\(handle.pid)/smaps (needs ptrace read access)"))
    }
}
