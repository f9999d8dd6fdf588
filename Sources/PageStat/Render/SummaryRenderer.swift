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

    public static func summary(_ summary: SummaryReport, format: OutputFormat, kernelFlags: Bool) -> String {
        let report = summary.report
        switch format {
        case .json:
            var json = JSONWriter()
            json.beginObject()
            json.field("pid", report.pid)
            json.field("page_size", report.pageSize)
            json.field("privileged", report.privileged)
            json.field("notes", strings: report.notes)
            json.field("warnings", strings: summary.warnings)
            json.key("mappings")
            json.beginArray()
            for mapping in report.mappings {
                json.beginObject()
                json.field("start", mapping.scanned.start)
                json.field("end", mapping.scanned.end)
                json.field("kind", mapping.mapping.kind.rawValue)
                json.field("path", name: mapping.mapping.path)
                usageJSON(mapping.counts, mapping.use ?? MemoryUse(), into: &json)
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
            json.endObject()
            json.endObject()
            return json.output + "\n"
        case .csv:
            var csv = CSVTable(headers: ["start", "end", "kind", "path", "present", "swapped", "cached", "none", "unknown",
                                         "rss", "pss", "uss", "swap"] + (kernelFlags ? ["kernel_flags"] : []))
            for mapping in report.mappings {
                let use = mapping.use ?? MemoryUse()
                let counts = mapping.counts
                csv.add([String(mapping.scanned.start), String(mapping.scanned.end), mapping.mapping.kind.rawValue,
                         mapping.mapping.path] + PageState.allCases.map { String(counts[$0]) }
                        + [String(use.rss), optionalNumber(use.pss), optionalNumber(use.uss), String(use.swap)]
                        + (kernelFlags ? [kernelFlagCounts(mapping.runs).map { "\($0)=\($1)" }.joined(separator: " ")] : []))
            }
            let totals = summary.totals
            let counts = report.counts
            csv.add(["", "", "total", ""] + PageState.allCases.map { String(counts[$0]) }
                    + [String(totals.rss), optionalNumber(totals.pss), optionalNumber(totals.uss), String(totals.swap)]
                    + (kernelFlags ? [""] : []))
            return csv.render()
        case .text:
            var table = TextTable(headers: ["RANGE", "KIND", "SIZE", "PRESENT", "SWAPPED", "CACHED", "NONE", "RSS",
                                            "PSS", "USS", "SWAP", "PATH"],
                                  rightAligned: [2, 3, 4, 5, 6, 7, 8, 9, 10])
            func row(_ range: String, _ kind: String, _ size: UInt64, _ counts: PageCounts, _ use: MemoryUse, _ path: String) -> [String] {
                [range, kind, humanBytes(size), String(counts.present), String(counts.swapped), String(counts.cached),
                 String(counts.none), humanBytes(use.rss), optionalSize(use.pss), optionalSize(use.uss),
                 humanBytes(use.swap), path]
            }
            var out = "pid \(report.pid): \(report.mappings.count) mappings, page size \(humanBytes(UInt64(report.pageSize)))"
            out += report.privileged ? "\n\n" : ", unprivileged (no PSS or USS)\n\n"
            var size: UInt64 = 0
            for mapping in report.mappings {
                size += mapping.scanned.length
                table.add(row(mapping.scanned.description, mapping.mapping.kind.rawValue, mapping.scanned.length,
                              mapping.counts, mapping.use ?? MemoryUse(), escapedName(mapping.mapping.path)))
                if kernelFlags {
                    let flags = kernelFlagCounts(mapping.runs)
                    if !flags.isEmpty {
                        table.add(["", "", "", "", "", "", "", "", "", "", "",
                                   "  flags: " + flags.map { "\($0)=\($1)" }.joined(separator: " ")])
                    }
                }
            }
            table.add(row("total", "", size, report.counts, summary.totals, ""))
            out += table.render()
            if report.counts.unknown > 0 { out += "unknown: \(report.counts.unknown) pages\n" }
            if summary.totals.zeroPage > 0 {
                out += "zero page: PRESENT counts \(summary.totals.zeroPage / UInt64(report.pageSize)) pages that map the shared zero page (read, never written); RSS leaves them out, as smaps does\n"
            }
            for warning in summary.warnings { out += "warning: \(escapedName(warning))\n" }
            for note in report.notes { out += "note: \(escapedName(note))\n" }
            return out
        }
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
        case processes, pid, name

        func size(_ row: TopRow) -> UInt64 {
            switch self {
            case .pss: row.use.pss ?? row.use.rss
            case .uss: row.use.uss ?? row.use.rss
            case .rss: row.use.rss
            case .swap: row.use.swap
            case .shmemSwap: row.use.shmemSwap
            case .shmem: row.sharedResident
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

    /// `count` and a noun, singular or plural: "1 process", "3 processes".
    static func amount(_ count: Int, _ singular: String, _ plural: String) -> String {
        "\(count) \(count == 1 ? singular : plural)"
    }

    /// `top`: one row per process or group (`by`), the processes `filter` selects, sorted, at most
    /// `limit` rows, then the TOTAL row: the sum of every selected process, shown or not.
    public static func top(_ report: TopReport, by grouping: TopGrouping = .process, filter: TopFilter = TopFilter(),
                           sort: TopSort, reverse: Bool = false, limit: Int?, format: OutputFormat) -> String {
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
                json.beginObject()
                json.field("resident", share.resident)
                json.field("swapped", share.swapped)
                json.endObject()
            }
            json.endObject()
        }
        func useJSON(_ row: TopRow, _ json: inout JSONWriter) {
            json.field("rss", row.use.rss)
            json.field("pss", optional: row.use.pss)
            json.field("uss", optional: row.use.uss)
            json.field("swap", row.use.swap)
            json.field("shmem_swap", row.use.shmemSwap)
            json.field("shmem_resident", row.sharedResident)
            sharedJSON(row, &json)
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
            json.field("vanished", report.vanished)
            json.field("notes", strings: report.notes)
            json.endObject()
            return json.output + "\n"
        case .csv:
            let first = grouping == .process ? ["pid", "command"] : [groupColumn, "processes"]
            var csv = CSVTable(headers: first + ["rss", "pss", "uss", "swap", "shmem_swap", "shmem_resident"])
            func numbers(_ row: TopRow) -> [String] {
                [String(row.use.rss), optionalNumber(row.use.pss), optionalNumber(row.use.uss), String(row.use.swap),
                 String(row.use.shmemSwap), String(row.sharedResident)]
            }
            for row in rows {
                csv.add((grouping == .process ? [String(row.pid ?? 0), row.name] : [row.name, String(row.processes)]) + numbers(row))
            }
            csv.add((grouping == .process ? ["", "TOTAL"] : ["TOTAL", String(total.processes)]) + numbers(total))
            return csv.render()
        case .text:
            let first = grouping == .process ? "PID" : "PROCS"
            var table = TextTable(headers: [first, "RSS", "PSS", "USS", "SWAP", "SHMEM-SWAP", "SHMEM", groupColumn.uppercased()],
                                  rightAligned: [0, 1, 2, 3, 4, 5, 6])
            func cells(_ row: TopRow, _ first: String, _ name: String) -> [String] {
                [first, humanBytes(row.use.rss), optionalSize(row.use.pss), optionalSize(row.use.uss), humanBytes(row.use.swap),
                 humanBytes(row.use.shmemSwap), humanBytes(row.sharedResident), name]
            }
            for row in rows {
                table.add(cells(row, grouping == .process ? String(row.pid ?? 0) : String(row.processes), escapedName(row.name)))
            }
            table.add(cells(total, grouping == .process ? "" : String(total.processes), "TOTAL"))
            var out = table.render()
            out += amount(total.processes, "process", "processes")
            if grouping != .process { out += " in " + amount(all.count, grouping.rawValue, grouping.plural) }
            if rows.count < all.count { out += ", \(rows.count) shown" }
            if report.unreadable > 0 { out += ", \(report.unreadable) could not be read (permission)" }
            if report.vanished > 0 { out += ", \(report.vanished) exited during the scan" }
            out += "; shared memory is split evenly among the processes mapping each page\n"
            for note in report.notes { out += "note: \(escapedName(note))\n" }
            return out
        }
    }

    // MARK: objects

    public static func objects(_ report: ObjectsReport, format: OutputFormat) -> String {
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
                json.field("inode", object.id.inode)
                json.field("size", object.size)
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
                json.endObject()
            }
            json.endArray()
            json.field("unreadable", report.unreadable)
            json.field("notes", strings: report.notes)
            json.endObject()
            return json.output + "\n"
        case .csv:
            var csv = CSVTable(headers: ["kind", "path", "inode", "size", "resident", "swapped", "holes", "processes"])
            for object in report.objects {
                csv.add([object.kind, object.path, String(object.id.inode), String(object.size),
                         optionalNumber(object.resident), optionalNumber(object.swapped), optionalNumber(object.holes),
                         users(object, escaped: false)])
            }
            return csv.render()
        case .text:
            var table = TextTable(headers: ["KIND", "SIZE", "RESIDENT", "SWAPPED", "HOLES", "PATH", "PROCESSES"],
                                  rightAligned: [1, 2, 3, 4])
            let pageSize = UInt64(ProcFS.pageSize)
            for object in report.objects {
                table.add([object.kind, humanBytes(object.size), optionalSize(object.resident.map { $0 * pageSize }),
                           optionalSize(object.swapped.map { $0 * pageSize }), optionalSize(object.holes.map { $0 * pageSize }),
                           escapedName(object.path), users(object, escaped: true)])
            }
            var out = table.render() + "\(report.objects.count) shared-memory objects"
            if report.unreadable > 0 { out += ", \(report.unreadable) processes could not be read" }
            out += "\n"
            for note in report.notes { out += "note: \(escapedName(note))\n" }
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
                        json.endObject()
                    }
                    json.endArray()
                }
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
            out += table.render()
            for report in reports {
                guard let runs = report.runs else { continue }
                out += "\n\(escapedName(report.path)):\n"
                for run in runs {
                    out += "    page \(run.first)-\(run.first + run.pages - 1)  \(run.pages) pages  \(run.state)\n"
                }
            }
            return out
        }
    }
}
