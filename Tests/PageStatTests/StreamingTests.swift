import Foundation
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore
@testable import PageStatLab

/// A scan handed on as it is produced: pieces of a large private mapping arrive in order, never
/// split a run, and add up to exactly what the kernel holds.
@Suite("Streamed scans")
struct StreamingTests {
    /// Records what a scan hands over.
    struct Recorder: ScanConsumer {
        var begun: [(Mapping, AddressRange)] = []
        var pieces: [[PageRun]] = []
        var ended = 0

        mutating func begin(_ mapping: Mapping, scanned: AddressRange) { begun.append((mapping, scanned)) }
        mutating func runs(_ runs: [PageRun]) { pieces.append(runs) }
        mutating func end(use: MemoryUse?) { ended += 1 }
    }

    @Test func largePrivateMappingArrivesInPiecesThatJoinExactly() throws {
        let pageSize = TestEnvironment.pageSize
        // 5 GiB, more than one wave: one page in 16 written (no empty stretch long enough to be
        // skipped), and a dense block across the first wave's end, about 256 Ki pages in.
        let pages = 5 << 18
        let memory = try ArrangedMemory(pages: pages, backing: .privateAnonymous, reserve: false)
        try memory.advise(0..<pages, MADV_NOHUGEPAGE)
        for page in stride(from: 0, to: pages, by: 16) { memory.write(page..<page + 1) }
        let dense = (1 << 18) - 4096..<(1 << 18) + 80_000
        memory.write(dense)

        var recorder = Recorder()
        let scanner = try ProcessScanner(pid: getpid())
        _ = try scanner.scan(ScanOptions(range: memory.range, hugeAndZeroFlags: false), into: &recorder)
        try #require(recorder.begun.count == 1 && recorder.ended == 1)
        #expect(recorder.begun[0].1 == memory.range)
        #expect(recorder.pieces.count >= 2, "a 5 GiB mapping without a file side should arrive in pieces")

        let runs = recorder.pieces.flatMap { $0 }
        // Contiguous, covering the range, and never two runs that should have been one.
        var next = memory.range.start
        for (index, run) in runs.enumerated() {
            #expect(run.start == next)
            next = run.start + run.pages * UInt64(pageSize)
            if index > 0 {
                #expect(!runs[index - 1].continues(run.state, run.flags, run.kernelFlags), "run \(index) should have joined the one before")
            }
        }
        #expect(next == memory.range.end)
        // Page by page: what was written is present, the rest none.
        var expected = [PageState](repeating: .none, count: pages)
        for page in stride(from: 0, to: pages, by: 16) { expected[page] = .present }
        for page in dense { expected[page] = .present }
        let states = runs.flatMap { Array(repeating: $0.state, count: Int($0.pages)) }
        #expect(states == expected)
        // A hand-over ends inside the dense block (a wave ends after 256 Ki pages of chunks of
        // 64 Ki, the first one perhaps shortened to a 2 MiB boundary)...
        var boundaries: [Int] = []
        var handed = 0
        for piece in recorder.pieces.dropLast() {
            handed += piece.reduce(0) { $0 + Int($1.pages) }
            boundaries.append(handed)
        }
        #expect(boundaries.contains { dense.contains($0) }, "hand-overs end at pages \(boundaries)")
        // ...and yet the dense block is one run.
        #expect(runs.contains { $0.state == .present && $0.pages >= UInt64(dense.count) })
    }

    @Test(.needsSwapAndRoot) func largeSharedMappingIsSettledInPiecesThatJoinExactly() throws {
        // 1.5 GiB of shared memory, more than one wave: one page in 16 written, and a dense
        // block across the first wave's end, half of it paged out.
        let pages = 3 << 17
        let memory = try ArrangedMemory(pages: pages, backing: .sharedAnonymous, reserve: false)
        for page in stride(from: 0, to: pages, by: 16) { memory.write(page..<page + 1) }
        let dense = (1 << 18) - 2048..<(1 << 18) + 2048
        memory.write(dense)
        // Until smaps counts them: MADV_PAGEOUT skips a page another test's fork maps meanwhile.
        try #require(try memory.pageOut(dense.lowerBound..<dense.lowerBound + 2048, untilSwapped: 2048))
        try #require(try memory.pageOut((1 << 18) + 1024..<dense.upperBound, untilSwapped: 3072))

        var recorder = Recorder()
        let scanner = try ProcessScanner(pid: getpid())
        var options = ScanOptions(range: memory.range, hugeAndZeroFlags: false)
        options.engine = .syscalls
        _ = try scanner.scan(options, into: &recorder)
        #expect(recorder.pieces.count >= 2, "a 1.5 GiB mapping should arrive in pieces")
        let runs = recorder.pieces.flatMap { $0 }
        for index in runs.indices.dropFirst() {
            #expect(!runs[index - 1].continues(runs[index].state, runs[index].flags, runs[index].kernelFlags)
                    || runs[index - 1].swap != nil, "run \(index) should have joined the one before")
        }
        var expected = [PageState](repeating: .none, count: pages)
        for page in stride(from: 0, to: pages, by: 16) { expected[page] = .present }
        for page in dense { expected[page] = .present }
        for page in dense.lowerBound..<dense.lowerBound + 2048 { expected[page] = .swapped }
        for page in (1 << 18) + 1024..<dense.upperBound { expected[page] = .swapped }
        let states = runs.flatMap { Array(repeating: $0.state, count: Int($0.pages)) }
        #expect(states.count == pages)
        let wrong = zip(states, expected).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
        #expect(wrong.isEmpty, "\(wrong.count) pages wrong, first \(wrong.first.map { "\($0): \(states[$0]) for \(expected[$0])" } ?? "")")
    }

    @Test func streamedJSONEqualsTheMaterialisedReport() throws {
        let memory = try ArrangedMemory(pages: 4096, backing: .privateAnonymous)
        memory.write(0..<100)
        memory.write(2000..<2100)
        let scanner = try ProcessScanner(pid: getpid())
        let options = ScanOptions(range: memory.range)
        var streamed: [UInt8] = []
        var stream = JSONReportStream(pid: getpid(), pageSize: UInt64(TestEnvironment.pageSize), privileged: scanner.privileged,
                                      view: .truth) { streamed.append(contentsOf: $0) }
        let result = try scanner.scan(options, into: &stream)
        stream.finish(notes: result.notes)
        let materialised = ReportRenderer.json(try scanner.scan(options))
        #expect(String(decoding: streamed, as: UTF8.self) == materialised)
    }
}
