import CPagestat
import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// A pool of 2 MiB huge pages and a hugetlbfs mount of its own, for one test: nr_hugepages is
/// saved and raised, a hugetlbfs is mounted on a new directory; `close()` removes the files,
/// unmounts and restores nr_hugepages (call it in a defer, so it runs on failure too).
final class HugetlbPool {
    static let hugePage = 2 << 20
    let directory: String
    private let savedPages: String
    private var mounted = false
    private var files: [String] = []

    init(pages: Int) throws {
        savedPages = try String(contentsOfFile: "/proc/sys/vm/nr_hugepages", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        directory = "/tmp/pagestat-hugetlbfs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try "\(Int(savedPages)! + pages)\n".write(toFile: "/proc/sys/vm/nr_hugepages", atomically: false, encoding: .utf8)
        guard mkdir(directory, 0o755) == 0 else { close(); throw POSIXError(.EEXIST) }
        guard mount("none", directory, "hugetlbfs", 0, "pagesize=2M") == 0 else {
            let error = errno
            close()
            throw POSIXError(POSIXErrorCode(rawValue: error) ?? .EINVAL)
        }
        mounted = true
    }

    /// A file of `hugePages` huge pages whose huge pages `faulted` are written through a short
    /// mapping of our own, then unmapped: in the file, mapped by no one.
    func file(_ name: String, hugePages: Int, faulted: [Int]) throws -> String {
        let path = "\(directory)/\(name)"
        files.append(path)
        let fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { Glibc.close(fd) }
        guard ftruncate(fd, off_t(hugePages * Self.hugePage)) == 0 else { throw POSIXError(.EINVAL) }
        for index in faulted {
            guard let page = mmap(nil, Self.hugePage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(index * Self.hugePage)),
                  page != MAP_FAILED else { throw POSIXError(.ENOMEM) }
            page.storeBytes(of: 0x5a, as: UInt8.self)
            munmap(page, Self.hugePage)
        }
        return path
    }

    func close() {
        for file in files { unlink(file) }
        if mounted { umount(directory) }
        rmdir(directory)
        try? "\(savedPages)\n".write(toFile: "/proc/sys/vm/nr_hugepages", atomically: false, encoding: .utf8)
    }

    /// HugePages_Free, HugePages_Rsvd and HugePages_Surp from /proc/meminfo.
    static func counters() throws -> [String: Int] {
        let text = try String(contentsOfFile: "/proc/meminfo", encoding: .utf8)
        var counters: [String: Int] = [:]
        for line in text.split(separator: "\n")
        where line.hasPrefix("HugePages_Free") || line.hasPrefix("HugePages_Rsvd") || line.hasPrefix("HugePages_Surp") {
            let parts = line.split(separator: ":")
            counters[String(parts[0])] = Int(parts[1].trimmingCharacters(in: .whitespaces))
        }
        return counters
    }
}

private let hugePageEntries = HugetlbPool.hugePage / TestEnvironment.pageSize

/// The states of a scan of `range` of `pid`, checking that the scan took no huge page.
private func scanTakingNoHugePages(pid: Int32, range: AddressRange, engine: FileSideEngineChoice = .auto) throws -> ProcessReport {
    let before = try HugetlbPool.counters()
    var options = ScanOptions(range: range)
    options.engine = engine
    let report = try ProcessScanner(pid: pid).scan(options)
    #expect(try HugetlbPool.counters() == before, "a scan reserved or allocated huge pages")
    return report
}

@Suite("hugetlb memory (needs root)", .serialized,
       .needsRoot, .requiresKernel("hugetlb", !HugetlbFS.pageSizes.isEmpty, "huge page support (CONFIG_HUGETLBFS)"))
struct HugetlbTests {
    /// A hugetlbfs file mapped whole by a child that touches huge page 1: huge page 0, faulted in
    /// by us and unmapped, is cached; with no other page held, the rest are none; with more held
    /// than the counts can place, unknown with a note. The counts alone: the syscalls engine
    /// (`auto` walks the inode's xarray where the BPF engine loads: `unmappedHugePagesToldByTheWalk`).
    @Test func hugetlbfsFilePagesByCount() throws {
        let pool = try HugetlbPool(pages: 12)
        defer { pool.close() }
        let cases: [(name: String, hugePages: Int, faulted: [Int], expected: [PageState])] = [
            ("cached", 2, [0], pages(hugePageEntries, .cached) + pages(hugePageEntries, .present)),
            ("none", 3, [], pages(hugePageEntries, .none) + pages(hugePageEntries, .present) + pages(hugePageEntries, .none)),
            ("unknown", 3, [0], pages(hugePageEntries, .unknown) + pages(hugePageEntries, .present) + pages(hugePageEntries, .unknown)),
        ]
        for item in cases {
            let path = try pool.file(item.name, hugePages: item.hugePages, faulted: item.faulted)
            let child = try FixtureProcess(arguments: ["lab", "hold", "--map", path, "--read", "\(hugePageEntries)-\(hugePageEntries + 1)"])
            defer { child.stop() }
            let start = try #require((child.layout["mapped"] as? NSNumber)?.uint64Value)
            let range = AddressRange(start: start, end: start + UInt64(item.hugePages * HugetlbPool.hugePage))
            let report = try scanTakingNoHugePages(pid: child.pid, range: range, engine: .syscalls)
            let mapping = try #require(report.mappings.first)
            #expect(mapping.mapping.kind == .hugetlb, "\(item.name)")
            #expect(mapping.mapping.hugePageSize == UInt64(HugetlbPool.hugePage))
            #expect(pageStates(report) == item.expected, "\(item.name): \(mapping.runs)")
            #expect(!pageFlags(report).contains { $0.contains(.thp) }, "hugetlb pages flagged thp")
            #expect(report.notes.contains { note in
                if case .hugetlbHoldingUnknown = note { note.description.contains("hugetlbfs tells no more than that count") } else { false }
            } == (item.name == "unknown"),
                    "\(report.notes)")

            // The CLI: the kind and the huge page size in JSON, and no huge page taken.
            let before = try HugetlbPool.counters()
            let run = try runPagestat(["show", "--pid", String(child.pid), "--range", "\(start)+\(item.hugePages * 2)M",
                                       "--format", "json", "--engine", "syscalls"])
            #expect(try HugetlbPool.counters() == before)
            #expect(run.status == 0, "\(run.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: run.output) as? [String: Any])
            let mappings = try #require(json["mappings"] as? [[String: Any]])
            #expect(mappings.first?["kind"] as? String == "hugetlb")
            #expect((mappings.first?["huge_page_size"] as? NSNumber)?.intValue == HugetlbPool.hugePage)
            #expect(jsonPageStates(try runs(json, mappingStart: start)) == item.expected)
        }
    }

    /// With the BPF engine, the hugetlbfs inode's xarray tells which huge pages the file holds
    /// that the process does not map: huge pages 0 and 2 (faulted in by us, unmapped) cached,
    /// huge page 3 none, where the counts alone could only say `unknown`; the pool's counters
    /// (free, reserved, surplus) unchanged by the scan.
    @Test(.needsBPF) func unmappedHugePagesToldByTheWalk() throws {
        let pool = try HugetlbPool(pages: 12)
        defer { pool.close() }
        let path = try pool.file("walked", hugePages: 4, faulted: [0, 2])
        let child = try FixtureProcess(arguments: ["lab", "hold", "--map", path, "--read", "\(hugePageEntries)-\(hugePageEntries + 1)"])
        defer { child.stop() }
        let start = try #require((child.layout["mapped"] as? NSNumber)?.uint64Value)
        let range = AddressRange(start: start, end: start + UInt64(4 * HugetlbPool.hugePage))
        let expected = pages(hugePageEntries, .cached) + pages(hugePageEntries, .present) + pages(hugePageEntries, .cached)
            + pages(hugePageEntries, .none)
        let report = try scanTakingNoHugePages(pid: child.pid, range: range, engine: .bpf)
        #expect(pageStates(report) == expected, "\(report.mappings.first?.runs ?? []) \(report.notes)")
        #expect(!report.notes.contains { if case .hugetlbHoldingUnknown = $0 { true } else { false } }, "\(report.notes)")

        let before = try HugetlbPool.counters()
        let run = try runPagestat(["show", "--pid", String(child.pid), "--range", "\(start)+8M", "--engine", "bpf", "--format", "json"])
        #expect(try HugetlbPool.counters() == before)
        #expect(run.status == 0, "\(run.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: run.output) as? [String: Any])
        #expect(jsonPageStates(try runs(json, mappingStart: start)) == expected)
    }

    /// `pagestat file` on hugetlbfs: no cachestat error; what st_blocks holds, in base pages.
    /// Only part of a mapping scanned: the huge pages the process maps outside the range still
    /// count (from the page tables of its whole mappings), so the counts settle the rest.
    @Test func partOfAMappingIsSettledWithWhatTheProcessMapsElsewhere() throws {
        let pool = try HugetlbPool(pages: 12)
        defer { pool.close() }
        // Three huge pages: the child touches the first; the other two hold nothing.
        let path = try pool.file("partial", hugePages: 3, faulted: [])
        let child = try FixtureProcess(arguments: ["lab", "hold", "--map", path, "--read", "0-1"])
        defer { child.stop() }
        let start = try #require((child.layout["mapped"] as? NSNumber)?.uint64Value)
        let huge = UInt64(HugetlbPool.hugePage)
        let report = try scanTakingNoHugePages(pid: child.pid, range: AddressRange(start: start + huge, end: start + 3 * huge))
        // The file holds one huge page, the one mapped outside the range: these two hold none.
        #expect(pageStates(report) == pages(2 * hugePageEntries, .none), "\(report.notes)")
    }

    @Test func fileOnHugetlbfs() throws {
        let pool = try HugetlbPool(pages: 4)
        defer { pool.close() }
        let full = try pool.file("full", hugePages: 2, faulted: [0, 1])
        let half = try pool.file("half", hugePages: 2, faulted: [1])
        let before = try HugetlbPool.counters()
        // The syscalls engine: st_blocks alone (where the BPF walker loads, `auto` walks: below).
        let run = try runPagestat(["file", "--pages", "--format", "json", "--engine", "syscalls", full, half])
        #expect(try HugetlbPool.counters() == before)
        #expect(run.status == 0, "\(run.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: run.output) as? [String: Any])
        let files = try #require(json["files"] as? [[String: Any]])
        #expect(files.count == 2)
        for (file, cached) in zip(files, [2 * hugePageEntries, hugePageEntries]) {
            #expect((file["huge_page_size"] as? NSNumber)?.intValue == HugetlbPool.hugePage)
            let counts = try #require(file["pages"] as? [String: Any])
            #expect((counts["cached"] as? NSNumber)?.intValue == cached)
            #expect((counts["holes"] as? NSNumber)?.intValue == 2 * hugePageEntries - cached)
            #expect(counts["dirty"] == nil)
        }
        let runs = try #require(files[0]["runs"] as? [[String: Any]])
        #expect(runs.count == 1 && runs[0]["state"] as? String == "cached")
        let halfRuns = try #require(files[1]["runs"] as? [[String: Any]])
        #expect(halfRuns.count == 1 && halfRuns[0]["state"] as? String == "unknown")
    }

    /// `pagestat file` on hugetlbfs where the BPF walker loads (plain, engine `auto`): the
    /// inode's xarray tells which huge pages the file holds, mapped by no one: huge pages 0 and
    /// 2 `cached`, 1 and 3 `none`, in whole huge pages, where st_blocks alone could only say
    /// `unknown`; no pool page reserved or allocated (HugePages_Free, Rsvd, Surp unchanged).
    @Test(.needsBPF) func fileOnHugetlbfsToldByTheWalk() throws {
        let pool = try HugetlbPool(pages: 6)
        defer { pool.close() }
        let path = try pool.file("told", hugePages: 4, faulted: [0, 2])
        let before = try HugetlbPool.counters()
        let run = try runPagestat(["file", "--pages", "--format", "json", path])
        #expect(try HugetlbPool.counters() == before)
        #expect(run.status == 0, "\(run.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: run.output) as? [String: Any])
        let file = try #require((json["files"] as? [[String: Any]])?.first)
        let counts = try #require(file["pages"] as? [String: Any])
        #expect((counts["cached"] as? NSNumber)?.intValue == 2 * hugePageEntries)
        #expect((counts["holes"] as? NSNumber)?.intValue == 2 * hugePageEntries)
        let runs = try #require(file["runs"] as? [[String: Any]])
        #expect(runs.map { $0["state"] as? String ?? "" } == ["cached", "none", "cached", "none"], "\(runs)")
        #expect(runs.allSatisfy { ($0["pages"] as? NSNumber)?.intValue == hugePageEntries }, "\(runs)")
    }

    /// MAP_PRIVATE|MAP_HUGETLB anonymous memory (no file side) and a MAP_SHARED MFD_HUGETLB memfd
    /// in this process: present or none, and cached for the memfd's huge page held but unmapped;
    /// no huge page reserved or allocated by the scan.
    @Test func anonymousAndMemfdHugetlb() throws {
        let pool = try HugetlbPool(pages: 6)
        defer { pool.close() }
        let length = 2 * HugetlbPool.hugePage
        guard let anon = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0),
              anon != MAP_FAILED else {
            Issue.record("mmap MAP_HUGETLB: \(errno)")
            return
        }
        defer { munmap(anon, length) }
        anon.storeBytes(of: 1, as: UInt8.self)
        let anonRange = AddressRange(start: UInt64(UInt(bitPattern: anon)), end: UInt64(UInt(bitPattern: anon)) + UInt64(length))
        let anonReport = try scanTakingNoHugePages(pid: getpid(), range: anonRange)
        #expect(anonReport.mappings.first?.mapping.kind == .hugetlb)
        #expect(pageStates(anonReport) == pages(hugePageEntries, .present) + pages(hugePageEntries, .none))
        #expect(!pageFlags(anonReport).contains { $0.contains(.thp) })

        let fd = CPagestat_memfd_create("pagestat-hugetlb-test", 1 | CPagestat_MFD_HUGETLB | (21 << CPagestat_MFD_HUGE_SHIFT))
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(ftruncate(fd, off_t(length)) == 0)
        // Huge page 0 through a short mapping, unmapped again; huge page 1 through the one scanned.
        let short = try #require(mmap(nil, HugetlbPool.hugePage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
        short.storeBytes(of: 2, as: UInt8.self)
        munmap(short, HugetlbPool.hugePage)
        guard let shared = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), shared != MAP_FAILED else {
            Issue.record("mmap memfd: \(errno)")
            return
        }
        defer { munmap(shared, length) }
        shared.storeBytes(of: 3, toByteOffset: HugetlbPool.hugePage, as: UInt8.self)
        let start = UInt64(UInt(bitPattern: shared))
        let report = try scanTakingNoHugePages(pid: getpid(), range: AddressRange(start: start, end: start + UInt64(length)))
        #expect(report.mappings.first?.mapping.kind == .hugetlb)
        #expect(report.mappings.first?.mapping.path.hasPrefix("/memfd:pagestat-hugetlb-test") == true)
        #expect(pageStates(report) == pages(hugePageEntries, .cached) + pages(hugePageEntries, .present), "\(report.notes)")
        #expect(!pageFlags(report).contains { $0.contains(.thp) })
    }

    /// The parsers: hugetlbfs mounts with their page sizes; maps lines on them are hugetlb.
    @Test func hugetlbfsDevicesFromMountinfo() {
        let mountinfo = """
        42 27 0:39 / /dev/hugepages rw,relatime - hugetlbfs hugetlbfs rw,pagesize=2M
        43 27 0:40 / /mnt/huge1g rw,relatime - hugetlbfs none rw,pagesize=1024M
        44 27 0:41 / /dev/shm rw - tmpfs tmpfs rw
        """
        let devices = HugetlbFS.devices(mountinfo: mountinfo, defaultPageSize: 2 << 20)
        #expect(devices == [ProcMaps.Device(major: 0, minor: 0x27): 2 << 20, ProcMaps.Device(major: 0, minor: 0x28): 1 << 30])
        let maps = "7f0000000000-7f0000400000 rw-s 00000000 00:27 1234 /dev/hugepages/vm-ram\n"
            + "7f0000400000-7f0000800000 rw-s 00000000 00:29 1235 /dev/shm/x\n"
        let mappings = ProcMaps.parse(maps, shmemDevices: [ProcMaps.Device(major: 0, minor: 0x29)], hugetlbDevices: devices)
        #expect(mappings.map(\.kind) == [.hugetlb, .shmem])
        #expect(mappings.map(\.hugePageSize) == [2 << 20, nil])
    }
}
