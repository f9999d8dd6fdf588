import ArgumentParser
import PageStat
import PageStatRender
import PageStatLab

#if canImport(Glibc)
import Glibc
#endif

extension Pagestat {
    struct Demo: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "demo",
            abstract: "Show the shared-memory gap in pagemap, on memory this process arranges.",
            discussion: """
            Reproduces the 2021 kernel thread's experiment in this process: maps shared anonymous \
            memory, writes two thirds of it, pushes one third to swap with MADV_PAGEOUT, and \
            shows side by side what /proc/self/pagemap says and what pagestat says. A memfd \
            written with pwrite() only (cached, never mapped) and private anonymous memory (where \
            pagemap is right) follow for contrast.

            Needs swap. With none on and running as root, it turns on a temporary swap file for \
            the demo and removes it at exit, also when a signal or a closed pipe ends the demo \
            (not after SIGKILL: then `pagestat doctor` names the file, `doctor --clean` removes it).
            """
        )

        @Option(help: "Pages in each demo region.")
        var pages: Int = 3072

        @Option(help: "Directory for the temporary swap file (used only when no swap is on; a disk filesystem, not tmpfs).")
        var swapDirectory: String = "/var/tmp"

        @Flag(help: ArgumentHelp("Turn on the temporary swap file even when swap is on (at the lowest priority).", visibility: .hidden))
        var temporarySwap = false

        func validate() throws {
            guard pages >= 3 && pages <= 1 << 22 else { throw ValidationError("--pages must be 3...4194304") }
            guard !swapDirectory.isEmpty else { throw ValidationError("--swap-directory is empty: name a directory on a disk filesystem") }
        }

        func run() throws {
            try reportingErrors { () throws(PageStatError) in try runDemo() }
        }

        private func runDemo() throws(PageStatError) {
            let pageSize = UInt64(ProcFS.pageSize)
            writeOut("pagestat demo: the shared-memory gap in /proc/PID/pagemap, shown in this process (pid \(getpid()))\n\n")
            // Output already lost: arrange nothing (the exit says why).
            guard !StandardOutput.lost else { return }
            try TemporarySwap.ensure(directory: swapDirectory, bytes: UInt64(max(64 << 20, pages * ProcFS.pageSize * 2)),
                                     always: temporarySwap)
            defer { TemporarySwap.removeSaying() }

            let third = pages / 3
            // 1. Shared anonymous memory: the seed's experiment.
            let shared = try ArrangedMemory(pages: pages, backing: .sharedAnonymous)
            shared.write(0..<2 * third)
            try shared.pageOut(0..<third)
            // 2. A memfd: one third written with pwrite() only, one third written through the
            //    mapping, the rest never touched.
            let memfd = try ArrangedMemory(pages: pages, backing: .memfd(name: "pagestat-demo", shared: true))
            try memfd.pwrite(0..<third)
            memfd.write(third..<2 * third)
            // 3. Private anonymous memory, where pagemap keeps swap entries.
            let privateMemory = try ArrangedMemory(pages: pages, backing: .privateAnonymous)
            privateMemory.write(0..<2 * third)
            try privateMemory.pageOut(0..<third)

            let scanner = try ProcessScanner(pid: getpid())
            let sections: [(String, ArrangedMemory, [(Range<Int>, String)])] = [
                ("Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS)", shared,
                 [(0..<third, "written, then MADV_PAGEOUT"), (third..<2 * third, "written"),
                  (2 * third..<pages, "never touched")]),
                ("A memfd mapped MAP_SHARED", memfd,
                 [(0..<third, "written with pwrite() only"), (third..<2 * third, "written"),
                  (2 * third..<pages, "never touched")]),
                ("Private anonymous memory (for contrast)", privateMemory,
                 [(0..<third, "written, then MADV_PAGEOUT"), (third..<2 * third, "written"),
                  (2 * third..<pages, "never touched")]),
            ]
            var notes = Notes()
            for (index, (title, memory, done)) in sections.enumerated() {
                let kernel = try scanner.scan(ScanOptions(range: memory.range, view: .kernel))
                let truth = try scanner.scan(ScanOptions(range: memory.range, view: .truth))
                for note in truth.notes { notes.add(note) }
                writeOut(DemoTable.render(
                    title: "\(index + 1). \(title), \(pages) pages (\(humanBytes(UInt64(pages) * pageSize))) at \(hex(memory.address))",
                    base: memory.address, pageSize: pageSize, done: done,
                    kernel: kernel.mappings.flatMap(\.runs), truth: truth.mappings.flatMap(\.runs)))
                if StandardOutput.lost { return }
            }
            for note in notes.all { writeOut("note: \(escapedName(note.description))\n") }
            writeOut("""

            Try it on any process:
              swift run -c release pagestat show PID     (add --kernel-view to see pagemap's side)
              swift run -c release pagestat map PID      (a picture)
            or install pagestat (bash Scripts/install.sh) and type pagestat show PID.

            """)
        }
    }
}

/// The demo's side-by-side table: what was done to each stretch of pages, what pagemap says,
/// and what pagestat says.
enum DemoTable {
    static func render(title: String, base: UInt64, pageSize: UInt64, done: [(Range<Int>, String)],
                       kernel: [PageRun], truth: [PageRun]) -> String {
        func page(_ address: UInt64) -> Int { Int((address - base) / pageSize) }
        func state(_ runs: [PageRun], at index: Int) -> PageRun? {
            runs.first { page($0.start) <= index && index < page($0.start) + Int($0.pages) }
        }
        var cuts = Set<Int>()
        for (range, _) in done { cuts.insert(range.lowerBound); cuts.insert(range.upperBound) }
        for run in kernel + truth { cuts.insert(page(run.start)); cuts.insert(page(run.start) + Int(run.pages)) }
        let points = cuts.sorted()
        var rows: [[String]] = [["pages", "what the demo did", "pagemap says", "pagestat says"]]
        var wrong = 0
        var total = 0
        for (low, high) in zip(points, points.dropFirst()) where high > low {
            let did = done.first { $0.0.contains(low) }?.1 ?? "-"
            let k = state(kernel, at: low)
            let t = state(truth, at: low)
            func describe(_ run: PageRun?) -> String {
                guard let run else { return "-" }
                return run.flags.isEmpty ? run.state.description : "\(run.state) (\(run.flags))"
            }
            if k?.state != t?.state { wrong += high - low }
            total += high - low
            rows.append(["\(low)-\(high - 1)", did, describe(k), describe(t)])
        }
        let widths = (0..<4).map { column in rows.map { $0[column].count }.max() ?? 0 }
        var out = title + "\n"
        for row in rows {
            let cells = row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - cell.count)
            }
            out += "   " + cells.joined(separator: "   ") + "\n"
        }
        if wrong == 0 {
            out += "   pagemap and pagestat agree on all \(total) pages.\n\n"
        } else {
            out += "   pagemap misreports \(wrong) of \(counted(total, "page")) (\(wrong * 100 / max(total, 1))%).\n\n"
        }
        return out
    }
}
