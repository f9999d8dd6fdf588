import Foundation
import Testing

@testable import PageStat

/// The file side's seam: engine choice, swap locations in runs, and runs that never hide a jump
/// in swap offset.
@Suite("File-side engines and swap locations")
struct EngineTests {
    @Test func privateSwapRunsFollowConsecutiveSlots() throws {
        try #require(TestEnvironment.swapAndRoot, "needs root (swap locations) and swap (see EnvironmentTests)")
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

    @Test func autoTurnsToBPFOnceLseekHasCostItsLoad() throws {
        try #require(TestEnvironment.swapAndRoot, "needs root and swap (see EnvironmentTests)")
        // 160 Ki pages of shared memory, every other one written and paged out: the syscalls
        // engine needs an lseek per swapped page, more than `bpfPaysLseeks`.
        let pages = 160 << 10
        let memory = try ArrangedMemory(pages: pages, backing: .sharedAnonymous)
        for page in stride(from: 0, to: pages, by: 2) { memory.write(page..<page + 1) }
        try memory.pageOut(0..<pages)
        let scanner = try ProcessScanner(pid: getpid())
        var auto = ScanOptions(range: memory.range)
        auto.engine = .auto
        var syscalls = ScanOptions(range: memory.range)
        syscalls.engine = .syscalls
        let byAuto = try scanner.scan(auto)
        let bySyscalls = try scanner.scan(syscalls)
        #expect(byAuto.notes.contains { $0.hasPrefix("file side: the syscalls engine, then the BPF engine once lseek") }, "\(byAuto.notes)")
        #expect(pageStates(byAuto) == pageStates(bySyscalls))
        // Swapped pages settled after the turn carry their slots.
        let located = byAuto.mappings.flatMap(\.runs).filter { $0.state == .swapped && $0.swap != nil }
        #expect(!located.isEmpty)
        // Little to ask: the BPF engine is not loaded for it (a fresh scanner, one lseek or so).
        let small = try ArrangedMemory(pages: 64, backing: .sharedAnonymous)
        small.write(0..<32)
        try small.pageOut(0..<16)
        var smallAuto = ScanOptions(range: small.range)
        smallAuto.engine = .auto
        #expect(!(try ProcessScanner(pid: getpid()).scan(smallAuto)).notes.contains { $0.contains("BPF engine") })
    }

    @Test func bpfEngineWithoutPrivilegeSaysWhy() throws {
        try #require(TestEnvironment.isRoot, "needs root to run pagestat as another user (see EnvironmentTests)")
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
}
