import CPagestat
import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// Pages `pages` of `memory` out and waits until smaps (the kernel's own count) shows `expected`
/// swapped pages in its mapping; MADV_PAGEOUT skips folios still in another CPU's LRU batch.
func pageOut(_ memory: ArrangedMemory, _ pages: Range<Int>, expectSwapped expected: Int) throws {
    if try !memory.pageOut(pages, untilSwapped: expected) {
        Issue.record("MADV_PAGEOUT did not swap \(expected) pages of \(memory.range)")
    }
}

/// The pages smaps counts as swapped in the mapping at `address`.
func smapsSwappedPages(_ address: UInt64, pid: Int32 = getpid()) throws -> UInt64 {
    try smapsEntry(pid: pid, containing: address)["Swap"] / UInt64(TestEnvironment.pageSize)
}

/// Which pages of a shared object the kernel holds in memory (page cache or swap cache):
/// mincore(2) on a fresh, untouched mapping of it.
func residentPages(fd: Int32, pages: Int) throws -> [Bool] {
    let length = pages * TestEnvironment.pageSize
    let address = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0)
    try #require(address != MAP_FAILED)
    defer { munmap(address, length) }
    var vector = [UInt8](repeating: 0, count: pages)
    try #require(mincore(address, length, &vector) == 0)
    return vector.map { $0 & 1 != 0 }
}

@Suite("Page states on memory arranged by the test (needs root and swap)",
       .needsSwapAndRoot)
struct RealMemoryTests {
    @Test func sharedAnonymousMemory() throws {
        let memory = try ArrangedMemory(pages: 48, backing: .sharedAnonymous)
        memory.write(0..<32)
        try pageOut(memory, 0..<16, expectSwapped: 16)

        let truth = try scanSelf(memory.range)
        #expect(pageStates(truth) == pages(16, .swapped) + pages(16, .present) + pages(16, .none))
        #expect(truth.mappings.count == 1 && truth.mappings[0].mapping.kind == .sharedAnon)
        #expect(truth.counts.swapped == (try smapsSwappedPages(memory.address)))
        #expect(pageFlags(truth)[16].isSuperset(of: [.file]))
        // The gap itself: pagemap reads the swapped pages as never touched.
        let kernel = try scanSelf(memory.range, view: .kernel)
        #expect(pageStates(kernel) == pages(16, .none) + pages(16, .present) + pages(16, .none))
    }

    @Test func memfdWrittenPwrittenSwappedAndUntouched() throws {
        let memory = try ArrangedMemory(pages: 64, backing: .memfd(name: "test-memfd", shared: true))
        try memory.pwrite(0..<16)
        memory.write(16..<48)
        try pageOut(memory, 32..<48, expectSwapped: 16)

        let truth = try scanSelf(memory.range)
        #expect(pageStates(truth) == pages(16, .cached) + pages(16, .present) + pages(16, .swapped) + pages(16, .none))
        #expect(truth.mappings[0].mapping.kind == .shmem)
        #expect(truth.counts.swapped == (try smapsSwappedPages(memory.address)))
        #expect(truth.notes.isEmpty)
    }

    @Test func tmpfsFile() throws {
        let path = "/dev/shm/pagestat-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { close(fd); unlink(path) }
        try #require(ftruncate(fd, off_t(64 * TestEnvironment.pageSize)) == 0)
        let memory = try ArrangedMemory(pages: 64, backing: .file(fd: fd, shared: true))
        memory.write(0..<40)
        try memory.pwrite(56..<64)
        try pageOut(memory, 0..<24, expectSwapped: 24)

        let truth = try scanSelf(memory.range)
        #expect(pageStates(truth) == pages(24, .swapped) + pages(16, .present) + pages(16, .none) + pages(8, .cached))
        #expect(truth.mappings[0].mapping.kind == .shmem)
        #expect(truth.counts.swapped == (try smapsSwappedPages(memory.address)))
    }

    @Test func privateAnonymousMemory() throws {
        let memory = try ArrangedMemory(pages: 64, backing: .privateAnonymous)
        memory.write(0..<32)
        _ = memory.read(32..<48)
        try pageOut(memory, 0..<16, expectSwapped: 16)
        try memory.installGuard(48..<56)

        let truth = try scanSelf(memory.range)
        #expect(pageStates(truth) == pages(16, .swapped) + pages(16, .present) + pages(16, .present) + pages(16, .none))
        let flags = pageFlags(truth)
        #expect(flags[16].contains(.exclusive))
        #expect(flags[32].contains(.zeroPage))
        #expect(!flags[16].contains(.zeroPage))
        #expect(flags[48].contains(.guardRegion) && !flags[56].contains(.guardRegion))
        let swappedRun = try #require(truth.mappings[0].runs.first)
        // Privileged: the swap entry's location is real swap (a type below the special ones).
        let location = try #require(swappedRun.swap)
        #expect(location.type < PagemapEntry.firstSpecialSwapType && location.offset > 0)
        // (The swapped pages may be several runs: a run ends where the swap slots jump.)
        #expect(truth.mappings[0].runs.first { $0.state == .present }?.pfn != nil)
        #expect(truth.counts.swapped == (try smapsSwappedPages(memory.address)))
        // pagemap is right for private memory, but for guard markers its bit 62 reads "swapped".
        let kernel = pageStates(try scanSelf(memory.range, view: .kernel))
        #expect(kernel == pages(16, .swapped) + pages(32, .present) + pages(8, .swapped) + pages(8, .none))
    }

    @Test func regularFileMappedCachedAndDropped() throws {
        let path = "/var/tmp/pagestat-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { close(fd); unlink(path) }
        let pageSize = TestEnvironment.pageSize
        var block = [UInt8](repeating: 0x42, count: pageSize)
        for page in 0..<64 {
            try #require(block.withUnsafeBytes { pwrite(fd, $0.baseAddress, pageSize, off_t(page * pageSize)) } == pageSize)
        }
        fsync(fd)
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
        posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM)
        for page in 0..<16 {
            _ = block.withUnsafeMutableBytes { pread(fd, $0.baseAddress, pageSize, off_t(page * pageSize)) }
        }
        let memory = try ArrangedMemory(pages: 64, backing: .file(fd: fd, shared: false))
        try memory.advise(0..<64, MADV_RANDOM)
        _ = memory.read(32..<48)

        let truth = try scanSelf(memory.range)
        #expect(pageStates(truth) == pages(16, .cached) + pages(16, .none) + pages(16, .present) + pages(16, .none))
        #expect(truth.mappings[0].mapping.kind == .file)
        // Dropping the cache again leaves only the mapped pages.
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
        #expect(pageStates(try scanSelf(memory.range)) == pages(32, .none) + pages(16, .present) + pages(16, .none))
    }

    @Test func privateMappingOfAMemfd() throws {
        // MAP_PRIVATE over shmem: written pages become private anonymous copies; the rest are
        // the memfd's own pages, which the file side settles.
        let memfd = try ArrangedMemory(pages: 32, backing: .memfd(name: "test-private", shared: true))
        try memfd.pwrite(0..<16)
        let fd = try #require(memfd.fd)
        let privateView = try ArrangedMemory(pages: 32, backing: .file(fd: fd, shared: false))
        privateView.write(8..<12)
        let truth = try scanSelf(privateView.range)
        #expect(pageStates(truth) == pages(8, .cached) + pages(4, .present) + pages(4, .cached) + pages(16, .none))
        #expect(truth.mappings[0].mapping.kind == .shmem)
    }
}

@Suite("Scanning without swap or root still tells the truth it can")
struct BasicMemoryTests {
    @Test func privateAnonymousWithoutSwap() throws {
        let memory = try ArrangedMemory(pages: 16, backing: .privateAnonymous)
        memory.write(0..<8)
        let truth = try scanSelf(memory.range)
        #expect(pageStates(truth) == pages(8, .present) + pages(8, .none))
        #expect(truth.mappings[0].runs[0].flags.contains(.exclusive))
    }

    @Test func partialRangeIsClamped() throws {
        let memory = try ArrangedMemory(pages: 16, backing: .privateAnonymous)
        memory.write(0..<16)
        let pageSize = UInt64(TestEnvironment.pageSize)
        let range = AddressRange(start: memory.address + 4 * pageSize, end: memory.address + 6 * pageSize)
        let report = try scanSelf(range)
        #expect(report.mappings.count == 1)
        #expect(report.mappings[0].scanned == range)
        #expect(pageStates(report) == pages(2, .present))
    }

    @Test func unmappedRangeIsAnError() throws {
        let scanner = try ProcessScanner(pid: getpid())
        #expect(throws: PageStatError.rangeNotMapped(pid: getpid(), range: AddressRange(start: 0x1000, end: 0x2000))) {
            try scanner.scan(ScanOptions(range: AddressRange(start: 0x1000, end: 0x2000)))
        }
    }

    @Test func noSuchProcess() {
        #expect(throws: PageStatError.noSuchProcess(pid: 999_999_999)) { try ProcessScanner(pid: 999_999_999) }
    }

    @Test func runsCoverEveryMappingExactly() throws {
        let report = try ProcessScanner(pid: getpid()).scan()
        #expect(!report.mappings.isEmpty)
        let pageSize = UInt64(report.pageSize)
        for mapping in report.mappings {
            var next = mapping.scanned.start
            for run in mapping.runs {
                #expect(run.start == next)
                #expect(run.pages > 0)
                next = run.start + run.pages * pageSize
            }
            #expect(next == mapping.scanned.end, "\(mapping.mapping.path)")
        }
    }
}

@Suite("Flags and fallbacks on arranged memory")
struct FlagAndFallbackTests {
    @Test func transparentHugePagesAreFlagged() throws {
        let huge = 2 << 20
        let memory = try ArrangedMemory(pages: 2 * huge / TestEnvironment.pageSize, backing: .privateAnonymous)
        // The 2 MiB-aligned half of the mapping, asked for huge pages and written.
        let alignedOffset = (huge - Int(memory.address % UInt64(huge))) % huge
        let first = alignedOffset / TestEnvironment.pageSize
        let hugePages = huge / TestEnvironment.pageSize
        try memory.advise(first..<first + hugePages, 14 /* MADV_HUGEPAGE */)
        memory.write(first..<first + hugePages)
        let anonHuge = try smapsEntry(containing: memory.address)["AnonHugePages"]
        try #require(anonHuge >= UInt64(huge), "the kernel gave no huge page (THP off or no memory): nothing to check")
        _ = memory.read(first + hugePages..<first + hugePages + 8)  // the zero page beside it
        let flags = pageFlags(try scanSelf(memory.range))
        #expect(flags[first..<first + hugePages].allSatisfy { $0.contains(.thp) })
        #expect(first == 0 || !flags[0].contains(.thp))
        // As root the flags come from PFNs and kpageflags; PAGEMAP_SCAN must agree.
        if TestEnvironment.isRoot, let zeroPFN = PFNFlagSource.zeroPageFrame {
            let scanner = try ProcessScanner(pid: getpid())
            let worker = PageTableWorker(pid: getpid(), pageSize: UInt64(TestEnvironment.pageSize),
                                         pagemap: scanner.pagemap.fileDescriptor, scanCategories: scanner.scanCategories,
                                         batchPages: memory.pages)
            let fromScan = try worker.hugeAndZeroRegions(memory.range)
            let entries = try Pagemap(pid: getpid())
            var buffer = [UInt64](repeating: 0, count: memory.pages)
            let got = try buffer.withUnsafeMutableBufferPointer { try entries.read(at: memory.address, into: $0) }
            let source = PFNFlagSource(zeroPFN: zeroPFN, kpageflags: try KPageTable.kpageflags(),
                                       pageSize: UInt64(TestEnvironment.pageSize))
            let fromPFNs = try buffer.withUnsafeBufferPointer { try source.regions(UnsafeBufferPointer(rebasing: $0[0..<got]), firstAddress: memory.address) }
            #expect(fromScan.map(\.0) == fromPFNs.map(\.0))
            #expect(fromScan.map(\.1) == fromPFNs.map(\.1))
            #expect(fromPFNs.contains { $0.1 == .zeroPage })
        }
    }

    /// A new mapping carries VM_SOFTDIRTY ("sd" in smaps VmFlags) only where the kernel tracks soft-dirty.
    static let softDirtyTracked: Bool = {
        guard let memory = try? ArrangedMemory(pages: 1, backing: .privateAnonymous),
              let entry = try? smapsEntry(containing: memory.address) else { return false }
        return entry.vmFlags.contains("sd")
    }()

    @Test(.requiresKernel("soft-dirty", softDirtyTracked, "soft-dirty tracking, which this kernel lacks (CONFIG_MEM_SOFT_DIRTY off: no 'sd' in smaps VmFlags)"))
    func softDirtyFollowsClearRefs() throws {
        let memory = try ArrangedMemory(pages: 4, backing: .privateAnonymous)
        memory.write(0..<2)
        let fd = open("/proc/self/clear_refs", O_WRONLY)
        try #require(fd >= 0)
        let cleared = write(fd, "4", 1)
        close(fd)
        try #require(cleared == 1)
        memory.write(0..<1)
        let flags = pageFlags(try scanSelf(memory.range))
        #expect(flags[0].contains(.softDirty))
        #expect(!flags[1].contains(.softDirty))
    }

    @Test(.needsSwapAndRoot)
    func withoutCachestatShmemStillSplitsHolesFromData() throws {
        let memory = try ArrangedMemory(pages: 48, backing: .memfd(name: "test-fallback", shared: true))
        try memory.pwrite(0..<16)
        memory.write(16..<32)
        try pageOut(memory, 16..<32, expectSwapped: 16)
        let object = try PageCacheObject.open(pid: getpid(), range: memory.range)
        var states: [PageState] = []
        // Swapped pages look resident to mincore while they sit in the swap cache; without
        // cachestat they are told apart by counting swap entries through our own smaps.
        let inSwapCache = try residentPages(fd: try #require(memory.fd), pages: 48)[16..<32].filter { $0 }.count
        print("withoutCachestat: \(inSwapCache) of 16 swapped pages still in the swap cache")
        try SyscallFileSide(object: object, useCachestat: false).resolve(first: 0, count: 48) { count, state, _, _ in
            states += pages(Int(count), state)
        }
        #expect(states == pages(16, .cached) + pages(16, .swapped) + pages(16, .none))
        // With cachestat they are told apart.
        states = []
        try SyscallFileSide(object: object).resolve(first: 0, count: 48) { count, state, _, _ in states += pages(Int(count), state) }
        #expect(states == pages(16, .cached) + pages(16, .swapped) + pages(16, .none))
    }
}

@Suite("userfaultfd write-protection on arranged memory (needs root)",
       .requires(TestEnvironment.isRoot, "root for userfaultfd (vm.unprivileged_userfaultfd may be 0)"))
struct UffdWriteProtectTests {
    @Test func privatePagesCarryTheUffdWPBit() throws {
        let memory = try ArrangedMemory(pages: 8, backing: .privateAnonymous)
        memory.write(0..<4)
        let uffd = try memory.writeProtect(0..<8)
        defer { close(uffd) }
        let report = try scanSelf(memory.range)
        let flags = pageFlags(report)
        #expect(pageStates(report).prefix(4).allSatisfy { $0 == .present })
        #expect(flags[0..<4].allSatisfy { $0.contains(.uffdWP) })
    }

    @Test func sharedMemoryMarkersAreNotSwap() throws {
        // Write-protected shmem: present pages carry uffd-wp; pages that are not there get a
        // uffd-wp PTE marker (bit 62 set, swap type 31), which the raw view calls swapped.
        let memory = try ArrangedMemory(pages: 8, backing: .memfd(name: "uffd-wp", shared: true))
        memory.write(0..<4)
        let uffd = try memory.writeProtect(0..<8)
        defer { close(uffd) }
        let truth = try scanSelf(memory.range)
        #expect(pageStates(truth) == pages(4, .present) + pages(4, .none))
        #expect(pageFlags(truth)[0..<4].allSatisfy { $0.contains(.uffdWP) })
        let kernel = pageStates(try scanSelf(memory.range, view: .kernel))
        // Markers need UFFD_FEATURE_WP_UNPOPULATED (6.4+); this machine's kernel has it.
        #expect(pageFlags(truth)[4..<8].allSatisfy { $0.contains([.nonSwapEntry, .uffdWP]) })
        #expect(kernel == pages(4, .present) + pages(4, .swapped))
    }
}
