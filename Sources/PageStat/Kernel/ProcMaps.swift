/// Parsers for /proc/PID/maps, /proc/PID/smaps and /proc/PID/mountinfo: pure functions on text,
/// tested on fixtures; the readers at the bottom fetch the text.
public enum ProcMaps {
    /// A device number as maps and mountinfo print it (`major:minor`, hexadecimal in maps).
    public struct Device: Hashable, Sendable {
        public var major: UInt32
        public var minor: UInt32
        public init(major: UInt32, minor: UInt32) {
            self.major = major
            self.minor = minor
        }
    }

    /// One maps line, before classification.
    struct Line {
        var range: AddressRange
        var permissions: Substring
        var offset: UInt64
        var device: Device
        var inode: UInt64
        var path: Substring
    }

    /// Splits one maps (or smaps header) line into its six columns; nil if it is not one.
    static func parseLine(_ line: Substring) -> Line? {
        var rest = line[...]
        func field() -> Substring? {
            rest = rest.drop(while: { $0 == " " })
            guard !rest.isEmpty else { return nil }
            let end = rest.firstIndex(of: " ") ?? rest.endIndex
            defer { rest = rest[end...] }
            return rest[..<end]
        }
        guard let rangeText = field(), let permissions = field(), permissions.count == 4,
              let offsetText = field(), let deviceText = field(), let inodeText = field(),
              let dash = rangeText.firstIndex(of: "-"),
              let start = UInt64(rangeText[..<dash], radix: 16),
              let end = UInt64(rangeText[rangeText.index(after: dash)...], radix: 16),
              let offset = UInt64(offsetText, radix: 16),
              let colon = deviceText.firstIndex(of: ":"),
              let major = UInt32(deviceText[..<colon], radix: 16),
              let minor = UInt32(deviceText[deviceText.index(after: colon)...], radix: 16),
              let inode = UInt64(inodeText)
        else { return nil }
        let path = rest.drop(while: { $0 == " " })
        return Line(range: AddressRange(start: start, end: end), permissions: permissions, offset: offset,
                    device: Device(major: major, minor: minor), inode: inode, path: path)
    }

    /// Classifies a mapping by its path, sharing and device, the way the kernel names them in maps.
    public static func kind(path: Substring, shared: Bool, device: Device, shmemDevices: Set<Device>) -> MappingKind {
        if path.isEmpty { return shared ? .sharedAnon : .privateAnon }
        if path.hasPrefix("[") {
            if path.hasPrefix("[anon_shmem:") { return .sharedAnon }
            if path == "[heap]" || path.hasPrefix("[stack") || path.hasPrefix("[anon:") { return .privateAnon }
            return .special
        }
        if path == "/dev/zero (deleted)" && shared { return .sharedAnon }
        if path == "/dev/zero" && !shared { return .privateAnon }
        if path.hasPrefix("/SYSV") || path.hasPrefix("/memfd:") { return .shmem }
        if shmemDevices.contains(device) { return .shmem }
        return .file
    }

    /// Parses /proc/PID/maps text.
    public static func parse(_ text: String, shmemDevices: Set<Device> = []) -> [Mapping] {
        var mappings: [Mapping] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let line = parseLine(raw) else { continue }
            let shared = line.permissions.last == "s"
            mappings.append(Mapping(
                range: line.range, permissions: String(line.permissions), offset: line.offset,
                deviceMajor: line.device.major, deviceMinor: line.device.minor, inode: line.inode,
                path: String(line.path),
                kind: kind(path: line.path, shared: shared, device: line.device, shmemDevices: shmemDevices)))
        }
        return mappings
    }

    /// Devices whose filesystem is tmpfs (shmem), from /proc/PID/mountinfo text.
    /// A mountinfo line: `ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER`.
    public static func shmemDevices(mountinfo text: String) -> Set<Device> {
        var devices = Set<Device>()
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 3, let separator = fields.firstIndex(of: "-"), separator + 1 < fields.count else { continue }
            guard fields[separator + 1] == "tmpfs" else { continue }
            let numbers = fields[2].split(separator: ":")
            guard numbers.count == 2, let major = UInt32(numbers[0]), let minor = UInt32(numbers[1]) else { continue }
            devices.insert(Device(major: major, minor: minor))
        }
        return devices
    }

    /// One VMA of /proc/PID/smaps: its maps line and its counters (kB values turned into bytes).
    public struct SmapsEntry: Sendable {
        public var range: AddressRange
        public var fields: [String: UInt64]
        public var vmFlags: [String]

        public subscript(_ key: String) -> UInt64 { fields[key] ?? 0 }
    }

    /// Parses /proc/PID/smaps text.
    public static func parseSmaps(_ text: String) -> [SmapsEntry] {
        var entries: [SmapsEntry] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if let line = parseLine(raw) {
                entries.append(SmapsEntry(range: line.range, fields: [:], vmFlags: []))
                continue
            }
            guard !entries.isEmpty, let colon = raw.firstIndex(of: ":") else { continue }
            let key = String(raw[..<colon])
            let value = raw[raw.index(after: colon)...]
            if key == "VmFlags" {
                entries[entries.count - 1].vmFlags = value.split(separator: " ").map(String.init)
                continue
            }
            let parts = value.split(separator: " ")
            guard let first = parts.first, let number = UInt64(first) else { continue }
            let scale: UInt64 = parts.count > 1 && parts[1] == "kB" ? 1024 : 1
            entries[entries.count - 1].fields[key] = number * scale
        }
        return entries
    }

    /// Reads and parses /proc/PID/maps, classifying tmpfs files with the process's mountinfo.
    public static func read(pid: Int32) throws(PageStatError) -> [Mapping] {
        let maps = try ProcFS.readText("/proc/\(pid)/maps", pid: pid, what: "/proc/\(pid)/maps (needs ptrace read access)")
        let mountinfo = (try? ProcFS.readText("/proc/\(pid)/mountinfo", pid: pid, what: "mountinfo")) ?? ""
        return parse(maps, shmemDevices: shmemDevices(mountinfo: mountinfo))
    }

    /// Reads and parses /proc/PID/smaps.
    public static func readSmaps(pid: Int32) throws(PageStatError) -> [SmapsEntry] {
        parseSmaps(try ProcFS.readText("/proc/\(pid)/smaps", pid: pid, what: "/proc/\(pid)/smaps (needs ptrace read access)"))
    }
}
