import PageStat

/// `file`: the page-cache state of files as a text table, JSON or CSV.
extension SummaryRenderer {
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
