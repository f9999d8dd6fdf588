/// One mount of /proc/PID/mountinfo (proc(5)), its names unescaped (`ProcEscape`).
package struct MountInfoEntry: Sendable, Equatable {
    /// The device of the mount's superblock, `MAJOR:MINOR` (decimal, as mountinfo prints it).
    package var deviceMajor: UInt32
    package var deviceMinor: UInt32
    /// The directory of the filesystem that is the root of this mount (a subtree for a bind mount
    /// or a container's cgroup).
    package var root: String
    /// Where it is mounted, relative to the process's root.
    package var mountPoint: String
    /// The per-mount options (`rw,relatime`).
    package var mountOptions: [Substring]
    /// The optional fields before the separator: `shared:N`, `master:N`, `propagate_from:N`,
    /// `unbindable`; none or several.
    package var optionalFields: [Substring]
    /// The filesystem type (`tmpfs`, `hugetlbfs`, `cgroup2`, `fuse.sshfs`).
    package var fileSystemType: Substring
    /// The mount source, or `none`.
    package var source: String
    /// The per-superblock options (`rw,pagesize=2M`, the controllers of a v1 cgroup).
    package var superOptions: [Substring]

    /// The value of a `name=value` super option, or nil without one.
    package func superOption(_ name: String) -> Substring? {
        for option in superOptions where option.count > name.count && option.hasPrefix(name) {
            let equals = option.index(option.startIndex, offsetBy: name.count)
            if option[equals] == "=" { return option[option.index(after: equals)...] }
        }
        return nil
    }
}

/// The parser of /proc/PID/mountinfo text, pure: the mount table (tmpfs and hugetlbfs devices)
/// and the lab's cgroup lookup read it through this alone.
package enum MountInfo {
    /// Every well-formed line of mountinfo text, in order. A line is
    /// `ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER`: fields
    /// split on single spaces, since the kernel writes a space, tab, newline or backslash in a
    /// name as `\ooo`. A line cut short, or whose device does not fit 32 bits a part, is skipped.
    package static func parse(_ text: String) -> [MountInfoEntry] {
        text.split(separator: "\n").compactMap(parse(line:))
    }

    /// One line of mountinfo, without its newline; nil when it is not well formed.
    package static func parse(line: Substring) -> MountInfoEntry? {
        let fields = line.split(separator: " ")
        // Six fixed fields, then optional ones up to the separator, then three more.
        guard fields.count >= 10, let separator = fields[6...].firstIndex(of: "-"),
              separator + 3 < fields.count else { return nil }
        let device = fields[2].split(separator: ":", omittingEmptySubsequences: false)
        guard device.count == 2, let major = UInt32(device[0]), let minor = UInt32(device[1]) else { return nil }
        return MountInfoEntry(
            deviceMajor: major, deviceMinor: minor,
            root: ProcEscape.unescape(fields[3]), mountPoint: ProcEscape.unescape(fields[4]),
            mountOptions: fields[5].split(separator: ","), optionalFields: Array(fields[6..<separator]),
            fileSystemType: fields[separator + 1], source: ProcEscape.unescape(fields[separator + 2]),
            superOptions: fields[separator + 3].split(separator: ","))
    }
}
