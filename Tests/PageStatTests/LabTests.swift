import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// The written pages of a plan, one Bool per page.
func writtenPages(_ plan: DirtyPlan, limit: Int = .max) -> [Bool] {
    var written = Array(repeating: false, count: plan.pages)
    var previousEnd = -1
    plan.forEachRun(limit: limit) { (run: Range<Int>) in
        // Runs are maximal, in increasing order and never adjacent to the previous one.
        #expect(run.lowerBound > previousEnd && !run.isEmpty)
        previousEnd = run.upperBound
        for page in run { written[page] = true }
    }
    return written
}

@Suite("Lab plans, sizes, cgroup and swap checks (pure)")
struct LabPlanTests {
    @Test func firstPattern() {
        let plan = DirtyPlan(pages: 2048, percent: 50)
        #expect(plan.count == 1024)
        #expect(writtenPages(plan) == Array(repeating: true, count: 1024) + Array(repeating: false, count: 1024))
        // Paged out: the first written pages.
        #expect(writtenPages(plan, limit: 10) == Array(repeating: true, count: 10) + Array(repeating: false, count: 2038))
    }

    @Test func alternatePatternSpreadsEvenly() {
        let half = writtenPages(DirtyPlan(pages: 16, percent: 50, pattern: .alternate))
        #expect(half == (0..<16).map { $0 % 2 == 0 })
        let quarter = writtenPages(DirtyPlan(pages: 16, percent: 25, pattern: .alternate))
        #expect(quarter == (0..<16).map { $0 % 4 == 0 })
        let all = writtenPages(DirtyPlan(pages: 10, percent: 100, pattern: .alternate))
        #expect(all == Array(repeating: true, count: 10))
        // 75% of 8: pages 0, 1, 2, 4, 5, 6 (page j * 8 / 6 for j in 0..<6).
        let most = writtenPages(DirtyPlan(pages: 8, percent: 75, pattern: .alternate))
        #expect(most == [true, true, true, false, true, true, true, false])
        #expect(writtenPages(DirtyPlan(pages: 16, percent: 50, pattern: .alternate), limit: 3) == (0..<16).map { $0 % 2 == 0 && $0 < 6 })
    }

    @Test func randomPatternIsExactAndSeeded() {
        // percent of pages, rounded half up.
        for (pages, percent, count) in [(1000, 37, 370), (64, 50, 32), (7, 100, 7), (5, 0, 0), (1, 50, 1), (3, 50, 2)] {
            let written = writtenPages(DirtyPlan(pages: pages, percent: percent, pattern: .random, seed: 7))
            #expect(written.filter { $0 }.count == count, "\(pages) pages at \(percent)%")
            let again = writtenPages(DirtyPlan(pages: pages, percent: percent, pattern: .random, seed: 7))
            #expect(written == again, "the same seed, the same pages")
        }
        let a = writtenPages(DirtyPlan(pages: 1000, percent: 50, pattern: .random, seed: 1))
        let b = writtenPages(DirtyPlan(pages: 1000, percent: 50, pattern: .random, seed: 2))
        #expect(a != b)
        // Not the first-pages layout in disguise.
        #expect(a != writtenPages(DirtyPlan(pages: 1000, percent: 50)))
    }

    @Test func countsRoundHalfUp() {
        #expect(DirtyPlan(pages: 3, percent: 50).count == 2)
        #expect(DirtyPlan(pages: 2048, percent: 0).count == 0)
        #expect(DirtyPlan.share(100, of: 1024) == 1024)
        #expect(DirtyPlan.share(33, of: 10) == 3)
    }

    @Test func sizes() throws {
        #expect(try ByteSize.parse("512K") == 512 << 10)
        #expect(try ByteSize.parse("4M") == 4 << 20)
        #expect(try ByteSize.parse("1G") == 1 << 30)
        #expect(try ByteSize.parse("2gib") == 2 << 30)
        #expect(try ByteSize.parse("8KB") == 8 << 10)
        #expect(try ByteSize.parse("4096") == 4096)
        #expect(try ByteSize.parse("100B") == 100)
        for bad in ["", "K", "12Q", "1.5G", "-1M", "0x10", "4 M", "99999999999999999999T", "16777216T"] {
            #expect(throws: PageStatError.self, "\(bad)") { try ByteSize.parse(bad) }
        }
    }

    @Test func cgroupHierarchies() {
        let hybrid = """
        30 24 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
        31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
        35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:15 - cgroup cgroup rw,cpu,cpuacct
        36 30 0:32 / /sys/fs/cgroup/memory rw shared:16 - cgroup cgroup rw,memory
        """
        let selfCgroup = "5:cpu,cpuacct:/\n4:memory:/user.slice/job\n0::/user.slice\n"
        #expect(MemoryCgroup.locate(mountinfo: hybrid, selfCgroup: selfCgroup)
            == MemoryCgroup.Hierarchy(version: .v1, mountPoint: "/sys/fs/cgroup/memory", current: "/user.slice/job"))
        let unified = "40 1 0:27 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
        #expect(MemoryCgroup.locate(mountinfo: unified, selfCgroup: "0::/system.slice/x.service\n")
            == MemoryCgroup.Hierarchy(version: .v2, mountPoint: "/sys/fs/cgroup", current: "/system.slice/x.service"))
        #expect(MemoryCgroup.locate(mountinfo: "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n", selfCgroup: "") == nil)
    }

    @Test func swapIsRequired() throws {
        let error = #expect(throws: PageStatError.self) { try SwapArea.require(for: "--pageout", active: []) }
        #expect(error?.description.contains("swap is off, and --pageout needs it") == true)
        #expect(error?.description.contains("swapon") == true)
        try SwapArea.require(for: "--pageout", active: [SwapArea.Entry(path: "/swap", type: "file", sizeKiB: 4, usedKiB: 0)])
    }
}

@Suite("Raw pagemap entries (pure)")
struct RawPagemapMarkTests {
    @Test func marksOnlyEmptyEntriesInSwappedRanges() {
        let page: UInt64 = 4096
        let present = RawPagemap.presentBit | 0x1234
        let privateSwap = RawPagemap.swapBit | 0x2a0
        let softDirty: UInt64 = 1 << 55
        var entries: [UInt64] = [0, 0, present, privateSwap, softDirty, 0, 0, 0]
        let swapped = [AddressRange(start: 0x10000, end: 0x10000 + 5 * page),
                       AddressRange(start: 0x10000 + 6 * page, end: 0x10000 + 20 * page)]
        var next = 0
        // First batch: pages 0-3; the second batch carries the range that spans both.
        let first = entries.withUnsafeMutableBufferPointer { buffer in
            RawPagemap.markSwapped(UnsafeMutableBufferPointer(rebasing: buffer[0..<4]), firstAddress: 0x10000,
                                   pageSize: page, swapped: swapped, next: &next)
        }
        #expect(first == 2 && next == 0)
        let second = entries.withUnsafeMutableBufferPointer { buffer in
            RawPagemap.markSwapped(UnsafeMutableBufferPointer(rebasing: buffer[4..<8]), firstAddress: 0x10000 + 4 * page,
                                   pageSize: page, swapped: swapped, next: &next)
        }
        #expect(second == 3 && next == 1)
        let swap = RawPagemap.swapBit
        #expect(entries == [swap, swap, present, privateSwap, softDirty | swap, 0, swap, swap])
    }
}

@Suite("Raw pagemap on memory arranged by the test (needs root and swap)",
       .needsSwapAndRoot)
struct RawPagemapRealMemoryTests {
    /// /proc/PID/pagemap's entries for `range`, read directly.
    static func pagemap(_ pid: Int32, _ range: AddressRange) throws -> [UInt64] {
        let fd = open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        let count = Int(range.length) / TestEnvironment.pageSize
        var entries = [UInt64](repeating: 0, count: count)
        let read = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(range.start / UInt64(TestEnvironment.pageSize) * 8)) }
        try #require(read == count * 8)
        return entries
    }

    static func stream(_ raw: RawPagemap, _ range: AddressRange, kernelOnly: Bool = false) throws -> [UInt64] {
        var entries: [UInt64] = []
        try raw.stream(range, kernelOnly: kernelOnly) { (bytes: UnsafeRawBufferPointer) in
            entries.append(contentsOf: bytes.bindMemory(to: UInt64.self))
        }
        return entries
    }

    @Test func memfdSwappedPagesGetBit62AndNothingElse() throws {
        // [0,16) pwrite only (cached), [16,32) written, [32,48) written and paged out, rest untouched.
        let memory = try ArrangedMemory(pages: 64, backing: .memfd(name: "test-raw", shared: true))
        try memory.pwrite(0..<16)
        memory.dirty(16..<48)
        try pageOut(memory, 32..<48, expectSwapped: 16)
        // A tiny batch, so swapped runs cross batch boundaries. The syscalls engine: no swap
        // location (`auto` gives them where the BPF engine loads: AutoEngineTests).
        let raw = try RawPagemap(pid: getpid(), batchPages: 7, engine: .syscalls)
        let kernel = try Self.pagemap(getpid(), memory.range)
        let marked = try Self.stream(raw, memory.range)
        #expect(try Self.stream(raw, memory.range, kernelOnly: true) == kernel)
        #expect(marked.count == 64)
        for page in 0..<64 {
            if (32..<48).contains(page) {
                #expect(kernel[page] == 0 && marked[page] == RawPagemap.swapBit, "page \(page)")
            } else {
                #expect(marked[page] == kernel[page], "page \(page)")
            }
        }
        // Cached pages stay 0, as the 2021 patch left them.
        #expect(marked[0..<16].allSatisfy { $0 == 0 })
        #expect(raw.notes.all.isEmpty)
    }

    @Test func privateSwapIsTheKernelsOwn() throws {
        let memory = try ArrangedMemory(pages: 32, backing: .privateAnonymous)
        memory.dirty(0..<32)
        try pageOut(memory, 0..<16, expectSwapped: 16)
        let raw = try RawPagemap(pid: getpid())
        let marked = try Self.stream(raw, memory.range)
        let kernel = try Self.pagemap(getpid(), memory.range)
        #expect(marked == kernel)
        #expect(marked[0] & RawPagemap.swapBit != 0 && marked[0] & 0x7f_ffff_ffff_ffe0 != 0, "a real swap location")
    }

    @Test func unmappedRangeIsAnError() throws {
        let raw = try RawPagemap(pid: getpid())
        #expect(throws: PageStatError.rangeNotMapped(pid: getpid(), range: AddressRange(start: 0x1000, end: 0x3000))) {
            try raw.stream(AddressRange(start: 0x1800, end: 0x2800)) { (_: UnsafeRawBufferPointer) in }
        }
    }
}
