import ArgumentParser
import PageStat
import PageStatRender

extension Pagestat {
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show",
            abstract: "Show every mapping of a process with its runs of pages.",
            discussion: """
            A run is a maximal stretch of adjacent pages with the same state and flags. States:
              present   mapped in this process's page table
              swapped   content in swap (page-table swap entry, or shmem swap entry in the
                        object's page cache although pagemap reads zero there)
              cached    in memory (page cache) but not mapped by this process
              none      no memory and no swap behind it (hole, never touched, not cached)
              unknown   pagestat could not look; a note says why
            Flags: soft-dirty, exclusive, uffd-wp, guard, file (pagemap bit 61), thp, zero-page,
            non-swap-entry (migration entry or PTE marker). The first page's PFN or swap
            location is shown when privileged (root).

            --kernel-view prints what /proc/PID/pagemap alone says, to compare with.

            Examples:
              pagestat show --pid 1234
              pagestat show --pid 1234 --range 0x7f0000000000+1G --format json
              pagestat show --pid 1234 --kernel-view
              pagestat show 1234 --range 7f12a000-7f12c000 --format csv
              pagestat show 1234 --kind shmem,shared-anon --state swapped --bytes
            """
        )

        @OptionGroup var process: ProcessOption

        @Option(help: ArgumentHelp("Only mappings overlapping START-END (hexadecimal, 0x optional, as /proc/PID/maps writes it) or START+LENGTH (hex with 0x, or decimal; LENGTH may end in K, M, G or T), widened to whole pages.", valueName: "range"))
        var range: String?

        @Option(help: "Output format: text, json or csv (one row per run; notes go to stderr).")
        var format: OutputFormat = .text

        @Flag(help: "Report what the raw kernel page table (pagemap) alone says.")
        var kernelView = false

        @OptionGroup var engineOption: EngineOption

        @OptionGroup(title: "Filters") var filterOptions: FilterOptions

        @OptionGroup(title: "Layout (text; --no-headers also CSV)") var layout: LayoutOptions

        @Flag(help: "Add the kernel's page flags (/proc/kpageflags, root) to present pages, named as page-types names them.")
        var flags = false

        @Option(help: ArgumentHelp("Keep only pages with all these flags (comma-separated; pagestat's flags or kernel page flags such as thp, dirty, swapbacked).", valueName: "flags"))
        var match: String?

        /// The --match names split into pagestat's flags and the kernel's.
        func matchFlags() throws(PageStatError) -> (PageFlags, KPageFlags) {
            guard let match else { return ([], []) }
            var ours: [String] = []
            var kernel: [String] = []
            for name in match.split(separator: ",").map({ String($0.filter { $0 != " " }) }) where !name.isEmpty {
                if PageFlags.names.contains(where: { $0.1 == name }) { ours.append(name) } else { kernel.append(name) }
            }
            return (try PageFlags(names: ours), try KPageFlags(names: kernel))
        }

        func validate() throws {
            if let range {
                do { _ = try AddressRange(parsing: range) } catch { throw ValidationError(error.description) }
            }
            do { _ = try matchFlags() } catch { throw ValidationError(error.description) }
        }

        func run() throws {
            let pid = try process.pid
            try reportingErrors { () throws(PageStatError) in
                let scanner = try ProcessScanner(pid: pid)
                let (ours, kernel) = try matchFlags()
                let filter = try filterOptions.filter()
                var options = ScanOptions(range: try range.map { text throws(PageStatError) in try AddressRange(parsing: text) },
                                          view: kernelView ? .kernel : .truth, kernelPageFlags: flags || !kernel.isEmpty)
                options.engine = engineOption.engine
                // Streamed: each mapping is written as soon as it is settled.
                let pageSize = UInt64(ProcFS.pageSize)
                if format == .csv {
                    var filtered = MatchingRuns(CSVReportStream(headers: !layout.noHeaders) { StandardOutput.writeOrEnd($0) }, flags: ours,
                                                kernelFlags: kernel, filter: filter)
                    let result = try scanner.scan(options, into: &filtered)
                    let notes = result.notes.filter { filtered.shows($0) }
                    filtered.base.finish()
                    for note in notes { printError("pagestat: note: \(escapedName(note.description))") }
                } else if format == .json {
                    let stream = JSONReportStream(pid: pid, pageSize: pageSize, privileged: scanner.privileged,
                                                  view: options.view) { StandardOutput.writeOrEnd($0) }
                    var filtered = MatchingRuns(stream, flags: ours, kernelFlags: kernel, filter: filter)
                    let result = try scanner.scan(options, into: &filtered)
                    let notes = result.notes.filter { filtered.shows($0) }
                    filtered.base.finish(notes: notes)
                } else {
                    let stream = TextReportStream(pid: pid, pageSize: pageSize, privileged: scanner.privileged,
                                                  view: options.view, unit: layout.unit, headers: !layout.noHeaders,
                                                  bytes: { StandardOutput.writeOrEnd($0) })
                    var filtered = MatchingRuns(stream, flags: ours, kernelFlags: kernel, filter: filter)
                    let result = try scanner.scan(options, into: &filtered)
                    let notes = result.notes.filter { filtered.shows($0) }
                    filtered.base.finish(notes: layout.noHeaders ? [] : notes)
                    if layout.noHeaders { for note in notes { printError("pagestat: note: \(escapedName(note.description))") } }
                }
            }
        }
    }
}
