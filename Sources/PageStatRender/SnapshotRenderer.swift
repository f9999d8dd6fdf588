import PageStat

/// Renders a snapshot's manifest (JSON) and its brief (text or JSON).
public enum SnapshotRenderer {
    static func sourceName(_ source: SnapshotSource) -> String {
        switch source {
        case .memory: "memory"
        case .swap: "swap"
        case .zero: "zero"
        case .hole: "hole"
        case .file: "file"
        case .swappedIn: "swapped-in"
        case .unsettled: "unsettled"
        }
    }

    /// The manifest: every run of every image.
    public static func manifest(_ manifest: SnapshotManifest) -> String {
        var json = JSONWriter()
        json.beginObject()
        summaryFields(manifest, into: &json)
        json.key("images")
        json.beginArray()
        for image in manifest.images {
            json.beginObject()
            json.field("path", name: image.path)
            if let mapping = image.mapping {
                json.field("start", hex(mapping.range.start))
                json.field("end", hex(mapping.range.end))
                json.field("kind", mapping.kind.rawValue)
                json.field("mapped", name: mapping.path)
            }
            json.field("bytes", image.bytes)
            json.key("runs")
            json.beginArray()
            for run in image.runs {
                json.beginObject()
                json.field(image.mapping == nil && manifest.target.hasPrefix("/") ? "offset" : "address", hex(run.start))
                json.field("image_offset", run.imageOffset)
                json.field("pages", run.pages)
                json.field("source", sourceName(run.source))
                if case .swap(let location) = run.source {
                    json.field("swap_type", location.type)
                    json.field("swap_offset", location.offset)
                }
                if case .unsettled(let reason) = run.source { json.field("reason", reason) }
                json.endObject()
            }
            json.endArray()
            json.endObject()
        }
        json.endArray()
        json.endObject()
        return json.output + "\n"
    }

    /// The brief: totals only.
    public static func brief(_ manifest: SnapshotManifest, format: OutputFormat) -> String {
        if format == .json {
            var json = JSONWriter()
            json.beginObject()
            summaryFields(manifest, into: &json)
            json.field("images", strings: manifest.images.map(\.path))
            json.endObject()
            return json.output + "\n"
        }
        let totals = manifest.totals
        let pageSize = manifest.pageSize
        func line(_ title: String, _ pages: UInt64) -> String {
            "  \(title)\(String(repeating: " ", count: max(0, 12 - title.count)))\(String(pages).leftPadded(10)) pages  \(humanBytes(pages * pageSize))\n"
        }
        var out = "Snapshot of \(escapedName(manifest.target)): \(counted(manifest.images.count, "image")) in \(String(format3: manifest.seconds)) s\n"
        out += line("memory", totals.memory)
        out += line("swap", totals.swap)
        if totals.swap > 0, totals.swapReadNanoseconds > 0 {
            let milliseconds = Double(totals.swapReadNanoseconds) / 1e6
            let rate = Double(totals.swap * pageSize) / milliseconds / 1e6
            let io = Double(totals.slotIONanoseconds) / 1e6
            out += "    from their slots in \(String(format3: milliseconds)) ms, \(String(format3: rate)) GB/s with their states and checks"
                + (io > 0 ? " (the reads alone \(String(format3: io)) ms)\n" : "\n")
        }
        out += line("zero", totals.zero)
        out += line("holes", totals.holes)
        out += line("file", totals.file)
        if totals.swappedIn > 0 { out += line("swapped in", totals.swappedIn) }
        if totals.unsettled > 0 { out += line("unsettled", totals.unsettled) }
        out += "  re-planned  \(String(totals.replanned).leftPadded(10)) pages\n"
        if let swapIns = manifest.machineSwapIns { out += "Swap-ins on the machine meanwhile (pswpin): \(swapIns)\n" }
        if let swapIns = manifest.cgroupSwapIns { out += "Swap-ins in the target's cgroup meanwhile: \(swapIns)\n" }
        if let frozen = manifest.frozen { out += "The target was stopped (\(frozen)) and resumed.\n" }
        for note in manifest.notes { out += "note: \(escapedName(note))\n" }
        return out
    }

    private static func summaryFields(_ manifest: SnapshotManifest, into json: inout JSONWriter) {
        json.field("target", name: manifest.target)
        json.field("page_size", manifest.pageSize)
        json.key("pages")
        json.beginObject()
        let totals = manifest.totals
        json.field("memory", totals.memory)
        json.field("swap", totals.swap)
        json.field("zero", totals.zero)
        json.field("hole", totals.holes)
        json.field("file", totals.file)
        json.field("swapped_in", totals.swappedIn)
        json.field("unsettled", totals.unsettled)
        json.field("replanned", totals.replanned)
        json.endObject()
        json.key("planned")
        json.beginObject()
        for state in PageState.allCases { json.field(state.description, manifest.planned[state, default: 0]) }
        json.endObject()
        json.key("machine_swap_ins")
        if let swapIns = manifest.machineSwapIns { json.value(swapIns) } else { json.null() }
        json.key("cgroup_swap_ins")
        if let swapIns = manifest.cgroupSwapIns { json.value(swapIns) } else { json.null() }
        json.key("frozen")
        if let frozen = manifest.frozen { json.value(frozen) } else { json.null() }
        json.field("milliseconds", UInt64(manifest.seconds * 1000))
        json.field("swap_read_microseconds", manifest.totals.swapReadNanoseconds / 1000)
        json.field("slot_io_microseconds", manifest.totals.slotIONanoseconds / 1000)
        json.field("notes", strings: manifest.notes)
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        String(repeating: " ", count: max(0, width - count)) + self
    }

    fileprivate init(format3 value: Double) {
        let thousandths = Int((value * 1000).rounded())
        let fraction = thousandths % 1000
        self = "\(thousandths / 1000).\(fraction < 10 ? "00" : fraction < 100 ? "0" : "")\(fraction)"
    }
}
