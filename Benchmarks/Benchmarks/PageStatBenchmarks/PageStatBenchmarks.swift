import Benchmark
import Glibc
import PageStat

/// Pages in each arranged region: 256 MiB.
let regionPages = 65536

/// A shared anonymous region with the seed's middle layout: half written, a quarter of it paged
/// out (needs swap), the rest never touched. Built once, outside the measured part, with mmap
/// and MADV_PAGEOUT (21) directly: the lab is not part of the library.
struct Region: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    var range: AddressRange {
        let start = UInt64(UInt(bitPattern: base))
        return AddressRange(start: start, end: start + UInt64(regionPages * 4096))
    }
}
nonisolated(unsafe) let sharedRegion: Region? = {
    let length = regionPages * 4096
    guard let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), base != MAP_FAILED else { return nil }
    for page in 0..<regionPages / 2 { base.storeBytes(of: UInt64(page) | 1, toByteOffset: page * 4096, as: UInt64.self) }
    _ = madvise(base, length / 4, 21)
    return Region(base: base)
}()

/// A report with one run per page: the worst case for the renderer.
let fragmentedReport: ProcessReport = {
    let pageSize = UInt64(ProcFS.pageSize)
    var builder = RunBuilder(pageSize: pageSize)
    for page in 0..<UInt64(1 << 18) {
        builder.append(start: 0x7f00_0000_0000 + page * pageSize, pages: 1,
                       state: page % 2 == 0 ? .swapped : .none, flags: page % 4 == 0 ? [.file] : [])
    }
    let mapping = Mapping(range: AddressRange(start: 0x7f00_0000_0000, end: 0x7f00_0000_0000 + (1 << 18) * pageSize),
                          permissions: "rw-s", offset: 0, deviceMajor: 0, deviceMinor: 1, inode: 1,
                          path: "/dev/zero (deleted)", kind: .sharedAnon)
    return ProcessReport(pid: 1, pageSize: Int(pageSize), privileged: true, view: .truth, notes: [],
                         mappings: [MappingReport(mapping: mapping, scanned: mapping.range, runs: builder.runs)])
}()

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration.maxDuration = .seconds(3)
    Benchmark.defaultConfiguration.metrics = [.wallClock, .cpuTotal, .mallocCountTotal, .peakMemoryResident]

    // Side by side on the same range: the kernel's raw read, and pagestat's whole truth.
    Benchmark("kernel pagemap read, 1024 entries per read, 256 MiB shared") { benchmark in
        guard let region = sharedRegion else { return }
        for _ in benchmark.scaledIterations {
            blackHole(try? RawPagemapRead.read(pid: getpid(), range: region.range, entriesPerRead: 1024))
        }
    }
    Benchmark("pagestat scan, 256 MiB shared (present, swapped, none)") { benchmark in
        guard let region = sharedRegion else { return }
        for _ in benchmark.scaledIterations {
            blackHole(try? ProcessScanner(pid: getpid()).scan(ScanOptions(range: region.range)))
        }
    }

    // Pure user-space work.
    Benchmark("render JSON, 262144 runs", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            var bytes = 0
            ReportRenderer.writeJSON(fragmentedReport) { bytes += $0.count }
            blackHole(bytes)
        }
    }
    Benchmark("parse /proc/self/maps") { benchmark in
        let maps = (try? ProcFS.readText("/proc/self/maps", pid: getpid(), what: "maps")) ?? ""
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(ProcMaps.parse(maps)) }
    }
}
