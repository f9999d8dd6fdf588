import CPagestat
import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

@Suite("pagestat doctor")
struct DoctorTests {
    func facts(_ json: [String: Any]) throws -> [String: [String: Any]] {
        let list = try #require(json["facts"] as? [[String: Any]])
        // A fact may come once per swap area ("swap slots"): the first stands for its name here.
        return Dictionary(list.compactMap { fact in (fact["name"] as? String).map { ($0, fact) } }, uniquingKeysWith: { first, _ in first })
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
        #expect(json["verification"] == nil)
    }

    /// Each fact doctor states agrees with what the test finds out for itself, by another way than
    /// doctor's probes: the kernel's own files, and the calls themselves made here on objects of
    /// the test's own, their results checked.
    @Test func factsAgreeWithTheKernel() throws {
        let run = try runPagestat(["doctor", "--format", "json"])
        #expect(run.status == 0, "\(run.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: run.output) as? [String: Any])
        let facts = try facts(json)
        func available(_ name: String) -> Bool? { facts[name]?["available"] as? Bool }
        func detail(_ name: String) -> String { facts[name]?["detail"] as? String ?? "" }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))

        let release = try kernelText("/proc/sys/kernel/osrelease").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(detail("kernel").contains("Linux \(release) "), "\(detail("kernel")) against /proc/sys/kernel/osrelease \(release)")

        // Privilege: /proc/self/map_files opens for the test (the same credentials as doctor's).
        let memory = try ArrangedMemory(pages: 2, backing: .memfd(name: "pagestat-doctor-oracle", shared: true))
        memory.write(0..<1)
        let mapFile = "/proc/self/map_files/\(String(memory.range.start, radix: 16))-\(String(memory.range.end, radix: 16))"
        let mapFD = open(mapFile, O_RDONLY | O_CLOEXEC)
        if mapFD >= 0 { close(mapFD) }
        #expect(available("privilege") == (mapFD >= 0), "map_files opened: \(mapFD >= 0)")

        // PAGEMAP_SCAN: the ioctl on our own pagemap finds the page written above, present.
        let pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        try #require(pagemap >= 0)
        defer { close(pagemap) }
        var regions = [CPagestat_page_region](repeating: CPagestat_page_region(), count: 4)
        let found = regions.withUnsafeMutableBufferPointer { buffer in
            var arg = CPagestat_pm_scan_arg()
            arg.size = UInt64(MemoryLayout<CPagestat_pm_scan_arg>.size)
            arg.start = memory.range.start
            arg.end = memory.range.end
            arg.vec = UInt64(UInt(bitPattern: buffer.baseAddress))
            arg.vec_len = UInt64(buffer.count)
            arg.category_anyof_mask = CPagestat_PAGE_IS_PRESENT
            arg.return_mask = CPagestat_PAGE_IS_PRESENT
            return CPagestat_pagemap_scan(pagemap, &arg)
        }
        let scanWorks = found == 1 && regions[0].start == memory.range.start && regions[0].end == memory.range.start + UInt64(page)
        #expect(available("PAGEMAP_SCAN") == scanWorks, "PAGEMAP_SCAN here: \(found) regions, errno \(errno)")

        // cachestat: counts the memfd's one cached page.
        var range = CPagestat_cachestat_range(off: 0, len: 0)
        var counts = CPagestat_cachestat()
        let cachestat = CPagestat_cachestat(memory.fd!, &range, &counts) == 0
        if cachestat { #expect(counts.nr_cache == 1) }
        #expect(available("cachestat") == cachestat)

        // SEEK_DATA on shmem: from the hole at page 1 it finds no data (ENXIO); from 0, page 0.
        #expect(lseek(memory.fd!, 0, CPagestat_SEEK_DATA) == 0)
        let skipsHoles = lseek(memory.fd!, off_t(page), CPagestat_SEEK_DATA) == -1 && errno == ENXIO
        #expect(available("SEEK_DATA on shmem") == skipsHoles)

        let smaps = try kernelText("/proc/self/smaps")
        #expect(available("smaps Swap") == smaps.contains("\nSwap:"))
        #expect(available("soft-dirty") == smaps.split(separator: "\n").contains { $0.hasPrefix("VmFlags:") && $0.split(separator: " ").contains("sd") })
        #expect(available("BTF") == FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux"))
        // The BPF engine cannot load without BTF or without root.
        if available("BTF") == false || !TestEnvironment.isRoot { #expect(available("BPF engine") == false) }

        // Guard pages: MADV_GUARD_INSTALL (102, Linux 6.13) on a page of our own.
        let scratch = try #require(mmap(nil, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        defer { munmap(scratch, page) }
        #expect(available("guard pages") == (madvise(scratch, page, 102) == 0))

        // Swap: /proc/swaps, a header line and one line per area; each area is named.
        let swaps = try kernelText("/proc/swaps").split(separator: "\n").dropFirst()
        #expect(available("swap") == !swaps.isEmpty)
        for area in swaps {
            let path = String(area.split(separator: " ", omittingEmptySubsequences: true)[0])
            #expect(detail("swap").contains(path), "\(detail("swap")) does not name \(path)")
        }
        // THP and zswap, as sysfs says them.
        if let thp = try? kernelText("/sys/kernel/mm/transparent_hugepage/enabled") {
            #expect(detail("THP").contains("anonymous: \(thp.trimmingCharacters(in: .whitespacesAndNewlines))"), "\(detail("THP"))")
        }
        let zswap = try? kernelText("/sys/module/zswap/parameters/enabled")
        #expect(detail("zswap") == (zswap.map { $0.hasPrefix("Y") ? "on" : "off" } ?? "not built"))
    }

    @Test(.needsSwapAndRoot) func verifyFindsEveryArrangedPageRight() throws {
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

    @Test(.requires(TestEnvironment.swapAndRoot, "root to run as another user, and swap"))
    func verifyWithoutPrivilegeCountsUnknownsNotWrongs() throws {
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
