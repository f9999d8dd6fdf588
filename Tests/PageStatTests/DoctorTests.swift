import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

@Suite("pagestat doctor")
struct DoctorTests {
    func facts(_ json: [String: Any]) throws -> [String: [String: Any]] {
        let list = try #require(json["facts"] as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: list.compactMap { fact in (fact["name"] as? String).map { ($0, fact) } })
    }

    @Test func factsSayWhatIsThereAndWhatItCosts() throws {
        let run = try runPagestat(["doctor", "--format", "json"])
        #expect(run.status == 0, "\(run.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: run.output) as? [String: Any])
        let facts = try facts(json)
        for name in ["kernel", "privilege", "PAGEMAP_SCAN", "cachestat", "SEEK_DATA on shmem", "smaps Swap", "BTF",
                     "BPF engine", "soft-dirty", "userfaultfd-wp", "guard pages", "swap", "zswap", "THP", "hugetlbfs"] {
            #expect(facts[name] != nil, "no fact \(name)")
        }
        // Each missing feature says what its absence costs.
        for (name, fact) in facts where fact["available"] as? Bool == false {
            #expect(!(fact["consequence"] as? String ?? "").isEmpty, "\(name) is missing but costs nothing?")
        }
        // What the probes found agrees with what the scanner itself uses.
        #expect(facts["privilege"]?["available"] as? Bool == ProcFS.hasSysAdmin())
        #expect(facts["cachestat"]?["available"] as? Bool == PageCacheObject.cachestatSupported)
        #expect(facts["swap"]?["available"] as? Bool == !SwapArea.active().isEmpty)
        #expect(json["verification"] == nil)
    }

    @Test func verifyFindsEveryArrangedPageRight() throws {
        try #require(TestEnvironment.swapAndRoot, "needs root and swap (see EnvironmentTests)")
        let run = try runPagestat(["doctor", "--verify", "--format", "json"])
        #expect(run.status == 0, "\(run.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: run.output) as? [String: Any])
        let rows = try #require(json["verification"] as? [[String: Any]])
        let regions = Set(rows.compactMap { $0["region"] as? String })
        #expect(regions == Set(ArrangedLayout.regionNames))
        #expect(rows.contains { $0["engine"] as? String == "syscalls" })
        for row in rows {
            #expect(row["wrong"] as? Int == 0 && row["unknown"] as? Int == 0 && row["right"] as? Int == row["pages"] as? Int, "\(row)")
        }
    }

    @Test func verifyWithoutPrivilegeCountsUnknownsNotWrongs() throws {
        try #require(TestEnvironment.swapAndRoot, "needs root to run as another user, and swap (see EnvironmentTests)")
        let run = try runPagestat(["doctor", "--verify", "--format", "json", "--directory", "/tmp"], asUser: 65534)
        #expect(run.status == 0, "\(run.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: run.output) as? [String: Any])
        let rows = try #require(json["verification"] as? [[String: Any]])
        #expect(rows.allSatisfy { $0["wrong"] as? Int == 0 }, "\(rows)")
        // memfd, shared anonymous and SysV pages not mapped need map_files: unknown, with the reason.
        #expect(rows.contains { ($0["unknown"] as? Int ?? 0) > 0 })
        let notes = try #require(json["notes"] as? [String])
        #expect(notes.contains { $0.contains("CAP_SYS_ADMIN") }, "\(notes)")
        #expect(try facts(json)["privilege"]?["available"] as? Bool == false)
    }
}
