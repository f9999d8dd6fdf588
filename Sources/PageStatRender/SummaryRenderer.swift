import PageStat

/// Renders `summary`, `top`, `objects` and `file` reports as text tables, JSON or CSV.
public enum SummaryRenderer {
    // MARK: summary

    static func optionalSize(_ value: UInt64?) -> String { value.map(humanBytes) ?? "?" }
    static func optionalNumber(_ value: UInt64?) -> String { value.map { String($0) } ?? "" }

    /// Kernel page flags counted over a mapping's present pages, by name.
    static func kernelFlagCounts(_ runs: [PageRun]) -> [(String, UInt64)] {
        KPageFlags.names.compactMap { bit, name in
            let pages = runs.reduce(UInt64(0)) { sum, run in
                (run.kernelFlags?.rawValue ?? 0) & (1 << UInt64(bit)) != 0 ? sum + run.pages : sum
            }
            return pages == 0 ? nil : (name, pages)
        }
    }

    public static func summary(_ summary: SummaryReport, format: OutputFormat, kernelFlags: Bool,
                               layout: TableLayout = TableLayout()) -> String {
        let report = summary.report
        switch format {
        case .json:
            var json = JSONWriter()
            json.beginObject()
            json.field("pid", report.pid)
            json.field("page_size", report.pageSize)
            json.field("privileged", report.privileged)
            json.field("notes", strings: report.notes.map(\.description))
            json.field("warnings", strings: summary.warnings)
            if let round = layout.round { json.field("round", round) }
            json.key("mappings")
            json.beginArray()
            for (index, mapping) in report.mappings.enumerated() {
                json.beginObject()
                json.field("start", mapping.scanned.start)
                json.field("end", mapping.scanned.end)
                json.field("kind", mapping.mapping.kind.rawValue)
                json.field("path", name: mapping.mapping.path)
                usageJSON(mapping.counts, mapping.use ?? MemoryUse(), into: &json)
                if let changes = layout.changes { changeJSON(changes.mappings[index], into: &json) }
                if kernelFlags {
                    json.key("kernel_flags")
                    json.beginObject()
                    for (name, pages) in kernelFlagCounts(mapping.runs) { json.field(name, pages) }
                    json.endObject()
                }
                json.endObject()
            }
            json.endArray()
            json.key("totals")
            json.beginObject()
            usageJSON(report.counts, summary.totals, into: &json)
            if let changes = layout.changes { changeJSON(changes.total, into: &json) }
            json.endObject()
            json.endObject()
            return json.output + "\n"
        case .csv, .text:
            return table(summary, csv: format == .csv, kernelFlags: kernelFlags, layout: layout)
        }
    }

    /// `"change_pages": {"present": N, "swapped": N}`, signed; null before the second round.
    static func changeJSON(_ change: PageChange?, into json: inout JSONWriter) {
        json.key("change_pages")
        guard let change else { return json.null() }
        json.beginObject()
        json.field("present", change.present)
        json.field("swapped", change.swapped)
        json.endObject()
    }

    /// How a mapping's (or the total's) present and swapped pages changed since the round before.
    public struct PageChange: Sendable, Hashable {
        public var present: Int64
        public var swapped: Int64
        public init(present: Int64, swapped: Int64) {
            self.present = present
            self.swapped = swapped
        }
    }

    /// The changes of a `summary --interval` round: per mapping (in the report's order; nil for
    /// a mapping that was not there, the same way, the round before) and in total (nil in the
    /// first round).
    public struct RoundChanges: Sendable {
        public var mappings: [PageChange?]
        public var total: PageChange?
        public init(mappings: [PageChange?], total: PageChange?) {
            self.mappings = mappings
            self.total = total
        }
    }

    /// A column of `summary`'s text and CSV tables.
    public enum SummaryColumn: String, Sendable, CaseIterable {
        case range, start, end, kind, size, present, swapped, cached, none, unknown, rss, pss, uss, swap
        /// With --interval: the change in present and swapped pages since the round before.
        case presentChange = "present-change", swappedChange = "swapped-change"
        case path

        /// The columns each format shows unless others are asked for.
        public static let textDefault: [SummaryColumn] = [.range, .kind, .size, .present, .swapped, .cached, .none, .rss, .pss, .uss, .swap, .path]
        public static let csvDefault: [SummaryColumn] = [.start, .end, .kind, .path, .present, .swapped, .cached, .none, .unknown, .rss, .pss, .uss, .swap]

        /// The CSV header: the unit in the name (addresses are bytes too).
        var csvName: String {
            switch self {
            case .presentChange: "present_change_pages"
            case .swappedChange: "swapped_change_pages"
            case .present, .swapped, .cached, .none, .unknown: rawValue + "_pages"
            case .size, .rss, .pss, .uss, .swap: rawValue + "_bytes"
            default: rawValue
            }
        }

        var rightAligned: Bool { ![.range, .start, .end, .kind, .path].contains(self) }

        var header: String {
            switch self {
            case .presentChange: "\u{394}PRESENT"
            case .swappedChange: "\u{394}SWAPPED"
            default: rawValue.uppercased()
            }
        }

        /// The default columns with the change columns, for --interval: before the path in
        /// text, at the end in CSV.
        static func withChanges(_ columns: [SummaryColumn]) -> [SummaryColumn] {
            guard let path = columns.firstIndex(of: .path), path == columns.count - 1 else {
                return columns + [.presentChange, .swappedChange]
            }
            var out = columns
            out.insert(contentsOf: [.presentChange, .swappedChange], at: path)
            return out
        }
    }

    /// How `summary` lays out its text and CSV tables.
    public struct TableLayout: Sendable {
        /// nil: the format's default columns.
        public var columns: [SummaryColumn]?
        /// Text only: sizes and page counts in human units, bytes or pages.
        public var unit: SizeUnit
        /// Without headers: no title line and no header row (text), no header row (CSV); the
        /// warnings and notes are left to the caller (text).
        public var headers: Bool
        /// Text only: page counts and memory use as a share of each row's size (`--percent`).
        public var percent = false
        /// With --interval: the round's number (from 1) and changes.
        public var round: Int?
        public var changes: RoundChanges?

        public init(columns: [SummaryColumn]? = nil, unit: SizeUnit = .human, headers: Bool = true) {
            self.columns = columns
            self.unit = unit
            self.headers = headers
        }
    }

    static func table(_ summary: SummaryReport, csv: Bool, kernelFlags: Bool, layout: TableLayout) -> String {
        let report = summary.report
        let pageSize = UInt64(report.pageSize)
        let defaults = csv ? SummaryColumn.csvDefault : SummaryColumn.textDefault
        let columns = layout.columns ?? (layout.changes == nil ? defaults : SummaryColumn.withChanges(defaults))
        /// One row's cells; `mapping` nil for the total row.
        func cells(_ mapping: MappingReport?, counts: PageCounts, use: MemoryUse, size: UInt64, change: PageChange?) -> [String] {
            func signed(_ pages: Int64?) -> String {
                guard let pages else { return csv ? "" : "-" }
                if csv { return String(pages) }
                let magnitude = layout.unit.cell(bytes: pages.magnitude * pageSize, pageSize: pageSize)
                return pages > 0 ? "+" + magnitude : pages < 0 ? "-" + magnitude : "0"
            }
            /// `--percent`: a share of the row's size, one decimal.
            func percent(_ value: UInt64) -> String {
                guard size > 0 else { return "-" }
                let tenths = (value * 1000 + size / 2) / size
                return "\(tenths / 10).\(tenths % 10)%"
            }
            func pages(_ count: UInt64) -> String {
                csv ? String(count) : layout.percent ? percent(count * pageSize) : layout.unit.cell(bytes: count * pageSize, pageSize: pageSize)
            }
            func bytes(_ value: UInt64?) -> String {
                guard let value else { return csv ? "" : "?" }
                return csv ? String(value) : layout.percent ? percent(value) : layout.unit.cell(bytes: value, pageSize: pageSize)
            }
            return columns.map { column in
                switch column {
                case .range: mapping?.scanned.description ?? "total"
                case .start: mapping.map { String($0.scanned.start) } ?? ""
                case .end: mapping.map { String($0.scanned.end) } ?? ""
                case .kind: mapping?.mapping.kind.rawValue ?? (csv ? "total" : "")
                case .size: csv ? String(size) : layout.unit.cell(bytes: size, pageSize: pageSize)
                case .present, .swapped, .cached, .none, .unknown: pages(counts[PageState(name: column.rawValue)!])
                case .rss: bytes(use.rss)
                case .pss: bytes(use.pss)
                case .uss: bytes(use.uss)
                case .swap: bytes(use.swap)
                case .presentChange: signed(change?.present)
                case .swappedChange: signed(change?.swapped)
                case .path: mapping.map { csv ? $0.mapping.path : escapedName($0.mapping.path) } ?? ""
                }
            }
        }
        var rows: [[String]] = []
        var size: UInt64 = 0
        for (index, mapping) in report.mappings.enumerated() {
            size += mapping.scanned.length
            var row = cells(mapping, counts: mapping.counts, use: mapping.use ?? MemoryUse(), size: mapping.scanned.length,
                            change: layout.changes?.mappings[index] ?? nil)
            let flags = kernelFlags ? kernelFlagCounts(mapping.runs).map { "\($0)=\($1)" }.joined(separator: " ") : ""
            if csv && kernelFlags { row.append(flags) }
            rows.append(row)
            if !csv && !flags.isEmpty {
                rows.append(Array(repeating: "", count: columns.count - 1) + ["  flags: " + flags])
            }
        }
        var total = cells(nil, counts: report.counts, use: summary.totals, size: size, change: layout.changes?.total)
            + (csv && kernelFlags ? [""] : [])
        if !csv, let first = columns.first, !first.rightAligned, first != .range { total[0] = "total" }
        if csv {
            // Rounds of --interval: a leading round column, the header in the first round only.
            let round = layout.round.map { [String($0)] } ?? []
            var table = CSVTable(headers: (round.isEmpty ? [] : ["round"]) + columns.map(\.csvName) + (kernelFlags ? ["kernel_flags"] : []))
            for row in rows + [total] { table.add(round + row) }
            let text = table.render()
            return layout.headers && (layout.round ?? 1) == 1 ? text : String(text.drop { $0 != "\n" }.dropFirst())
        }
        var table = TextTable(headers: columns.map(\.header),
                              rightAligned: Set(columns.indices.filter { columns[$0].rightAligned }))
        for row in rows + [total] { table.add(row) }
        var out = ""
        if layout.headers {
            out = "pid \(report.pid): \(counted(report.mappings.count, "mapping")), page size \(humanBytes(pageSize))"
            out += report.privileged ? "" : ", unprivileged (no PSS or USS)"
            if let round = layout.round { out += ", round \(round)" + (round == 1 ? "" : " (\u{394}: since the round before)") }
            switch layout.unit {
            case .human: break
            case .bytes: out += "; sizes in bytes"
            case .pages: out += "; sizes in pages"
            }
            out += layout.percent ? "; pages and memory use in percent of each row's SIZE\n\n" : "\n\n"
        }
        let rendered = table.render()
        out += layout.headers ? rendered : String(rendered.drop { $0 != "\n" }.dropFirst())
        if layout.headers { out += footer(summary) }
        return out
    }

    /// The lines under the text table: unknown pages, the zero page, warnings and notes.
    public static func footer(_ summary: SummaryReport) -> String {
        let report = summary.report
        var out = ""
        if report.counts.unknown > 0 { out += "unknown: \(counted(report.counts.unknown, "page"))\n" }
        if summary.totals.zeroPage > 0 {
            out += "zero page: PRESENT counts \(counted(summary.totals.zeroPage / UInt64(report.pageSize), "page")) that map the shared zero page (read, never written); RSS leaves them out, as smaps does\n"
        }
        for warning in summary.warnings { out += "warning: \(escapedName(warning))\n" }
        for note in report.notes { out += "note: \(escapedName(note.description))\n" }
        return out
    }

    static func usageJSON(_ counts: PageCounts, _ use: MemoryUse, into json: inout JSONWriter) {
        json.key("pages")
        json.beginObject()
        for state in PageState.allCases { json.field(state.description, counts[state]) }
        json.endObject()
        json.field("rss", use.rss)
        json.field("pss", optional: use.pss)
        json.field("uss", optional: use.uss)
        json.field("swap", use.swap)
        json.field("zero_page", use.zeroPage)
    }

    // MARK: top

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

    // MARK: objects

    public static func objects(_ report: ObjectsReport, format: OutputFormat, verbose: Bool = false) -> String {
        /// `pid/command ...`; text output escapes the commands, CSV quotes the field instead.
        func users(_ object: SharedObject, escaped: Bool) -> String {
            object.users.map { "\($0.pid)/\(escaped ? escapedName($0.command) : $0.command)" }.joined(separator: " ")
        }
        switch format {
        case .json:
            var json = JSONWriter()
            json.beginObject()
            json.key("objects")
            json.beginArray()
            for object in report.objects {
                json.beginObject()
                json.field("kind", object.kind)
                json.field("path", name: object.path)
                json.field("dev", "\(object.id.deviceMajor):\(object.id.deviceMinor)")
                json.field("inode", object.id.inode)
                json.field("size", optional: object.size)
                json.key("pages")
                json.beginObject()
                for (name, value) in [("resident", object.resident), ("swapped", object.swapped), ("holes", object.holes)] {
                    json.field(name, optional: value)
                }
                json.endObject()
                json.key("processes")
                json.beginArray()
                for user in object.users {
                    json.beginObject()
                    json.field("pid", user.pid)
                    json.field("command", name: user.command)
                    json.field("maps", user.maps)
                    json.field("holds_open", user.holdsOpen)
                    json.endObject()
                }
                json.endArray()
                if let unknown = object.unknown { json.field("unknown", unknown) }
                json.endObject()
            }
            json.endArray()
            json.field("unreadable", report.unreadable)
            unreadableJSON(report.unreadableProcesses, &json)
            json.field("notes", strings: report.notes.map(\.description))
            json.endObject()
            return json.output + "\n"
        case .csv:
            var csv = CSVTable(headers: ["kind", "path", "dev", "inode", "size", "resident", "swapped", "holes", "processes"])
            for object in report.objects {
                csv.add([object.kind, escapedName(object.path), "\(object.id.deviceMajor):\(object.id.deviceMinor)",
                         String(object.id.inode), optionalNumber(object.size),
                         optionalNumber(object.resident), optionalNumber(object.swapped), optionalNumber(object.holes),
                         users(object, escaped: true)])
            }
            return csv.render()
        case .text:
            var table = TextTable(headers: ["KIND", "SIZE", "RESIDENT", "SWAPPED", "HOLES", "PATH", "PROCESSES"],
                                  rightAligned: [1, 2, 3, 4])
            let pageSize = UInt64(ProcFS.pageSize)
            for object in report.objects {
                table.add([object.kind, optionalSize(object.size), optionalSize(object.resident.map { $0 * pageSize }),
                           optionalSize(object.swapped.map { $0 * pageSize }), optionalSize(object.holes.map { $0 * pageSize }),
                           escapedName(object.path), users(object, escaped: true)])
            }
            var out = table.render() + counted(report.objects.count, "shared-memory object")
            if report.unreadable > 0 { out += ", \(counted(report.unreadable, "process", "processes")) could not be read" }
            out += "\n"
            out += unreadableLines(report.unreadableProcesses, verbose: verbose)
            for note in report.notes { out += "note: \(escapedName(note.description))\n" }
            return out
        }
    }

    // MARK: file

    public static func files(_ reports: [FileReport], format: OutputFormat) -> String {
        let keys = ["cached", "dirty", "writeback", "evicted", "swapped", "holes"]
        func values(_ report: FileReport) -> [UInt64?] {
            [report.cached, report.dirty, report.writeback, report.evicted, report.swapped, report.holes]
        }
        switch format {
        case .json:
            var json = JSONWriter()
            json.beginObject()
            json.key("files")
            json.beginArray()
            for report in reports {
                json.beginObject()
                json.field("path", name: report.path)
                json.field("size", report.size)
                if let hugePageSize = report.hugePageSize { json.field("huge_page_size", hugePageSize) }
                json.key("pages")
                json.beginObject()
                for (key, value) in zip(keys, values(report)) { if let value { json.field(key, value) } }
                json.endObject()
                if let runs = report.runs {
                    json.key("runs")
                    json.beginArray()
                    for run in runs {
                        json.beginObject()
                        json.field("first", run.first)
                        json.field("pages", run.pages)
                        json.field("state", run.state.description)
                        if let swap = run.swap {
                            json.key("swap")
                            json.beginObject()
                            json.field("type", UInt64(swap.type))
                            json.field("offset", swap.offset)
                            json.endObject()
                        }
                        json.endObject()
                    }
                    json.endArray()
                }
                json.field("notes", strings: report.notes.map(\.description))
                json.endObject()
            }
            json.endArray()
            json.endObject()
            return json.output + "\n"
        case .csv:
            var csv = CSVTable(headers: ["path", "size"] + keys)
            for report in reports {
                csv.add([report.path, String(report.size)] + values(report).map(optionalNumber))
            }
            return csv.render()
        case .text:
            var table = TextTable(headers: ["SIZE", "CACHED", "DIRTY", "WRITEBACK", "EVICTED", "SWAPPED", "HOLES", "PATH"],
                                  rightAligned: [0, 1, 2, 3, 4, 5, 6])
            var out = ""
            for report in reports {
                table.add([humanBytes(report.size)] + values(report).map { $0.map { String($0) } ?? "-" } + [escapedName(report.path)])
            }
            if reports.count > 1 {
                // A column's total over the files that have it ("-" when none has).
                let columns = reports.map(values)
                let sums = keys.indices.map { column -> String in
                    let known = columns.compactMap { $0[column] }
                    return known.isEmpty ? "-" : String(known.reduce(0, +))
                }
                table.add([humanBytes(reports.reduce(0) { $0 + $1.size })] + sums + ["total (\(counted(reports.count, "file")))"])
            }
            out += table.render()
            for report in reports {
                guard let runs = report.runs else { continue }
                out += "\n\(escapedName(report.path)):\n"
                for run in runs {
                    let swap = run.swap.map { " swap=\($0.type):\(hex($0.offset))" } ?? ""
                    out += "    page \(run.first)-\(run.first + run.pages - 1)  \(counted(run.pages, "page"))  \(run.state)\(swap)\n"
                }
            }
            return out
        }
    }
}
