import CPagestat
import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// The two engines of the file side answer the same question; on memory arranged at random each
/// must give, page for page, the state the test arranged (checked first against the kernel's own
/// smaps Rss and Swap counts), they must agree on flags, and every swapped page the BPF engine
/// reports carries its slot.
@Suite("Engines agree on randomized shared memory (needs root and swap)")
struct EngineAgreementTests {
    /// Writes, pwrite()s, pages out and punches holes at random in `memory` (page by page in
    /// stretches of 1 to 8 pages), and returns the state each page was left in.
    func scramble(_ memory: ArrangedMemory, fileBacked: Bool, random: inout SplitMix64) throws -> [PageState] {
        var expected = pages(memory.pages, .none)
        var page = 0
        var pagedOut: [Range<Int>] = []
        while page < memory.pages {
            let length = min(memory.pages - page, Int.random(in: 1...8, using: &random))
            let stretch = page..<page + length
            switch Int.random(in: 0..<(fileBacked ? 5 : 3), using: &random) {
            case 0: break                                  // untouched
            case 1:                                        // resident, mapped
                memory.write(stretch)
                expected.replaceSubrange(stretch, with: pages(length, .present))
            case 2:
                memory.write(stretch)
                pagedOut.append(stretch)
                expected.replaceSubrange(stretch, with: pages(length, .swapped))
            case 3:                                        // resident, not mapped
                try memory.pwrite(stretch)
                expected.replaceSubrange(stretch, with: pages(length, .cached))
            default:                                       // written, then a hole punched
                memory.write(stretch)
                try #require(CPagestat_punch_hole(memory.fd!, off_t(stretch.lowerBound * memory.pageSize), off_t(length * memory.pageSize)) == 0)
            }
            page += length
        }
        // MADV_PAGEOUT skips folios it cannot isolate at once: again until smaps counts them all.
        let swapped = expected.filter { $0 == .swapped }.count
        for _ in 0..<20 {
            for stretch in pagedOut { try memory.pageOut(stretch) }
            if try kernelSmaps(memory.address)["Swap"] == UInt64(swapped * memory.pageSize) { break }
            usleep(20_000)
        }
        return expected
    }

    /// The kernel's own Rss and Swap (in bytes) of the mapping of ours that starts at `start`,
    /// read from /proc/self/smaps here, not by pagestat's parser.
    func kernelSmaps(_ start: UInt64) throws -> [String: UInt64] {
        let text = try kernelText("/proc/self/smaps")
        var fields: [String: UInt64] = [:]
        var inside = false
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            if let range = words.first, range.contains("-"), !range.hasSuffix(":") {
                if inside { break }
                inside = UInt64(range.split(separator: "-")[0], radix: 16) == start
            } else if inside, words.count == 3, words[2] == "kB", let kB = UInt64(words[1]) {
                fields[String(words[0].dropLast())] = kB * 1024
            }
        }
        try #require(inside, "no mapping at \(String(start, radix: 16)) in /proc/self/smaps")
        return fields
    }

    /// The arranged layout agrees with the kernel's counts: mapped resident pages are smaps Rss,
    /// swapped ones smaps Swap.
    @discardableResult
    func checkArrangement(_ expected: [PageState], at start: UInt64, _ label: String) throws -> [String: UInt64] {
        let smaps = try kernelSmaps(start)
        let page = UInt64(TestEnvironment.pageSize)
        #expect(smaps["Rss"] == UInt64(expected.filter { $0 == .present }.count) * page, "\(label): smaps Rss against the arranged layout")
        #expect(smaps["Swap"] == UInt64(expected.filter { $0 == .swapped }.count) * page, "\(label): smaps Swap against the arranged layout")
        return smaps
    }

    func states(_ report: ProcessReport) -> [(PageState, PageFlags)] {
        report.mappings.flatMap { $0.runs.flatMap { Array(repeating: ($0.state, $0.flags), count: Int($0.pages)) } }
    }

    /// Scans `range` with both engines: each must report `expected`, page for page, and they must
    /// agree on flags.
    func compare(_ range: AddressRange, expected: [PageState], _ label: String) throws {
        let before = try checkArrangement(expected, at: range.start, label)
        let scanner = try ProcessScanner(pid: getpid())
        var bpfOptions = ScanOptions(range: range)
        bpfOptions.engine = .bpf
        var syscallOptions = ScanOptions(range: range)
        syscallOptions.engine = .syscalls
        let bpf = try scanner.scan(bpfOptions)
        let syscalls = try scanner.scan(syscallOptions)
        let a = states(bpf), b = states(syscalls)
        // Reclaim, or a swapoff elsewhere on the machine (which swaps every page in that area back
        // in), may move arranged pages while they are scanned: say so, so that such a failure is
        // not taken for the engines'.
        let after = try kernelSmaps(range.start)
        #expect(after["Rss"] == before["Rss"] && after["Swap"] == before["Swap"],
                "\(label): the kernel moved arranged pages during the scans (smaps Rss \(before["Rss"] ?? 0) -> \(after["Rss"] ?? 0), Swap \(before["Swap"] ?? 0) -> \(after["Swap"] ?? 0) bytes): reclaim or a swapoff elsewhere, not the engines")
        for (engine, found) in [("bpf", a), ("syscalls", b)] {
            #expect(found.count == expected.count, "\(label): \(engine) reports \(found.count) pages of \(expected.count)")
            let wrong = zip(found.map(\.0), expected).enumerated().filter { $0.element.0 != $0.element.1 }
            let wrongPages = wrong.count
            #expect(wrongPages == 0, "\(label): \(engine) has pages wrong, first \(wrong.first.map { "page \($0.offset): \($0.element.0), arranged \($0.element.1)" } ?? "")")
        }
        let differ = zip(a, b).enumerated().filter { $0.element.0.1 != $0.element.1.1 }
        let differing = differ.count
        #expect(differing == 0, "\(label): pages' flags differ, first \(differ.first.map { "page \($0.offset): bpf \($0.element.0), syscalls \($0.element.1)" } ?? "")")
        for run in bpf.mappings.flatMap(\.runs) where run.state == .swapped {
            #expect(run.swap != nil, "\(label): a swapped run without its slot")
        }
    }

    /// What a second mapping of the same object shows for pages `slice` of the first: what the
    /// first maps is only cached in the second.
    func seenFromAnotherMapping(_ expected: ArraySlice<PageState>) -> [PageState] {
        expected.map { $0 == .present ? .cached : $0 }
    }

    @Test(.needsSwapAndRoot, .needsBPF, arguments: [1, 2, 3])
    func randomLayouts(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)  // a failing layout can be arranged again
        // Shared anonymous memory.
        let shared = try ArrangedMemory(pages: 512, backing: .sharedAnonymous)
        let sharedLayout = try scramble(shared, fileBacked: false, random: &random)
        try compare(shared.range, expected: sharedLayout, "shared anonymous, seed \(seed)")
        // A memfd, mapped whole and mapped again in part at an offset.
        let memfd = try ArrangedMemory(pages: 512, backing: .memfd(name: "pagestat-agree", shared: true))
        let memfdLayout = try scramble(memfd, fileBacked: true, random: &random)
        try compare(memfd.range, expected: memfdLayout, "memfd, seed \(seed)")
        let offset = Int.random(in: 1..<256, using: &random)
        var part = mmap(nil, 128 * memfd.pageSize, PROT_READ, MAP_SHARED, memfd.fd!, off_t(offset * memfd.pageSize))!
        try #require(part != MAP_FAILED, "mmap of the memfd at page \(offset): \(String(cString: strerror(errno)))")
        var partLength = 128 * memfd.pageSize
        defer { munmap(part, partLength) }
        let partStart = UInt64(UInt(bitPattern: part))
        try compare(AddressRange(start: partStart, end: partStart + UInt64(128 * memfd.pageSize)),
                    expected: seenFromAnotherMapping(memfdLayout[offset..<offset + 128]), "memfd at offset \(offset), seed \(seed)")
        // The same part, moved with mremap: MREMAP_MAYMOVE to twice the size, which the kernel
        // must find room for. It must work: a failure fails the test.
        let moved = CPagestat_mremap_maymove(part, 128 * memfd.pageSize, 256 * memfd.pageSize)!
        try #require(moved != MAP_FAILED, "mremap(MREMAP_MAYMOVE) of the memfd part: \(String(cString: strerror(errno)))")
        part = moved
        partLength = 256 * memfd.pageSize
        let movedStart = UInt64(UInt(bitPattern: moved))
        try compare(AddressRange(start: movedStart, end: movedStart + UInt64(256 * memfd.pageSize)),
                    expected: seenFromAnotherMapping(memfdLayout[offset..<offset + 256]), "mremap'd memfd, seed \(seed)")
        // A /dev/shm file, truncated below its mapping (pages past the end are none).
        let path = "/dev/shm/pagestat-agree-\(getpid())-\(seed)"
        let fd = try ArrangedLayout.createFile(path, pages: 512)
        defer { close(fd); unlink(path) }
        let tmpfs = try ArrangedMemory(pages: 512, backing: .file(fd: fd, shared: true))
        var tmpfsLayout = try scramble(tmpfs, fileBacked: true, random: &random)
        #expect(ftruncate(fd, off_t(400 * tmpfs.pageSize)) == 0)
        tmpfsLayout.replaceSubrange(400..<512, with: pages(112, .none))
        try compare(tmpfs.range, expected: tmpfsLayout, "tmpfs file truncated, seed \(seed)")
        // SysV shared memory: pages written at random, the first half paged out.
        let shmid = shmget(IPC_PRIVATE, 256 * tmpfs.pageSize, IPC_CREAT | 0o600)
        try #require(shmid >= 0)
        let segment = try #require(shmat(shmid, nil, 0))
        shmctl(shmid, IPC_RMID, nil)
        defer { shmdt(segment) }
        var segmentLayout = pages(256, .none)
        for page in 0..<256 where Bool.random(using: &random) {
            segment.storeBytes(of: 1, toByteOffset: page * tmpfs.pageSize, as: UInt8.self)
            segmentLayout[page] = page < 128 ? .swapped : .present
        }
        let segmentStart = UInt64(UInt(bitPattern: segment))
        let segmentSwapped = UInt64(segmentLayout.filter { $0 == .swapped }.count * tmpfs.pageSize)
        for _ in 0..<20 {
            _ = madvise(segment, 128 * tmpfs.pageSize, CPagestat_MADV_PAGEOUT)
            if try kernelSmaps(segmentStart)["Swap"] == segmentSwapped { break }
            usleep(20_000)
        }
        try compare(AddressRange(start: segmentStart, end: segmentStart + UInt64(256 * tmpfs.pageSize)),
                    expected: segmentLayout, "SysV, seed \(seed)")
    }
}
