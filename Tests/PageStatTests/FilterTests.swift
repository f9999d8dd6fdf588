import Foundation
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore
@testable import PageStatLab

@Suite("Filters and units: --state, --kind, --path, --bytes/--pages, --no-headers, --columns")
struct FilterTests {
    func mapping(_ path: String, _ kind: MappingKind) -> Mapping {
        Mapping(range: AddressRange(start: 0x1000, end: 0x3000), permissions: "rw-s", offset: 0, deviceMajor: 0,
                deviceMinor: 1, inode: 2, path: path, kind: kind)
    }

    @Test func filterParsesAndMatches() throws {
        let filter = try MappingFilter(parsingStates: "swapped, cached", kinds: "shmem", path: "memfd:")
        #expect(filter.states == [.swapped, .cached] && filter.kinds == [.shmem])
        #expect(filter.matches(mapping("/memfd:vm (deleted)", .shmem)))
        #expect(!filter.matches(mapping("/memfd:vm (deleted)", .file)))
        #expect(!filter.matches(mapping("/dev/shm/vm", .shmem)))
        #expect(filter.keeps(PageRun(start: 0x1000, pages: 1, state: .swapped, flags: [])))
        #expect(!filter.keeps(PageRun(start: 0x1000, pages: 1, state: .present, flags: [])))
        // A pattern matches the whole path.
        let pattern = try MappingFilter(parsingStates: nil, kinds: nil, path: "/dev/shm/*")
        #expect(pattern.matches(mapping("/dev/shm/vm", .shmem)) && !pattern.matches(mapping("/memfd:vm", .shmem)))
        #expect(MappingFilter().isEmpty && MappingFilter().matches(mapping("", .privateAnon)))
        func message(_ states: String?, _ kinds: String?) -> String? {
            do { _ = try MappingFilter(parsingStates: states, kinds: kinds, path: nil); return nil } catch { return error.description }
        }
        #expect(message("present,swaped", nil) == "--state: 'swaped' is not a page state (present, swapped, cached, none, unknown)")
        #expect(message(nil, "anon") == "--kind: 'anon' is not a mapping kind (private-anon, shared-anon, shmem, file, special, hugetlb)")
        #expect(message(",", nil) == "--state: name at least one page state")
    }

    @Test func sizeUnits() {
        #expect(SizeUnit.human.cell(bytes: 65536, pageSize: 4096) == "64.0 KiB")
        #expect(SizeUnit.bytes.cell(bytes: 65536, pageSize: 4096) == "65536")
        #expect(SizeUnit.pages.cell(bytes: 65536, pageSize: 4096) == "16")
        #expect(SizeUnit.pages.cell(bytes: 6144, pageSize: 4096) == "1.5")
        #expect(SizeUnit.pages.text(bytes: 4096, pageSize: 4096) == "1 page")
        #expect(SizeUnit.bytes.text(bytes: 4096, pageSize: 4096) == "4096 B")
        var counts = PageCounts()
        counts.present = 1
        counts.swapped = 2
        #expect(ReportRenderer.summary(counts, pageSize: 4096) == "present 4.0 KiB (1 page), swapped 8.0 KiB (2 pages)")
        #expect(ReportRenderer.summary(counts, pageSize: 4096, unit: .pages) == "present 1 page, swapped 2 pages")
    }
}

@Suite("Filters on a child process (needs root and swap)", .serialized,
       .needsSwapAndRoot)
struct FilterEndToEndTests {
    @Test func showKeepsOnlyTheAskedRunsAndMappings() throws {
        let fixture = try FixtureProcess()
        defer { fixture.stop() }
        let q = fixture.pages / 4
        let run = try runPagestat(["show", String(fixture.pid), "--kind", "shmem,shared-anon", "--state", "swapped", "--format", "json"])
        #expect(run.status == 0, "\(run.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        let mappings = try #require(json["mappings"] as? [[String: Any]])
        #expect(mappings.allSatisfy { ["shmem", "shared-anon"].contains($0["kind"] as? String ?? "") })
        for region in ["shared-anon", "memfd", "tmpfs", "sysv"] {
            #expect(jsonPageStates(try runs(json, mappingStart: try fixture.range(region).start)) == pages(q, .swapped), "\(region)")
        }
        #expect(!mappings.contains { ($0["start"] as? NSNumber)?.uint64Value == (try? fixture.range("private-anon").start) })
        let totals = try #require(json["totals"] as? [String: Int])
        #expect(totals["present"] == 0 && totals["swapped"] == 4 * q)
    }

    @Test func summaryColumnsUnitsAndNoHeaders() throws {
        let fixture = try FixtureProcess()
        defer { fixture.stop() }
        let q = fixture.pages / 4
        let text = try runPagestat(["summary", String(fixture.pid), "--path", "memfd:pagestat-fixture", "--pages",
                                    "-o", "present,swapped,path", "--no-headers"])
        #expect(text.status == 0, "\(text.stderr)")
        let lines = text.stdout.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }
        #expect(lines == ["\(q) \(q) /memfd:pagestat-fixture (deleted)", "\(q) \(q)"], "\(text.stdout)")
        let csv = try runPagestat(["summary", String(fixture.pid), "--kind", "shared-anon", "--format", "csv", "-o", "start,swap,swapped"])
        let rows = csvRows(csv.stdout)
        let start = try fixture.range("shared-anon").start
        #expect(rows.first == ["start": String(start), "swap_bytes": String(q * TestEnvironment.pageSize), "swapped_pages": String(q)])
        // --percent: each quarter of the memfd is 25% of its row.
        let percent = try runPagestat(["summary", String(fixture.pid), "--path", "memfd:pagestat-fixture", "--percent",
                                       "-o", "present,swapped,cached,none,path", "--no-headers"])
        #expect(percent.stdout.split(separator: "\n").first.map { $0.split(separator: " ").joined(separator: " ") }
                == "25.0% 25.0% 25.0% 25.0% /memfd:pagestat-fixture (deleted)", "\(percent.stdout)")
        let bytes = try runPagestat(["summary", String(fixture.pid), "--path", "/dev/shm/pagestat-fixture-*", "--bytes"])
        #expect(bytes.stdout.contains("sizes in bytes") && bytes.stdout.contains(" \(fixture.pages * TestEnvironment.pageSize) "), "\(bytes.stdout)")
    }
}

@Suite("summary --interval on memory the test changes between rounds (needs root and swap)", .serialized,
       .needsSwapAndRoot)
struct IntervalTests {
    /// Round 1 has no change; the test pages out 16 written pages of its own memfd; round 2 says
    /// 16 pages went from present to swapped, in the mapping and in the total.
    @Test func roundsCarryTheChangeSinceTheRoundBefore() throws {
        let name = "pagestat-interval-\(getpid())"
        let memory = try ArrangedMemory(pages: 64, backing: .memfd(name: name, shared: true))
        memory.write(0..<32)
        let process = Process()
        configure(process, pagestat: ["summary", String(getpid()), "--path", name, "--interval", "3", "--count", "2",
                                      "--format", "json"], asUser: nil)
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        defer { if process.isRunning { process.terminate() }; process.waitUntilExit() }
        func round() throws -> (mapping: [String: Any], totals: [String: Any]) {
            let json = try #require(try JSONSerialization.jsonObject(with: readLine(out)) as? [String: Any])
            let mappings = try #require(json["mappings"] as? [[String: Any]])
            try #require(mappings.count == 1, "\(mappings)")
            return (mappings[0], try #require(json["totals"] as? [String: Any]))
        }
        let first = try round()
        #expect(first.mapping["change_pages"] is NSNull && first.totals["change_pages"] is NSNull)
        #expect((first.mapping["pages"] as? [String: Int])?["present"] == 32)
        #expect(try memory.pageOut(0..<16, untilSwapped: 16))
        let second = try round()
        let change = ["present": -16, "swapped": 16]
        #expect(second.mapping["change_pages"] as? [String: Int] == change)
        #expect(second.totals["change_pages"] as? [String: Int] == change)
    }
}

@Suite("file: a total row")
struct FileTotalTests {
    @Test func totalRowSumsWhatTheFilesHave() {
        let shm = FileReport(path: "/dev/shm/a", size: 8192, isShmem: true, cached: 1, dirty: 0, writeback: 0, evicted: nil,
                             swapped: 1, holes: 0, hugePageSize: nil, runs: nil)
        let file = FileReport(path: "/var/b", size: 4096, isShmem: false, cached: 1, dirty: 1, writeback: 0, evicted: 2,
                              swapped: nil, holes: nil, hugePageSize: nil, runs: nil)
        let text = SummaryRenderer.files([shm, file], format: .text)
        let total = text.split(separator: "\n").last.map { $0.split(separator: " ").joined(separator: " ") }
        #expect(total == "12.0 KiB 2 1 0 2 1 0 total (2 files)", "\(text)")
        #expect(!SummaryRenderer.files([shm], format: .text).contains("total"))
    }
}
