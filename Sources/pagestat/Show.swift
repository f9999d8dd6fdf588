import ArgumentParser
import PageStat

extension Pagestat {
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
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
            """
        )

        @Option(help: "The process to inspect.")
        var pid: Int32

        @Option(help: ArgumentHelp("Only mappings overlapping START-END or START+LENGTH (hex with 0x, or decimal; LENGTH may end in K, M, G).", valueName: "range"))
        var range: String?

        @Option(help: "Output format: text or json.")
        var format: OutputFormat = .text

        @Flag(help: "Report what the raw kernel page table (pagemap) alone says.")
        var kernelView = false

        func validate() throws {
            if format == .csv { throw ValidationError("show supports --format text or json") }
            if let range {
                do { _ = try AddressRange(parsing: range) } catch { throw ValidationError(error.description) }
            }
        }

        func run() throws {
            try reportingErrors { () throws(PageStatError) in
                let scanner = try ProcessScanner(pid: pid)
                let options = ScanOptions(range: try range.map { text throws(PageStatError) in try AddressRange(parsing: text) },
                                          view: kernelView ? .kernel : .truth)
                let report = try scanner.scan(options)
                writeOut(format == .json ? ReportRenderer.json(report) : ReportRenderer.text(report))
            }
        }
    }
}
