import Foundation
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore
@testable import PageStatLab

@Suite("Summaries, renderers and helpers on fixtures")
struct SummaryFixtureTests {
    @Test func sysvSegments() throws {
        let segments = SysVShm.parse(try TestEnvironment.fixture("sysvipc-shm.txt"))
        #expect(segments == [
            SysVShm.Segment(key: 0, shmid: 42, size: 262_144, attachments: 1, rss: 65536, swap: 65536),
            SysVShm.Segment(key: 1234, shmid: 43, size: 8192, attachments: 0, rss: 4096, swap: 0),
        ])
        #expect(SystemScanner.hex8(1234) == "000004d2")
    }

    @Test func coverageSplitsAnObjectByItsMappers() {
        let r = AddressRange(start: 0, end: 1)
        let mappings = [ObjectMapping(pid: 1, range: r, first: 0, end: 10), ObjectMapping(pid: 2, range: r, first: 5, end: 20),
                        ObjectMapping(pid: 1, range: r, first: 8, end: 12)]
        let intervals = SystemScanner.coverage(mappings)
        #expect(intervals.map(\.0) == [0..<5, 5..<8, 8..<10, 10..<12, 12..<20])
        #expect(intervals.map(\.1) == [[1], [1, 2], [1, 2], [1, 2], [2]])
    }

    @Test func csvAndTextTables() {
        var csv = CSVTable(headers: ["a", "b"])
        csv.add(["x,y", "say \"hi\""])
        #expect(csv.render() == "a,b\n\"x,y\",\"say \"\"hi\"\"\"\n")
        var table = TextTable(headers: ["N", "NAME"], rightAligned: [0])
        table.add(["10", "ten"])
        #expect(table.render() == " N  NAME\n10  ten\n")
    }

    @Test func kernelPageFlagNames() throws {
        let flags = try KPageFlags(names: ["dirty", "thp", "swapbacked"])
        #expect(flags.rawValue == (1 << 4) | (1 << 22) | (1 << 14))
        #expect(flags.names == ["dirty", "swapbacked", "thp"])
        #expect(throws: PageStatError.self) { try KPageFlags(names: ["bogus"]) }
    }
}

/// Parses a command's JSON output.
func jsonObject(_ run: Run) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stderr)")
}

/// Parses CSV output (no quoted fields expected here) into rows of fields keyed by the header.
func csvRows(_ text: String) -> [[String: String]] {
    let lines = text.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    guard let header = lines.first else { return [] }
    return lines.dropFirst().map { Dictionary(uniqueKeysWithValues: zip(header, $0)) }
}

@Suite("summary, top, objects and file on arranged processes (needs root and swap)", .serialized,
       .needsSwapAndRoot)
struct SystemViewTests {
    /// The fixture (A) and a second process (B) that maps A's memfd and reads its present pages.
    static func twoMappers() throws -> (FixtureProcess, FixtureProcess) {
        let a = try FixtureProcess()
        let q = a.pages / 4
        let b = try FixtureProcess(arguments: ["lab", "hold", "--map", try #require(a.paths["memfd"]), "--read", "\(q)-\(2 * q)"])
        return (a, b)
    }

    @Test func summaryAgreesWithSmapsAndSplitsPss() throws {
        let (a, b) = try Self.twoMappers()
        defer { b.stop(); a.stop() }
        let q = a.pages / 4
        let page = TestEnvironment.pageSize
        let run = try runPagestat(["summary", "--pid", String(a.pid), "--format", "json"])
        #expect(run.status == 0)
        let json = try jsonObject(run)
        // The arranged mappings agree with smaps (shared libraries' mapcounts may move while other
        // tests start processes, so their warnings are not checked here).
        let arranged = ["pagestat-fixture", "/dev/zero", "/SYSV"]
        let warnings = try #require(json["warnings"] as? [String])
        #expect(!warnings.contains { warning in arranged.contains { warning.contains($0) } }, "\(warnings)")
        let mappings = try #require(json["mappings"] as? [[String: Any]])
        let memfdStart = try a.range("memfd").start
        let memfd = try #require(mappings.first { ($0["start"] as? NSNumber)?.uint64Value == memfdStart })
        let pages = try #require(memfd["pages"] as? [String: Int])
        #expect(pages == ["present": q, "swapped": q, "cached": q, "none": q, "unknown": 0])
        #expect(memfd["rss"] as? Int == q * page)
        #expect(memfd["pss"] as? Int == q * page / 2)  // B maps the same q pages
        #expect(memfd["uss"] as? Int == 0)
        #expect(memfd["swap"] as? Int == q * page)
        let smaps = try smapsEntry(pid: a.pid, containing: memfdStart)
        #expect(UInt64(q * page) == smaps["Swap"] && UInt64(q * page / 2) == smaps["Pss"])
        // The totals are the sums of the rows.
        let totals = try #require(json["totals"] as? [String: Any])
        #expect(totals["rss"] as? Int == mappings.reduce(0) { $0 + ($1["rss"] as? Int ?? 0) })
        #expect(totals["swap"] as? Int == mappings.reduce(0) { $0 + ($1["swap"] as? Int ?? 0) })

        // CSV: the same numbers, parsed back.
        let csv = csvRows(try runPagestat(["summary", "--pid", String(a.pid), "--format", "csv"]).stdout)
        let row = try #require(csv.first { $0["start"] == String(memfdStart) })
        #expect(row["pss_bytes"] == String(q * page / 2) && row["swapped_pages"] == String(q) && row["kind"] == "shmem")
        #expect(csv.last?["kind"] == "total" && csv.last?["rss_bytes"] == String(totals["rss"] as? Int ?? -1))
        // Text: a readable table with a total row.
        let text = try runPagestat(["summary", "--pid", String(a.pid)]).stdout
        #expect(text.contains("/memfd:pagestat-fixture (deleted)") && text.contains("\ntotal "))
        #expect(!text.split(separator: "\n").contains { $0.hasPrefix("warning:") && $0.contains("pagestat-fixture") })
        // The private region's q read-only pages map the zero page: present, not in RSS, and said so.
        let privateStart = try a.range("private-anon").start
        let privateRow = try #require(mappings.first { ($0["start"] as? NSNumber)?.uint64Value == privateStart })
        #expect((privateRow["pages"] as? [String: Int])?["present"] == 2 * q)
        #expect(privateRow["rss"] as? Int == q * page)
        #expect(privateRow["zero_page"] as? Int == q * page)
        #expect(text.contains("zero page: PRESENT counts "))
    }

    @Test func topSplitsSwappedSharedMemoryAmongMappers() throws {
        let (a, b) = try Self.twoMappers()
        defer { b.stop(); a.stop() }
        let q = UInt64(a.pages / 4)
        let page = UInt64(TestEnvironment.pageSize)
        let json = try jsonObject(try runPagestat(["top", "--format", "json", "--sort", "shmem-swap"]))
        let processes = try #require(json["processes"] as? [[String: Any]])
        func row(_ pid: Int32) throws -> [String: Any] { try #require(processes.first { $0["pid"] as? Int == Int(pid) }) }
        // A alone maps its shared anonymous memory, tmpfs file and SysV segment (q swapped pages
        // each); the memfd's q swapped pages are split between A and B.
        #expect((try row(a.pid))["shmem_swap"] as? UInt64 == (3 * q + q / 2) * page)
        #expect((try row(b.pid))["shmem_swap"] as? UInt64 == q / 2 * page)
        // A's swap adds its private swapped pages.
        #expect((try row(a.pid))["swap"] as? UInt64 == (4 * q + q / 2) * page)
        #expect((try row(b.pid))["pss"] as? UInt64 != nil)
        #expect(json["unreadable"] as? Int != nil)
        // Sorted by shmem swap, largest first.
        let shares = processes.compactMap { $0["shmem_swap"] as? UInt64 }
        #expect(shares == shares.sorted(by: >))
        let limited = csvRows(try runPagestat(["top", "--format", "csv", "--limit", "2", "--sort", "shmem-swap"]).stdout)
        #expect(limited.count == 3 && limited.last?["command"] == "TOTAL")  // two rows, then the total
        #expect(UInt64(limited[0]["shmem_swap"] ?? "") ?? 0 >= (3 * q + q / 2) * page)
    }

    @Test func topWithoutPrivilegeCountsWhatItCannotRead() throws {
        let run = try runPagestat(["top", "--format", "json"], asUser: 65534)
        #expect(run.status == 0)
        let json = try jsonObject(run)
        #expect((json["unreadable"] as? Int ?? 0) > 0)
        #expect(json["privileged"] as? Bool == false)
    }

    @Test func objectsFromTheFileSide() throws {
        let (a, b) = try Self.twoMappers()
        defer { b.stop(); a.stop() }
        let q = a.pages / 4
        let json = try jsonObject(try runPagestat(["objects", "--format", "json"]))
        let objects = try #require(json["objects"] as? [[String: Any]])
        func users(_ object: [String: Any]) -> [Int] { (object["processes"] as? [[String: Any]] ?? []).compactMap { $0["pid"] as? Int } }
        func mine(_ path: String) throws -> [String: Any] {
            try #require(objects.first { $0["path"] as? String == path && users($0).contains(Int(a.pid)) }, "\(path)")
        }
        let memfd = try mine("/memfd:pagestat-fixture (deleted)")
        #expect(memfd["kind"] as? String == "memfd")
        #expect(memfd["size"] as? Int == a.pages * TestEnvironment.pageSize)
        #expect(memfd["pages"] as? [String: Int] == ["resident": 2 * q, "swapped": q, "holes": q])
        #expect(users(memfd) == [Int(a.pid), Int(b.pid)].sorted())
        // Held open, never mapped.
        let held = try mine(try #require(a.paths["tmpfs-open"]))
        #expect(held["kind"] as? String == "tmpfs")
        #expect(held["pages"] as? [String: Int] == ["resident": q, "swapped": 0, "holes": 3 * q])
        let holder = try #require((held["processes"] as? [[String: Any]])?.first)
        #expect(holder["maps"] as? Bool == false && holder["holds_open"] as? Bool == true)
        let sharedAnon = try mine("/dev/zero (deleted)")
        #expect(sharedAnon["pages"] as? [String: Int] == ["resident": q, "swapped": q, "holes": 2 * q])
        let sysv = try mine("/SYSV00000000")
        #expect(sysv["kind"] as? String == "sysv")
        #expect(sysv["pages"] as? [String: Int] == ["resident": q, "swapped": q, "holes": 2 * q])
        let csv = csvRows(try runPagestat(["objects", "--format", "csv"]).stdout)
        #expect(csv.contains { $0["path"] == a.paths["tmpfs-open"] && $0["resident"] == String(q) })
    }

    @Test func fileCommandOnTmpfsRegularFilesAndFds() throws {
        let a = try FixtureProcess()
        defer { a.stop() }
        let q = a.pages / 4
        let tmpfs = try #require(a.paths["tmpfs"])
        let regular = try #require(a.paths["file"])
        let memfd = try #require(a.paths["memfd"])
        let run = try runPagestat(["file", "--pages", "--format", "json", tmpfs, regular, memfd])
        #expect(run.status == 0, "\(run.stderr)")
        let files = try #require(try jsonObject(run)["files"] as? [[String: Any]])
        #expect(files.count == 3)
        for file in [files[0], files[2]] {  // the /dev/shm file and the memfd: same layout
            // shmem never tags its pages dirty in the page cache (its dirty_folio is a no-op), so
            // cachestat counts none of the written pages as dirty.
            #expect(file["pages"] as? [String: Int] == ["cached": 2 * q, "dirty": 0, "writeback": 0, "swapped": q, "holes": q])
            // Stretches of one state: swapped runs split where their slots are not consecutive.
            var stretches: [(state: String, pages: Int)] = []
            for run in try #require(file["runs"] as? [[String: Any]]) {
                let state = run["state"] as? String ?? "", pages = run["pages"] as? Int ?? 0
                if stretches.last?.state == state { stretches[stretches.count - 1].pages += pages } else { stretches.append((state, pages)) }
            }
            #expect(stretches.map(\.state) == ["cached", "swapped", "none"])
            #expect(stretches.map(\.pages) == [2 * q, q, q])
        }
        // The regular file: no swap, no holes; q pages were read by pread and q by the mapping.
        let pages = try #require(files[1]["pages"] as? [String: Int])
        #expect(pages["cached"] == 2 * q && pages["swapped"] == nil && pages["holes"] == nil && pages["evicted"] != nil)
        let csv = csvRows(try runPagestat(["file", "--format", "csv", tmpfs]).stdout)
        #expect(csv.first?["swapped"] == String(q) && csv.first?["evicted"] == "")
    }

    @Test func showMatchesKernelPageFlags() throws {
        let a = try FixtureProcess()
        defer { a.stop() }
        let range = try a.range("memfd")
        let run = try runPagestat(["show", "--pid", String(a.pid), "--range", "\(hex(range.start))+\(range.length)",
                                   "--format", "json", "--match", "swapbacked,file"])
        #expect(run.status == 0, "\(run.stderr)")
        let runs = try runs(try jsonObject(run), mappingStart: range.start)
        #expect(runs.count == 1 && runs[0]["pages"] as? Int == a.pages / 4)
        #expect((runs[0]["kernel_flags"] as? [String])?.contains("swapbacked") == true)
        let summary = try jsonObject(try runPagestat(["summary", "--pid", String(a.pid), "--format", "json", "--flags"]))
        let mappings = try #require(summary["mappings"] as? [[String: Any]])
        let memfd = try #require(mappings.first { ($0["start"] as? NSNumber)?.uint64Value == range.start })
        #expect((memfd["kernel_flags"] as? [String: Int])?["swapbacked"] == a.pages / 4)
    }
}

@Suite("file and summary errors")
struct SystemErrorTests {
    @Test func fileErrors() throws {
        let missing = try runPagestat(["file", "/nonexistent/file"])
        #expect(missing.status == 64 && missing.stderr == "pagestat: /nonexistent/file: no such file\n")
        let directory = try runPagestat(["file", "/etc"])
        #expect(directory.status == 64 && directory.stderr.contains("use --recursive"))
        #expect(try runPagestat(["file"]).status == 64)
        // A device is never opened (its driver's open could do anything).
        let device = try runPagestat(["file", "/dev/null"])
        #expect(device.status == 64 && device.stderr == "pagestat: /dev/null: not a regular file\n" && device.stdout.isEmpty)
    }

    @Test func summaryOfAKernelThread() throws {
        // As root kthreadd's maps read empty: no address space. Others may not read its pagemap.
        let run = try runPagestat(["summary", "--pid", "2"])
        #expect(run.status == (TestEnvironment.isRoot ? 8 : 4), "\(run.stderr)")
        #expect(run.stderr.split(separator: "\n").count == 1)
        if TestEnvironment.isRoot {
            #expect(try runPagestat(["summary", "--pid", "2"], asUser: 65534).status == 4)
        }
    }
}
