import PageStat

/// Renders a `ProcessReport` as the `show` command prints it.
public enum ReportRenderer {
    /// The JSON contract: `{"pid", "page_size", "privileged", "view", "mappings": [{"start",
    /// "end", "permissions", "offset", "path", "kind" [, "huge_page_size"], "runs": [{"start", "pages", "state", "flags"
    /// [, "pfn"] [, "swap": {"type", "offset"}]}]}], "totals": {...}, "notes": [...]}`. Addresses are byte
    /// integers. A path that is not valid UTF-8 also gets `"path_bytes"` (see `JSONWriter.field(_:name:)`).
    public static func json(_ report: ProcessReport) -> String {
        var whole: [UInt8] = []
        writeJSON(report) { whole.append(contentsOf: $0) }
        return String(decoding: whole, as: UTF8.self)
    }

    /// Streams the JSON report to `sink` in 64 KiB pieces.
    public static func writeJSON(_ report: ProcessReport, to sink: @escaping (UnsafeRawBufferPointer) -> Void) {
        var stream = JSONReportStream(pid: report.pid, pageSize: UInt64(report.pageSize), privileged: report.privileged,
                                      view: report.view, sink: sink)
        stream.feed(report.mappings)
        stream.finish(notes: report.notes)
    }

    /// Text for a person: one line per mapping and per run, sizes in human units, totals, notes.
    public static func text(_ report: ProcessReport) -> String {
        var whole = ""
        writeText(report) { whole += $0 }
        return whole
    }

    /// The text of `text(_:)`, handed to `sink` in pieces of about 64 KiB.
    public static func writeText(_ report: ProcessReport, to sink: @escaping (String) -> Void) {
        var stream = TextReportStream(pid: report.pid, pageSize: UInt64(report.pageSize), privileged: report.privileged,
                                      view: report.view, sink: sink)
        stream.feed(report.mappings)
        stream.finish(notes: report.notes)
    }

    /// One run of the JSON contract, in one go: the hot loop of a fragmented report.
    @inline(__always)
    static func writeRun(_ run: PageRun, into json: inout JSONWriter) {
        json.rawElement()
        // At most: five numbers of 20 digits, the keys, and every flag's (100 bytes) and kernel
        // flag's name (400 bytes).
        json.rawWrite(atMost: 1024) { out in
            out.put("{\"start\":")
            out.putDecimal(run.start)
            out.put(",\"pages\":")
            out.putDecimal(run.pages)
            out.put(",\"state\":\"")
            out.put(run.state.staticName)
            out.put("\",\"flags\":[")
            if !run.flags.isEmpty { out.putNames(of: run.flags, quoted: true) }
            out.put(0x5d)
            if let kernelFlags = run.kernelFlags {
                out.put(",\"kernel_flags\":[")
                out.putNames(of: kernelFlags, quoted: true)
                out.put(0x5d)
            }
            if let pfn = run.pfn {
                out.put(",\"pfn\":")
                out.putDecimal(pfn)
            }
            if let swap = run.swap {
                out.put(",\"swap\":{\"type\":")
                out.putDecimal(UInt64(swap.type))
                out.put(",\"offset\":")
                out.putDecimal(swap.offset)
                out.put(0x7d)
            }
            out.put(0x7d)
        }
        json.rawElementDone()
    }

    static func countsJSON(_ counts: PageCounts, into json: inout JSONWriter) {
        json.beginObject()
        for state in PageState.allCases { json.field(state.description, counts[state]) }
        json.endObject()
    }

    /// `present 1.0 MiB (256 pages), swapped 4.0 KiB (1 page), ...`, states with zero pages
    /// left out; in `unit`: `present 1048576 B (256 pages)`, or `present 256 pages`.
    public static func summary(_ counts: PageCounts, pageSize: UInt64, unit: SizeUnit = .human) -> String {
        let parts = PageState.allCases.compactMap { state -> String? in
            guard counts[state] > 0 else { return nil }
            let pages = counted(counts[state], "page")
            return unit == .pages ? "\(state) \(pages)" : "\(state) \(unit.text(bytes: counts[state] * pageSize, pageSize: pageSize)) (\(pages))"
        }
        return parts.isEmpty ? "empty" : parts.joined(separator: ", ")
    }

    static func pad(_ string: String, _ width: Int, right: Bool = false) -> String {
        guard string.count < width else { return string }
        let padding = String(repeating: " ", count: width - string.count)
        return right ? padding + string : string + padding
    }
}

extension ScanConsumer {
    /// Hands over materialised mappings, as a scan would.
    public mutating func feed(_ mappings: [MappingReport]) {
        for mapping in mappings {
            begin(mapping.mapping, scanned: mapping.scanned)
            runs(mapping.runs)
            end(use: mapping.use)
        }
    }
}

/// The `show` JSON report written as a scan streams it: each run as it arrives, the totals and
/// notes at the end, in 64 KiB pieces to `sink`.
public struct JSONReportStream: ScanConsumer {
    private var json: JSONWriter
    private let sink: (UnsafeRawBufferPointer) -> Void
    private var totals = PageCounts()

    public init(pid: Int32, pageSize: UInt64, privileged: Bool, view: ReportView,
                sink: @escaping (UnsafeRawBufferPointer) -> Void) {
        self.sink = sink
        json = JSONWriter(sink: sink)
        json.beginObject()
        json.field("pid", pid)
        json.field("page_size", pageSize)
        json.field("privileged", privileged)
        json.field("view", view.rawValue)
        json.key("mappings")
        json.beginArray()
    }

    public mutating func begin(_ mapping: Mapping, scanned: AddressRange) {
        json.beginObject()
        json.field("start", scanned.start)
        json.field("end", scanned.end)
        json.field("permissions", mapping.permissions)
        json.field("offset", mapping.offset + (scanned.start - mapping.range.start))
        json.field("path", name: mapping.path)
        json.field("kind", mapping.kind.rawValue)
        if let hugePageSize = mapping.hugePageSize { json.field("huge_page_size", hugePageSize) }
        json.key("runs")
        json.beginArray()
    }

    public mutating func runs(_ runs: [PageRun]) {
        for run in runs {
            totals[run.state] += run.pages
            ReportRenderer.writeRun(run, into: &json)
        }
    }

    public mutating func end(use: MemoryUse?) {
        json.endArray()
        json.endObject()
    }

    /// Closes the report with its totals and notes.
    public mutating func finish(notes: [ScanNote]) {
        json.endArray()
        json.key("totals")
        ReportRenderer.countsJSON(totals, into: &json)
        json.field("notes", strings: notes.map(\.description))
        json.endObject()
        json.flush()
        [UInt8(0x0a)].withUnsafeBytes(sink)
    }
}

/// The `show` text report written as a scan streams it: a line per mapping, a line per run, the
/// mapping's page counts after its runs, totals and notes at the end; handed to `sink` in pieces
/// of about 64 KiB. Run lines are written straight into a byte buffer, as JSON's are: a
/// fragmented report has millions of them.
public struct TextReportStream: ScanConsumer {
    private let pageSize: UInt64
    private let unit: SizeUnit
    private let sink: (UnsafeRawBufferPointer) -> Void
    private let buffer = JSONWriter.Buffer(capacity: 1 << 17)
    private var counts = PageCounts()
    private var totals = PageCounts()
    private var mappings = 0

    /// `unit` writes sizes in human units, bytes or pages (then run lines carry their page
    /// count alone); without `headers` the first line (pid, page size, privilege) is left out.
    public init(pid: Int32, pageSize: UInt64, privileged: Bool, view: ReportView, unit: SizeUnit = .human,
                headers: Bool = true, sink: @escaping (String) -> Void) {
        self.init(pid: pid, pageSize: pageSize, privileged: privileged, view: view, unit: unit, headers: headers,
                  bytes: { sink(String(decoding: $0, as: UTF8.self)) })
    }

    /// The same report, its UTF-8 handed to `bytes` (whole lines, about 64 KiB at a time).
    public init(pid: Int32, pageSize: UInt64, privileged: Bool, view: ReportView, unit: SizeUnit = .human,
                headers: Bool = true, bytes sink: @escaping (UnsafeRawBufferPointer) -> Void) {
        self.pageSize = pageSize
        self.unit = unit
        self.sink = sink
        if headers {
            buffer.appendString("pid \(pid): page size \(humanBytes(pageSize)), \(privileged ? "privileged" : "unprivileged")")
            buffer.appendString(view == .kernel ? ", kernel view (pagemap alone)\n" : "\n")
        }
    }

    public mutating func begin(_ m: Mapping, scanned: AddressRange) {
        counts = PageCounts()
        mappings += 1
        buffer.appendString("\n\(hex(scanned.start))-\(hex(scanned.end)) \(m.permissions) ")
        buffer.appendString("\(ReportRenderer.pad(unit.text(bytes: scanned.length, pageSize: pageSize), 10)) \(ReportRenderer.pad(m.kind.rawValue, 12)) \(escapedName(m.path))\n")
    }

    public mutating func runs(_ runs: [PageRun]) {
        for run in runs {
            counts[run.state] += run.pages
            writeRun(run)
            if buffer.count >= 1 << 16 { buffer.flush(to: sink) }
        }
    }

    /// `    0x7f0000000000       256 pages    1.0 MiB  present  exclusive pfn=0x1234`: the
    /// address, the pages (9 columns), their size (10 columns, but in pages), the state (8
    /// columns when details follow), pagestat's flags, the kernel's flags in brackets, the PFN,
    /// the swap entry.
    @inline(__always)
    private func writeRun(_ run: PageRun) {
        buffer.append("    ")
        buffer.appendHex(run.start)
        buffer.append(0x20)
        var start = buffer.count
        buffer.appendDecimal(run.pages)
        buffer.alignRight(from: start, width: 9)
        buffer.append(run.pages == 1 ? " page  " : " pages ")
        if unit != .pages {
            start = buffer.count
            if unit == .human {
                buffer.appendHumanBytes(run.pages * pageSize)
            } else {
                buffer.appendDecimal(run.pages * pageSize)
                buffer.append(" B")
            }
            buffer.alignRight(from: start, width: 10)
        }
        buffer.append("  ")
        let name = run.state.staticName
        buffer.append(name)
        let details = run.flags.isEmpty && run.kernelFlags?.isEmpty != false && run.pfn == nil && run.swap == nil
        if !details {
            for _ in name.utf8CodeUnitCount..<max(8, name.utf8CodeUnitCount) { buffer.append(0x20) }
        }
        if !run.flags.isEmpty {
            buffer.append(0x20)
            var written = 0
            buffer.write(atMost: 100) { written = $0.putNames(of: run.flags, quoted: false) }
            if written == 0 { buffer.append(0x2d) }
        }
        if let kernelFlags = run.kernelFlags, !kernelFlags.isEmpty {
            buffer.append(" [")
            buffer.write(atMost: 400) { $0.putNames(of: kernelFlags, quoted: false) }
            buffer.append(0x5d)
        }
        if let pfn = run.pfn {
            buffer.append(" pfn=")
            buffer.appendHex(pfn)
        }
        if let swap = run.swap {
            buffer.append(" swap=")
            buffer.appendDecimal(UInt64(swap.type))
            buffer.append(0x3a)
            buffer.appendHex(swap.offset)
        }
        buffer.append(0x0a)
    }

    public mutating func end(use: MemoryUse?) {
        buffer.appendString("    = " + ReportRenderer.summary(counts, pageSize: pageSize, unit: unit) + "\n")
        totals += counts
    }

    /// Closes the report with its totals and notes.
    public mutating func finish(notes: [ScanNote]) {
        buffer.appendString("\ntotal: \(ReportRenderer.summary(totals, pageSize: pageSize, unit: unit)) in \(counted(mappings, "mapping"))\n")
        for note in notes { buffer.appendString("note: \(escapedName(note.description))\n") }
        buffer.flush(to: sink)
    }
}

/// The `show` CSV report written as a scan streams it: a header line, then one row per run with
/// its mapping's columns repeated (RFC 4180; addresses in bytes, `pages` in pages). Totals and
/// notes have no place in CSV: the caller writes notes to stderr.
public struct CSVReportStream: ScanConsumer {
    public static let headers = ["mapping_start", "mapping_end", "permissions", "kind", "path", "start", "pages", "state",
                                 "flags", "pfn", "swap_type", "swap_offset"]
    private let sink: (String) -> Void
    private var prefix = ""
    private var out = ""

    public init(headers: Bool = true, sink: @escaping (String) -> Void) {
        self.sink = sink
        if headers { out = Self.headers.joined(separator: ",") + "\n" }
    }

    public mutating func begin(_ mapping: Mapping, scanned: AddressRange) {
        prefix = [String(scanned.start), String(scanned.end), mapping.permissions, mapping.kind.rawValue, mapping.path]
            .map(CSVTable.field).joined(separator: ",") + ","
    }

    public mutating func runs(_ runs: [PageRun]) {
        for run in runs {
            out += prefix + "\(run.start),\(run.pages),\(run.state),"
            out += CSVTable.field(run.flags.names.joined(separator: " ")) + ","
            out += run.pfn.map { String($0) } ?? ""
            out += ","
            if let swap = run.swap { out += "\(swap.type),\(swap.offset)\n" } else { out += ",\n" }
            if out.utf8.count >= 1 << 16 {
                sink(out)
                out = ""
            }
        }
    }

    public mutating func end(use: MemoryUse?) {}

    public mutating func finish() {
        sink(out)
        out = ""
    }
}

/// Passes on only the runs that have every flag of a `show --match` (pagestat's and the kernel's),
/// and only the mappings that have such a run: a mapping is begun before its first match.
/// With a `MappingFilter`, also only the mappings of its kinds and paths, and the runs of its states.
public struct MatchingRuns<Base: ScanConsumer>: ScanConsumer {
    public var base: Base
    let flags: PageFlags
    let kernelFlags: KPageFlags
    let filter: MappingFilter
    private var pending: (mapping: Mapping, scanned: AddressRange)?
    private var begun = false
    /// The current mapping fails the filter's kind or path.
    private var skipping = false
    /// Labels of the special mappings ([vsyscall] and the like) passed on, for `shows(_:)`.
    private var shownSpecial = Set<String>()

    public init(_ base: Base, flags: PageFlags, kernelFlags: KPageFlags, filter: MappingFilter = MappingFilter()) {
        self.base = base
        self.flags = flags
        self.kernelFlags = kernelFlags
        self.filter = filter
    }

    /// Whether runs are filtered; without it every run of a mapping that passes is passed on.
    private var filtering: Bool { !flags.isEmpty || !kernelFlags.isEmpty || filter.states != nil }

    public mutating func begin(_ mapping: Mapping, scanned: AddressRange) {
        pending = (mapping, scanned)
        begun = false
        skipping = !filter.matches(mapping)
        if skipping { return }
        if !filtering {
            passOn(mapping, scanned: scanned)
        }
    }

    private mutating func passOn(_ mapping: Mapping, scanned: AddressRange) {
        base.begin(mapping, scanned: scanned)
        begun = true
        if mapping.kind == .special { shownSpecial.insert(mapping.noteLabel) }
    }

    /// Whether a note belongs with the output: a note about one mapping only when that mapping
    /// was passed on (filters apply to notes).
    public func shows(_ note: ScanNote) -> Bool {
        note.mappingLabel.map { shownSpecial.contains($0) } ?? true
    }

    public mutating func runs(_ runs: [PageRun]) {
        if skipping { return }
        guard filtering else { return base.runs(runs) }
        let matching = runs.filter { $0.has(flags: flags, kernelFlags: kernelFlags) && filter.keeps($0) }
        guard !matching.isEmpty else { return }
        if !begun, let (mapping, scanned) = pending {
            passOn(mapping, scanned: scanned)
        }
        base.runs(matching)
    }

    public mutating func end(use: MemoryUse?) {
        if begun { base.end(use: use) }
        begun = false
        pending = nil
    }
}
