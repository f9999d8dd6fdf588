import ArgumentParser
import PageStat
import PageStatRender
import PageStatLab

#if canImport(Glibc)
import Glibc
#endif

extension Pagestat {
    struct Doctor: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "doctor",
            abstract: "What this kernel and this privilege level give pagestat, and whether to trust it here.",
            discussion: """
            Probes, on the running system, every interface pagestat reads (pagemap PFNs and swap \
            locations, PAGEMAP_SCAN and its categories, cachestat, map_files, SEEK_DATA on \
            shmem, smaps Swap, BTF and the BPF engine, soft-dirty, userfaultfd-wp, guard pages) \
            and how memory is set up (swap areas, zswap, THP and shmem mTHP, hugetlbfs), and says \
            what each missing piece costs in truth or speed.

            --verify arranges memory in this process (shared anonymous, memfd, a /dev/shm file, \
            SysV, private anonymous, a regular file cached and dropped; parts paged out, so it \
            needs swap: as root with none on, it turns on a temporary swap file and removes it), \
            scans it with every engine that loads here, and checks every page against what it \
            arranged. Exit 10 if any page is wrong; pages that could not be told (unknown, with \
            the reason in the notes) are counted, not wrong.

            A temporary swap file outlives its command only when that command was killed with \
            SIGKILL (or the machine stopped): doctor names every pagestat-PID.swap in --directory \
            and in /proc/swaps whose pagestat no longer runs, and --clean turns them off and \
            removes them (root).

            As root where bpffs is mounted at /sys/fs/bpf, the BPF engine's program is pinned \
            there once (/sys/fs/bpf/pagestat, root's alone) so that later runs skip loading it: \
            doctor lists the pins, and --clean removes them too (the next run pins it again).

            Examples:
              pagestat doctor
              pagestat doctor --verify
              pagestat doctor --format json
              pagestat doctor --clean
            """
        )

        @Option(help: "Output format: text or json.")
        var format: OutputFormat = .text

        @Flag(help: "Arrange memory of every kind and check every page pagestat reports.")
        var verify = false

        @Option(help: "Directory for the regular file and the temporary swap file (a disk filesystem, not tmpfs).")
        var directory: String = "/var/tmp"

        @Flag(help: "Turn off and remove the temporary swap files that killed pagestat commands left, and remove the BPF program's pins.")
        var clean = false

        @Flag(help: ArgumentHelp("With --verify, turn on the temporary swap file even when swap is on (at the lowest priority).", visibility: .hidden))
        var temporarySwap = false

        func validate() throws {
            if format == .csv { throw ValidationError("doctor supports --format text or json") }
            guard !directory.isEmpty else { throw ValidationError("--directory is empty: name a directory on a disk filesystem") }
        }

        func run() throws {
            var failed = false
            try reportingErrors { () throws(PageStatError) in
                let facts = HostFacts.probe()
                var results: [Verification] = []
                var notes = Notes()
                let leftovers = try cleanedLeftovers()
                let pins = cleanedPins()
                if verify {
                    if format == .text { writeOut(factsText(facts) + leftoversText(leftovers) + pinsText(pins)) }
                    guard !StandardOutput.lost else { return }  // the exit says why (`StandardOutput`)
                    // In JSON, what is said about swap goes to standard error.
                    try TemporarySwap.ensure(directory: directory, bytes: 64 << 20, always: temporarySwap,
                                             say: format == .text ? writeOut : { printError($0, newline: false) })
                    defer { TemporarySwap.removeSaying() }
                    (results, notes) = try Verification.verify(pages: 64, fileDirectory: directory,
                                                              bpf: facts.first(where: { $0.name == "BPF engine" })?.available == true)
                    failed = results.contains { $0.wrong > 0 }
                    if format == .text { writeOut(verificationText(results, notes: notes)) }
                } else if format == .text {
                    writeOut(factsText(facts) + leftoversText(leftovers) + pinsText(pins))
                }
                if format == .json { writeOut(json(facts, results: verify ? results : nil, notes: notes, leftovers: leftovers, pins: pins)) }
            }
            if failed { throw ExitCode(10) }
        }

        /// The temporary swap files left by killed commands; with --clean, removed first (and
        /// what could not be removed stays listed, with why on stderr).
        private func cleanedLeftovers() throws(PageStatError) -> [TemporarySwap.Leftover] {
            let found = TemporarySwap.leftovers(in: directory)
            guard clean else { return found }
            guard geteuid() == 0 || found.isEmpty else { throw .permissionDenied(.needsRoot("doctor --clean turns swap off: run it as root")) }
            return found.filter { leftover in
                if let failure = TemporarySwap.clean(leftover) {
                    printError("pagestat doctor: \(escapedName(failure))")
                    return true
                }
                printError("pagestat doctor: removed \(escapedName(leftover.path))\(leftover.active ? " (it was on as swap)" : "")")
                return false
            }
        }

        /// What pagestat keeps in bpffs; with --clean, removed first (as root).
        private func cleanedPins() -> [XArrayWalker.Pin.Entry] {
            let found = XArrayWalker.Pin.entries()
            guard clean, !found.isEmpty else { return found }
            if let failure = XArrayWalker.Pin.removeAll() {
                printError("pagestat doctor: \(escapedName(failure))")
                return XArrayWalker.Pin.entries()
            }
            for pin in found { printError("pagestat doctor: removed \(escapedName(pin.path))") }
            return []
        }

        private func pinsText(_ pins: [XArrayWalker.Pin.Entry]) -> String {
            pins.map { pin in
                "Pinned: \(escapedName(pin.path)), " + (pin.current
                    ? "the BPF program this kernel's runs reuse"
                    : "left by another pagestat or kernel (the next pin replaces it)") + ": pagestat doctor --clean removes it.\n"
            }.joined()
        }

        private func leftoversText(_ leftovers: [TemporarySwap.Leftover]) -> String {
            leftovers.map { leftover in
                "Left over: \(escapedName(leftover.path)), the temporary swap file of pid \(leftover.pid), which no longer runs" +
                    "\(leftover.active ? " (still on as swap)" : ""): pagestat doctor --clean removes it.\n"
            }.joined()
        }

        private func factsText(_ facts: [HostFact]) -> String {
            var table = TextTable(headers: ["FACT", "", "WHAT WAS FOUND"], rightAligned: [])
            var costs: [String] = []
            for fact in facts {
                let mark = fact.available.map { $0 ? "yes" : "NO" } ?? ""
                table.add([fact.name, mark, escapedName(fact.detail)])
                if !fact.consequence.isEmpty && fact.available == false { costs.append("\(fact.name): \(fact.consequence)") }
            }
            var out = "pagestat doctor: pid \(getpid())\n\n" + table.render()
            out += "\nengine (--engine auto): \(HostFacts.autoEngine(facts))\n"
            if costs.isEmpty {
                out += "Every interface pagestat uses is here.\n"
            } else {
                out += "\nWhat is missing costs:\n" + costs.map { "  \(escapedName($0))\n" }.joined()
            }
            return out
        }

        private func verificationText(_ results: [Verification], notes: Notes) -> String {
            var table = TextTable(headers: ["REGION", "ENGINE", "PAGES", "RIGHT", "WRONG", "UNKNOWN", "FIRST WRONG PAGE"], rightAligned: [2, 3, 4, 5])
            for result in results {
                let first = result.firstWrong.map { "page \($0.0): arranged \($0.1), reported \($0.2)" } ?? ""
                table.add([result.region, result.engine.rawValue, String(result.pages), String(result.right),
                           String(result.wrong), String(result.unknown), first])
            }
            let wrong = results.reduce(0) { $0 + $1.wrong }
            let unknown = results.reduce(0) { $0 + $1.unknown }
            var out = "\nVerification on memory arranged in this process:\n\n" + table.render()
            out += wrong == 0
                ? "\nEvery page that pagestat could tell is right" + (unknown > 0 ? "; \(unknown) could not be told (see the notes).\n" : ".\n")
                : "\n\(counted(wrong, "page is", "pages are")) WRONG: pagestat cannot be trusted on this host as it is.\n"
            for note in notes.all { out += "note: \(escapedName(note.description))\n" }
            return out
        }

        private func json(_ facts: [HostFact], results: [Verification]?, notes: Notes, leftovers: [TemporarySwap.Leftover],
                          pins: [XArrayWalker.Pin.Entry]) -> String {
            var json = JSONWriter()
            json.beginObject()
            json.key("facts")
            json.beginArray()
            for fact in facts {
                json.beginObject()
                json.field("name", fact.name)
                json.key("available")
                if let available = fact.available { json.value(available) } else { json.null() }
                json.field("detail", fact.detail)
                json.field("consequence", fact.consequence)
                json.endObject()
            }
            json.endArray()
            json.field("auto_engine", HostFacts.autoEngine(facts))
            json.field("leftover_swap_files", strings: leftovers.map(\.path))
            json.field("bpf_pins", strings: pins.map(\.path))
            if let results {
                json.key("verification")
                json.beginArray()
                for result in results {
                    json.beginObject()
                    json.field("region", result.region)
                    json.field("engine", result.engine.rawValue)
                    json.field("pages", result.pages)
                    json.field("right", result.right)
                    json.field("wrong", result.wrong)
                    json.field("unknown", result.unknown)
                    json.endObject()
                }
                json.endArray()
                json.field("notes", strings: notes.all.map(\.description))
            }
            json.endObject()
            return json.output + "\n"
        }
    }
}
