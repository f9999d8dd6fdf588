/// How `top` groups processes into rows.
public enum TopGrouping: String, Sendable, CaseIterable {
    /// One row per process (the default).
    case process
    /// One row per command name (/proc/PID/comm): every PostgreSQL backend in one row.
    case command
    /// One row per effective user.
    case user
    /// One row per memory cgroup, its path as /proc/PID/cgroup gives it.
    case cgroup

    /// The grouping's noun in the plural, for text.
    public var plural: String {
        switch self {
        case .process: "processes"
        case .command: "commands"
        case .user: "users"
        case .cgroup: "cgroups"
        }
    }

    /// The name of the row `process` falls in.
    public func key(_ process: ProcessUse) -> String {
        switch self {
        case .process: process.command
        case .command: process.identity.comm
        case .user: process.identity.uid.map(ProcessIdentity.userName) ?? "?"
        case .cgroup: process.identity.cgroup ?? "?"
        }
    }
}

/// One row of `top`: a process or a group of processes, its memory use added up.
public struct TopRow: Sendable {
    /// The process's command, or the group's command name, user or cgroup.
    public var name: String
    /// The process's pid (`--by process` only).
    public var pid: Int32?
    public var processes: Int
    public var use: MemoryUse
    public var shared: [SharedMemoryKind: SharedShare]
    /// The kinds of shared memory whose share could not be counted for some of its processes:
    /// the reason (the first one's) and how many. Its `shared` of those kinds, `use.swap` and
    /// `use.shmemSwap` are then a lower bound, shown as unknown.
    public var sharedUnknown: [SharedMemoryKind: (reason: String, processes: Int)] = [:]

    /// Whether every share of shared memory, and so SWAP, could be counted.
    public var sharedKnown: Bool { sharedUnknown.isEmpty }

    public init(name: String, pid: Int32? = nil, processes: Int = 0, use: MemoryUse = .zero,
                shared: [SharedMemoryKind: SharedShare] = [:]) {
        self.name = name
        self.pid = pid
        self.processes = processes
        self.use = use
        self.shared = shared
    }

    /// Its shared memory in memory, every kind: its share of the pages its processes map.
    public var sharedResident: UInt64 { shared.values.reduce(0) { $0 + $1.resident } }

    /// Its share of shared objects' pages in memory that no process maps, every kind.
    public var sharedCached: UInt64 { shared.values.reduce(0) { $0 + $1.cached } }

    mutating func add(_ process: ProcessUse) {
        processes += 1
        use += process.use
        for (kind, share) in process.shared { shared[kind, default: SharedShare()] += share }
        for (kind, reason) in process.sharedUnknown { sharedUnknown[kind, default: (reason, 0)].processes += 1 }
    }
}

/// Which processes `top` shows. A process matches when it matches every filter given; a filter
/// with several values matches any of them. Filters choose rows after the whole machine is
/// scanned, so a shared object's pages are still split among all the processes mapping it.
public struct TopFilter: Sendable {
    public var pids: Set<Int32> = []
    /// User names or numeric uids.
    public var users: Set<String> = []
    /// Command names (comm) matched exactly, or text found in the command line as ps shows it.
    public var commands: [String] = []

    public init(pids: Set<Int32> = [], users: Set<String> = [], commands: [String] = []) {
        self.pids = pids
        self.users = users
        self.commands = commands
    }

    public var isEmpty: Bool { pids.isEmpty && users.isEmpty && commands.isEmpty }

    /// Whether a process that could not be read may be one the filter keeps: its pid and comm
    /// are known, its user may not be (then it is kept, as it may be that user's).
    public func mayMatch(_ process: UnreadableProcess) -> Bool {
        if !pids.isEmpty && !pids.contains(process.pid) { return false }
        if !commands.isEmpty && !commands.contains(where: { process.command == $0 || process.command.contains($0) }) {
            return false
        }
        return true
    }

    /// The report with only the unreadable processes that the filter may keep: a note names
    /// only what the output is about.
    public func applyingToUnreadable(_ report: TopReport) -> TopReport {
        guard !pids.isEmpty || !commands.isEmpty else { return report }
        var report = report
        report.unreadableProcesses.removeAll { !mayMatch($0) }
        report.unreadable = report.unreadableProcesses.count
        return report
    }

    public func matches(_ process: ProcessUse) -> Bool {
        if !pids.isEmpty && !pids.contains(process.pid) { return false }
        if !users.isEmpty {
            guard let uid = process.identity.uid,
                  users.contains(String(uid)) || users.contains(ProcessIdentity.userName(uid)) else { return false }
        }
        if !commands.isEmpty && !commands.contains(where: { process.identity.comm == $0 || process.command.contains($0) }) {
            return false
        }
        return true
    }
}

extension TopReport {
    /// The rows of `top` grouped `by`, over the processes `filter` selects, in no order. Every
    /// grouping of the same processes adds up to the same totals: a row is the sum of its
    /// processes, and each process falls in exactly one row. Rows are keyed by the name's bytes
    /// (`NameBytes`), so names that differ in a byte (not UTF-8, or canonically equivalent
    /// Unicode) are never merged.
    public func rows(by grouping: TopGrouping, filter: TopFilter = TopFilter()) -> [TopRow] {
        var rows: [[UInt8]: TopRow] = [:]
        var single: [TopRow] = []
        for process in processes where filter.matches(process) {
            if grouping == .process {
                var row = TopRow(name: process.command, pid: process.pid)
                row.add(process)
                single.append(row)
            } else {
                let key = grouping.key(process)
                rows[Array(key.utf8), default: TopRow(name: key)].add(process)
            }
        }
        return grouping == .process ? single : Array(rows.values)
    }

    /// The sum of `rows`: the TOTAL row.
    public static func total(_ rows: [TopRow]) -> TopRow {
        var total = TopRow(name: "TOTAL")
        for row in rows {
            total.processes += row.processes
            total.use += row.use
            for (kind, share) in row.shared { total.shared[kind, default: SharedShare()] += share }
            for (kind, unknown) in row.sharedUnknown { total.sharedUnknown[kind, default: (unknown.reason, 0)].processes += unknown.processes }
        }
        return total
    }
}
