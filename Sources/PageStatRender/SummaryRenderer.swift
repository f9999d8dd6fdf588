import PageStat

/// Renders the whole-report commands as text tables, JSON or CSV, one file per report:
/// `summary` here, `top`, `objects` and `file` in TopRenderer.swift, ObjectsRenderer.swift and
/// FileRenderer.swift.
public enum SummaryRenderer {
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
}
