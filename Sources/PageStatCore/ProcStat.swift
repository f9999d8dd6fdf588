/// The parsers of /proc/PID/stat, pure: a line in, values out. The command name (field 2) ends
/// at the last ')' and may hold anything, spaces and parentheses included, so every field after
/// it is counted from there.
package enum ProcStat {
    /// Whether a stat line says Z (zombie) or X (dead); its state (field 3) follows the command
    /// name. A line without one counts as dead.
    package static func isZombie(_ stat: [UInt8]) -> Bool {
        guard let close = stat.lastIndex(of: 0x29), close + 2 < stat.count else { return true }
        let state = stat[close + 2]
        return state == 0x5a || state == 0x58
    }

    /// The parent's pid (field 4), nil when the line has none or it is 0.
    package static func parentPID(_ stat: [UInt8]) -> Int32? {
        guard let close = stat.lastIndex(of: 0x29) else { return nil }
        let fields = stat[(close + 1)...].split(separator: 0x20)
        // fields[0] is field 3 (state), fields[1] field 4 (ppid).
        guard fields.count > 1, let parent = ASCIINumber.parse(fields[1]), parent > 0, parent <= UInt64(Int32.max) else { return nil }
        return Int32(parent)
    }
}

/// The fixed layout points of one address space, from `/proc/PID/stat` (see `ProcessHandle`).
public struct AddressSpaceIdentity: Sendable, Hashable {
    /// Fields 26-28 and 45-51 of the stat line, in that order.
    public var values: [UInt64]
    /// The other processes that shared the address space when it was pinned
    /// (`ProcessHandle.addressSpaceSharers`); empty from a stat line.
    public var sharers: [Int32] = []

    /// Parses a stat line; nil when the layout fields are all zero (hidden or no mm).
    public init?(stat: [UInt8]) {
        // Fields after the command name, which ends at the last ')' and may hold anything.
        guard let close = stat.lastIndex(of: 0x29) else { return nil }
        let fields = stat[(close + 1)...].split(separator: 0x20)
        // fields[0] is field 3 (state): field n sits at n - 3.
        let wanted = [26, 27, 28, 45, 46, 47, 48, 49, 50, 51]
        guard fields.count > 51 - 3 else { return nil }
        var values: [UInt64] = []
        for field in wanted {
            guard let value = ASCIINumber.parse(fields[field - 3]) else { return nil }
            values.append(value)
        }
        guard values.contains(where: { $0 != 0 }) else { return nil }
        self.values = values
    }
}
