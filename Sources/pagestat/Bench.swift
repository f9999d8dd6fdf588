import ArgumentParser
import PageStat
import PageStatRender
import PageStatLab

#if canImport(Glibc)
import Glibc
#endif

extension Pagestat {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "bench",
            abstract: "Re-measure the seed's tables: the kernel's raw pagemap read against pagestat's truth.",
            discussion: """
            Sets up the 2021 thread's matrix with `pagestat lab`: private and shared anonymous \
            memory, 0, 50 and 100% dirty, swapping in a memory cgroup limited to a quarter of the \
            size (swappiness 60), plus a worst case (shared, every other page written). For each \
            cell it measures, side by side in one run, the kernel's raw read of the range at 1, 8, \
            64, 512 and 1024 entries per read (what `dd ibs=8*BATCH` does) and pagestat's full \
            classification of the same range (present/swapped/cached/none for every page, as \
            `show --format json` computes it), in this process; then whole process against whole \
            process: `dd ibs=8192` against `pagestat show --range ... --format json`. Medians of \
            --runs runs after a warm-up. Needs root (cgroup) and swap.

            The default size finishes in about a minute here; --pages 4194304 is the seed's 16 GiB.

            With --mappings N (repeatable) it measures the system views instead: a child maps one \
            memfd N times, one page per mapping (`pagestat lab hold --repeated-mappings N`), and \
            `pagestat objects --format json` runs as a whole process over the machine; `top`'s \
            work (page tables, then each object's swapped pages split among its mappers) is timed \
            in this process over the child alone, so that other processes on the machine do not \
            count. Medians of --runs runs after a warm-up. When N mappings do not fit under \
            vm.max_map_count, it raises the limit for the run and restores it after, also when \
            a signal (SIGINT, SIGTERM, SIGHUP, SIGPIPE, ...) ends it.
            """
        )

        @Option(help: "Pages per cell (the seed used 4194304, 16 GiB).")
        var pages: Int = 262_144

        @Option(help: "Measured runs per figure (the median is shown), after one warm-up run.")
        var runs: Int = 5

        @Flag(help: "Skip the whole-process comparison (dd against pagestat show).")
        var noWholeProcess = false

        @Option(help: ArgumentHelp("Only the cells whose name contains this text (e.g. \"shared\", \"alternate\").", valueName: "text"))
        var only: String?

        @Option(help: ArgumentHelp("Measure objects and top over one memfd mapped N times instead (repeatable).", valueName: "n"))
        var mappings: [Int] = []

        @OptionGroup var engineOption: EngineOption

        func validate() throws {
            guard pages >= 4096 && pages % 1024 == 0 else { throw ValidationError("--pages must be a multiple of 1024, at least 4096") }
            guard runs >= 1 && runs <= 100 else { throw ValidationError("--runs must be 1...100") }
            guard mappings.allSatisfy({ $0 >= 1 && $0 <= 10_000_000 }) else { throw ValidationError("--mappings must be 1...10000000") }
        }

        func run() throws {
            try reportingErrors { () throws(PageStatError) in
                if mappings.isEmpty { try measure() } else { try measureMappings() }
            }
        }

        /// `objects` and `top` over one memfd mapped N times, for each N of --mappings.
        private func measureMappings() throws(PageStatError) {
            guard geteuid() == 0 else { throw .permissionDenied(.needsRoot("bench --mappings opens other processes' objects: run it as root")) }
            guard !SwapArea.active().isEmpty else { throw .unsupported("swap is off: bench --mappings pages part of the object out (swapon)") }
            let executable = try selfExecutable()
            writeOut("""
            pagestat bench --mappings: one memfd mapped N times (one page per mapping, a quarter of \
            the object swapped); objects: `pagestat objects --format json`, a whole process over the \
            machine; top: SystemScanner.top over the child alone, in this process; median of \(runs) \
            runs after a warm-up; \
            \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs, kernel \(kernelRelease())\n\n
            """)
            guard !StandardOutput.lost else { return }  // the exit says why (`StandardOutput`)
            var table = TextTable(headers: ["MAPPINGS", "OBJECTS", "OBJECTS PEAK RSS", "TOP (CHILD ONLY)"], rightAligned: [0, 1, 2, 3])
            for count in mappings {
                printError("pagestat bench: \(count) mappings: setting up")
                let limit = try MapCountLimit(atLeast: count + 1024)
                defer { limit.restore() }
                let fixture = try ChildProcess([executable, "lab", "hold", "--repeated-mappings", String(count)], captureOutput: true)
                defer {
                    fixture.signal(SIGTERM)
                    fixture.wait()
                }
                guard let line = fixture.readLine(), let pid = Self.number("pid", in: line) else {
                    throw .system(call: "pagestat lab hold --repeated-mappings (no layout line)", errno: .ioError)
                }
                let objects = try wholeProcess([executable, "objects", "--format", "json"])
                var shares: UInt64 = 0
                let top = try median { () throws(PageStatError) in
                    let report = SystemScanner.top(pids: [Int32(pid)])
                    guard let row = report.processes.first else { throw .processExited(pid: Int32(pid)) }
                    shares = row.use.shmemSwap
                }
                // Every swapped page is mapped by the child alone: its share is all of them.
                let expected = UInt64(count / 4 * ProcFS.pageSize)
                if shares != expected {
                    printError("pagestat bench: top counted \(shares) bytes of swapped shared memory, \(expected) expected")
                }
                table.add([String(count), BenchTables.seconds(objects.seconds), humanBytes(UInt64(objects.peakKiB) * 1024),
                           BenchTables.seconds(top)])
            }
            writeOut(table.render())
        }

        /// Raises /proc/sys/vm/max_map_count to at least `atLeast` until `restore()`, or until the
        /// process ends some other way (`UndoOnExit`: exit, SIGINT, SIGTERM, SIGPIPE, ...).
        struct MapCountLimit {
            static let path = "/proc/sys/vm/max_map_count"
            let original: Int?
            let undo: UndoOnExit.Action?

            init(atLeast wanted: Int) throws(PageStatError) {
                guard let current = RepeatedMappings.maxMapCount() else { throw .unsupported("no /proc/sys/vm/max_map_count") }
                guard current < wanted else {
                    original = nil
                    undo = nil
                    return
                }
                // Registered before the raise: a signal in between writes back what is there.
                let undo = try UndoOnExit.write("\(current)\n", to: Self.path)
                do {
                    try Self.write(wanted)
                } catch {
                    undo.cancel()
                    throw error
                }
                original = current
                self.undo = undo
                printError("pagestat bench: raised vm.max_map_count from \(current) to \(wanted) for this run")
            }

            func restore() {
                guard let original, let undo else { return }
                if let failure = undo.run() {
                    printError("pagestat bench: could not restore vm.max_map_count to \(original): \(failure)")
                } else {
                    printError("pagestat bench: restored vm.max_map_count to \(original)")
                }
            }

            static func write(_ value: Int) throws(PageStatError) {
                let fd = open(path, O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { throw .system(call: "open \(path)", errno: .init(rawValue: errno)) }
                defer { close(fd) }
                let bytes = Array("\(value)\n".utf8)
                guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
                    throw .system(call: "write \(path)", errno: .init(rawValue: errno))
                }
            }
        }

        struct Cell {
            var shared: Bool
            var dirty: Int
            var pattern: String
            var name: String { "\(shared ? "shared" : "private")|anon \(dirty)%\(pattern == "first" ? "" : " " + pattern)" }
        }

        struct Result {
            var cell: Cell
            var counts: PageCounts
            var raw: [Int: Double]
            var pagestat: Double
            /// The last measured run's phases (seconds), JSON rendering included.
            var phases: [(phase: String, seconds: Double)] = []
            var dd: Double?
            var show: Double?
            var showPeakKiB: Int?
            var raw1: Double?
            /// The BPF walk alone over the cell's pages of its shared object, and the records it wrote.
            var walkAlone: (seconds: Double, records: Int)?
        }

        static let batches = [1, 8, 64, 512, 1024]

        private func measure() throws(PageStatError) {
            guard geteuid() == 0 else { throw .permissionDenied(.needsRoot("bench runs lab in a memory cgroup: run it as root")) }
            guard !SwapArea.active().isEmpty else { throw .unsupported("swap is off: bench needs swap (swapon)") }
            let executable = try selfExecutable()
            let pageSize = ProcFS.pageSize
            var cells: [Cell] = []
            for shared in [false, true] { for dirty in [0, 50, 100] { cells.append(Cell(shared: shared, dirty: dirty, pattern: "first")) } }
            cells.append(Cell(shared: true, dirty: 50, pattern: "alternate"))
            if let only { cells = cells.filter { $0.name.contains(only) } }
            guard !cells.isEmpty else { throw .invalidInput("no cell's name contains '\(only ?? "")'") }
            writeOut("""
            pagestat bench: \(pages) pages (\(humanBytes(UInt64(pages * pageSize)))) per cell, memory limit \
            \(humanBytes(UInt64(pages * pageSize / 4))), median of \(runs) runs after a warm-up; \
            \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs, kernel \(kernelRelease())\n\n
            """)
            guard !StandardOutput.lost else { return }  // the exit says why (`StandardOutput`)
            var results: [Result] = []
            for cell in cells {
                printError("pagestat bench: \(cell.name): setting up")
                results.append(try measure(cell, executable: executable))
            }
            writeOut(BenchTables.render(results, pageSize: pageSize, batches: Self.batches))
        }

        private func measure(_ cell: Cell, executable: String) throws(PageStatError) -> Result {
            let pageSize = ProcFS.pageSize
            let lab = try ChildProcess([executable, "lab", "--pages", String(pages), cell.shared ? "--shared" : "--private",
                                        "--dirty", String(cell.dirty), "--memory-limit", String(pages * pageSize / 4),
                                        "--swappiness", "60", "--pattern", cell.pattern, "--exit-on-eof"],
                                       captureOutput: true)
            defer {
                lab.signal(SIGTERM)
                lab.wait()
            }
            guard let line = lab.readLine(), let pid = Self.number("pid", in: line), let start = Self.number("start", in: line) else {
                throw .system(call: "pagestat lab (no layout line)", errno: .ioError)
            }
            let range = AddressRange(start: start, end: start + UInt64(pages * pageSize))
            let pid32 = Int32(pid)
            var raw: [Int: Double] = [:]
            for batch in Self.batches {
                raw[batch] = try median { () throws(PageStatError) in _ = try RawPagemapRead.read(pid: pid32, range: range, entriesPerRead: batch) }
            }
            // Whole processes first, while this process holds little: a spawned child starts
            // from its parent's address space, and its peak RSS counts the parent's.
            var dd: Double?, show: Double?, showPeakKiB: Int?, raw1: Double?
            if !noWholeProcess {
                let bytes = UInt64(pages * 8)
                let skip = (start / UInt64(pageSize)) * 8
                let ddCommand = ["/bin/dd", "if=/proc/\(pid)/pagemap", "ibs=8192", "obs=1M", "skip=\(skip)", "count=\(bytes)",
                          "iflag=skip_bytes,count_bytes", "of=/dev/null", "status=none"]
                let rangeArgument = "\(hex(range.start))+\(range.length)"
                let engine = ["--engine", engineOption.engine.rawValue]
                let showCommand = [executable, "show", "--pid", String(pid), "--range", rangeArgument, "--format", "json"] + engine
                let rawCommand = [executable, "raw", "--pid", String(pid), "--range", rangeArgument] + engine
                dd = try wholeProcess(ddCommand).seconds
                let measured = try wholeProcess(showCommand)
                show = measured.seconds
                showPeakKiB = measured.peakKiB
                raw1 = try wholeProcess(rawCommand).seconds
            }
            var counts = PageCounts()
            var phases: [(phase: String, seconds: Double)] = []
            let pagestat = try median { () throws(PageStatError) in
                var options = ScanOptions(range: range)
                options.engine = engineOption.engine
                let report = try ProcessScanner(pid: pid32).scan(options)
                let rendering = Stopwatch.seconds { ReportRenderer.writeJSON(report) { _ in } }
                counts = report.counts
                phases = report.timings + [("render JSON", rendering)]
            }
            // The BPF walk of the shared object alone, what the file side's BPF engine costs at least.
            var walkAlone: (seconds: Double, records: Int)?
            // The lab maps exactly the cell's pages, from offset 0 of its object.
            if cell.shared, engineOption.engine != .syscalls, let walker = try? XArrayWalker.shared() {
                let path = "/proc/\(pid)/map_files/\(String(range.start, radix: 16))-\(String(range.end, radix: 16))"
                let first: UInt64 = 0
                var records = 0
                let seconds = try median { () throws(PageStatError) in
                    records = try walker.walkAlone(path: path, first: first, count: UInt64(pages))
                }
                walkAlone = (seconds, records)
            }
            var result = Result(cell: cell, counts: counts, raw: raw, pagestat: pagestat)
            result.walkAlone = walkAlone
            result.phases = phases
            result.dd = dd
            result.show = show
            result.showPeakKiB = showPeakKiB
            result.raw1 = raw1
            return result
        }

        /// Median wall time of `runs` runs of a whole process, after a warm-up; its peak RSS.
        private func wholeProcess(_ arguments: [String]) throws(PageStatError) -> (seconds: Double, peakKiB: Int) {
            var peak = 0
            let seconds = try median { () throws(PageStatError) in
                // posix_spawn's child shares this address space until it execs, and exec keeps
                // that space's peak RSS as the child's: reset it to what this process holds now
                // (clear_refs 5), so that the figure is the child's own.
                Self.resetPeakRSS()
                let child = try ChildProcess(arguments, captureOutput: false)
                let (status, rss) = child.wait()
                guard status == 0 else { throw .system(call: arguments[0...1].joined(separator: " "), errno: .ioError) }
                peak = max(peak, rss)
            }
            return (seconds, peak)
        }

        /// Resets this process's peak RSS (VmHWM) to its current RSS: /proc/self/clear_refs, "5".
        static func resetPeakRSS() {
            let fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            _ = "5".withCString { write(fd, $0, 1) }
            close(fd)
        }

        private func median(_ body: () throws(PageStatError) -> Void) throws(PageStatError) -> Double {
            try body()  // warm-up
            var times: [Double] = []
            for _ in 0..<runs { times.append(try Stopwatch.seconds(body)) }
            return Stopwatch.median(times)
        }

        private func selfExecutable() throws(PageStatError) -> String {
            var buffer = [CChar](repeating: 0, count: 4096)
            let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
            guard count > 0 else { throw .system(call: "readlink /proc/self/exe", errno: .init(rawValue: errno)) }
            return buffer[0..<count].withUnsafeBufferPointer { String(decoding: UnsafeRawBufferPointer($0), as: UTF8.self) }
        }

        private func kernelRelease() -> String {
            var name = utsname()
            uname(&name)
            return withUnsafeBytes(of: name.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }

        /// A non-negative integer field of a one-line JSON object.
        static func number(_ key: String, in line: String) -> UInt64? {
            let needle = Array("\"\(key)\":".utf8)
            let bytes = Array(line.utf8)
            guard bytes.count >= needle.count,
                  let at = (0...(bytes.count - needle.count)).first(where: { Array(bytes[$0..<$0 + needle.count]) == needle })
            else { return nil }
            let digits = bytes[(at + needle.count)...].prefix(while: { $0 >= 0x30 && $0 <= 0x39 })
            return UInt64(String(decoding: digits, as: UTF8.self))
        }
    }
}

/// The seed's two tables, re-measured, with ratio columns.
enum BenchTables {
    /// The seed's figures (post-patch / pre-patch, seconds), for the ratio it paid.
    static let seedFirst: [String: (Double, Double)] = [
        "private|anon 0%": (8.15, 8.40), "private|anon 50%": (11.83, 12.19), "private|anon 100%": (12.37, 12.20),
        "shared|anon 0%": (8.17, 8.18), "shared|anon 50%": (10.43, 37.43), "shared|anon 100%": (10.20, 38.59),
    ]
    static let seedBatches: [Int: [(Double, Double)]] = [
        1: [(10.43, 37.43), (10.20, 38.59)], 8: [(1.38, 4.80), (1.35, 4.94)], 64: [(0.25, 0.72), (0.24, 0.74)],
        512: [(0.10, 0.21), (0.10, 0.22)], 1024: [(0.10, 0.20), (0.10, 0.21)],
    ]

    static func seconds(_ value: Double?) -> String {
        guard let value else { return "-" }
        return value >= 1 ? String(format2: value) + " s" : String(format2: value * 1000) + " ms"
    }

    static func ratio(_ a: Double?, _ b: Double?) -> String {
        guard let a, let b, b > 0 else { return "-" }
        return String(format2: a / b) + "x"
    }

    static func render(_ results: [Pagestat.Bench.Result], pageSize: Int, batches: [Int]) -> String {
        var out = "Table 1: the seed's first table. Kernel: raw pagemap read of the range; pagestat: the full\n"
        out += "classification of the same range in this process (present/swapped/cached/none for every page).\n"
        var first = TextTable(headers: ["CELL", "PRESENT", "SWAPPED", "NONE", "KERNEL 1/READ", "KERNEL 1024/READ",
                                        "PAGESTAT", "VS 1024", "SEED PATCH VS PRE"], rightAligned: [1, 2, 3, 4, 5, 6, 7, 8])
        for result in results {
            let seed = seedFirst[result.cell.name]
            first.add([result.cell.name, String(result.counts.present), String(result.counts.swapped),
                       String(result.counts.none + result.counts.cached), seconds(result.raw[1]), seconds(result.raw[1024]),
                       seconds(result.pagestat), ratio(result.pagestat, result.raw[1024]),
                       seed.map { ratio($0.1, $0.0) } ?? "-"])
        }
        out += first.render()
        out += "\nTable 2: the seed's second table: shared anonymous memory by entries per read (dd ibs=8*BATCH).\n"
        var second = TextTable(headers: ["BATCH", "KERNEL 50%", "PAGESTAT 50%", "RATIO", "SEED RATIO",
                                         "KERNEL 100%", "PAGESTAT 100%", "RATIO", "SEED RATIO"],
                               rightAligned: Set(0...8))
        let fifty = results.first { $0.cell.shared && $0.cell.dirty == 50 && $0.cell.pattern == "first" }
        let hundred = results.first { $0.cell.shared && $0.cell.dirty == 100 }
        for batch in batches {
            let seed = seedBatches[batch]
            second.add([String(batch), seconds(fifty?.raw[batch]), seconds(fifty?.pagestat),
                        ratio(fifty?.pagestat, fifty?.raw[batch]), seed.map { ratio($0[0].1, $0[0].0) } ?? "-",
                        seconds(hundred?.raw[batch]), seconds(hundred?.pagestat),
                        ratio(hundred?.pagestat, hundred?.raw[batch]), seed.map { ratio($0[1].1, $0[1].0) } ?? "-"])
        }
        out += second.render()
        out += "\nWhere pagestat's time goes (one run, milliseconds; per page: all phases over the range's pages).\n"
        let phaseNames = results.first?.phases.map(\.phase) ?? []
        var phases = TextTable(headers: ["CELL"] + phaseNames.map { $0.uppercased() } + ["NS/PAGE"],
                               rightAligned: Set(1...(phaseNames.count + 1)))
        for result in results {
            let total = result.phases.reduce(0) { $0 + $1.seconds }
            let pages = Double(result.counts.total)
            phases.add([result.cell.name] + result.phases.map { String(format2: $0.seconds * 1000) }
                       + [pages > 0 ? String(format2: total * 1e9 / pages) : "-"])
        }
        out += phases.render()
        if results.contains(where: { $0.walkAlone != nil }) {
            out += "\nThe file side against the BPF walk alone (the shared object's xarray over the cell's pages, the program's records read and dropped).\n"
            var walks = TextTable(headers: ["CELL", "RECORDS", "WALK ALONE", "FILE SIDE", "RATIO"], rightAligned: [1, 2, 3, 4])
            for result in results {
                guard let walk = result.walkAlone else { continue }
                let fileSide = result.phases.first { $0.phase == "file side" }?.seconds
                walks.add([result.cell.name, String(walk.records), seconds(walk.seconds), seconds(fileSide), ratio(fileSide, walk.seconds)])
            }
            out += walks.render()
        }
        if results.contains(where: { $0.dd != nil }) {
            out += "\nWhole process against whole process: dd ibs=8192 against pagestat show --range ... --format json and pagestat raw.\n"
            var whole = TextTable(headers: ["CELL", "DD", "PAGESTAT SHOW", "RATIO", "PAGESTAT PEAK RSS", "PAGESTAT RAW", "RATIO"],
                                  rightAligned: [1, 2, 3, 4, 5, 6])
            for result in results {
                whole.add([result.cell.name, seconds(result.dd), seconds(result.show), ratio(result.show, result.dd),
                           result.showPeakKiB.map { humanBytes(UInt64($0) * 1024) } ?? "-",
                           seconds(result.raw1), ratio(result.raw1, result.dd)])
            }
            out += whole.render()
        }
        return out
    }
}

extension String {
    /// A number with two decimals (no Foundation here).
    init(format2 value: Double) {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        self = "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
