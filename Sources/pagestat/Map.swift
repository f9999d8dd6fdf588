import ArgumentParser
import PageStat
import PageStatRender

#if canImport(Glibc)
import Glibc
#endif

extension Pagestat {
    struct Map: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "map",
            abstract: "Draw the state of a process's pages (or of one file's), one strip per mapping.",
            discussion: """
            In the terminal, each mapping is a header line (its range, permissions, size, kind \
            and path) over a strip of cells scaled to the terminal's width: a mapping of up to \
            WIDTH pages gets one cell per page, a larger one cells of N pages, and the header \
            says N. A cell shows the state most of its pages are in (ties: present, swapped, \
            cached, none, unknown, in that order). In colour on a terminal; as characters when \
            the output is not a terminal, when NO_COLOR is set, or with --color never:
              # present   s swapped   c cached   - none   ? unknown

            --format svg writes an SVG picture: one band per mapping, each page a 4x4-pixel \
            square, --columns pages a row; a mapping larger than --columns x 64 pages is drawn \
            in cells of N pages, which its label says. Legend and axis at the top.

            The width is the terminal's (TIOCGWINSZ), else $COLUMNS, else 80; --width sets it.

            Examples:
              pagestat map 1234
              pagestat map 1234 --range 7f12a000-7f12c000
              pagestat map 1234 --format svg > pages.svg
              pagestat map 1234 --kind shmem,shared-anon
              pagestat map --file /dev/shm/vm-ram
            """
        )

        enum Format: String, ExpressibleByArgument, CaseIterable {
            case text, svg
        }

        enum Colour: String, ExpressibleByArgument, CaseIterable {
            case auto, always, never
        }

        @Argument(help: ArgumentHelp("The process (or give it with -p/--pid).", valueName: "pid"))
        var positional: Int32?

        @Option(name: [.customShort("p"), .customLong("pid")], help: ArgumentHelp("The process.", valueName: "pid"))
        var option: Int32?

        @Option(help: ArgumentHelp("Draw this file's page cache instead of a process (e.g. /dev/shm/NAME or /proc/PID/fd/N).", valueName: "path"))
        var file: String?

        @Option(help: ArgumentHelp("Only mappings overlapping START-END or START+LENGTH (as in show: START-END is hexadecimal, as /proc/PID/maps writes it).", valueName: "range"))
        var range: String?

        @Option(help: ArgumentHelp("Only mappings of these kinds (comma-separated: private-anon, shared-anon, shmem, file, special, hugetlb).", valueName: "kinds"))
        var kind: String?

        @Option(help: ArgumentHelp("Only mappings whose path holds this text, or matches it as a shell pattern when it has *, ? or [.", valueName: "path"))
        var path: String?

        @Option(help: "Output format: text or svg.")
        var format: Format = .text

        @Option(help: ArgumentHelp("Cells a strip (text); default: the terminal's width.", valueName: "cells"))
        var width: Int?

        @Option(help: ArgumentHelp("Pages a row in the SVG.", valueName: "pages"))
        var columns: Int = 256

        @Option(help: "Colour in the terminal: auto (when standard output is a terminal and NO_COLOR is not set), always or never.")
        var color: Colour = .auto

        @OptionGroup var engineOption: EngineOption

        func validate() throws {
            if file != nil {
                if positional != nil || option != nil { throw ValidationError("--file draws a file, not a process: give no pid with it") }
                if range != nil || kind != nil || path != nil {
                    throw ValidationError("--range, --kind and --path apply to a process, not to --file")
                }
            } else {
                _ = try ProcessOption.resolve(positional, option)
            }
            if let range {
                do { _ = try AddressRange(parsing: range) } catch { throw ValidationError(error.description) }
            }
            do { _ = try MappingFilter(parsingStates: nil, kinds: kind, path: path) } catch { throw ValidationError(error.description) }
            if let width, width < 8 { throw ValidationError("--width must be at least 8") }
            if columns < 16 || columns > 8192 { throw ValidationError("--columns must be between 16 and 8192") }
        }

        /// Terminal width: TIOCGWINSZ on standard output, else $COLUMNS, else 80.
        static func terminalWidth() -> Int {
            var size = winsize()
            if isatty(1) == 1, ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
            if let text = getenv("COLUMNS").map({ String(cString: $0) }), let columns = Int(text), columns > 0 { return columns }
            return 80
        }

        var colour: Bool {
            switch color {
            case .always: true
            case .never: false
            case .auto:
                isatty(1) == 1 && (getenv("NO_COLOR").map { $0.pointee == 0 } ?? true)
            }
        }

        func run() throws {
            try reportingErrors { () throws(PageStatError) in
                let pageSize = UInt64(ProcFS.pageSize)
                _ = try engineOption.loaded()
                if let file {
                    try drawFile(file, pageSize: pageSize)
                    return
                }
                let pid = try! ProcessOption.resolve(positional, option)
                let scanner = try ProcessScanner(pid: pid)
                var options = ScanOptions(range: try range.map { text throws(PageStatError) in try AddressRange(parsing: text) },
                                          hugeAndZeroFlags: false)
                options.engine = engineOption.engine
                let title = "pagestat map: pid \(pid)" + (scanner.privileged ? "" : ", unprivileged")
                let filter = try MappingFilter(parsingStates: nil, kinds: kind, path: path)
                switch format {
                case .text:
                    let stream = TerminalMapStream(title: title, width: width ?? Self.terminalWidth(), colour: colour,
                                                   pageSize: pageSize) { StandardOutput.writeOrEnd($0) }
                    var filtered = MatchingRuns(stream, flags: [], kernelFlags: [], filter: filter)
                    let result = try scanner.scan(options, into: &filtered)
                    let notes = result.notes.filter { filtered.shows($0) }
                    filtered.base.finish(notes: notes)
                case .svg:
                    let stream = SVGMapStream(title: title, pageSize: pageSize, columns: columns) { StandardOutput.writeOrEnd($0) }
                    var filtered = MatchingRuns(stream, flags: [], kernelFlags: [], filter: filter)
                    let result = try scanner.scan(options, into: &filtered)
                    let notes = result.notes.filter { filtered.shows($0) }
                    filtered.base.finish(notes: notes)
                }
            }
        }

        /// One band: the file's runs by page offset.
        private func drawFile(_ path: String, pageSize: UInt64) throws(PageStatError) {
            let report = try FileScanner.scan(path: path, withRuns: true, engine: engineOption.engine)
            let pages = (report.size + pageSize - 1) / pageSize
            let label = "\(report.isShmem ? "tmpfs " : "")file \(humanBytes(report.size)) \(path)"
            let title = "pagestat map: \(path)"
            switch format {
            case .text:
                var stream = TerminalMapStream(title: escapedName(title), width: width ?? Self.terminalWidth(), colour: colour,
                                               pageSize: pageSize) { StandardOutput.writeOrEnd($0) }
                stream.beginBand(header: escapedName(label), pages: pages)
                for run in report.runs ?? [] { stream.add(first: run.first, count: run.pages, state: run.state) }
                stream.endBand()
                stream.finish(notes: [])
            case .svg:
                var stream = SVGMapStream(title: title, pageSize: pageSize, columns: columns) { StandardOutput.writeOrEnd($0) }
                stream.beginBand(start: 0, label: label, pages: pages)
                for run in report.runs ?? [] { stream.add(first: run.first, count: run.pages, state: run.state) }
                stream.endBand()
                stream.finish(notes: [])
            }
        }
    }
}
