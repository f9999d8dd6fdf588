import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// `auto` is the BPF engine for shared memory wherever it loads: it answers as `--engine bpf` does.
@Suite("auto: the BPF engine for shared memory", .serialized)
struct AutoEngineTests {
    /// Fragmented shared memory (every other page written and paged out): `auto` answers as the
    /// BPF engine does, run for run with the same swap locations, without a note; `raw` with
    /// `auto` writes the entries `raw --engine bpf` does.
    @Test(.needsSwapAndRoot, .needsBPF) func autoAnswersAsTheBPFEngineForSharedMemory() throws {
        let pages = 4096
        let memory = try ArrangedMemory(pages: pages, backing: .sharedAnonymous)
        for page in stride(from: 0, to: pages, by: 2) { memory.write(page..<page + 1) }
        try memory.pageOut(0..<pages)
        func scan(_ engine: FileSideEngineChoice) throws -> ProcessReport {
            var options = ScanOptions(range: memory.range)
            options.engine = engine
            return try ProcessScanner(pid: getpid()).scan(options)
        }
        let byAuto = try scan(.auto)
        let byBPF = try scan(.bpf)
        let autoRuns = byAuto.mappings.flatMap(\.runs)
        #expect(autoRuns.map(\.state) == byBPF.mappings.flatMap(\.runs).map(\.state))
        #expect(autoRuns.map(\.swap) == byBPF.mappings.flatMap(\.runs).map(\.swap))
        #expect(autoRuns.contains { $0.state == .swapped })
        #expect(autoRuns.allSatisfy { $0.state != .swapped || $0.swap != nil }, "\(autoRuns)")
        #expect(!byAuto.notes.contains { $0.description.contains("BPF engine") }, "\(byAuto.notes)")

        func rawEntries(_ engine: FileSideEngineChoice) throws -> [UInt64] {
            var entries: [UInt64] = []
            let raw = try RawPagemap(pid: getpid(), engine: engine)
            _ = try raw.stream(memory.range) { bytes in entries += Array(bytes.bindMemory(to: UInt64.self)) }
            return entries
        }
        let rawAuto = try rawEntries(.auto)
        #expect(rawAuto.count == pages)
        #expect(rawAuto == (try rawEntries(.bpf)))
        #expect(rawAuto.contains { $0 & (3 << 62) == 1 << 62 && $0 != 1 << 62 }, "no located swap entry")
    }
}

/// Plain `show` names the swap location of every swapped shared page, proven by the page read
/// back from its slot. In XArrayWalkerTests' serialized suite: it turns on a swap area of its own,
/// one at a time with the other tests that do.
extension XArrayWalkerTests {
    /// A memfd, shared anonymous memory and a /dev/shm file, each written with a pattern that
    /// names its pages and paged out whole with a dd-written swap file of the test's own on at the
    /// highest priority (a lower one loses the pages to any area another user turns on above
    /// it): plain `pagestat show` (engine `auto`) gives every swapped page a location, and the
    /// page read from each slot of that swap file (O_DIRECT) is the page written.
    @Test(.needsSwapAndRoot, .needsBPF) func plainShowLocatesEverySwappedSharedPage() throws {
        let zswap = (try? String(contentsOfFile: "/sys/module/zswap/parameters/enabled", encoding: .utf8)) ?? "N"
        try #require(!zswap.hasPrefix("Y"), "zswap is on: swapped pages sit compressed in memory, not at their slot in the swap file")
        let swap = try TestSwapFile(megabytes: 16)
        defer { swap.remove() }
        let ours = try #require(swap.type, "the test's swap file is not in /proc/swaps")
        let pages = 256
        let shmPath = "/dev/shm/pagestat-auto-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let shmFD = open(shmPath, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        try #require(shmFD >= 0)
        defer { close(shmFD); unlink(shmPath) }
        #expect(ftruncate(shmFD, off_t(pages * XArrayWalkerTests.page)) == 0)
        let backings: [(String, ArrangedMemory.Backing)] = [
            ("memfd", .memfd(name: "pagestat-auto", shared: true)),
            ("shared anonymous", .sharedAnonymous),
            ("/dev/shm file", .file(fd: shmFD, shared: true)),
        ]
        for (what, backing) in backings {
            let memory = try ArrangedMemory(pages: pages, backing: backing)
            let tag = UInt64.random(in: 1...UInt64.max)
            for index in 0..<pages {
                patternPage(index: index, tag: tag).withUnsafeBytes {
                    (memory.base + index * XArrayWalkerTests.page).copyMemory(from: $0.baseAddress!, byteCount: XArrayWalkerTests.page)
                }
            }
            try memory.pageOut(0..<pages, untilSwapped: pages)
            let run = try runPagestat(["show", "--pid", String(getpid()), "--range",
                                       "\(memory.address)+\(pages * XArrayWalkerTests.page / 1024)K", "--format", "json"])
            #expect(run.status == 0, "\(what): \(run.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: run.output) as? [String: Any])
            var index = 0
            var swapped = 0
            var proven = 0
            var located = 0
            for entry in try runs(json, mappingStart: memory.address) {
                let count = (entry["pages"] as? NSNumber)?.intValue ?? 0
                defer { index += count }
                guard entry["state"] as? String == "swapped" else { continue }
                swapped += count
                guard let location = entry["swap"] as? [String: Any],
                      let type = (location["type"] as? NSNumber)?.intValue,
                      let offset = (location["offset"] as? NSNumber)?.uint64Value else {
                    Issue.record("\(what): pages \(index)..<\(index + count) swapped without a location")
                    continue
                }
                located += count
                // The slots of our own area (dd-written, so its content reads back as swap wrote
                // it); another area of the same priority may take some pages.
                guard type == ours else { continue }
                for page in 0..<count {
                    let slot = try swap.page(at: offset + UInt64(page))
                    #expect(slot == patternPage(index: index + page, tag: tag),
                            "\(what): page \(index + page) is not at \(type):\(offset + UInt64(page))")
                    if slot == patternPage(index: index + page, tag: tag) { proven += 1 }
                }
            }
            // Most paged out (the kernel may skip a folio it cannot isolate), every one located.
            #expect(swapped >= pages / 2, "\(what): only \(swapped) of \(pages) pages swapped")
            #expect(located == swapped, "\(what): \(located) of \(swapped) swapped pages located")
            // Areas of the same priority share the pages round-robin (other users may have theirs on).
            let sharing = max(1, ((try? String(contentsOfFile: "/proc/swaps", encoding: .utf8)) ?? "").split(separator: "\n")
                .dropFirst().filter { ($0.split(whereSeparator: \.isWhitespace).last.flatMap { Int($0) } ?? 0) >= 32767 }.count)
            #expect(proven >= swapped / (2 * sharing), "\(what): only \(proven) of \(swapped) swapped pages went to the test's swap file (type \(ours), \(sharing) areas at the highest priority) and were proven there")
        }
    }
}

/// The fleet side counts whole objects with the loaded walk where it loads: the same resident,
/// swapped and hole counts as cachestat(2), on the lab's arranged memfd (16 pages written with
/// pwrite only, 16 mapped, 16 paged out, 16 holes), held by a child (`objects` leaves out the
/// process that runs it).
@Suite("Fleet counts by the walk (needs root and swap)", .serialized)
struct FleetWalkTests {
    @Test(.needsSwapAndRoot, .needsBPF) func objectsAndTopCountAsCachestatDoes() throws {
        let fixture = try FixtureProcess()
        defer { fixture.stop() }
        let page = UInt64(TestEnvironment.pageSize)
        let memfd = try #require(fixture.paths["memfd"])
        let object = try PageCacheObject.open(path: memfd, pid: getpid(), what: memfd)
        let pages = (object.size + page - 1) / page
        let stat = try object.cachestat(offset: 0, length: pages * page)
        // The layout as the kernel holds it (a page the kernel could not page out stays resident).
        #expect(pages == 64 && stat.cache + stat.evicted == 48 && stat.evicted >= 8, "cachestat: \(stat)")

        var counted: [(String, UInt64?, UInt64?, UInt64?)] = []
        for engine in [FileSideEngineChoice.syscalls, .bpf, .auto] {
            let objects = try SystemScanner.objects(engine: engine).objects
            let found = try #require(objects.first { $0.kind == "memfd" && $0.users.contains { $0.pid == fixture.pid } }, "objects \(engine)")
            counted.append(("objects \(engine)", found.resident, found.swapped, found.holes))
            let top = SystemScanner.top(pids: [fixture.pid], wholeMachine: false, proportional: false, progress: nil, engine: engine)
            let mapped = try #require(top.objects.first { $0.id == found.id }, "top \(engine)")
            counted.append(("top \(engine)", mapped.resident / page, mapped.swapped / page,
                            pages - (mapped.resident + mapped.swapped) / page))
        }
        for (label, resident, swapped, holes) in counted {
            #expect(resident == stat.cache && swapped == stat.evicted && holes == 16,
                    "\(label): \(resident ?? 0) resident, \(swapped ?? 0) swapped, \(holes ?? 0) holes; cachestat \(stat)")
        }
        // `auto` counts shared memory with the walk where it loads, regular files with cachestat.
        let policy = EnginePolicy(.auto)
        try policy.decideCounting { _ in }
        #expect(policy.countsByBPF(object))
        #expect(policy.countingEngine(for: object) is BPFFileSide)
        let regular = try PageCacheObject.open(path: "/proc/self/exe", pid: getpid(), what: "exe")
        #expect(!policy.countsByBPF(regular) || !PageCacheObject.cachestatSupported)
    }
}
