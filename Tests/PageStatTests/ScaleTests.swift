import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// Scans this process with one worker or many, object counts on or off: the same truth.
func scanSelf(_ range: AddressRange, workers: Int) throws -> ProcessReport {
    let scanner = try ProcessScanner(pid: getpid())
    scanner.workers = workers
    return try scanner.scan(ScanOptions(range: range))
}

@Suite("Whole-object counts and parallel scans give the per-page truth (needs root and swap)",
       .needsSwapAndRoot)
struct ScaleTests {
    /// The shortcut the object's counts allow for a whole-object shared mapping of `memory`.
    func shortcut(_ memory: ArrangedMemory) throws -> ObjectCountCache.Shortcut? {
        let scanner = try ProcessScanner(pid: getpid())
        var options = ScanOptions(range: memory.range)
        options.fileSide = false
        let report = try scanner.scan(options)
        var mapping = try #require(report.mappings.first)
        // Without the file side, pending pages come back unknown; mark them pending again.
        mapping.runs = mapping.runs.map { run in
            var run = run
            if run.state == .unknown { run.flags.insert(.pendingFileSide) }
            return run
        }
        let object = try PageCacheObject.open(pid: getpid(), range: memory.range)
        var counts = ObjectCountCache(mappings: try ProcMaps.read(pid: getpid()))
        return counts.shortcut(report: mapping, object: object, pageSize: UInt64(TestEnvironment.pageSize))
    }

    @Test func everyUnmappedPageSwapped() throws {
        let memory = try ArrangedMemory(pages: 64, backing: .sharedAnonymous)
        memory.write(0..<64)
        try pageOut(memory, 0..<48, expectSwapped: 48)
        #expect(try shortcut(memory) == .all(.swapped))
        #expect(pageStates(try scanSelf(memory.range)) == pages(48, .swapped) + pages(16, .present))
    }

    @Test func swappedAndHolesSplitByLseekAlone() throws {
        let memory = try ArrangedMemory(pages: 64, backing: .sharedAnonymous)
        memory.write(0..<32)
        try pageOut(memory, 0..<16, expectSwapped: 16)
        #expect(try shortcut(memory) == .data(.swapped))
        #expect(pageStates(try scanSelf(memory.range)) == pages(16, .swapped) + pages(16, .present) + pages(32, .none))
    }

    @Test func longStretchesCountedThroughOurOwnSmaps() throws {
        // Pending stretches of 128 pages: one all swapped, one half holes and half swapped (lseek
        // splits it), one all holes; resident pages between them.
        let memory = try ArrangedMemory(pages: 512, backing: .sharedAnonymous)
        memory.write(0..<128)
        memory.write(192..<384)
        try pageOut(memory, 0..<128, expectSwapped: 128)
        try pageOut(memory, 192..<256, expectSwapped: 192)
        #expect(try shortcut(memory) == .data(.swapped))
        let object = try PageCacheObject.open(pid: getpid(), range: memory.range)
        #expect(try object.swappedPages(inStretches: [(0, 128), (128, 128), (384, 128)]) == [128, 64, 0])
        #expect(pageStates(try scanSelf(memory.range)) == pages(128, .swapped) + pages(64, .none) + pages(64, .swapped)
                + pages(128, .present) + pages(128, .none))
    }

    @Test func cachedAndHolesSplitByLseekAlone() throws {
        let memory = try ArrangedMemory(pages: 64, backing: .memfd(name: "scale-cached", shared: true))
        try memory.pwrite(0..<16)
        memory.write(16..<32)
        #expect(try shortcut(memory) == .data(.cached))
        #expect(pageStates(try scanSelf(memory.range)) == pages(16, .cached) + pages(16, .present) + pages(32, .none))
    }

    @Test func nothingWrittenIsAllHoles() throws {
        let memory = try ArrangedMemory(pages: 64, backing: .sharedAnonymous)
        #expect(try shortcut(memory) == .all(.none))
        #expect(pageStates(try scanSelf(memory.range)) == pages(64, .none))
    }

    @Test func mixedObjectsFallBackToPageByPage() throws {
        let memory = try ArrangedMemory(pages: 64, backing: .memfd(name: "scale-mixed", shared: true))
        try memory.pwrite(0..<16)
        memory.write(16..<48)
        try pageOut(memory, 32..<48, expectSwapped: 16)
        #expect(try shortcut(memory) == nil)
        #expect(pageStates(try scanSelf(memory.range)) == pages(16, .cached) + pages(16, .present) + pages(16, .swapped) + pages(16, .none))
        // A range that is not the whole mapping is never settled from the object's counts.
        let pageSize = UInt64(TestEnvironment.pageSize)
        let part = AddressRange(start: memory.address + 8 * pageSize, end: memory.address + 40 * pageSize)
        #expect(pageStates(try scanSelf(part)) == pages(8, .cached) + pages(16, .present) + pages(8, .swapped))
    }

    @Test func largeScansOnEveryCoreMatchOneCore() throws {
        // Three chunks of page-table work, runs crossing chunk boundaries, both mapping kinds.
        let count = 3 * Int(ProcessScanner.chunkPages) - 1000
        for backing in [ArrangedMemory.Backing.sharedAnonymous, .privateAnonymous] {
            let memory = try ArrangedMemory(pages: count, backing: backing)
            memory.write(0..<100_000)
            try pageOut(memory, 30_000..<70_000, expectSwapped: 40_000)
            let parallel = try scanSelf(memory.range, workers: 2)
            let serial = try scanSelf(memory.range, workers: 1)
            #expect(parallel.mappings.map(\.runs) == serial.mappings.map(\.runs))
            #expect(pageStates(parallel) == pages(30_000, .present) + pages(40_000, .swapped) + pages(30_000, .present)
                    + pages(count - 100_000, .none))
            #expect(parallel.counts.swapped == (try smapsSwappedPages(memory.address)))
        }
    }
}
