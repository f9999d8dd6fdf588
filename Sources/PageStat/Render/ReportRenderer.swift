/// Renders a `ProcessReport` as the `show` command prints it.
public enum ReportRenderer {
    /// The JSON contract: `{"pid", "page_size", "privileged", "view", "notes", "mappings": [{"start",
    /// "end", "permissions", "offset", "path", "kind" [, "huge_page_size"], "runs": [{"start", "pages", "state", "flags"
    /// [, "pfn"] [, "swap": {"type", "offset"}]}]}], "totals": {...}}`. Addresses are byte integers.
    /// A path that is not valid UTF-8 also gets `"path_bytes"` (see `JSONWriter.field(_:name:)`).
    public static func json(_ report: ProcessReport) -> String {
        var json = JSONWriter()
        write(report, into: &json)
        return json.output + "\n"
    }

    /// Streams the JSON report to `sink` in 64 KiB pieces.
    public static func writeJSON(_ report: ProcessReport, to sink: @escaping (UnsafeRawBufferPointer) -> Void) {
        var json = JSONWriter(sink: sink)
        write(report, into: &json)
        json.flush()
        [UInt8(0x0a)].withUnsafeBytes(sink)
    }

    static func write(_ report: ProcessReport, into json: inout JSONWriter) {
        json.beginObject()
        json.field("pid", report.pid)
        json.field("page_size", report.pageSize)
        json.field("privileged", report.privileged)
        json.field("view", report.view.rawValue)
        json.field("notes", strings: report.notes)
        json.key("mappings")
        json.beginArray()
        for mapping in report.mappings {
            json.beginObject()
            json.field("start", mapping.scanned.start)
            json.field("end", mapping.scanned.end)
            json.field("permissions", mapping.mapping.permissions)
            json.field("offset", mapping.mapping.offset + (mapping.scanned.start - mapping.mapping.range.start))
            json.field("path", name: mapping.mapping.path)
            json.field("kind", mapping.mapping.kind.rawValue)
            if let hugePageSize = mapping.mapping.hugePageSize { json.field("huge_page_size", hugePageSize) }
            json.key("runs")
            json.beginArray()
            for run in mapping.runs {
                // The hot loop of a fragmented report: each run written in one go.
                json.rawElement()
                json.raw("{\"start\":")
                json.raw(run.start)
                json.raw(",\"pages\":")
                json.raw(run.pages)
                json.raw(",\"state\":\"")
                json.raw(run.state.staticName)
                json.raw("\",\"flags\":[")
                if !run.flags.isEmpty {
                    json.rawNames(PageFlags.staticNames.lazy.filter { run.flags.contains($0.0) }.map(\.1))
                }
                json.raw("]")
                if let kernelFlags = run.kernelFlags {
                    json.raw(",\"kernel_flags\":[")
                    json.rawNames(KPageFlags.staticNames.lazy.filter { kernelFlags.rawValue & (1 << UInt64($0.bit)) != 0 }.map(\.name))
                    json.raw("]")
                }
                if let pfn = run.pfn {
                    json.raw(",\"pfn\":")
                    json.raw(pfn)
                }
                if let swap = run.swap {
                    json.raw(",\"swap\":{\"type\":")
                    json.raw(UInt64(swap.type))
                    json.raw(",\"offset\":")
                    json.raw(swap.offset)
                    json.raw("}")
                }
                json.raw("}")
                json.rawElementDone()
            }
            json.endArray()
            json.endObject()
        }
        json.endArray()
        json.key("totals")
        countsJSON(report.counts, into: &json)
        json.endObject()
    }

    static func countsJSON(_ counts: PageCounts, into json: inout JSONWriter) {
        json.beginObject()
        for state in PageState.allCases { json.field(state.description, counts[state]) }
        json.endObject()
    }

    /// Text for a person: one line per mapping and per run, sizes in human units, totals, notes.
    public static func text(_ report: ProcessReport) -> String {
        var whole = ""
        writeText(report) { whole += $0 }
        return whole
    }

    /// The text of `text(_:)`, handed to `sink` in pieces of about 64 KiB, so that a report of
    /// millions of runs is never held twice, once as runs and once as text.
    public static func writeText(_ report: ProcessReport, to sink: (String) -> Void) {
        let pageSize = UInt64(report.pageSize)
        var out = "pid \(report.pid): \(report.mappings.count) mappings, page size \(humanBytes(pageSize)), "
        out += report.privileged ? "privileged" : "unprivileged"
        out += report.view == .kernel ? ", kernel view (pagemap alone)\n" : "\n"
        for mapping in report.mappings {
            let m = mapping.mapping
            let size = mapping.scanned.length
            out += "\n\(hex(mapping.scanned.start))-\(hex(mapping.scanned.end)) \(m.permissions) "
            out += "\(pad(humanBytes(size), 10)) \(pad(m.kind.rawValue, 12)) \(escapedName(m.path))\n"
            out += "    " + summary(mapping.counts, pageSize: pageSize) + "\n"
            for run in mapping.runs {
                var line = "    \(hex(run.start)) \(pad(String(run.pages), 9, right: true)) pages "
                line += "\(pad(humanBytes(run.pages * pageSize), 10, right: true))  "
                let details = run.flags.isEmpty && run.kernelFlags?.isEmpty != false && run.pfn == nil && run.swap == nil
                line += details ? run.state.description : pad(run.state.description, 8)
                if !run.flags.isEmpty { line += " " + run.flags.description }
                if let kernelFlags = run.kernelFlags, !kernelFlags.isEmpty { line += " [" + kernelFlags.names.joined(separator: ",") + "]" }
                if let pfn = run.pfn { line += " pfn=\(hex(pfn))" }
                if let swap = run.swap { line += " swap=\(swap.type):\(hex(swap.offset))" }
                out += line + "\n"
                if out.utf8.count >= 1 << 16 {
                    sink(out)
                    out = ""
                }
            }
        }
        out += "\ntotal: " + summary(report.counts, pageSize: pageSize) + "\n"
        for note in report.notes { out += "note: \(escapedName(note))\n" }
        sink(out)
    }

    /// `present 1.0 MiB, swapped 4.0 KiB, ...`, states with zero pages left out.
    public static func summary(_ counts: PageCounts, pageSize: UInt64) -> String {
        let parts = PageState.allCases.compactMap { state -> String? in
            counts[state] == 0 ? nil : "\(state) \(humanBytes(counts[state] * pageSize)) (\(counts[state]))"
        }
        return parts.isEmpty ? "empty" : parts.joined(separator: ", ")
    }

    static func pad(_ string: String, _ width: Int, right: Bool = false) -> String {
        guard string.count < width else { return string }
        let padding = String(repeating: " ", count: width - string.count)
        return right ? padding + string : string + padding
    }
}
