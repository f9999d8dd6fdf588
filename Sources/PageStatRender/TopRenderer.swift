import PageStat

/// `top`: one row per process or group as a text table, JSON or CSV (the Prometheus exposition
/// is Prometheus.swift's), and the lines about unreadable processes that `objects` shares.
extension SummaryRenderer {
    /// A column of `top` to sort by. Sizes and counts sort largest first, names and pids in
    /// ascending order; `reverse` turns either around.
    public enum TopSort: String, Sendable, CaseIterable {
        case pss, uss, rss, swap
        case shmemSwap = "shmem-swap"
        case shmem
        case shmemCached = "shmem-cached"
        case processes, pid, name

        func size(_ row: TopRow) -> UInt64 {
            switch self {
            case .pss: row.use.pss ?? row.use.rss
            case .uss: row.use.uss ?? row.use.rss
            case .rss: row.use.rss
            case .swap: row.use.swap
            case .shmemSwap: row.use.shmemSwap
            case .shmem: row.sharedResident
            case .shmemCached: row.sharedCached
            case .processes: UInt64(row.processes)
            case .pid, .name: 0
            }
        }

        /// Whether `a` comes before `b`; ties go by name, then pid.
        func precedes(_ a: TopRow, _ b: TopRow, reverse: Bool) -> Bool {
            let ascending: Bool
            switch self {
            case .name:
                if a.name != b.name { return (a.name < b.name) != reverse }
                ascending = (a.pid ?? 0) < (b.pid ?? 0)
                return ascending != reverse
            case .pid:
                if a.pid != b.pid { return ((a.pid ?? 0) < (b.pid ?? 0)) != reverse }
                return (a.name < b.name) != reverse
            default:
                let x = size(a), y = size(b)
                if x != y { return (x > y) != reverse }
                if a.name != b.name { return a.name < b.name }
                return (a.pid ?? 0) < (b.pid ?? 0)
            }
        }
    }

    /// A column of `top`'s text and CSV tables (`--columns`).
    public enum TopColumn: String, Sendable, CaseIterable {
        case pid, processes, rss, pss, uss, swap
        case shmemSwap = "shmem-swap"
        case shmem
        case shmemCached = "shmem-cached"
        /// The command (`--by process`), or the group's command name, user or cgroup.
        case name

        /// The columns shown unless others are asked for: the pid (processes) or the number of
        /// processes (groups) first; in text the name last, in CSV second.
        public static func defaults(_ grouping: TopGrouping, csv: Bool) -> [TopColumn] {
            let sizes: [TopColumn] = [.rss, .pss, .uss, .swap, .shmemSwap, .shmem, .shmemCached]
            if csv { return (grouping == .process ? [.pid, .name] : [.name, .processes]) + sizes }
            return [grouping == .process ? .pid : .processes] + sizes + [.name]
        }

        /// The CSV header (the newer columns carry their unit in the name).
        func csvName(_ groupColumn: String) -> String {
            switch self {
            case .name: groupColumn
            case .shmemSwap: "shmem_swap"
            case .shmem: "shmem_resident"
            case .shmemCached: "shmem_cached_bytes"
            default: rawValue
            }
        }

        func header(_ groupColumn: String) -> String {
            switch self {
            case .processes: "PROCS"
            case .name: groupColumn.uppercased()
            default: rawValue.uppercased()
            }
        }
    }

    /// `count` and a noun, singular or plural: "1 process", "3 processes".
    static func amount(_ count: Int, _ singular: String, _ plural: String) -> String {
        "\(count) \(count == 1 ? singular : plural)"
    }

    /// `top`: one row per process or group (`by`), the processes `filter` selects, sorted, at most
    /// `limit` rows, then the TOTAL row: the sum of every selected process, shown or not.
    /// Text: the processes that could not be read, each named with its reason when there are at
    /// most `namedUpTo` (or `verbose`), else a count that points to `--verbose`.
    static func unreadableLines(_ processes: [UnreadableProcess], verbose: Bool, namedUpTo: Int = 3) -> String {
        guard !processes.isEmpty else { return "" }
        if verbose || processes.count <= namedUpTo {
            return processes.map {
                "note: \(escapedName(ScanNote.processUnreadable(pid: $0.pid, command: $0.command, $0.reason).description))\n"
            }.joined()
        }
        let permission = processes.count { if case .permissionDenied = $0.reason { true } else { false } }
        return "note: \(counted(processes.count, "process", "processes")) could not be read"
            + (permission > 0 ? " (\(permission == processes.count ? "all" : String(permission)) for permission)" : "")
            + ": --verbose names each with its reason\n"
    }

    /// JSON: `unreadable_processes`, each with its pid, command and reason.
    static func unreadableJSON(_ processes: [UnreadableProcess], _ json: inout JSONWriter) {
        json.key("unreadable_processes")
        json.beginArray()
        for process in processes {
            json.beginObject()
            json.field("pid", process.pid)
            json.field("command", name: process.command)
            json.field("reason", process.reason.description)
            json.endObject()
        }
        json.endArray()
    }

    public static func top(_ report: TopReport, by grouping: TopGrouping = .process, filter: TopFilter = TopFilter(),
                           sort: TopSort, reverse: Bool = false, limit: Int?, format: OutputFormat,
                           columns: [TopColumn]? = nil, verbose: Bool = false) -> String {
        let all = report.rows(by: grouping, filter: filter)
        let total = TopReport.total(all)
        var rows = all.sorted { sort.precedes($0, $1, reverse: reverse) }
        if let limit { rows = Array(rows.prefix(limit)) }
        let groupColumn = grouping == .process ? "command" : grouping.rawValue
        func sharedJSON(_ row: TopRow, _ json: inout JSONWriter) {
            json.key("shared")
            json.beginObject()
            for kind in SharedMemoryKind.allCases {
                let share = row.shared[kind] ?? SharedShare()
                json.key(kind.rawValue)
                // A share that could not be counted is null, its reason under `unknown`.
                guard row.sharedUnknown[kind] == nil else {
                    json.null()
                    continue
                }
                json.beginObject()
                json.field("resident", share.resident)
                json.field("swapped", share.swapped)
                json.field("cached_bytes", share.cached)
                json.endObject()
            }
            json.endObject()
        }
        func useJSON(_ row: TopRow, _ json: inout JSONWriter) {
            json.field("rss", row.use.rss)
            json.field("pss", optional: row.use.pss)
            json.field("uss", optional: row.use.uss)
            let known = row.sharedKnown
            json.field("swap", optional: known ? row.use.swap : nil)
            json.field("shmem_swap", optional: known ? row.use.shmemSwap : nil)
            json.field("shmem_resident", optional: known ? row.sharedResident : nil)
            json.field("shmem_cached_bytes", optional: known ? row.sharedCached : nil)
            sharedJSON(row, &json)
            if !known {
                json.key("unknown")
                json.beginObject()
                for kind in SharedMemoryKind.allCases {
                    if let unknown = row.sharedUnknown[kind] { json.field(kind.rawValue, unknown.reason) }
                }
                json.endObject()
            }
        }
        switch format {
        case .json:
            var byPid: [Int32: ProcessUse] = [:]
            if grouping == .process { for process in report.processes { byPid[process.pid] = process } }
            var json = JSONWriter()
            json.beginObject()
            json.field("privileged", report.privileged)
            json.field("by", grouping.rawValue)
            json.key(grouping == .process ? "processes" : "groups")
            json.beginArray()
            for row in rows {
                json.beginObject()
                if let pid = row.pid, let process = byPid[pid] {
                    json.field("pid", pid)
                    json.field("command", name: row.name)
                    json.field("comm", name: process.identity.comm)
                    if let uid = process.identity.uid {
                        json.field("uid", uid)
                        json.field("user", name: ProcessIdentity.userName(uid))
                    }
                    if let cgroup = process.identity.cgroup { json.field("cgroup", name: cgroup) }
                } else {
                    json.field(groupColumn, name: row.name)
                    json.field("processes", row.processes)
                }
                useJSON(row, &json)
                json.endObject()
            }
            json.endArray()
            json.key("total")
            json.beginObject()
            json.field("processes", total.processes)
            useJSON(total, &json)
            json.endObject()
            json.field("unreadable", report.unreadable)
            unreadableJSON(report.unreadableProcesses, &json)
            json.field("vanished", report.vanished)
            json.field("notes", strings: report.notes.map(\.description))
            json.endObject()
            return json.output + "\n"
        case .csv, .text:
            let csv = format == .csv
            let shown = columns ?? TopColumn.defaults(grouping, csv: csv)
            /// One row's cells; `pid` and `name` as given (the TOTAL row's are its own).
            func cells(_ row: TopRow, pid: String, name: String) -> [String] {
                func size(_ value: UInt64?) -> String { csv ? optionalNumber(value) : optionalSize(value) }
                // Shares that could not all be counted are unknown (`?`, empty in CSV), never a
                // lower bound shown as the truth.
                func shared(_ value: UInt64) -> UInt64? { row.sharedKnown ? value : nil }
                return shown.map { column in
                    switch column {
                    case .pid: pid
                    case .processes: String(row.processes)
                    case .rss: size(row.use.rss)
                    case .pss: size(row.use.pss)
                    case .uss: size(row.use.uss)
                    case .swap: size(shared(row.use.swap))
                    case .shmemSwap: size(shared(row.use.shmemSwap))
                    case .shmem: size(shared(row.sharedResident))
                    case .shmemCached: size(shared(row.sharedCached))
                    case .name: name
                    }
                }
            }
            if csv {
                var table = CSVTable(headers: shown.map { $0.csvName(groupColumn) })
                // Names escaped as in text (reversibly), so names that differ only in bytes that
                // are not UTF-8 stay apart.
                for row in rows { table.add(cells(row, pid: row.pid.map { String($0) } ?? "", name: escapedName(row.name))) }
                table.add(cells(total, pid: "", name: "TOTAL"))
                return table.render()
            }
            var table = TextTable(headers: shown.map { $0.header(groupColumn) },
                                  rightAligned: Set(shown.indices.filter { shown[$0] != .name }))
            for row in rows { table.add(cells(row, pid: row.pid.map { String($0) } ?? "", name: escapedName(row.name))) }
            table.add(cells(total, pid: "", name: "TOTAL"))
            var out = table.render()
            out += amount(total.processes, "process", "processes")
            if grouping != .process { out += " in " + amount(all.count, grouping.rawValue, grouping.plural) }
            if rows.count < all.count { out += ", \(rows.count) shown" }
            if report.unreadable > 0 { out += ", \(report.unreadable) could not be read" }
            if report.vanished > 0 { out += ", \(report.vanished) exited during the scan" }
            out += "; shared memory is split evenly among the processes mapping each page\n"
            out += unreadableLines(report.unreadableProcesses, verbose: verbose)
            for kind in SharedMemoryKind.allCases {
                guard let unknown = total.sharedUnknown[kind] else { continue }
                out += "unknown (?): the \(kind.rawValue) share of \(amount(unknown.processes, "process", "processes")): \(escapedName(unknown.reason))\n"
            }
            for note in report.notes { out += "note: \(escapedName(note.description))\n" }
            return out
        }
    }
}
