import Foundation
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore
@testable import PageStatLab

/// Minor and major fault counts of a process (fields 10 and 12 of /proc/PID/stat).
func faultCounts(_ pid: Int32) throws -> (minor: UInt64, major: UInt64) {
    let stat = try ProcFS.readText("/proc/\(pid)/stat", pid: pid, what: "stat")
    // The command name may hold spaces; fields after it start past the last ')'.
    let fields = stat[stat.index(after: try #require(stat.lastIndex(of: ")")))...].split(separator: " ")
    return (try #require(UInt64(fields[7])), try #require(UInt64(fields[9])))
}

func runs(_ json: [String: Any], mappingStart start: UInt64) throws -> [[String: Any]] {
    let mappings = try #require(json["mappings"] as? [[String: Any]])
    let mapping = try #require(mappings.first { ($0["start"] as? NSNumber)?.uint64Value == start })
    return try #require(mapping["runs"] as? [[String: Any]])
}

/// Per-page states from JSON runs.
func jsonPageStates(_ runs: [[String: Any]]) -> [PageState] {
    runs.flatMap { run in
        Array(repeating: PageState(name: run["state"] as? String ?? "") ?? .unknown, count: (run["pages"] as? Int) ?? 0)
    }
}

@Suite("pagestat show on a child process (needs root and swap)", .serialized,
       .needsSwapAndRoot)
struct ShowEndToEndTests {
    /// What the fixture arranged, page by page, for q = pages / 4.
    static func expected(_ region: String, q: Int) -> [PageState] {
        switch region {
        case "shared-anon", "sysv": pages(q, .swapped) + pages(q, .present) + pages(2 * q, .none)
        case "memfd", "tmpfs": pages(q, .cached) + pages(q, .present) + pages(q, .swapped) + pages(q, .none)
        case "private-anon": pages(q, .swapped) + pages(2 * q, .present) + pages(q, .none)
        case "file": pages(q, .cached) + pages(q, .none) + pages(q, .present) + pages(q, .none)
        default: []
        }
    }

    @Test func jsonReportsEveryLayoutExactly() throws {
        let fixture = try FixtureProcess()
        defer { fixture.stop() }
        let run = try runPagestat(["show", "--pid", String(fixture.pid), "--format", "json"])
        #expect(run.status == 0, "\(run.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        #expect(json["pid"] as? Int == Int(fixture.pid))
        #expect(json["page_size"] as? Int == TestEnvironment.pageSize)
        #expect(json["privileged"] as? Bool == true)
        // The one note a whole-process scan carries on x86_64: [vsyscall] lies above pagemap.
        let notes = try #require(json["notes"] as? [String])
        #expect(notes.allSatisfy { $0.hasPrefix("[vsyscall]: unknown: it lies above the user address space") }, "\(notes)")

        let q = fixture.pages / 4
        var misreported = 0
        let kernelRun = try runPagestat(["show", "--pid", String(fixture.pid), "--format", "json", "--kernel-view"])
        let kernelJSON = try #require(try JSONSerialization.jsonObject(with: Data(kernelRun.stdout.utf8)) as? [String: Any])
        for region in ["shared-anon", "memfd", "tmpfs", "sysv", "private-anon", "file"] {
            let start = try fixture.range(region).start
            let truth = jsonPageStates(try runs(json, mappingStart: start))
            #expect(truth == Self.expected(region, q: q), "\(region)")
            let kernel = jsonPageStates(try runs(kernelJSON, mappingStart: start))
            misreported += zip(truth, kernel).filter { $0 != $1 }.count
            // Swapped pages agree with smaps' Swap for the mapping.
            let swapped = truth.filter { $0 == .swapped }.count
            #expect(UInt64(swapped) == (try smapsSwappedPages(start, pid: fixture.pid)), "\(region)")
        }
        // Private guard pages read "swapped" in the raw view; every shared-memory swap, pwrite and
        // file-cache page reads "none" there: a third of the fixture's pages.
        #expect(misreported == 2 * q /* shared-anon, sysv */ + 4 * q /* memfd, tmpfs */ + q / 2 /* guard */ + q /* file cache */)

        // Runs of each mapping cover it exactly and in order.
        let mappings = try #require(json["mappings"] as? [[String: Any]])
        for mapping in mappings {
            var next = try #require((mapping["start"] as? NSNumber)?.uint64Value)
            for run in try #require(mapping["runs"] as? [[String: Any]]) {
                #expect((run["start"] as? NSNumber)?.uint64Value == next)
                next += UInt64(try #require(run["pages"] as? Int) * TestEnvironment.pageSize)
                #expect(["present", "swapped", "cached", "none", "unknown"].contains(run["state"] as? String ?? ""))
            }
            #expect((mapping["end"] as? NSNumber)?.uint64Value == next)
            #expect(MappingKind(rawValue: mapping["kind"] as? String ?? "") != nil)
        }
    }

    @Test func textReportAndRange() throws {
        let fixture = try FixtureProcess()
        defer { fixture.stop() }
        let range = try fixture.range("memfd")
        let run = try runPagestat(["show", "--pid", String(fixture.pid), "--range", "\(hex(range.start))+\(range.length)"])
        #expect(run.status == 0, "\(run.stderr)")
        let q = fixture.pages / 4
        let size = humanBytes(UInt64(q * TestEnvironment.pageSize))
        #expect(run.stdout.hasPrefix("pid \(fixture.pid): page size "))
        #expect(run.stdout.contains("/memfd:pagestat-fixture (deleted)"))
        // The mapping's counts follow its runs (the report streams), and the total names the mappings.
        let counts = "present \(size) (\(q) pages), swapped \(size) (\(q) pages), cached \(size) (\(q) pages), none \(size) (\(q) pages)"
        #expect(run.stdout.contains("\n    = \(counts)\n"))
        #expect(run.stdout.contains("\ntotal: \(counts) in 1 mapping\n"))
        #expect(run.stdout.contains("\(hex(range.start))        \(q) pages"))
        #expect(run.stdout.contains("swapped"))
    }

    @Test func scanningDoesNotPerturbTheTarget() throws {
        let fixture = try FixtureProcess()
        defer { fixture.stop() }
        let before = try faultCounts(fixture.pid)
        let smapsBefore = try ProcMaps.readSmaps(pid: fixture.pid).map { [$0["Rss"], $0["Swap"]] }
        let first = try runPagestat(["show", "--pid", String(fixture.pid), "--format", "json"])
        let second = try runPagestat(["show", "--pid", String(fixture.pid), "--format", "json"])
        #expect(first.status == 0 && second.status == 0)
        let after = try faultCounts(fixture.pid)
        #expect(before.minor == after.minor && before.major == after.major)
        #expect(try ProcMaps.readSmaps(pid: fixture.pid).map { [$0["Rss"], $0["Swap"]] } == smapsBefore)
        // The arranged regions keep their states, run for run, between two scans.
        let firstJSON = try #require(try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])
        let secondJSON = try #require(try JSONSerialization.jsonObject(with: Data(second.stdout.utf8)) as? [String: Any])
        for region in fixture.regions.keys.sorted() {
            let start = try fixture.range(region).start
            let firstStates = jsonPageStates(try runs(firstJSON, mappingStart: start))
            #expect(firstStates == jsonPageStates(try runs(secondJSON, mappingStart: start)), "\(region)")
            #expect(firstStates == Self.expected(region, q: fixture.pages / 4), "\(region)")
        }
    }

    @Test func processThatExitsDuringTheScan() throws {
        let fixture = try FixtureProcess()
        let scanner = try ProcessScanner(pid: fixture.pid)
        fixture.stop()
        #expect(throws: PageStatError.processExited(pid: fixture.pid)) { try scanner.scan() }
    }

    @Test func withoutPrivilegeTheReportSaysWhatIsUnknown() throws {
        // The fixture and pagestat both run as nobody: pagemap is readable, map_files is not.
        let fixture = try FixtureProcess(asUser: 65534)
        defer { fixture.stop() }
        let pid = fixture.pid
        let regions = fixture.regions
        let run = try runPagestat(["show", "--pid", String(pid), "--format", "json"], asUser: 65534)
        #expect(run.status == 0, "\(run.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        #expect(json["privileged"] as? Bool == false)
        let notes = try #require(json["notes"] as? [String])
        #expect(notes.contains { $0.contains("map_files needs CAP_SYS_ADMIN") })
        #expect(notes.contains { $0.contains("no PFNs or swap locations") })
        // Root's libraries: mincore would lie about them, so their unmapped pages are unknown.
        #expect(notes.contains { $0.contains("neither owns nor may write") })
        let mappings = try #require(json["mappings"] as? [[String: Any]])
        let libc = try #require(mappings.first { ($0["path"] as? String)?.contains("libc.so") == true && ($0["permissions"] as? String) == "r-xp" })
        let libcStates = Set((libc["runs"] as? [[String: Any]] ?? []).compactMap { $0["state"] as? String })
        #expect(!libcStates.contains("cached") && !libcStates.contains("none"))
        // memfd: its pwrite, swapped and untouched pages are unknown; present ones are still known.
        let memfd = jsonPageStates(try runs(json, mappingStart: try #require(regions["memfd"])))
        #expect(memfd == pages(16, .unknown) + pages(16, .present) + pages(32, .unknown))
        // The /dev/shm file and the regular file are opened by path, checked by inode: still exact.
        let tmpfs = jsonPageStates(try runs(json, mappingStart: try #require(regions["tmpfs"])))
        #expect(tmpfs == Self.expected("tmpfs", q: 16))
        let file = jsonPageStates(try runs(json, mappingStart: try #require(regions["file"])))
        #expect(file == Self.expected("file", q: 16))
        // Private memory needs no file side.
        let privateAnon = jsonPageStates(try runs(json, mappingStart: try #require(regions["private-anon"])))
        #expect(privateAnon == Self.expected("private-anon", q: 16))
        // Without PFNs the zero page is told by PAGEMAP_SCAN.
        let privateRuns = try runs(json, mappingStart: try #require(regions["private-anon"]))
        #expect(privateRuns.contains { ($0["flags"] as? [String])?.contains("zero-page") == true && $0["pages"] as? Int == 16 })
    }
}

@Suite("pagestat errors: one line, a distinct exit code")
struct ErrorPathTests {
    @Test func noSuchProcess() throws {
        let run = try runPagestat(["show", "--pid", "999999999"])
        #expect(run.status == 3)
        #expect(run.stderr == "pagestat: no such process: 999999999\n")
        #expect(run.stdout.isEmpty)
    }

    @Test func rangeNotMapped() throws {
        let run = try runPagestat(["show", "--pid", String(getpid()), "--range", "0x1000+4K"])
        #expect(run.status == 5)
        #expect(run.stderr == "pagestat: range 0x1000-0x2000 is not mapped in process \(getpid())\n")
    }

    @Test func usageErrorsExit64() throws {
        for arguments in [["show", "--pid", "1", "--range", "0x2000-0x1000"], ["show", "1", "--pid", "2"], ["show", "--pid", "1", "--format", "svg"],
                          ["show"], ["show", "--pid", "abc"], ["frobnicate"]] {
            let run = try runPagestat(arguments)
            #expect(run.status == 64, "\(arguments)")
            #expect(!run.stderr.isEmpty)
        }
    }

    @Test(.requires(TestEnvironment.isRoot, "root to run pagestat as another user"))
    func permissionDenied() throws {
        let run = try runPagestat(["show", "--pid", "1"], asUser: 65534)
        #expect(run.status == 4)
        #expect(run.stderr.hasPrefix("pagestat: permission denied: /proc/1/"))
        #expect(run.stderr.split(separator: "\n").count == 1)
    }

    @Test func helpTeaches() throws {
        let run = try runPagestat(["show", "--help"])
        #expect(run.status == 0)
        for word in ["present", "swapped", "cached", "none", "unknown", "--kernel-view", "Examples"] {
            #expect(run.stdout.contains(word), "\(word)")
        }
        let root = try runPagestat(["--help"])
        #expect(root.stdout.contains("Exit codes"))
        #expect(!root.stdout.contains("fixture"))
    }
}

@Suite("Conventions: --version, the pid's three forms, ranges as maps writes them, CSV")
struct ConventionTests {
    @Test func version() throws {
        let run = try runPagestat(["--version"])
        #expect(run.status == 0)
        #expect(run.stdout.range(of: #"^[0-9]+\.[0-9]+\.[0-9]+\n$"#, options: .regularExpression) != nil, "\(run.stdout)")
    }

    @Test func thePidAsArgumentOrOption() throws {
        for arguments in [["show", "999999999"], ["show", "-p", "999999999"], ["summary", "999999999"], ["map", "999999999"],
                          ["raw", "-p", "999999999", "--range", "0x1000+4K"]] {
            let run = try runPagestat(arguments)
            #expect(run.status == 3, "\(arguments): \(run.stderr)")
            #expect(run.stderr == "pagestat: no such process: 999999999\n", "\(arguments)")
        }
    }

    /// A range pasted from /proc/PID/maps, and `show --format csv`: one row per run, the
    /// mapping's columns repeated, runs covering the range.
    @Test func mapsRangeAndCSV() throws {
        let maps = try ProcFS.readText("/proc/\(getpid())/maps", pid: getpid(), what: "maps")
        let line = try #require(maps.split(separator: "\n").first { $0.contains("[stack]") })
        let field = String(try #require(line.split(separator: " ").first))
        let range = try AddressRange(parsing: field)
        let run = try runPagestat(["show", String(getpid()), "--range", field, "--format", "csv"])
        #expect(run.status == 0, "\(run.stderr)")
        let rows = run.stdout.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        #expect(rows.first?.joined(separator: ",") == CSVReportStream.headers.joined(separator: ","))
        var next = range.start
        for row in rows.dropFirst() {
            #expect(row.count == CSVReportStream.headers.count)
            #expect(UInt64(row[0]) == range.start && UInt64(row[1]) == range.end)
            #expect(UInt64(row[5]) == next)
            next += (UInt64(row[6]) ?? 0) * UInt64(TestEnvironment.pageSize)
        }
        #expect(next == range.end)
    }
}
