import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// The package's root, from this file's path.
private let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// An executable target of this package, built beside the test bundle (as `pagestat` is).
private func builtExecutable(_ name: String) throws -> String {
    let directory = URL(fileURLWithPath: TestEnvironment.pagestatPath).deletingLastPathComponent()
    let candidates = [directory, directory.deletingLastPathComponent()].map { $0.appendingPathComponent(name).path }
    return try #require(candidates.first { FileManager.default.isExecutableFile(atPath: $0) },
                        "\(name) is not built beside pagestat: run `swift build` first (Scripts/test.sh does)")
}

/// The fenced block that follows `marker` in `markdown`, without its fences, each line ending in
/// a newline.
func fencedBlock(after marker: String, in markdown: String) -> String? {
    let lines = markdown.split(separator: "\n", omittingEmptySubsequences: false)
    guard let at = lines.firstIndex(where: { $0.contains(marker) }),
          let open = lines[(at + 1)...].firstIndex(where: { $0.hasPrefix("```") }),
          let close = lines[(open + 1)...].firstIndex(where: { $0 == "```" })
    else { return nil }
    return lines[(open + 1)..<close].map { $0 + "\n" }.joined()
}

@Suite("Examples/ and the README's library example")
struct ExampleSourceTests {
    /// The README shows Examples/LibraryExample/main.swift byte for byte: `swift build` builds
    /// the one, so the other compiles as written.
    @Test func readmeExampleIsTheBuiltSource() throws {
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let source = try String(contentsOf: packageRoot.appendingPathComponent("Examples/LibraryExample/main.swift"),
                                encoding: .utf8)
        let block = try #require(fencedBlock(after: "<!-- Examples/LibraryExample/main.swift", in: readme),
                                 "README has no fenced block after its Examples/LibraryExample/main.swift marker")
        #expect(block == source, "README's library example differs from Examples/LibraryExample/main.swift")
    }

    /// The examples stay on the public API: no @testable import, no lab types, no C shim.
    @Test func examplesUseOnlyThePublicAPI() throws {
        let forbidden = ["@testable", "import CPagestat", "ArrangedMemory", "ArrangedLayout", "ChildProcess",
                         "MemoryCgroup", "DirtyPlan", "SwapRequirement", "SplitMix64"]
        for file in ["Examples/LibraryExample/main.swift", "Examples/MigrationPlan/MigrationPlan.swift"] {
            let text = try String(contentsOf: packageRoot.appendingPathComponent(file), encoding: .utf8)
            for word in forbidden { #expect(!text.contains(word), "\(file) uses \(word)") }
        }
    }
}

/// Swapped pages by address, from the lines `0xADDRESS N page(s) swapped (...)` of LibraryExample.
private func swappedLines(_ output: String) -> [(start: UInt64, pages: UInt64, line: Substring)] {
    output.split(separator: "\n").compactMap { line in
        let words = line.split(separator: " ")
        guard words.count > 3, words[0].hasPrefix("0x"), let start = UInt64(words[0].dropFirst(2), radix: 16),
              let pages = UInt64(words[1]) else { return nil }
        return (start, pages, line)
    }
}

/// The `total ACTION N pages` lines of MigrationPlan, by action.
private func planTotals(_ output: String) -> [String: UInt64] {
    var totals: [String: UInt64] = [:]
    for line in output.split(separator: "\n") where line.hasPrefix("total  ") {
        let body = line.dropFirst("total  ".count)
        guard let pages = body.range(of: " pages") else { continue }
        let head = body[..<pages.lowerBound]
        let words = head.split(separator: " ")
        guard let count = words.last.flatMap({ UInt64($0) }) else { continue }
        totals[words.dropLast().joined(separator: " ")] = count
    }
    return totals
}

/// Runs `attempt` until the memory it arranged held still while it was checked, at most 4 times.
/// Other suites of this process turn on a swap area of the highest priority for one test and
/// turn it off again (EngineTests, XArrayWalkerTests): pages paged out meanwhile land there and
/// swapoff brings them back into memory, unmapped. `attempt` returns whether the kernel's own
/// count (smaps Swap) was what the test arranged both before and after the example ran, and
/// checks the example's output only then; a disturbed attempt is said on stderr and retried.
private func retryingDisturbed(_ name: String, _ attempt: () throws -> Bool) throws {
    for round in 1...4 {
        if try attempt() { return }
        FileHandle.standardError.write(Data("\(name): the arranged memory changed under the test (attempt \(round) of 4: smaps Swap moved; a concurrent swapoff?), arranging it again\n".utf8))
        usleep(200_000)
    }
    Issue.record("\(name): the arranged memory changed under the test in 4 attempts: nothing was checked")
}

@Suite("The examples, run on memory the test arranged (needs root and swap)",
       .needsSwapAndRoot)
struct ExampleRunTests {
    /// LibraryExample on `pagestat fixture` (a small process of its own): every paged-out part of
    /// each region is reported swapped, whole (with swap locations from the BPF engine) and
    /// streamed.
    @Test func libraryExampleFindsTheSwappedPages() throws {
        let example = try builtExecutable("LibraryExample")
        let swappedRegions = ["shared-anon", "memfd", "tmpfs", "sysv", "private-anon"]
        try retryingDisturbed("LibraryExample") {
            let fixture = try FixtureProcess(pages: 64)
            defer { fixture.stop() }
            let q = UInt64(fixture.pages / 4)
            func kernelSwapped() throws -> [UInt64] {
                try swappedRegions.map { try smapsSwappedPages(try fixture.range($0).start, pid: fixture.pid) }
            }
            guard try kernelSwapped() == Array(repeating: q, count: swappedRegions.count) else { return false }
            let runs = try [["bpf"], ["--stream"]].map { ($0, try runCommand(example, [String(fixture.pid)] + $0)) }
            guard try kernelSwapped() == Array(repeating: q, count: swappedRegions.count) else { return false }

            for (arguments, run) in runs {
                #expect(run.status == 0, "LibraryExample \(arguments): \(run.stderr)")
                let lines = swappedLines(run.stdout)
                for region in swappedRegions {
                    let range = try fixture.range(region)
                    let inRegion = lines.filter { range.start <= $0.start && $0.start < range.end }
                    #expect(inRegion.reduce(0) { $0 + $1.pages } == q, "\(region), LibraryExample \(arguments):\n\(run.stdout)")
                    if arguments == ["bpf"] {
                        #expect(inRegion.allSatisfy { $0.line.contains("(swap type ") },
                                "\(region): a swapped run without its swap location:\n\(run.stdout)")
                    }
                }
                let total = run.stdout.split(separator: "\n").first { $0.hasSuffix(" pages swapped") }
                let count = total.flatMap { UInt64($0.split(separator: " ")[0]) }
                #expect((count ?? 0) >= UInt64(swappedRegions.count) * q, "\(run.stdout)")
            }
            return true
        }
    }

    /// MigrationPlan on a memfd of this process: 8 pages written with pwrite only (cached), 32
    /// written through the mapping of which the last 16 are paged out, 24 never touched.
    @Test(arguments: [FileSideEngineChoice.syscalls, .bpf, .auto])
    func migrationPlanTotalsMatchTheArrangedMemory(engine: FileSideEngineChoice) throws {
        let tool = try builtExecutable("MigrationPlan")
        let pageSize = UInt64(TestEnvironment.pageSize)
        try retryingDisturbed("MigrationPlan --engine \(engine)") {
            let memory = try ArrangedMemory(pages: 64, backing: .memfd(name: "pagestat-migration", shared: true))
            try memory.pwrite(0..<8)
            memory.write(8..<40)
            guard try memory.pageOut(24..<40, untilSwapped: 16), try smapsSwappedPages(memory.address) == 16 else { return false }
            // START+LENGTH, and START-END as /proc/PID/maps writes it.
            let forms = ["0x\(String(memory.address, radix: 16))+\(64 * pageSize)",
                         "\(String(memory.address, radix: 16))-\(String(memory.range.end, radix: 16))"]
            let runs = try forms.map { form in
                (form, try runCommand(tool, ["--pid", String(getpid()), "--range", form, "--engine", engine.rawValue]))
            }
            // Where the scanner itself puts the first swapped page, with the BPF engine.
            var options = ScanOptions(range: memory.range)
            options.engine = .bpf
            let direct = engine == .bpf ? try ProcessScanner(pid: getpid()).scan(options) : nil
            guard try smapsSwappedPages(memory.address) == 16 else { return false }

            for (form, run) in runs {
                #expect(run.status == 0, "MigrationPlan --range \(form): \(run.stderr)")
                #expect(planTotals(run.stdout) == ["copy from memory": 24, "read from swap": 16, "skip (untouched)": 24,
                                                   "unknown": 0, "not mapped": 0], "\(run.stdout)")
                #expect(run.stdout.contains("(16 present, 8 cached)"), "\(run.stdout)")
                let swapLines = run.stdout.split(separator: "\n").filter { $0.hasPrefix("  read from swap") }
                #expect(!swapLines.isEmpty, "\(run.stdout)")
                if let direct {
                    // Every swap extent with its location, the first one where the scanner puts it.
                    #expect(run.stdout.contains("(16 with their swap location)"), "\(run.stdout)")
                    let first = try #require(direct.mappings.flatMap(\.runs).first { $0.state == .swapped }?.swap)
                    #expect(swapLines.first?.hasSuffix("swap type \(first.type), offset 0x\(String(first.offset, radix: 16))") == true,
                            "\(run.stdout)")
                } else if engine == .syscalls {
                    #expect(run.stdout.contains("(0 with their swap location)"), "\(run.stdout)")
                }
            }
            return true
        }
    }

    /// A range over two mappings: shared anonymous memory and, over its last 16 pages, private
    /// memory mapped with MAP_FIXED (the region stays ours whole: no hole another test could map).
    @Test func migrationPlanSpansMappings() throws {
        let tool = try builtExecutable("MigrationPlan")
        let pageSize = TestEnvironment.pageSize
        try retryingDisturbed("MigrationPlan over two mappings") {
            let memory = try ArrangedMemory(pages: 80, backing: .sharedAnonymous)
            let tail = mmap(memory.base + 64 * pageSize, 16 * pageSize, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
            try #require(tail == memory.base + 64 * pageSize)
            memory.write(0..<32)
            memory.write(64..<80)
            guard try memory.pageOut(0..<16, untilSwapped: 16), try smapsSwappedPages(memory.address) == 16 else { return false }
            let run = try runCommand(tool, ["--pid", String(getpid()), "--range", "\(memory.address)+\(80 * pageSize)"])
            guard try smapsSwappedPages(memory.address) == 16 else { return false }

            #expect(run.status == 0, "\(run.stderr)")
            #expect(planTotals(run.stdout) == ["copy from memory": 32, "read from swap": 16, "skip (untouched)": 32,
                                               "unknown": 0, "not mapped": 0], "\(run.stdout)")
            #expect(run.stdout.contains("(32 present, 0 cached)"), "\(run.stdout)")
            return true
        }
    }
}
