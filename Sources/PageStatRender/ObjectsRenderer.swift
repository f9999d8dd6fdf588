import PageStat

/// `objects`: every shared-memory object as a text table, JSON or CSV.
extension SummaryRenderer {
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
}
