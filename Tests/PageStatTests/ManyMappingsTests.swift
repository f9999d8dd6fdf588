import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

@Suite("Objects mapped many times: grouping and splitting")
struct CoverageTests {
    /// The definition, straight: every pair of neighbouring ends, and who maps all of it.
    static func coverageByDefinition(_ mappings: [ObjectMapping]) -> [(Range<UInt64>, [Int32])] {
        let points = Set(mappings.flatMap { [$0.first, $0.end] }).sorted()
        return zip(points, points.dropFirst()).compactMap { low, high in
            let pids = Set(mappings.filter { $0.first <= low && high <= $0.end }.map(\.pid)).sorted()
            return pids.isEmpty ? nil : (low..<high, pids)
        }
    }

    @Test func sweepAgreesWithTheDefinition() {
        var random = SplitMix64(seed: 7)
        let r = AddressRange(start: 0, end: 1)
        for round in 0..<300 {
            // Few pages and pids, so that ends coincide, mappings nest and one process maps a page twice.
            let pages = UInt64(1 + round % 40)
            let mappings = (0..<Int(random.next() % 12)).map { _ in
                let first = random.next() % pages
                return ObjectMapping(pid: Int32(1 + random.next() % 4), range: r, first: first,
                                     end: first + 1 + random.next() % (pages - first))
            }
            let sweep = SystemScanner.coverage(mappings)
            let expected = Self.coverageByDefinition(mappings)
            #expect(sweep.map(\.0) == expected.map(\.0), "\(mappings)")
            #expect(sweep.map(\.1) == expected.map(\.1), "\(mappings)")
        }
    }

    @Test func manyOnePageMappingsOfOneProcess() {
        let r = AddressRange(start: 0, end: 1)
        let mappings = (0..<100_000).map { ObjectMapping(pid: 5, range: r, first: UInt64($0), end: UInt64($0) + 1) }
            + [ObjectMapping(pid: 9, range: r, first: 0, end: 100_000)]
        let intervals = SystemScanner.coverage(mappings)
        #expect(intervals.count == 100_000)
        #expect(intervals.allSatisfy { $0.0.count == 1 && $0.1 == [5, 9] })
    }
}


@Suite("objects and top on one memfd mapped 20,000 times (needs root and swap)", .serialized,
       .needsSwapAndRoot)
struct ManyMappingsTests {
    static let mappings = 20_000

    /// A maps a memfd of 20,000 pages once per page (pages [0, 5000) swapped, [5000, 10000)
    /// resident, the rest holes); B maps the whole memfd once and touches nothing.
    static func mappers() throws -> (FixtureProcess, FixtureProcess) {
        let limit = try #require(RepeatedMappings.maxMapCount())
        try #require(limit >= mappings + 1000, "vm.max_map_count \(limit) is too low for \(mappings) mappings")
        let a = try FixtureProcess(arguments: ["lab", "hold", "--repeated-mappings", String(mappings)])
        let memfd = try #require(a.layout["memfd"] as? String)
        let b = try FixtureProcess(arguments: ["lab", "hold", "--map", memfd])
        return (a, b)
    }

    @Test func objectsGroupsEveryMappingUnderOneObject() throws {
        let (a, b) = try Self.mappers()
        defer { b.stop(); a.stop() }
        let pages = Self.mappings
        let path = "/memfd:pagestat-repeated (deleted)"
        let maps = try ProcFS.readText("/proc/\(a.pid)/maps", pid: a.pid, what: "maps")
        #expect(maps.split(separator: "\n").filter { $0.hasSuffix(path) }.count == pages)

        let report = try SystemScanner.objects()
        let objects = report.objects.filter { $0.users.contains { $0.pid == a.pid } && $0.path == path }
        try #require(objects.count == 1, "one object, not one per mapping")
        let object = objects[0]
        #expect(object.kind == "memfd")
        #expect(object.size == UInt64(pages * TestEnvironment.pageSize))
        #expect(object.swapped == UInt64(pages / 4))
        #expect(object.resident == UInt64(pages / 4))
        #expect(object.holes == UInt64(pages / 2))
        // A and B, and nothing else but pagestat itself: a scan that other tests run meanwhile
        // holds the object open for a moment.
        #expect(object.users.contains { $0.pid == a.pid } && object.users.contains { $0.pid == b.pid })
        let others = object.users.filter { $0.pid != a.pid && $0.pid != b.pid }
        #expect(others.allSatisfy { $0.command.hasPrefix("pagestat") }, "\(others)")
        let userA = try #require(object.users.first { $0.pid == a.pid })
        let userB = try #require(object.users.first { $0.pid == b.pid })
        #expect(userA.maps && userA.holdsOpen && userA.mappings == pages)
        #expect(userB.maps && userB.holdsOpen && userB.mappings == 1)  // B keeps the fd it mapped open
        #expect(!report.notes.contains { $0.description.contains("pagestat-repeated") }, "\(report.notes)")

        // The command says the same.
        let run = try runPagestat(["objects", "--format", "json"])
        #expect(run.status == 0, "\(run.stderr)")
        let listed = try #require(try jsonObject(run)["objects"] as? [[String: Any]])
        let rows = listed.filter { row in
            row["path"] as? String == path
                && ((row["processes"] as? [[String: Any]]) ?? []).contains { $0["pid"] as? Int == Int(a.pid) }
        }
        #expect(rows.count == 1)
        #expect(rows.first?["pages"] as? [String: Int] == ["resident": pages / 4, "swapped": pages / 4, "holes": pages / 2])
    }

    @Test func topSplitsEachSwappedPageBetweenItsTwoMappers() throws {
        let (a, b) = try Self.mappers()
        defer { b.stop(); a.stop() }
        let page = UInt64(TestEnvironment.pageSize)
        // Only A and B: other processes on the machine map nothing of this memfd.
        let report = SystemScanner.top(pids: [a.pid, b.pid])
        let rowA = try #require(report.processes.first { $0.pid == a.pid })
        let rowB = try #require(report.processes.first { $0.pid == b.pid })
        // Each of the 5000 swapped pages is mapped by A (its own one-page mapping) and B: half each.
        let half = UInt64(Self.mappings / 4) * page / 2
        #expect(rowA.use.shmemSwap == half)
        #expect(rowB.use.shmemSwap == half)
        #expect(!report.notes.contains { $0.description.contains("pagestat-repeated") }, "\(report.notes)")
        // A's RSS counts its resident pages, each mapped once.
        #expect(rowA.use.rss >= UInt64(Self.mappings / 4) * page)
    }
}
