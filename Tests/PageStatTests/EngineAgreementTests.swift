import CPagestat
import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// The two engines of the file side answer the same question; on memory arranged at random they
/// must agree page for page (state and flags; only the BPF engine knows swap locations), and
/// every swapped page the BPF engine reports carries its slot.
@Suite("Engines agree on randomized shared memory (needs root and swap)")
struct EngineAgreementTests {
    /// Writes, pwrite()s, pages out and punches holes at random in `memory` (page by page in
    /// stretches of 1 to 8 pages).
    func scramble(_ memory: ArrangedMemory, fileBacked: Bool, random: inout SplitMix64) throws {
        var page = 0
        var pagedOut: [Range<Int>] = []
        while page < memory.pages {
            let length = min(memory.pages - page, Int.random(in: 1...8, using: &random))
            let stretch = page..<page + length
            switch Int.random(in: 0..<(fileBacked ? 5 : 3), using: &random) {
            case 0: break                                  // untouched
            case 1: memory.write(stretch)                  // resident, mapped
            case 2: memory.write(stretch); pagedOut.append(stretch)
            case 3: try memory.pwrite(stretch)             // resident, not mapped
            default:                                       // written, then a hole punched
                memory.write(stretch)
                _ = CPagestat_punch_hole(memory.fd!, off_t(stretch.lowerBound * memory.pageSize), off_t(length * memory.pageSize))
            }
            page += length
        }
        for stretch in pagedOut { try memory.pageOut(stretch) }
    }

    func states(_ report: ProcessReport) -> [(PageState, PageFlags)] {
        report.mappings.flatMap { $0.runs.flatMap { Array(repeating: ($0.state, $0.flags), count: Int($0.pages)) } }
    }

    func compare(_ range: AddressRange, _ label: String) throws {
        let scanner = try ProcessScanner(pid: getpid())
        var bpfOptions = ScanOptions(range: range)
        bpfOptions.engine = .bpf
        var syscallOptions = ScanOptions(range: range)
        syscallOptions.engine = .syscalls
        let bpf = try scanner.scan(bpfOptions)
        let syscalls = try scanner.scan(syscallOptions)
        let a = states(bpf), b = states(syscalls)
        #expect(a.count == b.count, "\(label): \(a.count) pages against \(b.count)")
        let differ = zip(a, b).enumerated().filter { $0.element.0.0 != $0.element.1.0 || $0.element.0.1 != $0.element.1.1 }
        #expect(differ.isEmpty, "\(label): \(differ.count) pages differ, first \(differ.first.map { "page \($0.offset): bpf \($0.element.0), syscalls \($0.element.1)" } ?? "")")
        for run in bpf.mappings.flatMap(\.runs) where run.state == .swapped {
            #expect(run.swap != nil, "\(label): a swapped run without its slot")
        }
    }

    @Test(arguments: [1, 2, 3])
    func randomLayouts(seed: UInt64) throws {
        try #require(TestEnvironment.swapAndRoot, "needs root and swap (see EnvironmentTests)")
        var random = SplitMix64(seed: seed)  // a failing layout can be arranged again
        // Shared anonymous memory.
        let shared = try ArrangedMemory(pages: 512, backing: .sharedAnonymous)
        try scramble(shared, fileBacked: false, random: &random)
        try compare(shared.range, "shared anonymous, seed \(seed)")
        // A memfd, mapped whole and mapped again in part at an offset.
        let memfd = try ArrangedMemory(pages: 512, backing: .memfd(name: "pagestat-agree", shared: true))
        try scramble(memfd, fileBacked: true, random: &random)
        try compare(memfd.range, "memfd, seed \(seed)")
        let offset = Int.random(in: 1..<256, using: &random)
        var part = mmap(nil, 128 * memfd.pageSize, PROT_READ, MAP_SHARED, memfd.fd!, off_t(offset * memfd.pageSize))!
        var partLength = 128 * memfd.pageSize
        defer { munmap(part, partLength) }
        let partStart = UInt64(UInt(bitPattern: part))
        try compare(AddressRange(start: partStart, end: partStart + UInt64(128 * memfd.pageSize)), "memfd at offset \(offset), seed \(seed)")
        // The same part, moved with mremap.
        // Grown in place or moved: MREMAP_MAYMOVE to twice the size, which the kernel must find room for.
        let moved = CPagestat_mremap_maymove(part, 128 * memfd.pageSize, 256 * memfd.pageSize)!
        if moved != MAP_FAILED {
            part = moved
            partLength = 256 * memfd.pageSize
            let movedStart = UInt64(UInt(bitPattern: moved))
            try compare(AddressRange(start: movedStart, end: movedStart + UInt64(256 * memfd.pageSize)), "mremap'd memfd, seed \(seed)")
        }
        // A /dev/shm file, truncated below its mapping (pages past the end are none).
        let path = "/dev/shm/pagestat-agree-\(getpid())-\(seed)"
        let fd = try ArrangedLayout.createFile(path, pages: 512)
        defer { close(fd); unlink(path) }
        let tmpfs = try ArrangedMemory(pages: 512, backing: .file(fd: fd, shared: true))
        try scramble(tmpfs, fileBacked: true, random: &random)
        #expect(ftruncate(fd, off_t(400 * tmpfs.pageSize)) == 0)
        try compare(tmpfs.range, "tmpfs file truncated, seed \(seed)")
        // SysV shared memory.
        let shmid = shmget(IPC_PRIVATE, 256 * tmpfs.pageSize, IPC_CREAT | 0o600)
        try #require(shmid >= 0)
        let segment = try #require(shmat(shmid, nil, 0))
        shmctl(shmid, IPC_RMID, nil)
        defer { shmdt(segment) }
        for page in 0..<256 where Bool.random(using: &random) {
            segment.storeBytes(of: 1, toByteOffset: page * tmpfs.pageSize, as: UInt8.self)
        }
        _ = madvise(segment, 128 * tmpfs.pageSize, CPagestat_MADV_PAGEOUT)
        let segmentStart = UInt64(UInt(bitPattern: segment))
        try compare(AddressRange(start: segmentStart, end: segmentStart + UInt64(256 * tmpfs.pageSize)), "SysV, seed \(seed)")
    }
}
