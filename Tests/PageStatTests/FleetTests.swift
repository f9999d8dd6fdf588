import CPagestat
import Foundation
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore
@testable import PageStatLab

@Suite("Fleet view: identities, grouping and the exposition format on fixtures")
struct FleetFixtureTests {
    @Test func memoryCgroupFromV1AndV2() throws {
        #expect(ProcessIdentity.memoryCgroup(try TestEnvironment.fixture("cgroup-v1-hybrid.txt"))
                == "/system.slice/postgresql@15-main.service")
        // v2: the path is everything after the second colon, colons included.
        #expect(ProcessIdentity.memoryCgroup(try TestEnvironment.fixture("cgroup-v2.txt"))
                == "/kubepods.slice/kubepods-burstable.slice/cri-containerd-3f1c:odd.scope")
        #expect(ProcessIdentity.memoryCgroup("garbage\n") == nil)
        #expect(ProcessIdentity.memoryCgroup("") == nil)
    }

    @Test func namesAsPsShowsThem() {
        func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
        #expect(ProcessIdentity.displayName(cmdline: bytes("postgres: checkpointer \0\0\0"), comm: "postgres") == "postgres: checkpointer")
        #expect(ProcessIdentity.displayName(cmdline: bytes("/usr/bin/sleep\0100\0"), comm: "sleep") == "/usr/bin/sleep 100")
        #expect(ProcessIdentity.displayName(cmdline: [], comm: "kworker/0:1") == "[kworker/0:1]")
        #expect(ProcessIdentity.effectiveUID(status: "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\t1\t1\t1\n") == 0)
        #expect(ProcessIdentity.effectiveUID(status: "Name:\tx\n") == nil)
    }

    @Test func splitsAddUpExactly() {
        let shares = SystemScanner.split(10, among: [3, 5, 7])
        #expect(shares.map(\.0) == [3, 5, 7] && shares.map(\.1) == [4, 3, 3])
        #expect(SystemScanner.split(4096 * 7, among: [1, 2, 3]).reduce(0) { $0 + $1.1 } == 4096 * 7)
        #expect(SystemScanner.split(5, among: []).isEmpty)
    }

    static func process(_ pid: Int32, comm: String, uid: UInt32, cgroup: String, rss: UInt64, swapped: UInt64) -> ProcessUse {
        var use = MemoryUse.zero
        use.rss = rss
        use.swap = swapped
        use.shmemSwap = swapped
        return ProcessUse(pid: pid, command: comm + " --flag", use: use,
                          identity: ProcessIdentity(name: comm + " --flag", comm: comm, uid: uid, cgroup: cgroup),
                          shared: [.shmem: SharedShare(resident: rss / 2, swapped: swapped)])
    }

    static let report = TopReport(processes: [process(10, comm: "postgres", uid: 0, cgroup: "/a", rss: 100, swapped: 7),
                                              process(11, comm: "postgres", uid: 0, cgroup: "/b", rss: 50, swapped: 6),
                                              process(12, comm: "qemu", uid: 0, cgroup: "/b", rss: 10, swapped: 0)],
                                  unreadable: 1, vanished: 0, privileged: true, notes: [])

    @Test func everyGroupingAddsUpToTheSameTotal() {
        let totals = TopGrouping.allCases.map { TopReport.total(Self.report.rows(by: $0)) }
        for total in totals {
            #expect(total.processes == 3 && total.use.rss == 160 && total.use.shmemSwap == 13 && total.shared[.shmem]?.swapped == 13)
        }
        let byCgroup = Self.report.rows(by: .cgroup).sorted { $0.name < $1.name }
        #expect(byCgroup.map(\.name) == ["/a", "/b"] && byCgroup.map(\.processes) == [1, 2] && byCgroup[1].use.rss == 60)
        let byCommand = Self.report.rows(by: .command).sorted { $0.name < $1.name }
        #expect(byCommand.map(\.name) == ["postgres", "qemu"])
        // Filters: every filter given must match; values of one filter are alternatives.
        #expect(Self.report.rows(by: .process, filter: TopFilter(pids: [10, 12])).map(\.pid) == [10, 12])
        #expect(Self.report.rows(by: .process, filter: TopFilter(commands: ["qemu"])).map(\.pid) == [12])
        #expect(Self.report.rows(by: .process, filter: TopFilter(commands: ["--flag"])).count == 3)
        #expect(Self.report.rows(by: .process, filter: TopFilter(pids: [10], commands: ["qemu"])).isEmpty)
        #expect(Self.report.rows(by: .process, filter: TopFilter(users: ["0"])).count == 3)
    }

    @Test func sortsByAnyColumnEitherWay() {
        func order(_ sort: SummaryRenderer.TopSort, reverse: Bool = false) -> [Int32?] {
            Self.report.rows(by: .process).sorted { sort.precedes($0, $1, reverse: reverse) }.map(\.pid)
        }
        #expect(order(.rss) == [10, 11, 12] && order(.rss, reverse: true) == [12, 11, 10])
        #expect(order(.shmemSwap) == [10, 11, 12])
        #expect(order(.pid) == [10, 11, 12] && order(.pid, reverse: true) == [12, 11, 10])
        #expect(order(.name, reverse: true).first == 12)
    }

    @Test func textJSONAndCSVCarryATotalRow() throws {
        let text = SummaryRenderer.top(Self.report, by: .cgroup, sort: .rss, limit: 1, format: .text)
        let lines = text.split(separator: "\n")
        #expect(lines[1].hasSuffix("/a") && lines[2].hasSuffix("TOTAL"))  // /a has the larger RSS
        #expect(text.contains("3 processes in 2 cgroups, 1 shown"))
        let single = SummaryRenderer.top(Self.report, filter: TopFilter(pids: [12]), sort: .rss, limit: nil, format: .text)
        #expect(single.contains("\n1 process, 1 could not be read") || single.contains("\n1 process;") || single.contains("\n1 process,"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(
            SummaryRenderer.top(Self.report, by: .user, sort: .rss, limit: nil, format: .json).utf8)) as? [String: Any])
        let groups = try #require(json["groups"] as? [[String: Any]])
        #expect(groups.count == 1 && groups[0]["processes"] as? Int == 3 && groups[0]["user"] as? String == "root")
        #expect((json["total"] as? [String: Any])?["rss"] as? Int == 160)
        let csv = csvRows(SummaryRenderer.top(Self.report, by: .cgroup, sort: .name, limit: nil, format: .csv))
        #expect(csv.map { $0["cgroup"] ?? "" } == ["/a", "/b", "TOTAL"] && csv.last?["shmem_swap"] == "13")
    }

    @Test func expositionEscapesAndParsesBack() throws {
        #expect(Prometheus.escapeLabelValue("a\\b\"c\nd é") == "a\\\\b\\\"c\\nd é")
        var report = Self.report
        report.processes[0].identity.cgroup = "/we\"ird\\name\nhere"
        report.objects = [MappedObject(kind: .shmem, path: "/memfd:vm \"ram\" (deleted)", id: ObjectID(deviceMajor: 0, deviceMinor: 1, inode: 42),
                                       size: 8192, resident: 4096, swapped: 4096, mappers: 2)]
        let families = FleetMetrics.families(report, by: .cgroup, objects: 5,
                                             swapAreas: SwapArea.parse(try TestEnvironment.fixture("swaps.txt")))
        let text = Prometheus.render(families)
        let parsed = try Prometheus.parse(text)
        #expect(parsed == families.filter { !$0.samples.isEmpty })
        for family in parsed {
            #expect(Prometheus.isValidName(family.name) && family.name.hasPrefix("pagestat_"))
            #expect(!family.help.isEmpty)
            for sample in family.samples { #expect(sample.labels.allSatisfy { Prometheus.isValidName($0.0, label: true) }) }
        }
        let swapped = try #require(parsed.first { $0.name == "pagestat_shared_swapped_bytes" })
        // A name label is the name escaped as text output writes it (reversibly), then as the
        // exposition format requires.
        let weird = try #require(swapped.samples.first { $0.labels.contains { $0 == ("cgroup", "/we\"ird\\\\name\\nhere") } && $0.labels.contains { $0 == ("kind", "shmem") } })
        #expect(weird.value == 7)
        #expect(text.contains("cgroup=\"/we\\\"ird\\\\\\\\name\\\\nhere\""))
        let object = try #require(parsed.first { $0.name == "pagestat_object_swapped_bytes" }?.samples.first)
        #expect(object.labels.contains { $0 == ("path", "/memfd:vm \"ram\" (deleted)") } && object.value == 4096)
        // No pid label unless the rows are processes.
        #expect(!text.contains("pid=\""))
        #expect(Prometheus.render(FleetMetrics.families(report, by: .process, objects: 0, swapAreas: [])).contains("pid=\"10\""))
        #expect(throws: PageStatError.self) { try Prometheus.parse("bad-name 1\n") }
        #expect(throws: PageStatError.self) { try Prometheus.parse("x{a=\"unterminated} 1\n") }
    }

    /// promtool (Debian's prometheus package) checks the names, help and format.
    @Test(.needsTool("promtool", package: "prometheus package"))
    func promtoolAcceptsTheExposition() throws {
        let promtool = try #require(TestEnvironment.tool("promtool"))
        let text = Prometheus.render(FleetMetrics.families(Self.report, by: .cgroup, objects: 5, swapAreas: []))
        let input = Pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: promtool)
        process.arguments = ["check", "metrics"]
        process.standardInput = input
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(output)")
        #expect(output.isEmpty, "promtool's lint: \(output)")
    }
}

/// A memory cgroup the test makes and moves processes into; `remove()` (on every way out) moves
/// whatever is left back to where this test process is and removes the directory.
final class TestCgroup {
    let directory: String
    let home: String

    init(_ name: String) throws {
        let hierarchy = try MemoryCgroup.locate()
        home = hierarchy.mountPoint + (hierarchy.current == "/" ? "" : hierarchy.current)
        directory = home + "/" + name
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw PageStatError.system(call: "mkdir \(directory)", errno: .init(rawValue: errno))
        }
    }

    func enter(_ pid: Int32) throws { try MemoryCgroup.writeFile(directory + "/cgroup.procs", String(pid)) }

    func remove() {
        if let procs = try? String(contentsOfFile: directory + "/cgroup.procs", encoding: .utf8) {
            for pid in procs.split(separator: "\n") { try? MemoryCgroup.writeFile(home + "/cgroup.procs", String(pid)) }
        }
        for _ in 0..<100 where rmdir(directory) != 0 && errno == EBUSY { usleep(10_000) }
    }

    deinit { remove() }
}

@Suite("top --by cgroup on arranged processes (needs root and swap)", .serialized,
       .needsSwapAndRoot)
struct FleetCgroupTests {
    @Test func swappedSharedMemorySplitsAcrossCgroupsExactly() throws {
        // A arranges its layout (a memfd among it, a quarter of it paged out); B maps A's memfd.
        let a = try FixtureProcess()
        defer { a.stop() }
        let q = a.pages / 4
        let b = try FixtureProcess(arguments: ["lab", "hold", "--map", try #require(a.paths["memfd"]), "--read", "\(q)-\(2 * q)"])
        defer { b.stop() }
        let x = try TestCgroup("pagestat-fleet-\(getpid())-x")
        defer { x.remove() }
        let y = try TestCgroup("pagestat-fleet-\(getpid())-y")
        defer { y.remove() }
        try x.enter(a.pid)
        try y.enter(b.pid)
        let cgroupA = try #require(ProcessIdentity.read(pid: a.pid)?.cgroup)
        let cgroupB = try #require(ProcessIdentity.read(pid: b.pid)?.cgroup)
        #expect(cgroupA.hasSuffix("/pagestat-fleet-\(getpid())-x") && cgroupB.hasSuffix("/pagestat-fleet-\(getpid())-y"))
        let page = UInt64(TestEnvironment.pageSize)

        // The library: the two processes alone; every grouping adds up to the same totals.
        let report = SystemScanner.top(pids: [a.pid, b.pid])
        let rows = report.rows(by: .cgroup)
        let rowA = try #require(rows.first { $0.name == cgroupA })
        let rowB = try #require(rows.first { $0.name == cgroupB })
        // A alone maps its shared anonymous memory, tmpfs file and SysV segment (q swapped pages
        // each); the memfd's q swapped pages are split between A and B, exactly.
        #expect(rowA.use.shmemSwap == UInt64(3 * q) * page + UInt64(q) * page / 2 + UInt64(q) * page % 2)
        #expect(rowB.use.shmemSwap == UInt64(q) * page / 2)
        #expect(rowA.use.shmemSwap + rowB.use.shmemSwap == UInt64(4 * q) * page)
        #expect(rowB.shared[.shmem]?.swapped == UInt64(q) * page / 2 && rowB.shared[.sysv] == nil)
        #expect(rowA.shared[.sysv]?.swapped == UInt64(q) * page && rowA.shared[.sharedAnon]?.swapped == UInt64(q) * page)
        let totals = TopGrouping.allCases.map { TopReport.total(report.rows(by: $0)) }
        for total in totals {
            #expect(total.use.shmemSwap == UInt64(4 * q) * page && total.use.rss == totals[0].use.rss
                    && total.use.swap == totals[0].use.swap && total.shared == totals[0].shared && total.processes == 2)
        }
        let memfd = try #require(report.objects.first { $0.path == "/memfd:pagestat-fixture (deleted)" })
        #expect(memfd.swapped == UInt64(q) * page && memfd.mappers == 2 && memfd.kind == .shmem)

        // The command, over the whole machine: the same split, rows summing to the TOTAL row.
        let run = try runPagestat(["top", "--by", "cgroup", "--format", "json", "--pid", String(a.pid), "--pid", String(b.pid)])
        #expect(run.status == 0, "\(run.stderr)")
        let json = try jsonObject(run)
        let groups = try #require(json["groups"] as? [[String: Any]])
        func group(_ name: String) throws -> [String: Any] { try #require(groups.first { $0["cgroup"] as? String == name }) }
        #expect(try group(cgroupA)["shmem_swap"] as? UInt64 == rowA.use.shmemSwap)
        #expect(try group(cgroupB)["shmem_swap"] as? UInt64 == rowB.use.shmemSwap)
        #expect(try group(cgroupA)["processes"] as? Int == 1)
        let total = try #require(json["total"] as? [String: Any])
        #expect(total["shmem_swap"] as? UInt64 == UInt64(4 * q) * page)
        #expect(total["processes"] as? Int == 2)
        let text = try runPagestat(["top", "--by", "cgroup", "--pid", String(a.pid)]).stdout
        #expect(text.contains("1 process in 1 cgroup;") || text.contains("1 process in 1 cgroup,"), "\(text)")
        #expect(text.split(separator: "\n").contains { $0.hasSuffix("TOTAL") })

        // Prometheus exposition: the same shares, parsed back.
        let metrics = try runPagestat(["top", "--by", "cgroup", "--format", "prometheus", "--pid", String(a.pid), "--pid", String(b.pid)])
        #expect(metrics.status == 0, "\(metrics.stderr)")
        let families = try Prometheus.parse(metrics.stdout)
        let swapped = try #require(families.first { $0.name == "pagestat_shared_swapped_bytes" })
        let sysvA = try #require(swapped.samples.first { $0.labels.contains { $0 == ("cgroup", cgroupA) } && $0.labels.contains { $0 == ("kind", "sysv") } })
        #expect(sysvA.value == Double(UInt64(q) * page))
        let shmemB = try #require(swapped.samples.first { $0.labels.contains { $0 == ("cgroup", cgroupB) } && $0.labels.contains { $0 == ("kind", "shmem") } })
        #expect(shmemB.value == Double(UInt64(q) * page / 2))
    }

    /// A memfd of 80 pages that this process holds open (it mapped it only to arrange it), mapped
    /// in part by X (pages 16-48, cgroup x) and Y (32-64, cgroup y), neither touching a page:
    /// [0,16) and [72,80) in memory, mapped by no one; [16,24) in memory (X's); [24,32) swapped
    /// (X's); [32,40) in memory and [40,48) swapped (X's and Y's); [48,56) in memory (Y's);
    /// [56,64) a hole; [64,72) swapped, mapped by no one. The 24 pages in memory that no one maps
    /// are split between X and Y as `cached` (12 each); every group's resident and cached add up
    /// to the object's 48 pages in memory.
    @Test func cachedPagesNoOneMapsSplitAcrossCgroupsExactly() throws {
        let page = UInt64(TestEnvironment.pageSize)
        let name = "pagestat-fleet-cached-\(getpid())"
        let fd = CPagestat_memfd_create(name, 1)
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(ftruncate(fd, off_t(80 * TestEnvironment.pageSize)) == 0)
        do {
            let arranged = try ArrangedMemory(pages: 80, backing: .file(fd: fd, shared: true))
            arranged.write(0..<56)
            arranged.write(64..<80)
            try #require(try arranged.pageOut(24..<32, untilSwapped: 8))
            try #require(try arranged.pageOut(40..<48, untilSwapped: 16))
            try #require(try arranged.pageOut(64..<72, untilSwapped: 24))
            withExtendedLifetime(arranged) {}
        }  // unmapped here: no page of it is in this process's page table any more
        let path = "/proc/\(getpid())/fd/\(fd)"
        let x = try FixtureProcess(arguments: ["lab", "hold", "--map", path, "--map-pages", "16-48"])
        defer { x.stop() }
        let y = try FixtureProcess(arguments: ["lab", "hold", "--map", path, "--map-pages", "32-64"])
        defer { y.stop() }
        let cx = try TestCgroup("pagestat-cached-\(getpid())-x")
        defer { cx.remove() }
        let cy = try TestCgroup("pagestat-cached-\(getpid())-y")
        defer { cy.remove() }
        try cx.enter(x.pid)
        try cy.enter(y.pid)
        let cgroupX = try #require(ProcessIdentity.read(pid: x.pid)?.cgroup)
        let cgroupY = try #require(ProcessIdentity.read(pid: y.pid)?.cgroup)
        // The kernel's own count of the object, asked here: 48 pages in memory, 24 swapped.
        let stat = try PageCacheObject.open(path: path, pid: 0, what: path).cachestat(offset: 0, length: 80 * page)
        #expect(stat.cache == 48 && stat.evicted == 24, "\(stat)")

        let report = SystemScanner.top(pids: [x.pid, y.pid])
        let object = try #require(report.objects.first { $0.path == "/memfd:\(name) (deleted)" })
        #expect(object.resident == 48 * page && object.swapped == 24 * page && object.mappers == 2)
        let rows = report.rows(by: .cgroup)
        let rowX = try #require(rows.first { $0.name == cgroupX }).shared[.shmem] ?? SharedShare()
        let rowY = try #require(rows.first { $0.name == cgroupY }).shared[.shmem] ?? SharedShare()
        #expect(rowX == SharedShare(resident: 12 * page, swapped: 12 * page, cached: 12 * page), "\(rowX)")
        #expect(rowY == SharedShare(resident: 12 * page, swapped: 4 * page, cached: 12 * page), "\(rowY)")
        #expect(rowX.cached + rowY.cached == 24 * page)
        #expect(rowX.resident + rowX.cached + rowY.resident + rowY.cached == object.resident)
        // The 8 swapped pages no one maps are the object's alone.
        #expect(rowX.swapped + rowY.swapped + 8 * page == object.swapped)

        // The command: JSON (the unit in the new keys), CSV, text, sort, --columns, Prometheus.
        let pids = ["--pid", String(x.pid), "--pid", String(y.pid)]
        let run = try runPagestat(["top", "--by", "cgroup", "--format", "json"] + pids)
        #expect(run.status == 0, "\(run.stderr)")
        let json = try jsonObject(run)
        let groups = try #require(json["groups"] as? [[String: Any]])
        for cgroup in [cgroupX, cgroupY] {
            let group = try #require(groups.first { $0["cgroup"] as? String == cgroup })
            #expect(group["shmem_cached_bytes"] as? UInt64 == 12 * page)
            #expect(((group["shared"] as? [String: Any])?["shmem"] as? [String: Any])?["cached_bytes"] as? UInt64 == 12 * page)
        }
        #expect((json["total"] as? [String: Any])?["shmem_cached_bytes"] as? UInt64 == 24 * page)
        let csv = csvRows(try runPagestat(["top", "--by", "cgroup", "--format", "csv", "--sort", "shmem-cached"] + pids).stdout)
        #expect(csv.map { $0["shmem_cached_bytes"] ?? "" } == [String(12 * page), String(12 * page), String(24 * page)])
        let picked = try runPagestat(["top", "--by", "cgroup", "-o", "shmem-cached,name"] + pids)
        #expect(picked.status == 0, "\(picked.stderr)")
        let header = try #require(picked.stdout.split(separator: "\n").first)
        #expect(header.split(separator: " ") == ["SHMEM-CACHED", "CGROUP"], "\(picked.stdout)")
        #expect(picked.stdout.split(separator: "\n").contains { $0.contains(humanBytes(24 * page)) && $0.hasSuffix("TOTAL") }, "\(picked.stdout)")
        #expect(try runPagestat(["top", "-o", "rss,nope"]).status == 64)
        let metrics = try runPagestat(["top", "--by", "cgroup", "--format", "prometheus"] + pids)
        #expect(metrics.status == 0, "\(metrics.stderr)")
        for cgroup in [cgroupX, cgroupY] {
            #expect(try sampleValue(metrics.stdout, "pagestat_shared_cached_bytes", [("cgroup", cgroup), ("kind", "shmem")]) == Double(12 * page))
        }
    }

    /// The fleet tally (PAGEMAP_SCAN regions, pagemap only where swapped or for PFNs, mapcounts
    /// kept across processes) counts what the process scanner counts, page for page: RSS, the
    /// zero page, swap (the fixture's private memory is a quarter swapped), PSS and USS (B maps
    /// A's memfd pages), and the shared objects each maps. PSS and USS are compared on the
    /// arranged mappings: a shared library's mapcounts move while other tests start processes.
    @Test(.requiresKernel("PAGEMAP_SCAN", FleetTally.supported, "PAGEMAP_SCAN with the categories the fleet tally reads (Linux 6.7+; before it the scanner answers `top` itself)"))
    func fleetTallyAgreesWithTheProcessScanner() throws {
        let a = try FixtureProcess()
        defer { a.stop() }
        let q = a.pages / 4
        let b = try FixtureProcess(arguments: ["lab", "hold", "--map", try #require(a.paths["memfd"]), "--read", "\(q)-\(2 * q)"])
        defer { b.stop() }
        for proportional in [true, false] {
            let tally = FleetTally(proportional: proportional)
            for pid in [a.pid, b.pid, a.pid] {  // A again: its mapcounts now partly from the tally's table
                let scanner = try ProcessScanner(pid: pid)
                var options = ScanOptions(accounting: true)
                options.fileSide = false
                options.proportional = proportional
                let report = try scanner.scan(options)
                var expected = MemoryUse.zero
                for mapping in report.mappings { expected += try #require(mapping.use) }
                if !proportional { expected.pss = nil; expected.uss = nil }
                var mappingUses: [UInt64: MemoryUse] = [:]
                let (process, objects, _) = try #require(try tally.scan(pid) { mappingUses[$0.range.start] = $1 })
                #expect(process.use.rss == expected.rss && process.use.swap == expected.swap
                        && process.use.zeroPage == expected.zeroPage && process.use.shmemSwap == expected.shmemSwap
                        && (process.use.pss == nil) == (expected.pss == nil), "pid \(pid), PSS \(proportional)")
                // The arranged mappings (A's layout, B's mapping of A's memfd): anonymous or on
                // the fixture's own objects, mapped by A and B alone.
                let arranged = report.mappings.filter {
                    $0.mapping.kind != .file || $0.mapping.path.contains("pagestat-fixture")
                }.filter { $0.mapping.kind != .special && !$0.mapping.path.hasPrefix("[") }
                #expect(!arranged.isEmpty)
                for mapping in arranged {
                    var want = try #require(mapping.use)
                    if !proportional { want.pss = nil; want.uss = nil }
                    var got = try #require(mappingUses[mapping.mapping.range.start])
                    if !proportional { got.pss = nil; got.uss = nil }
                    #expect(got == want, "pid \(pid), PSS \(proportional), \(mapping.mapping.range) \(mapping.mapping.path)")
                }
                let shmem = report.mappings.map(\.mapping).filter(\.kind.isShmem)
                #expect(objects.map(\.0) == shmem.map(ObjectID.init) && objects.map(\.1.range) == shmem.map(\.range))
            }
        }
        let fixtureSwap = UInt64(q * TestEnvironment.pageSize)
        let (process, _, _) = try #require(try FleetTally(proportional: false).scan(a.pid))
        #expect(process.use.swap >= fixtureSwap, "the fixture's private memory has q pages in swap")
    }
}

@Suite("top's objects larger than one cachestat piece (needs root)",
       .requires(TestEnvironment.isRoot, "root: map_files needs CAP_SYS_ADMIN"))
struct FleetPieceTests {
    /// An object of two pieces and a bit, mapped by this process from inside its first piece to
    /// past its second: the pieces of the mapped stretch and of the pages no one maps add up to
    /// what one cachestat(2) over the whole object says, and the mapped pages are this process's.
    @Test func cachestatPiecesAddUpToTheWholeObject() throws {
        let piece = Int(SystemScanner.piecePages)
        let page = TestEnvironment.pageSize
        let pages = 2 * piece + 100
        let fd = CPagestat_memfd_create("pagestat-pieces", 0)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(ftruncate(fd, off_t(pages * page)) == 0)
        let written = [0, piece - 1, piece, piece + 1, 2 * piece + 50, pages - 1]
        for index in written { #expect(pwrite(fd, [UInt8(1)], 1, off_t(index * page)) == 1) }
        let first = piece - 10
        let length = (piece + 70) * page
        let mapped = try #require(mmap(nil, length, PROT_READ, MAP_SHARED, fd, off_t(first * page)))
        try #require(mapped != MAP_FAILED)
        defer { munmap(mapped, length) }
        let report = SystemScanner.top(pids: [getpid()])
        let object = try #require(report.objects.first { $0.path == "/memfd:pagestat-pieces (deleted)" })
        #expect(object.resident == UInt64(written.count * page) && object.swapped == 0 && object.mappers == 1)
        #expect(object.size == UInt64(pages * page))
        let me = try #require(report.processes.first { $0.pid == getpid() })
        // Pages piece - 1, piece, piece + 1 and 2 * piece + 50 lie in the mapping (other tests may
        // map more shared memory into this process meanwhile).
        #expect((me.shared[.shmem]?.resident ?? 0) >= UInt64(4 * page))
    }
}


@Suite("top's object totals against pagestat objects (needs root)",
       .requires(TestEnvironment.isRoot, "root: map_files and other processes' descriptors"))
struct FleetObjectTotalsTests {
    /// An object as `pagestat objects` lists it and `top --format prometheus` labels it: its
    /// device, inode and path (one path and inode can exist on two tmpfs mounts). A path with bytes that are not printable ASCII (other tests' hostile
    /// names) is left out of the key: JSON and the exposition format write such bytes each its
    /// own way.
    struct Key: Hashable {
        var path: String
        var dev: String
        var inode: UInt64

        init(path: String, dev: String, inode: UInt64) {
            self.path = path.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7f } ? path : "(not ASCII)"
            self.dev = dev
            self.inode = inode
        }
    }

    /// `pagestat objects --format json`: each object's kind (as the fleet view's labels name
    /// it), resident and swapped bytes (nil where it was not counted), by key.
    static func objects() throws -> [Key: (kind: String, resident: UInt64?, swapped: UInt64?)] {
        let run = try runPagestat(["objects", "--format", "json"])
        try #require(run.status == 0, "\(run.stderr)")
        let list = try #require(try jsonObject(run)["objects"] as? [[String: Any]])
        let page = UInt64(TestEnvironment.pageSize)
        var found: [Key: (kind: String, resident: UInt64?, swapped: UInt64?)] = [:]
        for object in list {
            let kind = object["kind"] as? String ?? "?"
            let pages = object["pages"] as? [String: Any] ?? [:]
            let key = Key(path: object["path"] as? String ?? "", dev: object["dev"] as? String ?? "",
                          inode: (object["inode"] as? NSNumber)?.uint64Value ?? 0)
            found[key] = (kind == "memfd" || kind == "tmpfs" ? "shmem" : kind,
                          (pages["resident"] as? NSNumber).map { $0.uint64Value * page },
                          (pages["swapped"] as? NSNumber).map { $0.uint64Value * page })
        }
        return found
    }

    static func sums(_ objects: [Key: (kind: String, resident: UInt64?, swapped: UInt64?)], _ kind: String) -> [UInt64] {
        let these = objects.values.filter { $0.kind == kind }
        return [UInt64(these.count), these.reduce(0) { $0 + ($1.resident ?? 0) }, these.reduce(0) { $0 + ($1.swapped ?? 0) }]
    }

    /// A memfd this process holds open and never maps, 11 of its 32 pages written with pwrite:
    /// `top` finds it through the descriptor as `objects` does, and the exposition's system
    /// totals (pagestat_objects, _resident_bytes, _swapped_bytes by kind) are `objects`' sums.
    /// The machine is shared (other tests and sessions create and page shared memory while the
    /// two commands run), so the totals are compared whenever two `objects` runs around a `top`
    /// agree, and each object that held still is compared on its own.
    @Test func systemTotalsAreWhatObjectsCounts() throws {
        let page = UInt64(TestEnvironment.pageSize)
        let name = "pagestat-held-\(getpid())"
        let fd = CPagestat_memfd_create(name, 1)
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(ftruncate(fd, off_t(32 * page)) == 0)
        var block = [UInt8](repeating: 0x5a, count: Int(page))
        for index in 0..<11 {
            try #require(block.withUnsafeMutableBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(UInt64(3 * index) * page)) } == Int(page))
        }
        var st = stat()
        try #require(fstat(fd, &st) == 0)
        let id = ObjectID(st)
        let held = Key(path: "/memfd:\(name) (deleted)", dev: "\(id.deviceMajor):\(id.deviceMinor)", inode: UInt64(st.st_ino))

        var compared = (totals: 0, sysv: 0, counts: 0, objects: 0)
        var disagreed: [String] = []
        for _ in 0..<20 {
            let before = try Self.objects()
            let metrics = try runPagestat(["top", "--format", "prometheus", "--objects", "1000000"])
            try #require(metrics.status == 0, "\(metrics.stderr)")
            let after = try Self.objects()
            let families = try Prometheus.parse(metrics.stdout)
            func family(_ name: String) throws -> [Prometheus.Sample] { try #require(families.first { $0.name == name }).samples }
            func label(_ sample: Prometheus.Sample, _ name: String) -> String { sample.labels.first { $0.0 == name }?.1 ?? "" }
            var perObject: [Key: (kind: String, resident: Double, swapped: Double, mappers: Double)] = [:]
            for sample in try family("pagestat_object_resident_bytes") {
                perObject[Key(path: label(sample, "path"), dev: label(sample, "dev"), inode: UInt64(label(sample, "inode")) ?? 0)] = (label(sample, "kind"), sample.value, 0, -1)
            }
            for sample in try family("pagestat_object_swapped_bytes") { perObject[Key(path: label(sample, "path"), dev: label(sample, "dev"), inode: UInt64(label(sample, "inode")) ?? 0)]?.swapped = sample.value }
            for sample in try family("pagestat_object_mapping_processes") { perObject[Key(path: label(sample, "path"), dev: label(sample, "dev"), inode: UInt64(label(sample, "inode")) ?? 0)]?.mappers = sample.value }
            func total(_ name: String, _ kind: String) throws -> UInt64 {
                UInt64(try #require(try family(name).first { label($0, "kind") == kind }).value)
            }

            // The held memfd: both count its 11 pages in memory; top knows no one maps it.
            let mine = try #require(perObject[held], "top did not find the memfd held open")
            #expect(mine.kind == "shmem" && mine.resident == Double(11 * page) && mine.swapped == 0 && mine.mappers == 0)
            #expect(before[held]?.resident == 11 * page && after[held]?.resident == 11 * page)

            // Within the exposition: each kind's totals are its objects' series added up (every
            // object is in them with --objects that large; SysV segments come from the kernel's list).
            for kind in ["shmem", "shared-anon"] {
                let these = perObject.values.filter { $0.kind == kind }
                #expect(try total("pagestat_objects_resident_bytes", kind) == UInt64(these.reduce(0) { $0 + $1.resident }), "\(kind)")
                #expect(try total("pagestat_objects_swapped_bytes", kind) == UInt64(these.reduce(0) { $0 + $1.swapped }), "\(kind)")
            }
            // Each object that held still across the two objects runs: the same in top.
            for (key, object) in before where object.kind != "sysv" && object.resident != nil {
                guard let later = after[key], later.resident == object.resident, later.swapped == object.swapped else { continue }
                guard let seen = perObject[key] else {
                    Issue.record("top did not find \(key) (\(object.kind))")
                    continue
                }
                #expect(seen.kind == object.kind && seen.resident == Double(object.resident ?? 0)
                        && seen.swapped == Double(object.swapped ?? 0), "\(key)")
                compared.objects += 1
            }
            // Across the two tools, a round counts where the machine held still: the same objects,
            // with the same pages, before and after. The other tests of a parallel run make and
            // drop objects all the time, and one that lives only while top runs is between two
            // objects runs that agree: so a round that held still and disagrees is kept, and the
            // check fails where no round agreed (a real difference disagrees in every round).
            let kinds = ["shmem", "shared-anon", "sysv"]
            // The objects, when the same ones were there before and after.
            if Set(before.keys) == Set(after.keys) {
                let seen = try kinds.map { try total("pagestat_objects", $0) }
                let counted = kinds.map { Self.sums(before, $0)[0] }
                if seen == counted { compared.counts += 1 } else { disagreed.append("objects \(kinds): top \(seen), objects \(counted)") }
            }
            // SysV segments: the kernel's counts, when they held still.
            if Self.sums(before, "sysv") == Self.sums(after, "sysv") {
                let sums = Self.sums(before, "sysv")
                let seen = [try total("pagestat_objects", "sysv"), try total("pagestat_objects_resident_bytes", "sysv"),
                            try total("pagestat_objects_swapped_bytes", "sysv")]
                if seen == sums { compared.sysv += 1 } else { disagreed.append("sysv: top \(seen), objects \(sums)") }
            }
            // Everything, when everything held still.
            if kinds.allSatisfy({ Self.sums(before, $0) == Self.sums(after, $0) }) {
                var agree = true
                for kind in kinds {
                    let seen = [try total("pagestat_objects", kind), try total("pagestat_objects_resident_bytes", kind),
                                try total("pagestat_objects_swapped_bytes", kind)]
                    if seen != Self.sums(before, kind) {
                        agree = false
                        disagreed.append("\(kind): top \(seen), objects \(Self.sums(before, kind))")
                    }
                }
                if agree { compared.totals += 1 }
            }
            if compared.totals > 0 && compared.counts > 0 && compared.sysv > 0 { break }
        }
        print("FleetObjectTotalsTests: the totals agreed \(compared.totals) times, the object counts \(compared.counts), SysV \(compared.sysv), single objects \(compared.objects); rounds that held still and disagreed: \(disagreed)")
        #expect(compared.objects > 0, "the machine's shared objects never held still for two objects runs")
        #expect(compared.totals > 0 && compared.counts > 0 && compared.sysv > 0,
                "top's totals never agreed with objects' in a round that held still: \(compared), \(disagreed)")
    }
}

/// contrib/: the systemd unit and the Grafana dashboard that the README offers. This machine runs
/// no systemd as PID 1, so the unit is checked by systemd's own offline verifier, and the
/// dashboard's queries by Prometheus's own PromQL parser and against the names the exporter writes.
@Suite("contrib: the systemd unit and the Grafana dashboard")
struct ContribTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func run(_ tool: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    /// The options the README promises are in the unit.
    @Test func unitHasTheOptionsTheReadmePromises() throws {
        let unit = try String(contentsOf: Self.root.appendingPathComponent("contrib/pagestat-exporter.service"), encoding: .utf8)
        for option in ["CapabilityBoundingSet=CAP_SYS_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_FOWNER", "ProtectSystem=strict",
                       "NoNewPrivileges=yes", "PrivateTmp=yes", "ExecStart=/usr/local/bin/pagestat-exporter "] {
            #expect(unit.contains(option), "the unit lacks \(option)")
        }
    }

    /// `systemd-analyze verify` on the unit as shipped, its ExecStart pointed at the built exporter
    /// (verify checks that the binary exists).
    @Test(.needsTool("systemd-analyze", package: "systemd package"))
    func systemdAcceptsTheUnit() throws {
        let unit = try String(contentsOf: Self.root.appendingPathComponent("contrib/pagestat-exporter.service"), encoding: .utf8)
        let systemdAnalyze = try #require(TestEnvironment.tool("systemd-analyze"))
        try #require(FileManager.default.isExecutableFile(atPath: exporterPath), "no built pagestat-exporter at \(exporterPath)")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pagestat-unit-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("pagestat-exporter.service")
        try unit.replacingOccurrences(of: "ExecStart=/usr/local/bin/pagestat-exporter ", with: "ExecStart=\(exporterPath) ")
            .write(to: copy, atomically: true, encoding: .utf8)
        let verify = try Self.run(systemdAnalyze, ["verify", copy.path])
        #expect(verify.status == 0, "\(verify.output)")
        // Every line it prints is a complaint about the unit.
        #expect(verify.output.split(separator: "\n").filter { $0.contains("pagestat-exporter.service") }.isEmpty, "\(verify.output)")
        // A unit that is not found, or not parsed, must fail: the check can fail.
        try "[Service]\nExecStart=relative/path\nBogusOption=1\n".write(to: copy, atomically: true, encoding: .utf8)
        #expect(try Self.run(systemdAnalyze, ["verify", copy.path]).status != 0)
    }

    /// The PromQL queries of the dashboard's panels.
    func dashboardQueries() throws -> [String] {
        let data = try Data(contentsOf: Self.root.appendingPathComponent("contrib/grafana-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        let queries = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        try #require(queries.count >= 8, "the dashboard has \(queries.count) queries")
        return queries
    }

    /// Every query of the dashboard names only metrics the exporter writes.
    @Test func dashboardQueriesNameExportedMetrics() throws {
        let queries = try dashboardQueries()
        // The names the exporter writes: the fleet families, and its own (Sources/pagestat-exporter).
        var exported = Set(FleetMetrics.families(FleetFixtureTests.report, by: .cgroup, objects: 5, swapAreas: []).map(\.name))
        let exporterSources = try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("Sources/pagestat-exporter").path)
        for file in exporterSources where file.hasSuffix(".swift") {
            let text = try String(contentsOf: Self.root.appendingPathComponent("Sources/pagestat-exporter/\(file)"), encoding: .utf8)
            // swift-prometheus names them metricName_unitName.
            for match in text.matches(of: /metricName: "(pagestat_exporter_[a-z_]+)", unitName: "([a-z]+)"/) {
                exported.insert("\(match.1)_\(match.2)")
            }
        }
        for query in queries {
            for match in query.matches(of: /pagestat_[a-z_]+/) {
                #expect(exported.contains(String(match.0)), "the dashboard asks for \(match.0), which the exporter does not write")
            }
        }
    }

    /// promtool checks each query as a recording rule: it must parse as PromQL.
    @Test(.needsTool("promtool", package: "prometheus package"))
    func dashboardQueriesParse() throws {
        let queries = try dashboardQueries()
        let promtool = try #require(TestEnvironment.tool("promtool"))
        func rules(_ expressions: [String]) -> String {
            "groups:\n- name: dashboard\n  rules:\n" + expressions.enumerated().map { index, expression in
                // Grafana's variables, as Grafana would fill them in.
                let filled = expression.replacingOccurrences(of: "$instance", with: ".*").replacingOccurrences(of: "$cgroup", with: ".*")
                return "  - record: dashboard:query\(index)\n    expr: '\(filled.replacingOccurrences(of: "'", with: "''"))'\n"
            }.joined()
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("pagestat-dashboard-\(getpid()).yml")
        defer { try? FileManager.default.removeItem(at: file) }
        try rules(queries).write(to: file, atomically: true, encoding: .utf8)
        let check = try Self.run(promtool, ["check", "rules", file.path])
        #expect(check.status == 0, "\(check.output)")
        // And a broken query fails the same check.
        try rules(["sum by (cgroup (pagestat_shared_swapped_bytes)"]).write(to: file, atomically: true, encoding: .utf8)
        #expect(try Self.run(promtool, ["check", "rules", file.path]).status != 0)
    }
}
