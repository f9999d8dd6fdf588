import CPagestat
import Foundation
import SystemPackage
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// The BPF walker against the syscall engine's page-cache reads on a 4 GiB memfd with every
/// other page swapped, for BENCHMARKS.md. Runs only when asked (it writes 4 GiB and swaps 2 GiB):
///   PAGESTAT_XW_BENCH=1 swift test -c release -Xswiftc -enable-testing --disable-xctest --filter XArrayWalkerBenchmark
@Suite(.serialized) struct XArrayWalkerBenchmark {
    static let enabled = ProcessInfo.processInfo.environment["PAGESTAT_XW_BENCH"] != nil

    /// Median wall time of `runs` calls of `body`, in milliseconds.
    func median(_ runs: Int = 5, _ body: () throws -> Void) throws -> Double {
        var times: [Double] = []
        for _ in 0..<runs { times.append(try Stopwatch.seconds(body) * 1e3) }
        return Stopwatch.median(times)
    }

    @Test(.enabled(if: enabled, "a benchmark, run only with PAGESTAT_XW_BENCH=1"), .needsSwapAndRoot, arguments: ["resident between", "holes between"])
    func fourGiBEveryOtherPageSwapped(layout: String) throws {
        let walker = try XArrayWalker.shared()
        let page = TestEnvironment.pageSize
        let pages = (4 << 30) / page
        let fd = CPagestat_memfd_create("xw-bench", 0)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(ftruncate(fd, off_t(pages * page)) == 0)
        let base = try #require(mmap(nil, pages * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
        defer { munmap(base, pages * page) }
        let step = layout == "holes between" ? 2 : 1
        for index in stride(from: 0, to: pages, by: step) { base.storeBytes(of: UInt64(index + 1), toByteOffset: index * page, as: UInt64.self) }
        for index in stride(from: 0, to: pages, by: 2) { madvise(base + index * page, page, CPagestat_MADV_PAGEOUT) }
        // Our own mapping would make mincore and cachestat differ from the scanner's view: gone.
        munmap(base, pages * page)
        let object = PageCacheObject(fd: FileDescriptor(rawValue: dup(fd)))

        var swapped = 0, runs = 0
        let walk = try median {
            swapped = 0; runs = 0
            try walker.walk(fd: FileDescriptor(rawValue: fd), first: 0, count: UInt64(pages)) { run in
                runs += 1
                if case .swap = run.kind { swapped += Int(run.pages) }
            }
        }
        var seeks = 0
        let lseek = try median {
            seeks = 0
            var offset: UInt64 = 0
            let end = UInt64(pages * page)
            while offset < end, let data = try object.nextData(from: offset) {
                seeks += 1
                guard data < end else { break }
                offset = try object.nextHole(from: data) ?? end
                seeks += 1
            }
        }
        var evicted: UInt64 = 0
        let cachestat = try median(3) {
            evicted = 0
            for index in 0..<pages { evicted += try object.cachestat(offset: UInt64(index * page), length: UInt64(page)).evicted }
        }
        print("""
            XArrayWalkerBenchmark [\(layout)]: 4 GiB memfd, \(swapped) pages swapped per the walker, \(evicted) per cachestat
              BPF walker (runs with swap locations): \(String(format: "%.1f", walk)) ms, \(runs) runs
              lseek SEEK_DATA/SEEK_HOLE (data or hole only): \(String(format: "%.1f", lseek)) ms, \(seeks) calls
              lseek + cachestat per page (resident or swapped, no location): \(String(format: "%.1f", cachestat + lseek)) ms
            """)
        #expect(UInt64(swapped) == evicted)
    }
}
