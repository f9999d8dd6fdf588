import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// Address spaces that are mostly empty: the page table is read where it is populated, and the
/// empty stretches between come back as single runs with the right state.
@Suite("Sparse address spaces: huge reservations read by what is populated")
struct SparseAddressSpaceTests {
    let pageSize = UInt64(TestEnvironment.pageSize)

    /// Touches one byte of each page at `offsets` (in pages) of `base`.
    func touch(_ base: UnsafeMutableRawPointer, pages offsets: [UInt64]) {
        for page in offsets { base.storeBytes(of: 0x5a, toByteOffset: Int(page * pageSize), as: UInt8.self) }
    }

    /// Every run's state and page count, in order.
    func shape(_ report: ProcessReport) -> [String] {
        report.mappings.flatMap { $0.runs.map { "\($0.state) \($0.pages)" } }
    }

    @Test func privateReservationOf64TiB() throws {
        let length: UInt64 = 64 << 40
        let total = length / pageSize
        guard let base = mmap(nil, Int(length), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              base != MAP_FAILED else {
            Issue.record("mmap of 64 TiB failed: \(String(cString: strerror(errno)))")
            return
        }
        defer { munmap(base, Int(length)) }
        #expect(madvise(base, Int(length), MADV_NOHUGEPAGE) == 0)
        let oneTiB = (UInt64(1) << 40) / pageSize
        // A page at the start, two 1 TiB in (with a gap between), one at the very end.
        touch(base, pages: [0, oneTiB, oneTiB + 2, total - 1])
        let start = UInt64(UInt(bitPattern: base))
        let report = try scanSelf(AddressRange(start: start, end: start + length))
        #expect(shape(report) == ["present 1", "none \(oneTiB - 1)", "present 1", "none 1", "present 1",
                                  "none \(total - oneTiB - 4)", "present 1"])
    }

    @Test(.needsSwapAndRoot) func sharedReservationWithSwappedAndCachedPages() throws {
        let length: UInt64 = 1 << 40
        let total = length / pageSize
        let memory = try ArrangedMemory(pages: Int(total), backing: .sharedAnonymous, reserve: false)
        let middle = Int(total / 2)
        memory.write(0..<4)
        memory.write(middle..<middle + 8)
        try memory.pageOut(middle..<middle + 4)
        let report = try scanSelf(memory.range)
        #expect(shape(report) == ["present 4", "none \(middle - 4)", "swapped 4", "present 4",
                                  "none \(Int(total) - middle - 8)"])
    }

    @Test func emptyTailThenPopulatedAgainWithinOneChunk() throws {
        // Populated, a stretch longer than the skip threshold, populated again: inside one chunk.
        let pages = 8192
        let memory = try ArrangedMemory(pages: pages, backing: .privateAnonymous)
        try memory.advise(0..<pages, MADV_NOHUGEPAGE)
        memory.write(0..<10)
        memory.write(5000..<5003)
        memory.write(8191..<8192)
        let report = try scanSelf(memory.range)
        #expect(shape(report) == ["present 10", "none 4990", "present 3", "none 3188", "present 1"])
    }

    @Test func emptyEntryHelpers() {
        let soft = PagemapEntry.softDirtyBit
        let present: UInt64 = 1 << 63
        func tail(_ entries: [UInt64]) -> Int { entries.withUnsafeBufferPointer { PageTableWorker.emptyTail($0) } }
        #expect(tail([present, 0, 0, 0]) == 3)
        #expect(tail([present, soft, soft]) == 2)
        #expect(tail([0, soft, 0]) == 1)
        #expect(tail([0, 0, present]) == 0)
        #expect(tail([0, 0]) == 2)
        #expect(tail([]) == 0)
    }
}
