/// Parsers for /proc/PID/maps and /proc/PID/smaps (mountinfo is `MountInfo`'s): pure functions,
/// bytes or text in, values out, tested on fixtures. The library's readers (`ProcMaps.read`,
/// `ProcMaps.readSmaps`) fetch the bytes.
public enum ProcMaps {
    /// A device number as maps and mountinfo print it (`major:minor`, hexadecimal in maps).
    public struct Device: Hashable, Sendable {
        /// The major number.
        public var major: UInt32
        /// The minor number.
        public var minor: UInt32
        /// A device from its numbers.
        public init(major: UInt32, minor: UInt32) {
            self.major = major
            self.minor = minor
        }

        /// The device of a mount's superblock.
        package init(of mount: MountInfoEntry) {
            self.init(major: mount.deviceMajor, minor: mount.deviceMinor)
        }
    }

    /// The columns of a maps line in its UTF-8 bytes: numbers parsed, text as byte ranges.
    package struct ByteLine {
        package var range: AddressRange
        package var permissions: Range<Int>
        package var offset: UInt64
        package var device: Device
        package var inode: UInt64
        package var path: Range<Int>
    }

    /// Parses `START-END PERMS OFFSET MAJOR:MINOR INODE [PATH]` without building strings.
    package static func parseLine(bytes: UnsafeBufferPointer<UInt8>) -> ByteLine? {
        var index = 0
        let count = bytes.count
        func skipSpaces() { while index < count && bytes[index] == 0x20 { index += 1 } }
        /// Digits up to `terminator` (or the end of the line), nothing else.
        func number(radix: UInt64, until terminator: UInt8) -> UInt64? {
            guard let (value, end) = ASCIINumber.leading(bytes, from: index, radix: radix),
                  end == count || bytes[end] == terminator else { return nil }
            index = end
            return value
        }
        skipSpaces()
        guard let start = number(radix: 16, until: 0x2d), index < count else { return nil }  // '-'
        index += 1
        guard let end = number(radix: 16, until: 0x20), end > start else { return nil }
        skipSpaces()
        let permissionsStart = index
        while index < count && bytes[index] != 0x20 { index += 1 }
        // r or -, w or -, x or -, then s (shared) or p (private).
        guard index - permissionsStart == 4,
              bytes[permissionsStart] == 0x72 || bytes[permissionsStart] == 0x2d,
              bytes[permissionsStart + 1] == 0x77 || bytes[permissionsStart + 1] == 0x2d,
              bytes[permissionsStart + 2] == 0x78 || bytes[permissionsStart + 2] == 0x2d,
              bytes[permissionsStart + 3] == 0x73 || bytes[permissionsStart + 3] == 0x70 else { return nil }
        let permissions = permissionsStart..<index
        skipSpaces()
        guard let offset = number(radix: 16, until: 0x20) else { return nil }
        skipSpaces()
        guard let major = number(radix: 16, until: 0x3a), index < count else { return nil }  // ':'
        index += 1
        guard let minor = number(radix: 16, until: 0x20), major <= UInt32.max, minor <= UInt32.max else { return nil }
        skipSpaces()
        guard let inode = number(radix: 10, until: 0x20) else { return nil }
        skipSpaces()
        return ByteLine(range: AddressRange(start: start, end: end), permissions: permissions, offset: offset,
                        device: Device(major: UInt32(major), minor: UInt32(minor)),
                        inode: inode, path: index..<count)
    }

    /// Calls `body` with each line of `text` (without its newline).
    package static func forEachLine(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        var lineStart = 0
        for index in 0..<bytes.count where bytes[index] == 0x0a {
            if index > lineStart { body(UnsafeBufferPointer(rebasing: bytes[lineStart..<index])) }
            lineStart = index + 1
        }
        if lineStart < bytes.count { body(UnsafeBufferPointer(rebasing: bytes[lineStart...])) }
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

    /// Parses /proc/PID/maps text. A path is maps' text as it stands: the kernel writes a newline
    /// in a name as `\012` and nothing else escaped (not even a backslash), so it is not unescaped.
    public static func parse(_ text: String, shmemDevices: Set<Device> = [], hugetlbDevices: [Device: UInt64] = [:]) -> [Mapping] {
        var text = text
        return text.withUTF8 { parse(bytes: $0, shmemDevices: shmemDevices, hugetlbDevices: hugetlbDevices) }
    }

    /// Parses /proc/PID/maps bytes, as read. Mappings on a device of `hugetlbDevices` (hugetlbfs,
    /// with its huge page size) are `hugetlb`.
    public static func parse(bytes: [UInt8], shmemDevices: Set<Device> = [], hugetlbDevices: [Device: UInt64] = [:]) -> [Mapping] {
        bytes.withUnsafeBufferPointer { parse(bytes: $0, shmemDevices: shmemDevices, hugetlbDevices: hugetlbDevices) }
    }

    /// Parses /proc/PID/maps bytes in a buffer. Mappings on a device of `hugetlbDevices` (hugetlbfs, with its
    /// huge page size) are `hugetlb`.
    package static func parse(bytes: UnsafeBufferPointer<UInt8>, shmemDevices: Set<Device> = [],
                             hugetlbDevices: [Device: UInt64] = [:]) -> [Mapping] {
        var mappings: [Mapping] = []
        forEachLine(bytes) { line in
            guard let fields = parseLine(bytes: line) else { return }
            // The padding before the name is skipped; spaces after it are the name's own.
            let path = NameBytes.decode(UnsafeBufferPointer(rebasing: line[fields.path]))
            let permissions = String(decoding: UnsafeBufferPointer(rebasing: line[fields.permissions]), as: UTF8.self)
            let shared = line[fields.permissions.upperBound - 1] == 0x73  // 's'
            mappings.append(Mapping(
                range: fields.range, permissions: permissions, offset: fields.offset,
                deviceMajor: fields.device.major, deviceMinor: fields.device.minor, inode: fields.inode, path: path,
                kind: hugetlbDevices[fields.device] != nil ? .hugetlb
                    : kind(path: path[...], shared: shared, device: fields.device, shmemDevices: shmemDevices),
                hugePageSize: hugetlbDevices[fields.device]))
        }
        return mappings
    }

    /// Devices whose filesystem is tmpfs (shmem), from /proc/PID/mountinfo text (`MountInfo`).
    public static func shmemDevices(mountinfo text: String) -> Set<Device> {
        shmemDevices(MountInfo.parse(text))
    }

    /// The devices of the tmpfs mounts among `mounts`.
    package static func shmemDevices(_ mounts: [MountInfoEntry]) -> Set<Device> {
        Set(mounts.lazy.filter { $0.fileSystemType == "tmpfs" }.map(Device.init(of:)))
    }

    /// One VMA of /proc/PID/smaps: its maps line and its counters (kB values turned into bytes).
    public struct SmapsEntry: Sendable {
        /// The VMA's addresses.
        public var range: AddressRange
        /// Its `Key: value` lines by key (`Rss`, `Swap`, ...), kB values in bytes.
        public var fields: [String: UInt64]
        /// Its VmFlags (`rd`, `wr`, `sh`, ...).
        public var vmFlags: [String]

        /// The value of a key, 0 when the kernel did not print it.
        public subscript(_ key: String) -> UInt64 { fields[key] ?? 0 }
    }

    /// Parses /proc/PID/smaps text.
    public static func parseSmaps(_ text: String) -> [SmapsEntry] {
        var text = text
        return text.withUTF8 { parseSmaps(bytes: $0) }
    }

    /// Parses /proc/PID/smaps bytes, as read.
    public static func parseSmaps(bytes: [UInt8]) -> [SmapsEntry] {
        bytes.withUnsafeBufferPointer { parseSmaps(bytes: $0) }
    }

    /// Parses /proc/PID/smaps bytes in a buffer: each VMA's header line, its `Key: value [kB]` lines (kB
    /// turned into bytes) and its VmFlags.
    package static func parseSmaps(bytes: UnsafeBufferPointer<UInt8>) -> [SmapsEntry] {
        var entries: [SmapsEntry] = []
        forEachLine(bytes) { line in
            if let fields = parseLine(bytes: line) {
                entries.append(SmapsEntry(range: fields.range, fields: [:], vmFlags: []))
                return
            }
            guard !entries.isEmpty, let colon = line.firstIndex(of: 0x3a) else { return }
            let key = String(decoding: UnsafeBufferPointer(rebasing: line[..<colon]), as: UTF8.self)
            let value = UnsafeBufferPointer(rebasing: line[(colon + 1)...])
            if key == "VmFlags" {
                entries[entries.count - 1].vmFlags = String(decoding: value, as: UTF8.self).split(separator: " ").map(String.init)
                return
            }
            guard let number = smapsValue(value) else { return }
            entries[entries.count - 1].fields[key] = number
        }
        return entries
    }

    /// The value of a smaps `Key: value [kB]` line, after its colon: kB values in bytes; nil when
    /// there is no number or it does not fit 64 bits.
    package static func smapsValue(_ value: UnsafeBufferPointer<UInt8>) -> UInt64? {
        var index = 0
        while index < value.count && value[index] == 0x20 { index += 1 }
        guard let (number, end) = ASCIINumber.leading(value, from: index) else { return nil }
        index = end
        let kilobytes = index + 3 <= value.count && value[index] == 0x20 && value[index + 1] == 0x6b && value[index + 2] == 0x42
        guard kilobytes else { return number }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: 1024)
        return overflow ? nil : bytes
    }

    /// Whether maps bytes name a device with major 0 other than 0:0 (anonymous memory and the
    /// kernel's special mappings are 0:0): where every tmpfs and hugetlbfs superblock lies.
    package static func hasFileOnAnonymousDevice(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var found = false
        forEachLine(bytes) { line in
            guard !found, let fields = parseLine(bytes: line) else { return }
            found = fields.device.major == 0 && fields.device.minor != 0
        }
        return found
    }

    /// One counter of one VMA in /proc/PID/smaps bytes (kB values in bytes), without parsing the
    /// rest; nil when the VMA or the key is not there.
    package static func smapsField(_ bytes: [UInt8], vmaStart: UInt64, key: String) -> UInt64? {
        let wanted = Array((key + ":").utf8)
        var inVMA = false
        var found: UInt64?
        bytes.withUnsafeBufferPointer { buffer in
            forEachLine(buffer) { line in
                guard found == nil else { return }
                if let fields = parseLine(bytes: line) {
                    inVMA = fields.range.start == vmaStart
                    return
                }
                guard inVMA, line.count > wanted.count, line.starts(with: wanted) else { return }
                found = smapsValue(UnsafeBufferPointer(rebasing: line[wanted.count...]))
            }
        }
        return found
    }
}
