import Foundation
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore
@testable import PageStatLab

/// The file side's seam: engine choice, swap locations in runs, and runs that never hide a jump
/// in swap offset.
@Suite("File-side engines and swap locations")
struct EngineTests {
    @Test(.requires(TestEnvironment.swapAndRoot, "root (swap locations) and swap"))
    func privateSwapRunsFollowConsecutiveSlots() throws {
        let memory = try ArrangedMemory(pages: 24, backing: .privateAnonymous)
        memory.write(0..<24)
        // Paged out out of order, so the slots jump where the pages do not.
        try memory.pageOut(0..<8)
        try memory.pageOut(16..<24)
        try memory.pageOut(8..<16)
        let report = try scanSelf(memory.range)
        let runs = report.mappings.flatMap(\.runs)
        // The kernel's own entry of every page, to check each run's first slot and its followers.
        let pagemap = try Pagemap(pid: getpid())
        var entries = [UInt64](repeating: 0, count: 24)
        let got = try entries.withUnsafeMutableBufferPointer { try pagemap.read(at: memory.address, into: $0) }
        try #require(got == 24)
        var page = 0
        for run in runs {
            let swap = try #require(run.swap, "a swapped private run without its location: \(run)")
            for index in 0..<Int(run.pages) {
                let entry = PagemapEntry(rawValue: entries[page + index])
                #expect(entry.isSwap && entry.swapType == swap.type && entry.swapOffset == swap.offset + UInt64(index),
                        "page \(page + index) is at slot \(entry.swapOffset), its run says \(swap.offset + UInt64(index))")
            }
            page += Int(run.pages)
        }
        #expect(page == 24)
        let jumps = (1..<24).filter {
            PagemapEntry(rawValue: entries[$0]).swapOffset != PagemapEntry(rawValue: entries[$0 - 1]).swapOffset + 1
        }.count
        #expect(runs.count == jumps + 1)
    }

    @Test func runBuilderJoinsOnlyFollowingSlots() {
        var builder = RunBuilder(pageSize: 4096)
        builder.append(start: 0, pages: 2, state: .swapped, flags: [], swap: SwapLocation(type: 0, offset: 10))
        builder.append(start: 8192, pages: 1, state: .swapped, flags: [], swap: SwapLocation(type: 0, offset: 12))
        builder.append(start: 12288, pages: 1, state: .swapped, flags: [], swap: SwapLocation(type: 0, offset: 40))
        builder.append(start: 16384, pages: 1, state: .swapped, flags: [], swap: SwapLocation(type: 1, offset: 41))
        builder.append(start: 20480, pages: 1, state: .swapped, flags: [])
        builder.append(start: 24576, pages: 1, state: .swapped, flags: [])
        #expect(builder.runs.map(\.pages) == [3, 1, 1, 2])
        #expect(builder.runs.map(\.swap) == [SwapLocation(type: 0, offset: 10), SwapLocation(type: 0, offset: 40),
                                             SwapLocation(type: 1, offset: 41), nil])
    }

    @Test func rawMarksSwappedSharedPagesWithTheirSlots() {
        var entries: [UInt64] = [0, 0, 0, 1 << 63 | 5, 0, 0]
        var next = 0
        let marked = entries.withUnsafeMutableBufferPointer { buffer in
            RawPagemap.markSwapped(buffer, firstAddress: 0x10000, pageSize: 4096, swapped: [
                RawPagemap.SwappedRange(range: AddressRange(start: 0x10000, end: 0x10000 + 4 * 4096), swap: SwapLocation(type: 2, offset: 100)),
                RawPagemap.SwappedRange(range: AddressRange(start: 0x10000 + 4 * 4096, end: 0x10000 + 5 * 4096)),
            ], next: &next)
        }
        #expect(marked == 4)
        // The seed patch's encoding: PM_SWAP, type in bits 0-4, offset from bit 5.
        #expect(entries[0] == 1 << 62 | 100 << 5 | 2)
        #expect(entries[2] == 1 << 62 | 102 << 5 | 2)
        #expect(entries[3] == UInt64(1) << 63 | 5)  // present: the kernel's own entry
        #expect(entries[4] == 1 << 62)      // no location known: PM_SWAP alone
        #expect(entries[5] == 0)
    }

    @Test(.requires(TestEnvironment.isRoot, "root to run pagestat as another user"))
    func bpfEngineWithoutPrivilegeSaysWhy() throws {
        let fixture = try FixtureProcess(asUser: 65534)
        defer { fixture.stop() }
        let run = try runPagestat(["show", "--pid", String(fixture.pid), "--engine", "bpf"], asUser: 65534)
        #expect(run.status == 7, "\(run.stderr)")
        #expect(run.stderr.hasPrefix("pagestat: not supported by this kernel: "))
        #expect(run.stderr.split(separator: "\n").count == 1)
        // The syscalls engine answers the same process, with its notes.
        let syscalls = try runPagestat(["show", "--pid", String(fixture.pid), "--engine", "syscalls"], asUser: 65534)
        #expect(syscalls.status == 0, "\(syscalls.stderr)")
    }

    /// A host without libbpf, or without the kernel's BTF: arranged for real in a mount
    /// namespace of the test's own, where /dev/null is bind-mounted over libbpf.so.1's file or
    /// over /sys/kernel/btf/vmlinux. `auto` answers through the syscalls engine (show, raw, file,
    /// objects), and `bpf` fails with one line saying why (exit 7).
    @Test(.requires(TestEnvironment.swapAndRoot, "root (a mount namespace) and swap (the fixture)"), arguments: ["libbpf", "BTF"])
    func withoutLibbpfOrBTFTheSyscallsEngineAnswers(hidden: String) throws {
        let target = hidden == "libbpf"
            ? URL(fileURLWithPath: "/usr/lib/x86_64-linux-gnu/libbpf.so.1").resolvingSymlinksInPath().path
            : "/sys/kernel/btf/vmlinux"
        try #require(FileManager.default.fileExists(atPath: target), "\(target) is not there to hide (this host already lacks \(hidden))")
        let fixture = try FixtureProcess()
        defer { fixture.stop() }
        let range = try fixture.range("memfd")
        func hiddenRun(_ arguments: [String]) throws -> Run {
            let quoted = ([TestEnvironment.pagestatPath] + arguments).map { "'\($0)'" }.joined(separator: " ")
            // Without pins too: a host that lacks libbpf or BTF cannot have pinned the program,
            // and this one may have (bpffs mounted at /sys/fs/bpf, an earlier run's pin there).
            return try runCommand("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c",
                                                       "mount --bind /dev/null '\(target)' && PAGESTAT_BPF_PIN_ROOT=off exec \(quoted)"])
        }
        let show = try hiddenRun(["show", "--pid", String(fixture.pid), "--range", "\(hex(range.start))+\(range.length)", "--format", "json"])
        #expect(show.status == 0, "show, \(hidden) hidden: \(show.stderr)")
        #expect(show.stdout.contains("\"state\":\"swapped\""), "show, \(hidden) hidden: the syscalls engine still finds the swapped shared pages")
        #expect(show.stdout.contains("the BPF engine could not load"), "show, \(hidden) hidden: the note says why the syscalls engine answered")
        let raw = try hiddenRun(["raw", "--pid", String(fixture.pid), "--range", "\(hex(range.start))+\(range.length)"])
        #expect(raw.status == 0 && raw.output.count == range.length / UInt64(TestEnvironment.pageSize) * 8, "raw, \(hidden) hidden: \(raw.stderr)")
        let objects = try hiddenRun(["objects", "--format", "json"])
        #expect(objects.status == 0, "objects, \(hidden) hidden: \(objects.stderr)")
        let bpf = try hiddenRun(["show", "--pid", String(fixture.pid), "--engine", "bpf"])
        #expect(bpf.status == 7, "show --engine bpf, \(hidden) hidden: \(bpf.stderr)")
        #expect(bpf.stderr.hasPrefix("pagestat: not supported by this kernel: "), "\(bpf.stderr)")
        #expect(bpf.stderr.split(separator: "\n").count == 1, "one line: \(bpf.stderr)")
        #expect(bpf.stderr.contains(hidden == "libbpf" ? "libbpf.so.1 could not be opened" : "no usable kernel BTF"), "the reason names what is missing: \(bpf.stderr)")
        let doctor = try hiddenRun(["doctor", "--format", "json"])
        #expect(doctor.stdout.contains("\"auto_engine\":\"syscalls (the BPF engine does not load here)\""), "doctor, \(hidden) hidden: \(doctor.stdout.prefix(400))")
    }
}

/// `file` and `objects` through both engines: the same counts, and with the BPF engine the swap
/// location of every swapped tmpfs page, the same as `show` finds through a mapping.
@Suite("file and objects: both engines")
struct CountingEngineTests {
    @Test(.requires(TestEnvironment.swapAndRoot, "root (the BPF engine, map_files) and swap"), .needsBPF)
    func fileAndObjectsAgreeAcrossEngines() throws {
        let pages = 256
        let path = "/dev/shm/pagestat-engines-\(getpid())"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        try #require(fd >= 0, "create \(path)")
        defer { close(fd); unlink(path) }
        try #require(ftruncate(fd, off_t(pages * 4096)) == 0)
        let memory = try ArrangedMemory(pages: pages, backing: .file(fd: fd, shared: true))
        // Written: 0..<192 (the rest holes); paged out: every other page of 0..<128.
        memory.write(0..<192)
        for page in stride(from: 0, to: 128, by: 2) { try memory.pageOut(page..<page + 1) }
        let swappedBySmaps = try ProcMaps.smapsField(pid: getpid(), vmaStart: memory.address, key: "Swap") ?? 0
        try #require(swappedBySmaps > 0, "nothing went to swap")

        let bySyscalls = try FileScanner.scan(path: path, withRuns: true, engine: .syscalls)
        let byBPF = try FileScanner.scan(path: path, withRuns: true, engine: .bpf)
        #expect(byBPF.cached == bySyscalls.cached)
        #expect(byBPF.swapped == bySyscalls.swapped)
        #expect(byBPF.holes == bySyscalls.holes)
        #expect(byBPF.holes == UInt64(pages - 192))
        #expect(byBPF.swapped.map { $0 * 4096 } == swappedBySmaps)
        #expect(byBPF.notes.contains(.countedByBPF(dirtyAndWritebackUnknown: !PageCacheObject.cachestatSupported)), "\(byBPF.notes)")
        func states(_ runs: [FileRun]?) -> [PageState] { (runs ?? []).flatMap { Array(repeating: $0.state, count: Int($0.pages)) } }
        #expect(states(byBPF.runs) == states(bySyscalls.runs))
        #expect(bySyscalls.runs?.allSatisfy { $0.swap == nil } == true)
        // Every swapped run of the walk has its location; the mapping's scan through the BPF
        // engine finds the same slot for every page.
        var options = ScanOptions(range: memory.range)
        options.engine = .bpf
        let shown = try ProcessScanner(pid: getpid()).scan(options).mappings.flatMap(\.runs)
        var slotOfPage: [Int: SwapLocation] = [:]
        for run in shown where run.state == .swapped {
            let swap = try #require(run.swap, "show --engine bpf: a swapped shared run without its location")
            for index in 0..<Int(run.pages) {
                slotOfPage[Int((run.start - memory.address) / 4096) + index] = SwapLocation(type: swap.type, offset: swap.offset + UInt64(index))
            }
        }
        var checked = 0
        for run in byBPF.runs ?? [] where run.state == .swapped {
            let swap = try #require(run.swap, "file --engine bpf: a swapped run without its location")
            for index in 0..<Int(run.pages) {
                #expect(slotOfPage[Int(run.first) + index] == SwapLocation(type: swap.type, offset: swap.offset + UInt64(index)))
                checked += 1
            }
        }
        #expect(UInt64(checked) == byBPF.swapped)

        // objects (which leaves out its own process): a child holds the file open.
        let holder = try ChildProcess(["/bin/sh", "-c", "exec 3<\(path); exec sleep 60"], captureOutput: false)
        defer {
            holder.signal(SIGKILL)
            holder.wait()
        }
        var held = false
        for _ in 0..<200 where !held {
            held = access("/proc/\(holder.pid)/fd/3", F_OK) == 0 && (try? ProcFS.readText("/proc/\(holder.pid)/comm", pid: holder.pid, what: "comm")) == "sleep\n"
            if !held { usleep(10_000) }
        }
        try #require(held, "the child did not open \(path)")
        // The same three counts for this file with either engine.
        func counts(_ engine: FileSideEngineChoice) throws -> [UInt64?] {
            let report = try SystemScanner.objects(engine: engine)
            let object = try #require(report.objects.first { $0.path == path },
                                      "objects lists \(path): \(report.objects.filter { $0.path.contains("pagestat") }.map { ($0.path, $0.kind) }) \(report.notes)")
            return [object.resident, object.swapped, object.holes]
        }
        let viaCachestat = try counts(.syscalls)
        #expect(try counts(.bpf) == viaCachestat)
        #expect(viaCachestat == [bySyscalls.cached, bySyscalls.swapped, bySyscalls.holes])
    }
}

/// Swap locations proven by content: what `show` (BPF engine) and `raw` say about each swapped
/// shared page is where the page's bytes are in the swap file. In XArrayWalkerTests' serialized
/// suite: both turn on a swap area of their own at the highest priority, one at a time.
extension XArrayWalkerTests {
    enum SwapContentKind: String, CaseIterable { case memfd, sharedAnonymous, tmpfsFile }

    @Test(.requires(TestEnvironment.swapAndRoot, "root (the BPF engine, PFNs) and swap"), .needsBPF, arguments: SwapContentKind.allCases)
    func showAndRawPointAtThePagesBytes(kind: SwapContentKind) throws {
        let zswap = (try? String(contentsOfFile: "/sys/module/zswap/parameters/enabled", encoding: .utf8)) ?? "N"
        try #require(!zswap.hasPrefix("Y"), "zswap is on: swapped pages sit compressed in memory, not at their slot in the swap file; this test cannot run (echo N > /sys/module/zswap/parameters/enabled)")
        let swap = try TestSwapFile(megabytes: 16)
        defer { swap.remove() }
        let type = try #require(swap.type, "the test's swap file is not in /proc/swaps")
        let pages = 128
        var tmpfsPath: String?
        var tmpfsFD: Int32 = -1
        defer { if let tmpfsPath { close(tmpfsFD); unlink(tmpfsPath) } }
        let memory: ArrangedMemory
        switch kind {
        case .memfd: memory = try ArrangedMemory(pages: pages, backing: .memfd(name: "pagestat-content", shared: true))
        case .sharedAnonymous: memory = try ArrangedMemory(pages: pages, backing: .sharedAnonymous)
        case .tmpfsFile:
            let path = "/dev/shm/pagestat-content-\(getpid())"
            tmpfsFD = try ArrangedLayout.createFile(path, pages: pages)
            tmpfsPath = path
            memory = try ArrangedMemory(pages: pages, backing: .file(fd: tmpfsFD, shared: true))
        }
        let tag = UInt64.random(in: 1...UInt64.max)
        for index in 0..<pages {
            patternPage(index: index, tag: tag).withUnsafeBytes {
                (memory.base + index * memory.pageSize).copyMemory(from: $0.baseAddress!, byteCount: memory.pageSize)
            }
        }
        _ = try memory.pageOut(0..<pages, untilSwapped: pages)

        // show, BPF engine: every swapped run has its slot; the slots of ours hold the bytes.
        var options = ScanOptions(range: memory.range)
        options.engine = .bpf
        let runs = try ProcessScanner(pid: getpid()).scan(options).mappings.flatMap(\.runs)
        var slots: [Int: SwapLocation] = [:]
        for run in runs where run.state == .swapped {
            let location = try #require(run.swap, "\(kind): a swapped run without its location")
            for index in 0..<Int(run.pages) {
                slots[Int((run.start - memory.address) / UInt64(memory.pageSize)) + index] =
                    SwapLocation(type: location.type, offset: location.offset + UInt64(index))
            }
        }
        var proven = 0
        for (index, slot) in slots where Int(slot.type) == type {
            #expect(try swap.page(at: slot.offset) == patternPage(index: index, tag: tag), "\(kind): page \(index) is not at \(slot.type):\(slot.offset)")
            proven += 1
        }
        #expect(proven >= pages / 2, "\(kind): only \(proven) of \(pages) pages went to the test's swap file (type \(type))")

        // raw, BPF engine: the seed patch's encoding of the same slots (bit 62, type in bits
        // 0-4, offset from bit 5), the type being the area's index in /proc/swaps.
        var entries: [UInt64] = []
        let raw = try RawPagemap(pid: getpid(), engine: .bpf)
        _ = try raw.stream(memory.range) { bytes in entries += Array(bytes.bindMemory(to: UInt64.self)) }
        try #require(entries.count == pages)
        for (index, slot) in slots {
            let entry = entries[index]
            #expect(entry & (1 << 62) != 0 && entry & (1 << 63) == 0, "\(kind): page \(index): raw entry \(String(entry, radix: 16)) is not a swap entry")
            #expect(entry & 0x1f == UInt64(slot.type) && (entry >> 5) & ((1 << 50) - 1) == slot.offset,
                    "\(kind): page \(index): raw says \(entry & 0x1f):\((entry >> 5) & ((1 << 50) - 1)), show \(slot.type):\(slot.offset)")
        }
        #expect(SwapArea.active()[type].path == swap.path)
    }
}
