import ArgumentParser
import PageStat
import PageStatRender
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension SummaryRenderer.TopSort: ExpressibleByArgument {}
extension TopGrouping: ExpressibleByArgument {}

extension Pagestat {
    struct Summary: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "summary",
            abstract: "One row per mapping: pages by state, RSS, PSS, USS and swap, with totals.",
            discussion: """
            Counts come from the per-page truth (pagemap joined with each shared object's page \
            cache), so swapped shared memory is counted. PSS and USS use /proc/kpagecount (root). \
            Where smaps reports the same quantity (Rss, Pss, Swap) the numbers are compared, and a \
            disagreement is printed as a warning naming the mapping.

            Examples:
              pagestat summary --pid 1234
              pagestat summary --pid 1234 --format csv
              pagestat summary --pid 1234 --flags     (adds /proc/kpageflags counts per mapping)
              pagestat summary 1234 --kind shmem --pages -o range,present,swapped,path
              pagestat summary 1234 --state swapped --no-headers --bytes
              pagestat summary 1234 --kind shmem --interval 5     (every 5 s, with the change since the last)
            """
        )

        @OptionGroup var process: ProcessOption

        @Option(help: "Output format: text, json or csv.")
        var format: OutputFormat = .text

        @Flag(help: "Count the kernel's page flags (/proc/kpageflags, root) per mapping.")
        var flags = false

        @OptionGroup var engineOption: EngineOption

        @OptionGroup(title: "Filters (a mapping is kept when it has a page in a --state)") var filterOptions: FilterOptions

        @OptionGroup(title: "Layout (text; --no-headers and --columns also CSV)") var layout: LayoutOptions

        @Option(name: [.customShort("o"), .customLong("columns")],
                help: ArgumentHelp("The columns, in order (comma-separated: \(SummaryRenderer.SummaryColumn.allCases.map(\.rawValue).joined(separator: ", "))).", valueName: "columns"))
        var columns: String?

        func columnList() throws -> [SummaryRenderer.SummaryColumn]? {
            try parseColumns(columns)
        }

        @Flag(help: "Text: page counts and RSS, PSS, USS and SWAP as a percentage of each row's size (as smem -p, vmtouch).")
        var percent = false

        @Option(help: ArgumentHelp("Repeat every SECONDS: each round adds the change in present and swapped pages of every mapping, and in total, since the round before (\u{394}PRESENT, \u{394}SWAPPED; change_pages in JSON, one object a line). Until interrupted, or --count rounds.", valueName: "seconds"))
        var interval: Double?

        @Option(help: ArgumentHelp("With --interval: stop after this many rounds.", valueName: "rounds"))
        var count: Int?

        func validate() throws {
            _ = try columnList()
            if let interval, !(interval >= 0.1 && interval <= 86400) { throw ValidationError("--interval must be between 0.1 and 86400 seconds") }
            if let count {
                guard interval != nil else { throw ValidationError("--count goes with --interval") }
                if count < 1 { throw ValidationError("--count must be at least 1") }
            }
        }

        /// A mapping is the same from round to round when its range and path are.
        struct MappingKey: Hashable {
            var start: UInt64
            var end: UInt64
            var path: String
        }

        func run() throws {
            let pid = try process.pid
            let columns = try columnList()
            try reportingErrors { () throws(PageStatError) in
                let filter = try filterOptions.filter()
                var previous: (mappings: [MappingKey: PageCounts], total: PageCounts)?
                var round = 1
                var said = Set<ScanNote>()
                while true {
                    var summary = try SummaryReport.make(pid: pid, kernelPageFlags: flags, engine: engineOption.engine)
                    if !filter.isEmpty {
                        summary.report.mappings.removeAll { !filter.matches($0.mapping) || !filter.keeps($0.counts) }
                    }
                    // A note about one mapping only with that mapping; in text, each note once
                    // over the rounds (JSON rounds stand alone).
                    let labels = Set(summary.report.mappings.lazy.filter { $0.mapping.kind == .special }.map(\.mapping.noteLabel))
                    summary.report.notes.removeAll { note in
                        note.mappingLabel.map { !labels.contains($0) } ?? false || (format == .text && said.contains(note))
                    }
                    said.formUnion(summary.report.notes)
                    var tableLayout = SummaryRenderer.TableLayout(columns: columns, unit: layout.unit, headers: !layout.noHeaders)
                    tableLayout.percent = percent
                    if interval != nil {
                        let keyed = summary.report.mappings.map {
                            (MappingKey(start: $0.scanned.start, end: $0.scanned.end, path: $0.mapping.path), $0.counts)
                        }
                        func change(_ now: PageCounts, _ before: PageCounts?) -> SummaryRenderer.PageChange? {
                            before.map { SummaryRenderer.PageChange(present: Int64(now.present) - Int64($0.present),
                                                                    swapped: Int64(now.swapped) - Int64($0.swapped)) }
                        }
                        tableLayout.round = round
                        tableLayout.changes = SummaryRenderer.RoundChanges(
                            mappings: keyed.map { key, counts in change(counts, previous?.mappings[key]) },
                            total: change(summary.report.counts, previous?.total))
                        previous = (Dictionary(keyed, uniquingKeysWith: { first, _ in first }), summary.report.counts)
                    }
                    if round > 1 && format == .text && !layout.noHeaders { writeOut("\n") }
                    writeOut(SummaryRenderer.summary(summary, format: format, kernelFlags: flags, layout: tableLayout))
                    if layout.noHeaders && format == .text {
                        // The lines under the table, kept off standard output's rows.
                        for line in SummaryRenderer.footer(summary).split(separator: "\n") { printError("pagestat: \(line)") }
                    }
                    guard let interval, round != count, !StandardOutput.lost else { break }
                    round += 1
                    var pause = timespec(tv_sec: Int(interval), tv_nsec: Int((interval - interval.rounded(.down)) * 1e9))
                    var rest = timespec()
                    while nanosleep(&pause, &rest) != 0 && errno == EINTR { pause = rest }
                }
            }
        }
    }

    /// `top`'s formats: the three reports' own and the Prometheus text exposition format.
    enum TopFormat: String, ExpressibleByArgument, CaseIterable {
        case text, json, csv, prometheus
    }

    struct Top: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "top",
            abstract: "Every process (or command, user, memory cgroup), one row each, like procrank, with swapped shared memory counted.",
            discussion: """
            RSS, PSS and USS come from each process's page table (PSS and USS need root for \
            /proc/kpagecount). SWAP is the process's private swap plus its fair share of swapped \
            shared memory: each swapped page of a shared object is split evenly among the \
            processes mapping that page, the way PSS splits resident pages (SHMEM-SWAP is that \
            share alone; SHMEM is the same share of the object's pages in memory; SHMEM-CACHED is \
            a share of the object's pages in memory that no process maps, split evenly among all \
            the processes mapping the object). Each shared object is inspected once. A group's row is the sum of its processes, so every \
            grouping adds up to the same TOTAL. Filters choose rows after the whole machine is \
            scanned: shares stay split among every process mapping a page. Processes that exit \
            during the scan are skipped; processes that cannot be read are counted and named with \
            their reason (all of them with --verbose).

            Examples:
              pagestat top
              pagestat top --sort shmem-swap --limit 10
              pagestat top --by cgroup --sort swap
              pagestat top --user postgres --command postgres --by command
              pagestat top --by cgroup --format prometheus > metrics.prom
            """
        )

        @Option(help: "One row per process, command (comm), user or cgroup (the memory cgroup).")
        var by: TopGrouping = .process

        @Option(name: [.customShort("p"), .customLong("pid")], help: "Only this process (repeatable).")
        var pids: [Int32] = []

        @Option(name: .customLong("user"), help: "Only processes of this user, a name or a uid (repeatable).")
        var users: [String] = []

        @Option(name: .customLong("command"), help: "Only processes whose comm is this, or whose command line contains it (repeatable).")
        var commands: [String] = []

        @Option(help: "Sort by pss, uss, rss, swap, shmem-swap, shmem, shmem-cached, processes (largest first), pid or name (ascending).")
        var sort: SummaryRenderer.TopSort = .pss

        @Option(name: [.customShort("o"), .customLong("columns")],
                help: ArgumentHelp("Text and CSV: the columns, in order (comma-separated: \(SummaryRenderer.TopColumn.allCases.map(\.rawValue).joined(separator: ", "))).", valueName: "columns"))
        var columns: String?

        func columnList() throws -> [SummaryRenderer.TopColumn]? {
            try parseColumns(columns)
        }

        @Flag(help: "Sort the other way round.")
        var reverse = false

        @Option(help: "Show at most this many rows (the TOTAL row still adds up every selected process).")
        var limit: Int?

        @Option(help: "With --format prometheus: per-object series for at most this many objects, those with the most swap.")
        var objects: Int = 20

        @Option(help: "Output format: text, json, csv or prometheus (the text exposition format).")
        var format: TopFormat = .text

        @Flag(help: "Text: name every process that could not be read, with its reason (else only a few are named).")
        var verbose = false

        func validate() throws {
            if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
            if objects < 0 { throw ValidationError("--objects must be 0 or more") }
            if let pid = pids.first(where: { $0 < 1 }) { throw ValidationError("--pid \(pid): a pid is a positive number") }
            for user in users where UInt32(user) == nil && getpwnam(user) == nil {
                throw ValidationError("--user \(user): no such user")
            }
            if commands.contains("") { throw ValidationError("--command needs a name") }
            _ = try columnList()
        }

        func run() throws {
            let start = Stopwatch.nowSeconds()
            let showProgress = isatty(2) == 1
            let shown = Atomic<Bool>(false)
            var report = SystemScanner.top { done, total in
                if showProgress && Stopwatch.nowSeconds() - start > 1 {
                    shown.store(true, ordering: .relaxed)
                    printError("\rpagestat: scanned \(done) of \(total) processes", newline: false)
                }
            }
            // Leave no progress line behind.
            if shown.load(ordering: .relaxed) { printError("\r\u{1b}[K", newline: false) }
            // top shows no mappings: a note about one mapping ([vsyscall]) has nothing to qualify.
            report.notes.removeAll { $0.mappingLabel != nil }
            let filter = TopFilter(pids: Set(pids), users: Set(users), commands: commands)
            report = filter.applyingToUnreadable(report)
            switch format {
            case .prometheus:
                writeOut(Prometheus.render(FleetMetrics.families(report, by: by, filter: filter, objects: objects,
                                                                 swapAreas: SwapArea.active())))
            case .text, .json, .csv:
                let output = OutputFormat(rawValue: format.rawValue)!
                writeOut(SummaryRenderer.top(report, by: by, filter: filter, sort: sort, reverse: reverse, limit: limit, format: output,
                                             columns: try columnList(), verbose: verbose))
            }
        }
    }

    struct Objects: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "objects",
            abstract: "Every shared-memory object on the machine, from its file side.",
            discussion: """
            memfds, /dev/shm and other tmpfs files, shared anonymous mappings and SysV segments, \
            found through the processes that map them or hold them open (and /proc/sysvipc/shm). \
            For each: size, pages resident, swapped and holes (never written), and which processes \
            map it or hold it open. This is the view independent of any one page table: did \
            someone write this page, is it swapped. Opening other processes' objects needs root.

            Examples:
              pagestat objects
              pagestat objects --format json
              pagestat objects --engine bpf
            """
        )

        @Option(help: "Output format: text, json or csv.")
        var format: OutputFormat = .text

        @Flag(help: "Text: name every process that could not be read, with its reason (else only a few are named).")
        var verbose = false

        @OptionGroup var engineOption: CountingEngineOption

        func run() throws {
            try reportingErrors { () throws(PageStatError) in
                writeOut(SummaryRenderer.objects(try SystemScanner.objects(engine: engineOption.engine), format: format, verbose: verbose))
            }
        }
    }

    struct File: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "file",
            abstract: "Page-cache state of files: cached, dirty, writeback, evicted; on tmpfs, swapped and holes.",
            discussion: """
            Uses cachestat(2) (Linux 6.5+) on each file, like fincore but with swapped tmpfs \
            pages told apart. Works on /proc/PID/fd/N too (a memfd a process holds). Nothing is \
            read from the files: their pages are not brought into memory.

            Examples:
              pagestat file /dev/shm/vm-ram
              pagestat file --pages /proc/1234/fd/5
              pagestat file --recursive /var/lib/data --format csv
              pagestat file --pages --engine bpf /dev/shm/vm-ram   # with swap locations
            """
        )

        @Argument(help: "Files (or, with --recursive, directories).")
        var paths: [String]

        @Flag(help: "List the runs of page states of each file.")
        var pages = false

        @Flag(name: .shortAndLong, help: "Walk directories.")
        var recursive = false

        @Option(help: "Output format: text, json or csv.")
        var format: OutputFormat = .text

        @OptionGroup var engineOption: CountingEngineOption

        func validate() throws {
            if paths.isEmpty { throw ValidationError("name at least one file") }
        }

        func run() throws {
            var worst: PageStatError?
            var reports: [FileReport] = []
            let files = FileScanner.expand(paths, recursive: recursive) { path, error in
                printError("pagestat: \(escapedName(error.description))")
                worst = worst ?? error
            }
            for path in files {
                do {
                    let report = try FileScanner.scan(path: path, withRuns: pages, engine: engineOption.engine)
                    if format != .json {
                        for note in report.notes { printError("pagestat: note: \(escapedName(path)): \(note)") }
                    }
                    reports.append(report)
                } catch {
                    let line = error.description.hasPrefix(path) ? error.description : "\(path): \(error)"
                    printError("pagestat: \(escapedName(line))")
                    if case .unsupported = error {
                        throw ExitCode(ExitStatus.code(for: error))
                    }
                    worst = worst ?? error
                }
            }
            if !reports.isEmpty || format != .text { writeOut(SummaryRenderer.files(reports, format: format)) }
            if let worst { throw ExitCode(ExitStatus.code(for: worst)) }
        }
    }
}
