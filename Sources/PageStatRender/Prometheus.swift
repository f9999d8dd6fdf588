import PageStat

/// Metrics in the Prometheus text exposition format (version 0.0.4), and the fleet view's metric
/// families built from a `top` report: what `pagestat top --format prometheus` writes and what
/// `pagestat-exporter` serves.
public enum Prometheus {
    public enum MetricType: String, Sendable { case gauge, counter }

    /// One time series: a label set and its value.
    public struct Sample: Sendable, Equatable {
        public var labels: [(String, String)]
        public var value: Double

        public init(_ labels: [(String, String)], _ value: Double) {
            self.labels = labels
            self.value = value
        }

        public static func == (a: Sample, b: Sample) -> Bool {
            a.value == b.value && a.labels.elementsEqual(b.labels) { $0 == $1 }
        }
    }

    /// A metric family: its name, help, type and samples.
    public struct Family: Sendable, Equatable {
        public var name: String
        public var help: String
        public var type: MetricType
        public var samples: [Sample]

        public init(_ name: String, _ type: MetricType = .gauge, help: String, samples: [Sample] = []) {
            self.name = name
            self.help = help
            self.type = type
            self.samples = samples
        }
    }

    // MARK: the text format

    /// A label value as the exposition format wants it: backslash, double quote and newline
    /// escaped (`\\`, `\"`, `\n`); every other character as it is (UTF-8).
    public static func escapeLabelValue(_ value: String) -> String {
        var out = ""
        out.reserveCapacity(value.utf8.count)
        for character in value.unicodeScalars {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    /// A HELP text: backslash and newline escaped.
    static func escapeHelp(_ text: String) -> String {
        text.replacingOccurrences("\\", with: "\\\\").replacingOccurrences("\n", with: "\\n")
    }

    /// How sample values are written. Both are valid exposition values and parse to the same
    /// number.
    public enum ValueStyle: Sendable {
        /// As Go's strconv writes them for Prometheus: integers without a fraction (`4096`), as
        /// `pagestat top --format prometheus` writes them.
        case integral
        /// As Swift writes a `Double` (`4096.0`), as `pagestat-exporter` serves them.
        case double
    }

    /// A value in `style`.
    static func format(_ value: Double, _ style: ValueStyle = .integral) -> String {
        if style == .double { return "\(value)" }
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    /// Families as exposition text: `# HELP`, `# TYPE`, then one line per sample, in the order
    /// given. A family without samples is left out.
    public static func render(_ families: [Family], values style: ValueStyle = .integral) -> String {
        var out = ""
        for family in families where !family.samples.isEmpty {
            out += "# HELP \(family.name) \(escapeHelp(family.help))\n# TYPE \(family.name) \(family.type.rawValue)\n"
            for sample in family.samples {
                out += family.name
                if !sample.labels.isEmpty {
                    out += "{" + sample.labels.map { "\($0.0)=\"\(escapeLabelValue($0.1))\"" }.joined(separator: ",") + "}"
                }
                out += " " + format(sample.value, style) + "\n"
            }
        }
        return out
    }

    /// Parses exposition text back into families (the subset `render` writes: HELP and TYPE
    /// comments, samples with optional labels, no timestamps). Throws on anything malformed,
    /// naming the line.
    public static func parse(_ text: String) throws(PageStatError) -> [Family] {
        var families: [Family] = []
        var index: [String: Int] = [:]
        func family(_ name: String) -> Int {
            if let i = index[name] { return i }
            families.append(Family(name, help: ""))
            index[name] = families.count - 1
            return families.count - 1
        }
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            func bad(_ why: String) -> PageStatError { .invalidInput("exposition line \(number + 1): \(why): \(line)") }
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2, isValidName(parts[0]) else { throw bad("malformed comment") }
                let i = family(String(parts[0]))
                if line.hasPrefix("# HELP ") {
                    families[i].help = unescape(parts[1])
                } else {
                    guard let type = MetricType(rawValue: String(parts[1])) else { throw bad("unknown type") }
                    families[i].type = type
                }
                continue
            }
            if line.hasPrefix("#") { continue }
            var rest = Substring(line)
            let name = rest.prefix { $0 != "{" && $0 != " " }
            guard isValidName(name) else { throw bad("invalid metric name") }
            rest = rest.dropFirst(name.count)
            var labels: [(String, String)] = []
            if rest.first == "{" {
                rest = rest.dropFirst()
                while rest.first != "}" {
                    let label = rest.prefix { $0 != "=" }
                    guard isValidName(label, label: true) else { throw bad("invalid label name") }
                    rest = rest.dropFirst(label.count)
                    guard rest.hasPrefix("=\"") else { throw bad("label without a quoted value") }
                    rest = rest.dropFirst(2)
                    var value = ""
                    var closed = false
                    while let c = rest.first {
                        rest = rest.dropFirst()
                        if c == "\\" {
                            guard let next = rest.first else { break }
                            rest = rest.dropFirst()
                            switch next {
                            case "\\": value += "\\"
                            case "\"": value += "\""
                            case "n": value += "\n"
                            default: throw bad("unknown escape \\\(next)")
                            }
                        } else if c == "\"" {
                            closed = true
                            break
                        } else {
                            value.append(c)
                        }
                    }
                    guard closed else { throw bad("unterminated label value") }
                    labels.append((String(label), value))
                    if rest.first == "," { rest = rest.dropFirst() }
                }
                rest = rest.dropFirst()
            }
            guard rest.first == " ", let value = Double(rest.dropFirst().split(separator: " ").first ?? "") else {
                throw bad("no value")
            }
            families[family(String(name))].samples.append(Sample(labels, value))
        }
        return families
    }

    /// Metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*`; label names the same without colons.
    public static func isValidName<S: StringProtocol>(_ name: S, label: Bool = false) -> Bool {
        guard let first = name.unicodeScalars.first else { return false }
        func allowed(_ c: Unicode.Scalar, leading: Bool) -> Bool {
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" || (!label && c == ":") || (!leading && c >= "0" && c <= "9")
        }
        return allowed(first, leading: true) && name.unicodeScalars.dropFirst().allSatisfy { allowed($0, leading: false) }
    }

    static func unescape(_ text: Substring) -> String {
        var out = ""
        var escaped = false
        for c in text {
            if escaped {
                out += c == "n" ? "\n" : String(c)
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.append(c)
            }
        }
        return out
    }
}

extension String {
    fileprivate func replacingOccurrences(_ target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

// MARK: the fleet view's metrics

/// The metric families of the fleet view. Label cardinality is bounded by design: a pid label
/// only with `--by process`, per-object series for the largest `objects` objects only.
public enum FleetMetrics {
    /// The label (or labels) that name a row of `grouping`. Names are bytes: a label value is the
    /// name escaped as text output writes it (`escapedName`: `\\`, `\xHH` for a byte that is not
    /// UTF-8, ...), so two names never share a value and the value reads back to the name's bytes.
    public static func labels(_ row: TopRow, _ grouping: TopGrouping) -> [(String, String)] {
        switch grouping {
        case .process: [("pid", row.pid.map { String($0) } ?? ""), ("command", escapedName(row.name))]
        case .command: [("command", escapedName(row.name))]
        case .user: [("user", escapedName(row.name))]
        case .cgroup: [("cgroup", escapedName(row.name))]
        }
    }

    /// The labels of a shared object: its kind, its path (escaped as `labels` escapes names), and
    /// the device (`major:minor`, decimal, as stat(2) and mountinfo give it) and inode that
    /// identify it: one path and inode may exist on several tmpfs mounts.
    public static func labels(_ object: MappedObject) -> [(String, String)] {
        [("kind", object.kind.rawValue), ("path", escapedName(object.path)),
         ("dev", "\(object.id.deviceMajor):\(object.id.deviceMinor)"), ("inode", String(object.id.inode))]
    }

    /// Families for `report` grouped `by`, the largest `objects` objects, and the swap areas.
    public static func families(_ report: TopReport, by grouping: TopGrouping, filter: TopFilter = TopFilter(),
                                objects limit: Int, swapAreas: [SwapArea.Entry]) -> [Prometheus.Family] {
        typealias Family = Prometheus.Family
        typealias Sample = Prometheus.Sample
        let rows = report.rows(by: grouping, filter: filter).sorted { labels($0, grouping).lexicographicallyPrecedes(labels($1, grouping)) { ($0.0, $0.1) < ($1.0, $1.1) } }
        var resident = Family("pagestat_shared_resident_bytes",
                              help: "Shared memory in memory (the object's page cache, in the page tables or not) within the stretches the group's processes map, this group's fair share, by kind.")
        var swapped = Family("pagestat_shared_swapped_bytes",
                             help: "Shared memory in swap, this group's fair share of the stretches its processes map (each page split evenly among the processes mapping it), by kind.")
        var cached = Family("pagestat_shared_cached_bytes",
                            help: "Shared memory in memory that no process maps (written with write(2), or unmapped since), this group's fair share: each such page of an object split evenly among the processes mapping the object, by kind.")
        var rss = Family("pagestat_rss_bytes", help: "Resident set size of the group's processes (pages in their page tables).")
        var pss = Family("pagestat_pss_bytes", help: "Proportional set size of the group's processes (needs root).")
        var swap = Family("pagestat_swap_bytes", help: "Swap of the group's processes: private swap plus their share of swapped shared memory.")
        var processes = Family("pagestat_processes", help: "Processes in the group that were scanned.")
        var unknown = Family("pagestat_shared_unknown_processes",
                             help: "Processes in the group whose share of shared memory of this kind could not be counted (a shared object could not be opened: /proc/PID/map_files needs CAP_SYS_ADMIN; or cachestat(2) failed): the group's pagestat_shared_*_bytes of the kind and its pagestat_swap_bytes are then absent.")
        for row in rows {
            let base = labels(row, grouping)
            for kind in SharedMemoryKind.allCases {
                // A share that could not be counted is absent, never 0; this says why.
                if let lacking = row.sharedUnknown[kind] {
                    unknown.samples.append(Sample(base + [("kind", kind.rawValue)], Double(lacking.processes)))
                    continue
                }
                let share = row.shared[kind] ?? SharedShare()
                resident.samples.append(Sample(base + [("kind", kind.rawValue)], Double(share.resident)))
                swapped.samples.append(Sample(base + [("kind", kind.rawValue)], Double(share.swapped)))
                cached.samples.append(Sample(base + [("kind", kind.rawValue)], Double(share.cached)))
            }
            rss.samples.append(Sample(base, Double(row.use.rss)))
            if let value = row.use.pss { pss.samples.append(Sample(base, Double(value))) }
            if row.sharedKnown { swap.samples.append(Sample(base, Double(row.use.swap))) }
            processes.samples.append(Sample(base, Double(row.processes)))
        }
        var objectResident = Family("pagestat_object_resident_bytes",
                                    help: "A shared object's bytes in memory, for the objects with the most swapped (then resident) bytes.")
        var objectSwapped = Family("pagestat_object_swapped_bytes", help: "A shared object's bytes in swap, for the same objects.")
        var objectSize = Family("pagestat_object_size_bytes", help: "A shared object's size, for the same objects.")
        var objectMappers = Family("pagestat_object_mapping_processes", help: "Processes mapping a shared object (0: only held open), for the same objects.")
        for object in report.objects.prefix(max(0, limit)) {
            let labels = Self.labels(object)
            objectResident.samples.append(Sample(labels, Double(object.resident)))
            objectSwapped.samples.append(Sample(labels, Double(object.swapped)))
            objectSize.samples.append(Sample(labels, Double(object.size)))
            objectMappers.samples.append(Sample(labels, Double(object.mappers)))
        }
        var totalsResident = Family("pagestat_objects_resident_bytes",
                                    help: "Bytes in memory of every shared-memory object (mapped, held open, or a SysV segment), as pagestat objects counts them, by kind.")
        var totalsSwapped = Family("pagestat_objects_swapped_bytes",
                                   help: "Bytes in swap of every shared-memory object, as pagestat objects counts them, by kind.")
        var totalsCount = Family("pagestat_objects", help: "Shared-memory objects (mapped, held open, or SysV segments), as pagestat objects lists them, by kind.")
        var totalsUncounted = Family("pagestat_objects_uncounted",
                                     help: "Shared-memory objects that could not be counted (not opened without CAP_SYS_ADMIN, or cachestat(2) failed), by kind: pagestat_objects_*_bytes of the kind are then absent.")
        for kind in SharedMemoryKind.allCases {
            let these = report.objectTotals[kind] ?? ObjectTotals()
            if these.uncounted == 0 {
                totalsResident.samples.append(Sample([("kind", kind.rawValue)], Double(these.resident)))
                totalsSwapped.samples.append(Sample([("kind", kind.rawValue)], Double(these.swapped)))
            }
            totalsCount.samples.append(Sample([("kind", kind.rawValue)], Double(these.objects)))
            totalsUncounted.samples.append(Sample([("kind", kind.rawValue)], Double(these.uncounted)))
        }
        var swapSize = Family("pagestat_swap_device_size_bytes", help: "Size of a swap area (/proc/swaps).")
        var swapUsed = Family("pagestat_swap_device_used_bytes", help: "Bytes in use in a swap area (/proc/swaps).")
        for area in swapAreas {
            let labels = [("device", area.path), ("type", area.type)]
            swapSize.samples.append(Sample(labels, Double(area.sizeKiB * 1024)))
            swapUsed.samples.append(Sample(labels, Double(area.usedKiB * 1024)))
        }
        let unreadable = Family("pagestat_processes_unreadable", help: "Processes that exist but could not be read (permission).",
                                samples: [Sample([], Double(report.unreadable))])
        let vanished = Family("pagestat_processes_vanished", help: "Processes that exited during the scan.",
                              samples: [Sample([], Double(report.vanished))])
        let privileged = Family("pagestat_privileged", help: "1 when the scan had what CAP_SYS_ADMIN brings (PSS, map_files), else 0.",
                                samples: [Sample([], report.privileged ? 1 : 0)])
        let notes = Family("pagestat_notes", help: "Notes the scan made (facts it could not read).",
                           samples: [Sample([], Double(report.notes.count))])
        return [resident, swapped, cached, unknown, rss, pss, swap, processes, objectResident, objectSwapped, objectSize, objectMappers,
                totalsResident, totalsSwapped, totalsCount, totalsUncounted, swapSize, swapUsed, unreadable, vanished, privileged, notes]
    }
}
