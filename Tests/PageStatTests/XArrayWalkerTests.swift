import CPagestat
import Foundation
import SystemPackage
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// What one page index holds, expanded from the walker's runs (swap with its own offset).
enum XSlot: Equatable, CustomStringConvertible {
    case hole, resident, swap(type: UInt8, offset: UInt64), shadow

    var description: String {
        switch self {
        case .hole: "hole"
        case .resident: "resident"
        case .swap(let type, let offset): "swap(\(type):\(offset))"
        case .shadow: "shadow"
        }
    }

    /// The same page without its swap location, to compare with what cachestat can tell.
    var coarse: XSlot { if case .swap = self { .swap(type: 0, offset: 0) } else { self } }
}

/// The walker's runs over [first, first + count), checked to cover the range exactly, in order,
/// with no two adjacent runs that should have been one.
func walkRuns(_ walker: XArrayWalker, fd: Int32, first: UInt64, count: UInt64) throws -> [XArrayRun] {
    var runs: [XArrayRun] = []
    try walker.walk(fd: FileDescriptor(rawValue: fd), first: first, count: count) { runs.append($0) }
    var next = first
    for run in runs {
        #expect(run.first == next, "runs must be contiguous: \(runs)")
        #expect(run.pages > 0)
        next = run.end
    }
    #expect(next == first + count, "runs must cover the range exactly")
    for (a, b) in zip(runs, runs.dropFirst()) {
        var merged = a
        let mergeable = merged.absorb(b)
        #expect(!mergeable, "adjacent runs \(a) and \(b) should have been one")
    }
    return runs
}

/// Every page of the runs, in order.
func expand(_ runs: [XArrayRun]) -> [XSlot] {
    runs.flatMap { run -> [XSlot] in
        switch run.kind {
        case .hole: Array(repeating: .hole, count: Int(run.pages))
        case .resident: Array(repeating: .resident, count: Int(run.pages))
        case .shadow: Array(repeating: .shadow, count: Int(run.pages))
        case let .swap(type, offset): (0..<run.pages).map { .swap(type: type, offset: offset + $0) }
        }
    }
}

/// What cachestat(2) says of each page of `fd` in [0, pages): in the page cache (resident), a
/// value entry (nr_evicted: a swap entry on shmem, a shadow elsewhere), or neither (hole).
func cachestatTruth(fd: Int32, pages: Int, shmem: Bool) -> [XSlot] {
    (0..<pages).map { index in
        var range = CPagestat_cachestat_range(off: UInt64(index * TestEnvironment.pageSize), len: UInt64(TestEnvironment.pageSize))
        var stat = CPagestat_cachestat()
        guard CPagestat_cachestat(fd, &range, &stat) == 0 else { return .hole }
        if stat.nr_cache > 0 { return .resident }
        if stat.nr_evicted > 0 { return shmem ? .swap(type: 0, offset: 0) : .shadow }
        return .hole
    }
}

/// A page's test content: its index and a tag in every 8-byte word, so a page read back from
/// swap names itself.
func patternPage(index: Int, tag: UInt64) -> [UInt8] {
    let word = tag ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
    var bytes = [UInt8](repeating: 0, count: TestEnvironment.pageSize)
    bytes.withUnsafeMutableBytes { raw in
        for i in 0..<(TestEnvironment.pageSize / 8) { raw.storeBytes(of: word &+ UInt64(i), toByteOffset: i * 8, as: UInt64.self) }
    }
    return bytes
}

/// The layout test 1 arranges on any shared object of 256 pages, mapped at `base` (MAP_SHARED),
/// writable through `fd`: holes, pages written through the mapping, pages written with pwrite
/// only, pages paged out, pages written and punched out again, and every other page paged out.
func arrangeLayout(base: UnsafeMutableRawPointer, fd: Int32) throws {
    let page = TestEnvironment.pageSize
    func touch(_ pages: Range<Int>) {
        for index in pages { base.storeBytes(of: UInt64(index + 1), toByteOffset: index * page, as: UInt64.self) }
    }
    touch(16..<48)
    for index in 48..<64 {
        let bytes = patternPage(index: index, tag: 1)
        #expect(pwrite(fd, bytes, page, off_t(index * page)) == page)
    }
    touch(64..<128)
    #expect(madvise(base + 64 * page, 64 * page, CPagestat_MADV_PAGEOUT) == 0)
    touch(128..<160)
    #expect(CPagestat_punch_hole(fd, off_t(128 * page), off_t(32 * page)) == 0)
    touch(160..<192)
    for index in stride(from: 160, to: 192, by: 2) {
        #expect(madvise(base + index * page, page, CPagestat_MADV_PAGEOUT) == 0)
    }
}

/// Checks the walker against cachestat page by page over the arranged layout, and that the
/// kernel did swap some of it (else the test would prove nothing about swap entries).
func checkLayout(_ walker: XArrayWalker, fd: Int32, what: String) throws {
    let runs = try walkRuns(walker, fd: fd, first: 0, count: 256)
    let walked = expand(runs)
    let truth = cachestatTruth(fd: fd, pages: 256, shmem: true)
    for index in 0..<256 where walked[index].coarse != truth[index] {
        Issue.record("\(what): page \(index): walker \(walked[index]), cachestat \(truth[index])")
    }
    #expect(walked[0..<16].allSatisfy { $0 == .hole }, "\(what): never touched")
    #expect(walked[16..<64].allSatisfy { $0 == .resident }, "\(what): written, or pwrite only")
    #expect(walked[128..<160].allSatisfy { $0 == .hole }, "\(what): punched")
    #expect(walked[192..<256].allSatisfy { $0 == .hole }, "\(what): never touched")
    let swapped = walked.filter { if case .swap = $0 { true } else { false } }.count
    #expect(swapped >= 40, "\(what): the kernel swapped only \(swapped) of the 80 pages paged out")
    // Consecutive indices in one swap run really are consecutive offsets in the same area.
    let active = SwapArea.active().count
    for slot in walked { if case .swap(let type, _) = slot { #expect(Int(type) < max(active, 1) + 8) } }
}

/// A swap area for one test, turned on with the highest priority: a swap file written with dd-like writes (so reading it through the filesystem returns what
/// swap wrote, unlike a fallocated one), turned on with the highest priority, for one test.
final class TestSwapFile {
    let path: String
    private(set) var on = false

    init(megabytes: Int) throws {
        zram = nil
        path = "\(ProcessInfo.processInfo.environment["PAGESTAT_SWAP_DIR"] ?? "/var/tmp")/pagestat-xw-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).swap"
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        for _ in 0..<megabytes where write(fd, chunk, chunk.count) != chunk.count {
            close(fd)
            throw POSIXError(.EIO)
        }
        fsync(fd)
        close(fd)
        try Self.run("/usr/sbin/mkswap", ["-q", path])
        try Self.run("/usr/sbin/swapon", ["-p", "32767", path])
        on = true
    }

    static func run(_ tool: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw POSIXError(.EIO) }
    }

    /// Its type: its index among the active swap areas (swap_info order, as /proc/swaps lists them).
    var type: Int? { SwapArea.active().firstIndex { $0.path == path } }

    /// The page at `offset` (in pages) as swap wrote it, read with O_DIRECT past the page cache.
    func page(at offset: UInt64) throws -> [UInt8] {
        let size = TestEnvironment.pageSize
        let fd = open(path, O_RDONLY | O_CLOEXEC | CPagestat_O_DIRECT)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: size)
        defer { buffer.deallocate() }
        guard pread(fd, buffer, size, off_t(offset) * off_t(size)) == size else { throw POSIXError(.EIO) }
        return Array(UnsafeRawBufferPointer(start: buffer, count: size))
    }

    /// A zram device of its own instead (hot_add), when the kernel has zram: unlike a swap file
    /// on a rotational disk, it takes large folios whole (the kernel splits them for a swap area
    /// without SSD-style clusters).
    init?(zramMegabytes megabytes: Int) {
        guard let text = try? String(contentsOfFile: "/sys/class/zram-control/hot_add", encoding: .utf8),
              let id = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        zram = id
        path = "/dev/zram\(id)"
        guard (try? "\(megabytes)M".write(toFile: "/sys/block/zram\(id)/disksize", atomically: false, encoding: .utf8)) != nil,
              (try? Self.run("/usr/sbin/mkswap", ["-q", path])) != nil,
              (try? Self.run("/usr/sbin/swapon", ["-p", "32767", path])) != nil else {
            remove()
            return nil
        }
        on = true
    }

    private var zram: Int?

    func remove() {
        if on { _ = try? Self.run("/usr/sbin/swapoff", [path]) }
        if let zram {
            try? "1".write(toFile: "/sys/block/zram\(zram)/reset", atomically: false, encoding: .utf8)
            try? "\(zram)".write(toFile: "/sys/class/zram-control/hot_remove", atomically: false, encoding: .utf8)
        } else {
            unlink(path)
        }
    }
}

/// Sets a sysfs knob for one test; `restore()` puts the old value back.
struct Knob {
    let path: String
    let saved: String

    init?(_ path: String, to value: String) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let selected = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).first(where: { $0.hasPrefix("[") }) else { return nil }
        self.path = path
        saved = selected.filter { $0 != "[" && $0 != "]" }
        guard (try? value.write(toFile: path, atomically: false, encoding: .utf8)) != nil else { return nil }
    }

    func restore() { try? saved.write(toFile: path, atomically: false, encoding: .utf8) }
}

func counter(_ path: String) -> Int { Int((try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0 }

@Suite(.serialized) struct XArrayWalkerTests {
    static let page = TestEnvironment.pageSize

    // MARK: 1. Known layouts, against cachestat page by page

    @Test(.needsSwapAndRoot, .needsBPF) func memfdLayout() throws {
        let walker = try XArrayWalker.shared()
        let fd = CPagestat_memfd_create("xw-layout", 0)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(ftruncate(fd, off_t(256 * Self.page)) == 0)
        let base = try #require(mmap(nil, 256 * Self.page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
        defer { munmap(base, 256 * Self.page) }
        try arrangeLayout(base: base, fd: fd)
        try checkLayout(walker, fd: fd, what: "memfd")
    }

    @Test(.needsSwapAndRoot, .needsBPF) func sharedAnonymousLayout() throws {
        let walker = try XArrayWalker.shared()
        let base = try #require(mmap(nil, 256 * Self.page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0))
        defer { munmap(base, 256 * Self.page) }
        let start = UInt64(UInt(bitPattern: base))
        let path = "/proc/self/map_files/\(String(start, radix: 16))-\(String(start + UInt64(256 * Self.page), radix: 16))"
        let fd = open(path, O_RDWR | O_CLOEXEC)
        try #require(fd >= 0, "open \(path): \(errno)")
        defer { close(fd) }
        try arrangeLayout(base: base, fd: fd)
        try checkLayout(walker, fd: fd, what: "MAP_SHARED|MAP_ANONYMOUS")
    }

    @Test(.needsSwapAndRoot, .needsBPF) func devShmFileLayout() throws {
        let walker = try XArrayWalker.shared()
        let path = "/dev/shm/pagestat-xw-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { close(fd); unlink(path) }
        #expect(ftruncate(fd, off_t(256 * Self.page)) == 0)
        let base = try #require(mmap(nil, 256 * Self.page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
        defer { munmap(base, 256 * Self.page) }
        try arrangeLayout(base: base, fd: fd)
        try checkLayout(walker, fd: fd, what: "/dev/shm file")
        // The walker through an O_RDONLY descriptor of the object, as PageCacheObject opens it.
        let object = try PageCacheObject.open(path: path, pid: getpid(), what: path)
        #expect(try walkRuns(walker, fd: object.fd.rawValue, first: 0, count: 256) == walkRuns(walker, fd: fd, first: 0, count: 256))
    }

    // MARK: 2. Swap locations, proven by the swap file's content

    @Test(.needsSwapAndRoot, .needsBPF) func swapLocationsHoldThePages() throws {
        let walker = try XArrayWalker.shared()
        let swap = try TestSwapFile(megabytes: 16)
        defer { swap.remove() }
        let type = try #require(swap.type)
        let pages = 512
        let tag = UInt64.random(in: 1...UInt64.max)
        let fd = CPagestat_memfd_create("xw-swap", 0)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(ftruncate(fd, off_t(pages * Self.page)) == 0)
        let base = try #require(mmap(nil, pages * Self.page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
        defer { munmap(base, pages * Self.page) }
        for index in 0..<pages {
            patternPage(index: index, tag: tag).withUnsafeBytes { (base + index * Self.page).copyMemory(from: $0.baseAddress!, byteCount: Self.page) }
        }
        #expect(madvise(base, pages * Self.page, CPagestat_MADV_PAGEOUT) == 0)
        let walked = expand(try walkRuns(walker, fd: fd, first: 0, count: UInt64(pages)))
        var proven = 0
        for (index, slot) in walked.enumerated() {
            guard case let .swap(slotType, offset) = slot else { continue }
            guard Int(slotType) == type else { continue }   // another area (of higher priority?): not ours to read
            #expect(try swap.page(at: offset) == patternPage(index: index, tag: tag), "page \(index) at \(slotType):\(offset)")
            proven += 1
        }
        #expect(proven >= pages / 2, "only \(proven) of \(pages) pages went to the test's swap file (type \(type))")
    }

    @Test(.needsSwapAndRoot, .needsBPF, .requiresKernel("shmem-mthp", FileManager.default.fileExists(atPath: "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/shmem_enabled"), "64 KiB shmem mTHP (/sys/kernel/mm/transparent_hugepage/hugepages-64kB)"))
    func largeFolioSwappedWholeIsOneRun() throws {
        let walker = try XArrayWalker.shared()
        let swap = try TestSwapFile(zramMegabytes: 16) ?? TestSwapFile(megabytes: 16)
        defer { swap.remove() }
        let type = try #require(swap.type)
        let sizes = "/sys/kernel/mm/transparent_hugepage/hugepages-64kB"
        let knob = try #require(Knob("\(sizes)/shmem_enabled", to: "always"))
        defer { knob.restore() }
        let swpoutBefore = counter("\(sizes)/stats/swpout")
        let pages = 256
        let tag = UInt64.random(in: 1...UInt64.max)
        // Per-size shmem mTHP applies to anonymous shared memory (tmpfs files follow huge=).
        let base = try #require(mmap(nil, pages * Self.page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0))
        defer { munmap(base, pages * Self.page) }
        let start = UInt64(UInt(bitPattern: base))
        let fd = open("/proc/self/map_files/\(String(start, radix: 16))-\(String(start + UInt64(pages * Self.page), radix: 16))", O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        let allocatedBefore = counter("\(sizes)/stats/shmem_alloc")
        for index in 0..<pages {
            patternPage(index: index, tag: tag).withUnsafeBytes { (base + index * Self.page).copyMemory(from: $0.baseAddress!, byteCount: Self.page) }
        }
        // In memory, each 64 KiB folio is a canonical slot and 15 siblings: read as resident.
        #expect(try walkRuns(walker, fd: fd, first: 0, count: UInt64(pages)) == [XArrayRun(first: 0, pages: UInt64(pages), kind: .resident)])
        #expect(try walkRuns(walker, fd: fd, first: 5, count: 20) == [XArrayRun(first: 5, pages: 20, kind: .resident)])
        #expect(madvise(base, pages * Self.page, CPagestat_MADV_PAGEOUT) == 0)
        let wholeFolios = counter("\(sizes)/stats/swpout") - swpoutBefore
        let allocated = counter("\(sizes)/stats/shmem_alloc") - allocatedBefore
        let runs = try walkRuns(walker, fd: fd, first: 0, count: UInt64(pages))
        let walked = expand(runs)
        var proven = 0
        for (index, slot) in walked.enumerated() {
            guard case let .swap(slotType, offset) = slot, Int(slotType) == type else { continue }
            #expect(try swap.page(at: offset) == patternPage(index: index, tag: tag), "page \(index) at \(slotType):\(offset)")
            proven += 1
        }
        #expect(proven >= pages / 2, "only \(proven) of \(pages) pages went to the test's swap area \(swap.path)")
        // Starting inside a multi-index entry: the offsets of its later pages.
        for (first, count) in [(5, 20), (17, 1), (31, 33)] {
            #expect(expand(try walkRuns(walker, fd: fd, first: UInt64(first), count: UInt64(count))) == Array(walked[first..<first + count]))
        }
        // A 64 KiB folio swapped whole is one multi-index value entry (one canonical slot and 15
        // siblings): 16 consecutive offsets, inside one run.
        let groupsInOneRun = stride(from: 0, to: pages, by: 16).filter { group in
            runs.contains { run in
                if case .swap = run.kind { run.first <= UInt64(group) && UInt64(group + 16) <= run.end } else { false }
            }
        }.count
        print("XArrayWalkerTests: 64 KiB folios allocated: \(allocated), swapped whole: \(wholeFolios); 16-page groups in one swap run: \(groupsInOneRun)")
        if wholeFolios == 0 {
            try notRunHere("a 64 KiB folio swapped whole, for the multi-index swap entry; the kernel split them or allocated none")
        }
        #expect(groupsInOneRun >= 1)
    }

    // MARK: 3. A regular file's evicted pages are shadows (or holes), never swap

    @Test(.needsRoot, .needsBPF) func regularFileEvictedPagesAreShadows() throws {
        let walker = try XArrayWalker.shared()
        let path = "\(ProcessInfo.processInfo.environment["PAGESTAT_SWAP_DIR"] ?? "/var/tmp")/pagestat-xw-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { close(fd); unlink(path) }
        let pages = 256
        for index in 0..<pages { #expect(pwrite(fd, patternPage(index: index, tag: 7), Self.page, off_t(index * Self.page)) == Self.page) }
        #expect(fsync(fd) == 0)
        // Reclaimed pages leave workingset shadows: MADV_PAGEOUT on a mapping of the file
        // (pages 64..<192) reclaims them the way memory pressure does.
        let base = try #require(mmap(nil, pages * Self.page, PROT_READ, MAP_SHARED, fd, 0))
        defer { munmap(base, pages * Self.page) }
        var sum: UInt64 = 0
        for index in 64..<192 { sum &+= base.load(fromByteOffset: index * Self.page, as: UInt64.self) }
        #expect(sum != 0)
        #expect(madvise(base + 64 * Self.page, 128 * Self.page, CPagestat_MADV_PAGEOUT) == 0)
        // Dropped pages (POSIX_FADV_DONTNEED invalidates, it does not reclaim) leave holes.
        #expect(posix_fadvise(fd, off_t(192 * Self.page), off_t(64 * Self.page), POSIX_FADV_DONTNEED) == 0)
        let walked = expand(try walkRuns(walker, fd: fd, first: 0, count: UInt64(pages)))
        let truth = cachestatTruth(fd: fd, pages: pages, shmem: false)
        #expect(walked == truth)
        #expect(!walked.contains { if case .swap = $0 { true } else { false } })
        #expect(walked[64..<192].allSatisfy { $0 == .shadow || $0 == .resident })
        #expect(walked[64..<192].filter { $0 == .shadow }.count >= 64, "few shadow entries after MADV_PAGEOUT: \(walked[64..<192])")
    }

    // MARK: 4. Ranges, resuming, a sparse 4 GiB object, the head's single entry

    @Test(.needsSwapAndRoot, .needsBPF) func subrangesAndResumingAgreeWithTheWholeWalk() throws {
        let walker = try XArrayWalker.shared()
        let pages = 8192
        let fd = CPagestat_memfd_create("xw-ranges", 0)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(ftruncate(fd, off_t(pages * Self.page)) == 0)
        let base = try #require(mmap(nil, pages * Self.page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
        defer { munmap(base, pages * Self.page) }
        var generator = SystemRandomNumberGenerator()
        for index in 0..<pages where Int.random(in: 0..<3, using: &generator) != 0 {
            base.storeBytes(of: UInt64(index + 1), toByteOffset: index * Self.page, as: UInt64.self)
        }
        for index in stride(from: 0, to: pages, by: 1) where Int.random(in: 0..<3, using: &generator) == 0 {
            madvise(base + index * Self.page, Self.page, CPagestat_MADV_PAGEOUT)
        }
        let whole = expand(try walkRuns(walker, fd: fd, first: 0, count: UInt64(pages + 100)))
        #expect(whole[pages...].allSatisfy { $0 == .hole })
        #expect(whole.contains { if case .swap = $0 { true } else { false } })
        // Starts and ends anywhere: mid-node, on node boundaries, past the end.
        let edges = [0, 1, 63, 64, 65, 4095, 4096, 4097, 5000, pages - 1, pages, pages + 7]
        for first in edges + (0..<20).map({ _ in Int.random(in: 0..<pages) }) {
            for count in [1, 2, 63, 64, 65, 1000, pages] {
                let part = expand(try walkRuns(walker, fd: fd, first: UInt64(first), count: UInt64(count)))
                let expected = (first..<first + count).map { $0 < whole.count ? whole[$0] : .hole }
                #expect(part == expected, "range \(first)+\(count)")
            }
        }
        // Tiny passes: resuming after every run and every node gives the same runs.
        for (runs, nodes) in [(1, 1_000_000), (3, 2), (1000, 1)] as [(UInt32, UInt32)] {
            let small = walker.withPassLimits(runs: runs, nodes: nodes)
            #expect(try walkRuns(small, fd: fd, first: 0, count: UInt64(pages)) == walkRuns(walker, fd: fd, first: 0, count: UInt64(pages)),
                    "passes of \(runs) runs, \(nodes) nodes")
            #expect(expand(try walkRuns(small, fd: fd, first: 777, count: 3000)) == Array(whole[777..<3777]))
        }
    }

    @Test(.needsRoot, .needsBPF) func sparseFourGiBMemfdIsFast() throws {
        let walker = try XArrayWalker.shared()
        let pages = (4 << 30) / Self.page
        let fd = CPagestat_memfd_create("xw-sparse", 0)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(ftruncate(fd, off_t(pages * Self.page)) == 0)
        let written = [0, 1, 1000, 262_143, 262_144, pages / 2, pages - 1]
        for index in written { #expect(pwrite(fd, [UInt8(1)], 1, off_t(index * Self.page)) == 1) }
        var runs: [XArrayRun] = []
        let elapsed = try Stopwatch.seconds { runs = try walkRuns(walker, fd: fd, first: 0, count: UInt64(pages)) }
        var expected: [XArrayRun] = []
        var next: UInt64 = 0
        for index in written.map(UInt64.init) {
            if index > next { expected.append(XArrayRun(first: next, pages: index - next, kind: .hole)) }
            if let last = expected.last, last.kind == .resident, last.end == index { expected[expected.count - 1].pages += 1 } else {
                expected.append(XArrayRun(first: index, pages: 1, kind: .resident))
            }
            next = index + 1
        }
        if next < UInt64(pages) { expected.append(XArrayRun(first: next, pages: UInt64(pages) - next, kind: .hole)) }
        #expect(runs == expected)
        #expect(elapsed < 0.2, "walking a sparse 4 GiB memfd took \(elapsed) s")
    }

    @Test(.needsSwapAndRoot, .needsBPF) func indexZeroAloneIsTheHeadEntry() throws {
        let walker = try XArrayWalker.shared()
        let fd = CPagestat_memfd_create("xw-head", 0)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(ftruncate(fd, off_t(16 * Self.page)) == 0)
        #expect(try walkRuns(walker, fd: fd, first: 0, count: 16) == [XArrayRun(first: 0, pages: 16, kind: .hole)])
        let base = try #require(mmap(nil, 16 * Self.page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
        defer { munmap(base, 16 * Self.page) }
        base.storeBytes(of: UInt64(42), as: UInt64.self)
        #expect(try walkRuns(walker, fd: fd, first: 0, count: 1) == [XArrayRun(first: 0, pages: 1, kind: .resident)])
        #expect(try walkRuns(walker, fd: fd, first: 0, count: 16)
                == [XArrayRun(first: 0, pages: 1, kind: .resident), XArrayRun(first: 1, pages: 15, kind: .hole)])
        #expect(try walkRuns(walker, fd: fd, first: 1, count: 15) == [XArrayRun(first: 1, pages: 15, kind: .hole)])
        #expect(try walkRuns(walker, fd: fd, first: 1 << 40, count: 5) == [XArrayRun(first: 1 << 40, pages: 5, kind: .hole)])
        // Paged out, the head holds index 0's swap entry itself.
        #expect(madvise(base, Self.page, CPagestat_MADV_PAGEOUT) == 0)
        let runs = try walkRuns(walker, fd: fd, first: 0, count: 16)
        let truth = cachestatTruth(fd: fd, pages: 16, shmem: true)
        #expect(expand(runs).map(\.coarse) == truth)
        #expect(truth[0] == .swap(type: 0, offset: 0), "the kernel did not swap page 0")
    }

    // MARK: 5. Errors

    @Test(.needsBPF) func badDescriptorThrows() throws {
        let walker = try XArrayWalker.shared()
        #expect(throws: PageStatError.self) { try walker.walk(fd: FileDescriptor(rawValue: 9999), first: 0, count: 1) { _ in } }
    }

    /// Child mode of `unprivilegedLoadIsRefused`: run as nobody by setpriv, load and report.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["PAGESTAT_XW_CHILD"] != nil, "child mode of unprivilegedLoadIsRefused, not a test of its own"))
    func childLoad() {
        do {
            _ = try XArrayWalker.shared()
            print("XW-CHILD: loaded")
        } catch {
            print("XW-CHILD: \(error)")
        }
    }

    @Test(.needsRoot, .enabled(if: ProcessInfo.processInfo.environment["PAGESTAT_XW_CHILD"] == nil, "the parent side, not run in child mode"))
    func unprivilegedLoadIsRefused() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        let testBinary = try #require(Bundle.main.executablePath ?? CommandLine.arguments.first)
        process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", testBinary,
                             "--testing-library", "swift-testing", "--filter", "XArrayWalkerTests/childLoad"]
        process.environment = ["PAGESTAT_XW_CHILD": "1", "PATH": "/usr/bin:/bin"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let line = try #require(output.split(separator: "\n").first { $0.contains("XW-CHILD: ") }, "child output: \(output)")
        #expect(line.contains("not supported by this kernel: BPF page-cache reader: not permitted"), "\(line)")
        #expect(line.contains("CAP_BPF"))
        print("XArrayWalkerTests: as nobody: \(line)")
    }

    // MARK: The committed BPF object

    @Test func committedObjectIsEmbedded() throws {
        let committed = try Data(contentsOf: Self.repository.appendingPathComponent("BPF/xarray.bpf.o"))
        let embedded = Data(bytes: CPagestat_xarray_bpf_object_bytes(), count: Int(CPagestat_xarray_bpf_object_length()))
        #expect(embedded == committed, "Sources/CPagestat/xarray_bpf_object.h is not BPF/xarray.bpf.o: run Scripts/build-bpf.sh")
    }

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The clang Scripts/build-bpf.sh uses: $CLANG, or the one beside the Swift toolchain's swift.
    static let clang: String? = {
        if let clang = ProcessInfo.processInfo.environment["CLANG"] { return clang }
        guard let swift = TestEnvironment.tool("swift") else { return nil }
        return URL(fileURLWithPath: swift).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("clang").path
    }()

    @Test(.requires(clang.map { FileManager.default.isExecutableFile(atPath: $0) } ?? false,
                    "the Swift toolchain's clang (or $CLANG) to rebuild BPF/xarray.bpf.o"))
    func committedObjectIsCurrent() throws {
        let root = Self.repository
        let committed = try Data(contentsOf: root.appendingPathComponent("BPF/xarray.bpf.o"))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pagestat-bpf-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [root.appendingPathComponent("Scripts/build-bpf.sh").path, directory.path]
        let err = Pipe()
        process.standardError = err
        try process.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "Scripts/build-bpf.sh failed: \(message)")
        let rebuilt = try Data(contentsOf: directory.appendingPathComponent("xarray.bpf.o"))
        #expect(rebuilt == committed, "BPF/xarray.bpf.o is stale (or built by another clang): run Scripts/build-bpf.sh and commit")
    }
}
