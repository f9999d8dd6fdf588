import Foundation
import Testing

@testable import PageStat

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

@Suite("The examples, run on memory the test arranged (needs root and swap)",
       .enabled(if: TestEnvironment.swapAndRoot, "needs root and swap on: run the README's test command as root"))
struct ExampleRunTests {
    /// LibraryExample on `pagestat fixture` (a small process of its own): every paged-out part of
    /// each region is reported swapped, whole (with swap locations from the BPF engine) and
    /// streamed.
    @Test func libraryExampleFindsTheSwappedPages() throws {
        let example = try builtExecutable("LibraryExample")
        let fixture = try FixtureProcess(pages: 64)
        defer { fixture.stop() }
        let swappedRegions = ["shared-anon", "memfd", "tmpfs", "sysv", "private-anon"]
        for arguments in [["bpf"], ["--stream"]] {
            let run = try runCommand(example, [String(fixture.pid)] + arguments)
            #expect(run.status == 0, "LibraryExample \(arguments): \(run.stderr)")
            let lines = swappedLines(run.stdout)
            for region in swappedRegions {
                let range = try fixture.range(region)
                let inRegion = lines.filter { range.start <= $0.start && $0.start < range.end }
                #expect(inRegion.reduce(0) { $0 + $1.pages } == UInt64(fixture.pages / 4),
                        "\(region), LibraryExample \(arguments):\n\(run.stdout)")
                if arguments == ["bpf"] {
                    #expect(inRegion.allSatisfy { $0.line.contains("(swap type ") },
                            "\(region): a swapped run without its swap location:\n\(run.stdout)")
                }
            }
            let total = run.stdout.split(separator: "\n").first { $0.hasSuffix(" pages swapped") }
            let count = total.flatMap { UInt64($0.split(separator: " ")[0]) }
            #expect((count ?? 0) >= UInt64(swappedRegions.count * fixture.pages / 4), "\(run.stdout)")
        }
    }

    /// MigrationPlan on a memfd of this process: 8 pages written with pwrite only (cached), 32
    /// written through the mapping of which the last 16 are paged out, 24 never touched.
    @Test(arguments: [FileSideEngineChoice.syscalls, .bpf, .auto])
    func migrationPlanTotalsMatchTheArrangedMemory(engine: FileSideEngineChoice) throws {
        let tool = try builtExecutable("MigrationPlan")
        let memory = try ArrangedMemory(pages: 64, backing: .memfd(name: "pagestat-migration", shared: true))
        try memory.pwrite(0..<8)
        memory.write(8..<40)
        try pageOut(memory, 24..<40, expectSwapped: 16)
        let pageSize = UInt64(TestEnvironment.pageSize)

        // START+LENGTH, and START-END as /proc/PID/maps writes it.
        let forms = ["0x\(String(memory.address, radix: 16))+\(64 * pageSize)",
                     "\(String(memory.address, radix: 16))-\(String(memory.range.end, radix: 16))"]
        for form in forms {
            let run = try runCommand(tool, ["--pid", String(getpid()), "--range", form, "--engine", engine.rawValue])
            #expect(run.status == 0, "MigrationPlan --range \(form): \(run.stderr)")
            let totals = planTotals(run.stdout)
            #expect(totals == ["copy from memory": 24, "read from swap": 16, "skip (untouched)": 24,
                               "unknown": 0, "not mapped": 0], "\(run.stdout)")
            #expect(run.stdout.contains("(16 present, 8 cached)"), "\(run.stdout)")
            let swapLines = run.stdout.split(separator: "\n").filter { $0.hasPrefix("  read from swap") }
            #expect(!swapLines.isEmpty)
            if engine == .bpf {
                // Every swap extent with its location, the first one where the scanner puts it.
                #expect(run.stdout.contains("(16 with their swap location)"), "\(run.stdout)")
                var options = ScanOptions(range: memory.range)
                options.engine = .bpf
                let report = try ProcessScanner(pid: getpid()).scan(options)
                let first = try #require(report.mappings.flatMap(\.runs).first { $0.state == .swapped }?.swap)
                #expect(swapLines.first?.hasSuffix("swap type \(first.type), offset 0x\(String(first.offset, radix: 16))") == true,
                        "\(run.stdout)")
            } else if engine == .syscalls {
                #expect(run.stdout.contains("(0 with their swap location)"), "\(run.stdout)")
            }
        }
    }

    /// A range over two mappings: shared anonymous memory and, over its last 16 pages, private
    /// memory mapped with MAP_FIXED (the region stays ours whole: no hole another test could map).
    @Test func migrationPlanSpansMappings() throws {
        let tool = try builtExecutable("MigrationPlan")
        let pageSize = TestEnvironment.pageSize
        let memory = try ArrangedMemory(pages: 80, backing: .sharedAnonymous)
        let tail = mmap(memory.base + 64 * pageSize, 16 * pageSize, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
        try #require(tail == memory.base + 64 * pageSize)
        memory.write(0..<32)
        memory.write(64..<80)
        try pageOut(memory, 0..<16, expectSwapped: 16)
        let run = try runCommand(tool, ["--pid", String(getpid()), "--range", "\(memory.address)+\(80 * pageSize)"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(planTotals(run.stdout) == ["copy from memory": 32, "read from swap": 16, "skip (untouched)": 32,
                                           "unknown": 0, "not mapped": 0], "\(run.stdout)")
        #expect(run.stdout.contains("(32 present, 0 cached)"), "\(run.stdout)")
    }
}
