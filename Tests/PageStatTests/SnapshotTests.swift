import CPagestat
import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// `pagestat snapshot` on memory this process arranged: every page with its own pattern, part of
/// it present, part paged out (some zeroed first: the zeromap), part never touched. The image must
/// equal the pattern byte for byte, with holes where nothing was written, and nothing may be
/// swapped in.
@Suite(.serialized)
struct SnapshotTests {
    static let pages = 64
    /// Pages [0, 16) stay present, [16, 40) are paged out with their pattern, [40, 48) are zeroed
    /// and then paged out, [48, 64) are never touched.
    static let present = 0..<16
    static let pagedOut = 16..<40
    static let zeroed = 40..<48
    static let untouched = 48..<64

    /// A page's pattern: 8-byte words that name the region, the page and the word.
    static func fill(_ base: UnsafeMutableRawPointer, page: Int, seed: UInt64) {
        let words = TestEnvironment.pageSize / 8
        let pointer = (base + page * TestEnvironment.pageSize).assumingMemoryBound(to: UInt64.self)
        for word in 0..<words { pointer[word] = seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(page) << 32 ^ UInt64(word) | 1 }
    }

    /// Arranges the layout in `pages` pages at `base` (a mapping that starts there) and pages out
    /// what must be swapped; returns the expected image.
    static func arrange(_ base: UnsafeMutableRawPointer, seed: UInt64) throws -> Data {
        let pageSize = TestEnvironment.pageSize
        for page in present.lowerBound..<zeroed.upperBound { fill(base, page: page, seed: seed) }
        memset(base + zeroed.lowerBound * pageSize, 0, zeroed.count * pageSize)
        // Read before the page-out: reading after it would swap the pages back in.
        var expected = Data(bytes: base, count: zeroed.upperBound * pageSize)
        expected.append(Data(count: untouched.count * pageSize))
        let address = UInt64(UInt(bitPattern: base))
        let swapped = try ArrangedMemory.pageOut(base + pagedOut.lowerBound * pageSize,
                                                 length: (zeroed.upperBound - pagedOut.lowerBound) * pageSize,
                                                 mappingStart: address, untilSwapped: pagedOut.count + zeroed.count)
        try #require(swapped, "MADV_PAGEOUT did not swap the pages out")
        return expected
    }

    /// Snapshots `range` of this process and checks the image against `expected`.
    static func check(_ range: AddressRange, expected: Data, label: String) throws {
        let directory = try SnapshotScratch()
        let image = directory.path + "/image"
        let before = try smapsEntry(containing: range.start)
        let majorFaults = try majorFaultCount()
        let run = try runPagestat(["snapshot", String(getpid()), "--range", "\(range.start)+\(range.length)",
                                   "-o", image, "--format", "json"])
        #expect(try majorFaultCount() == majorFaults, "\(label): the snapshot faulted pages in")
        let after = try smapsEntry(containing: range.start)
        #expect(after["Rss"] == before["Rss"] && after["Swap"] == before["Swap"],
                "\(label): Rss/Swap changed: \(before.fields) -> \(after.fields)")
        try #require(run.status == 0, "\(label): \(run.stderr)")
        let content = try Data(contentsOf: URL(fileURLWithPath: image))
        #expect(content.count == expected.count, "\(label)")
        let pageSize = TestEnvironment.pageSize
        for page in 0..<pages where content.count == expected.count {
            let slice = page * pageSize..<(page + 1) * pageSize
            #expect(content[slice] == expected[slice], "\(label): page \(page) differs")
        }
        // Holes are holes: from the first zeroed page on, nothing is written.
        let fd = open(image, O_RDONLY)
        defer { close(fd) }
        #expect(lseek(fd, off_t(zeroed.lowerBound * pageSize), CPagestat_SEEK_DATA) == -1 && errno == ENXIO,
                "\(label): the zero and untouched pages were written, not left holes")
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: image + ".json"))) as? [String: Any]
        let counts = try #require(manifest?["pages"] as? [String: Any])
        #expect(counts["unsettled"] as? Int == 0, "\(label): \(counts)")
        #expect(counts["swap"] as? Int == pagedOut.count, "\(label): \(counts)")
    }

    /// A zram swap area of its own at a priority above every other, on while `body` runs, so the
    /// test's pages land there: a non-rotational area, which the slot-state reader reaches on
    /// every kernel (a CPU's swap cluster names it once a page went to it).
    static func onZram<T>(_ body: () throws -> T) throws -> T {
        let area = try BackendSwapArea(.zram, megabytes: 32, priority: 300)
        defer { area.remove() }
        return try body()
    }

    static func majorFaultCount() throws -> UInt64 {
        let stat = try kernelText("/proc/self/stat")
        let fields = stat[stat.index(after: try #require(stat.lastIndex(of: ")")))...].split(separator: " ")
        return try #require(UInt64(fields[9]))
    }

    @Test("private anonymous memory: present, swapped, zeroed and never-touched pages", .needsSwapAndRoot, .needsBPF,
          .requires(FileManager.default.fileExists(atPath: "/sys/class/zram-control/hot_add"), "zram (CONFIG_ZRAM), for a swap area of the test's own"))
    func privateAnonymous() throws {
        try Self.onZram {
            let memory = try ArrangedMemory(pages: Self.pages, backing: .privateAnonymous)
            let expected = try Self.arrange(memory.base, seed: 1)
            try Self.check(memory.range, expected: expected, label: "private")
        }
    }

    @Test("shared anonymous memory, its swapped pages read from their slots", .needsSwapAndRoot, .needsBPF,
          .requires(FileManager.default.fileExists(atPath: "/sys/class/zram-control/hot_add"), "zram (CONFIG_ZRAM), for a swap area of the test's own"))
    func sharedAnonymous() throws {
        try Self.onZram {
            let memory = try ArrangedMemory(pages: Self.pages, backing: .sharedAnonymous)
            let expected = try Self.arrange(memory.base, seed: 2)
            try Self.check(memory.range, expected: expected, label: "shared-anon")
        }
    }

    @Test("a memfd, through its mapping and as an object (/proc/PID/fd/N)", .needsSwapAndRoot, .needsBPF,
          .requires(FileManager.default.fileExists(atPath: "/sys/class/zram-control/hot_add"), "zram (CONFIG_ZRAM), for a swap area of the test's own"))
    func memfd() throws {
        try Self.onZram {
            let memory = try ArrangedMemory(pages: Self.pages, backing: .memfd(name: "snapshot-test", shared: true))
            let expected = try Self.arrange(memory.base, seed: 3)
            try Self.check(memory.range, expected: expected, label: "memfd")

            let directory = try SnapshotScratch()
            let image = directory.path + "/object"
            let run = try runPagestat(["snapshot", "--file", "/proc/\(getpid())/fd/\(memory.fd!)", "-o", image])
            try #require(run.status == 0, "\(run.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: image)) == expected)
        }
    }

    @Test("slots scattered by the page-out order, read a few pages at a time: every window right, in address order",
          .needsSwapAndRoot, .needsBPF,
          .requires(FileManager.default.fileExists(atPath: "/sys/class/zram-control/hot_add"), "zram (CONFIG_ZRAM), for a swap area of the test's own"))
    func scatteredSlotsInSmallWindows() throws {
        try Self.onZram {
            let pageSize = TestEnvironment.pageSize
            let memory = try ArrangedMemory(pages: Self.pages, backing: .memfd(name: "snapshot-scattered", shared: true))
            for page in Self.present.lowerBound..<Self.zeroed.upperBound { Self.fill(memory.base, page: page, seed: 7) }
            memset(memory.base + Self.zeroed.lowerBound * pageSize, 0, Self.zeroed.count * pageSize)
            var expected = Data(bytes: memory.base, count: Self.zeroed.upperBound * pageSize)
            expected.append(Data(count: Self.untouched.count * pageSize))
            // One page at a time, in a stride order: each takes the next free slot, so slot order
            // is not address order.
            let outPages = Array(Self.pagedOut.lowerBound..<Self.zeroed.upperBound)
            for (done, step) in outPages.indices.enumerated() {
                let page = outPages[step * 13 % outPages.count]
                let swapped = try ArrangedMemory.pageOut(memory.base + page * pageSize, length: pageSize,
                                                         mappingStart: memory.range.start, untilSwapped: done + 1)
                try #require(swapped, "MADV_PAGEOUT did not swap page \(page) out")
            }
            // The target is this process, and the copies run in it: its own first runs of the
            // copier's code may fault pages of the test binary in, so the oracle is the memfd
            // mapping's own Rss and Swap (a page swapped in moves from one to the other).
            let before = try smapsEntry(containing: memory.range.start)
            let majorFaults = try Self.majorFaultCount()
            for (label, chunkPages) in [("process, 5-page windows", 5), ("process, 3-page windows", 3), ("process, one window", 1024),
                                       ("object, 4-page windows", 4), ("object, one window", 1024)] {
                var options = SnapshotOptions()
                options.chunkPages = chunkPages
                let snapshot = label.hasPrefix("object")
                    ? try PageSnapshot(objectAt: "/proc/\(getpid())/fd/\(memory.fd!)", options: options)
                    : try PageSnapshot(pid: getpid(), range: memory.range, options: options)
                let origin = label.hasPrefix("object") ? 0 : memory.range.start
                var image = Data(count: expected.count)
                var next = origin
                var slots: [(page: Int, offset: UInt64)] = []
                let result = try snapshot.copy { (chunk) throws(PageStatError) in
                    #expect(chunk.start == next, "\(label): chunks out of order at \(chunk.start)")
                    next = chunk.start + chunk.pages * UInt64(pageSize)
                    let at = Int(chunk.start - origin)
                    if case .swap(let location) = chunk.source {
                        for page in 0..<Int(chunk.pages) { slots.append((at / pageSize + page, location.offset + UInt64(page))) }
                    }
                    _ = chunk.withBytes { bytes in
                        bytes.withUnsafeBytes { raw in image.replaceSubrange(at..<(at + raw.count), with: raw) }
                    }
                }
                #expect(image == expected, "\(label): the image differs")
                #expect(result.totals.swap == UInt64(Self.pagedOut.count) && result.totals.zero == UInt64(Self.zeroed.count)
                        && result.totals.unsettled == 0, "\(label): \(result.totals)")
                let inSlotOrder = slots.sorted { $0.offset < $1.offset }.map(\.page)
                try #require(inSlotOrder != slots.map(\.page), "\(label): the slots were not scattered: \(slots)")
            }
            let after = try smapsEntry(containing: memory.range.start)
            let faults = try Self.majorFaultCount() - majorFaults
            #expect(after["Rss"] == before["Rss"] && after["Swap"] == before["Swap"],
                    "the snapshots swapped pages in: \(before.fields) -> \(after.fields) (this process's major faults meanwhile: \(faults))")
        }
    }

    @Test("a /dev/shm file", .needsSwapAndRoot, .needsBPF,
          .requires(FileManager.default.fileExists(atPath: "/sys/class/zram-control/hot_add"), "zram (CONFIG_ZRAM), for a swap area of the test's own"))
    func devShmFile() throws {
        try Self.onZram {
            let path = "/dev/shm/pagestat-snapshot-test-\(getpid())"
            let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
            try #require(fd >= 0)
            defer {
                close(fd)
                unlink(path)
            }
            try #require(ftruncate(fd, off_t(Self.pages * TestEnvironment.pageSize)) == 0)
            let memory = try ArrangedMemory(pages: Self.pages, backing: .file(fd: fd, shared: true))
            let expected = try Self.arrange(memory.base, seed: 4)
            try Self.check(memory.range, expected: expected, label: "/dev/shm")
        }
    }

    @Test("SysV shared memory", .needsSwapAndRoot, .needsBPF,
          .requires(FileManager.default.fileExists(atPath: "/sys/class/zram-control/hot_add"), "zram (CONFIG_ZRAM), for a swap area of the test's own"))
    func sysVShm() throws {
        try Self.onZram {
            let length = Self.pages * TestEnvironment.pageSize
            let shmid = shmget(IPC_PRIVATE, length, IPC_CREAT | 0o600)
            try #require(shmid >= 0)
            defer { shmctl(shmid, IPC_RMID, nil) }
            let segment = try #require(shmat(shmid, nil, 0))
            try #require(segment != UnsafeMutableRawPointer(bitPattern: -1))
            defer { shmdt(segment) }
            let expected = try Self.arrange(segment, seed: 5)
            let start = UInt64(UInt(bitPattern: segment))
            try Self.check(AddressRange(start: start, end: start + UInt64(length)), expected: expected, label: "SysV")
        }
    }

    @Test("the manifest's planned counts are show's", .needsSwapAndRoot, .needsBPF,
          .requires(FileManager.default.fileExists(atPath: "/sys/class/zram-control/hot_add"), "zram (CONFIG_ZRAM), for a swap area of the test's own"))
    func manifestCountsAreShows() throws {
        try Self.onZram { try manifestCountsAreShowsOnZram() }
    }

    func manifestCountsAreShowsOnZram() throws {
        let memory = try ArrangedMemory(pages: Self.pages, backing: .privateAnonymous)
        _ = try Self.arrange(memory.base, seed: 6)
        let directory = try SnapshotScratch()
        let image = directory.path + "/image"
        let run = try runPagestat(["snapshot", String(getpid()), "--range", "\(memory.address)+\(memory.range.length)", "-o", image])
        try #require(run.status == 0, "\(run.stderr)")
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: image + ".json"))) as? [String: Any]
        let planned = try #require(manifest?["planned"] as? [String: Int])
        var shown: [String: Int] = [:]
        for state in pageStates(try scanSelf(memory.range)) { shown[state.description, default: 0] += 1 }
        for state in PageState.allCases {
            #expect(planned[state.description] == shown[state.description, default: 0], "\(state)")
        }
    }

    @Test("zswap on: refused with exit 11 and no image; --allow-swap-in reads through the memory and counts it",
          .needsSwapAndRoot, .requires(FileManager.default.fileExists(atPath: "/sys/module/zswap/parameters/enabled"), "zswap built in"))
    func zswapRefusedThenAllowed() throws {
        let memory = try ArrangedMemory(pages: Self.pages, backing: .privateAnonymous)
        let expected = try Self.arrange(memory.base, seed: 7)
        let knob = "/sys/module/zswap/parameters/enabled"
        let saved = try kernelText(knob).trimmingCharacters(in: .whitespacesAndNewlines)
        try "Y".write(toFile: knob, atomically: false, encoding: .utf8)
        // Others' page-outs would go to zswap: it is on only while the two snapshots run.
        defer { try? saved.write(toFile: knob, atomically: false, encoding: .utf8) }
        let directory = try SnapshotScratch()
        let image = directory.path + "/image"
        let arguments = ["snapshot", String(getpid()), "--range", "\(memory.address)+\(memory.range.length)", "-o", image]
        let refused = try runPagestat(arguments)
        #expect(refused.status == 11, "\(refused.stderr) \(refused.stdout)")
        #expect(refused.stderr.split(separator: "\n").count == 1 && refused.stderr.contains("zswap"), "\(refused.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)

        let allowed = try runPagestat(arguments + ["--allow-swap-in"])
        try saved.write(toFile: knob, atomically: false, encoding: .utf8)
        try #require(allowed.status == 0, "\(allowed.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: image)) == expected)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: image + ".json"))) as? [String: Any]
        let counts = try #require(manifest?["pages"] as? [String: Int])
        #expect(counts["swapped_in"] == Self.pagedOut.count + Self.zeroed.count, "\(counts)")
        #expect(counts["swap"] == 0, "\(counts)")
    }

    @Test("without root: one line, exit 4, no image left", .needsRoot)
    func refusedWithoutRoot() throws {
        let directory = try SnapshotScratch()
        chmod(directory.path, 0o777)
        let image = directory.path + "/image"
        let run = try runPagestat(["snapshot", String(getpid()), "--range", "0x1000+4K", "-o", image], asUser: 65534)
        #expect(run.status == 4)
        #expect(run.stderr.split(separator: "\n").count == 1, "\(run.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
    }

    @Test("a failed snapshot leaves no image and no temporary file", .needsRoot)
    func failureLeavesNothing() throws {
        let directory = try SnapshotScratch()
        let image = directory.path + "/image"
        // Not mapped in this process: the scan fails before or while the image is written.
        let run = try runPagestat(["snapshot", String(getpid()), "--range", "0x1000+4K", "-o", image])
        #expect(run.status == 5, "\(run.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
    }
}

/// Snapshots of a process that keeps moving its pages between memory and swap: nested in
/// SnapshotTests, whose serialization they share (each turns a swap area of its own on and off).
extension SnapshotTests {
@Suite struct Races {
    static let pages = 512

    /// A python3 child with `pages` pages of shared anonymous memory, page i holding the 8-byte
    /// word (generation << 32 | i) over and over. It prints the address, then loops: `churn`
    /// reads pages back in and pages them out again (the content never changes); `write` also
    /// writes a new generation into a random stretch before paging out.
    static let script = """
    import mmap, os, random, sys, struct
    pages = int(sys.argv[2]); size = pages * 4096
    m = mmap.mmap(-1, size, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    def fill(i, gen): m[i * 4096:(i + 1) * 4096] = struct.pack("<Q", gen << 32 | i) * 512
    for i in range(pages): fill(i, 1)
    m.madvise(21, 0, size)
    import ctypes
    print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
    gen = 1
    while True:
        first = random.randrange(pages); count = random.randrange(1, 64); end = min(pages, first + count)
        if sys.argv[1] == "write":
            gen += 1
            for i in range(first, end): fill(i, gen)
        else:
            for i in range(first, end): m[i * 4096]
        m.madvise(21, first * 4096, (end - first) * 4096)
    """

    /// Runs the child, snapshots its memory, returns the image and the manifest's page counts.
    static func snapshot(mode: String, freeze: Bool) throws -> (image: Data, pages: [String: Int]) {
        try SnapshotTests.onZram { try snapshotOnZram(mode: mode, freeze: freeze) }
    }

    static func snapshotOnZram(mode: String, freeze: Bool) throws -> (image: Data, pages: [String: Int]) {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: try #require(TestEnvironment.tool("python3")))
        child.arguments = ["-c", script, mode, String(pages)]
        let out = Pipe()
        child.standardOutput = out
        try child.run()
        defer {
            kill(child.processIdentifier, SIGKILL)  // not SIGTERM: the test runner's threads block it, and children inherit the mask
            child.waitUntilExit()
        }
        let address = try #require(UInt64(String(decoding: readLine(out), as: UTF8.self)))
        usleep(200_000)
        let directory = try SnapshotScratch()
        let image = directory.path + "/image"
        let run = try runPagestat(["snapshot", String(child.processIdentifier), "--range", "\(address)+\(pages * 4096)",
                                   "-o", image] + (freeze ? ["--freeze"] : []))
        try #require(run.status == 0, "\(run.stderr)")
        let state = try kernelText("/proc/\(child.processIdentifier)/stat")
        let afterParen = state[state.index(after: try #require(state.lastIndex(of: ")")))...]
        #expect(!afterParen.hasPrefix(" T"), "the target was left stopped")
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: image + ".json"))) as? [String: Any]
        let counts = try #require(manifest?["pages"] as? [String: Int])
        return (try Data(contentsOf: URL(fileURLWithPath: image)), counts)
    }

    /// The word each 8 bytes of page `index` of `image` holds, if the page is uniform.
    static func word(_ image: Data, page index: Int) -> UInt64? {
        let page = image[index * 4096..<(index + 1) * 4096]
        let words = page.withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }
        return words.allSatisfy({ $0 == words[0] }) ? words[0] : nil
    }

    @Test("pages swapped in and out meanwhile: every page right or reported", .needsSwapAndRoot, .needsBPF,
          .needsTool("python3", package: "python3"), .requires(FileManager.default.fileExists(atPath: "/sys/class/zram-control/hot_add"), "zram (CONFIG_ZRAM), for a swap area of the test's own"))
    func churn() throws {
        let (image, counts) = try Self.snapshot(mode: "churn", freeze: false)
        try #require(image.count == Self.pages * 4096)
        let unsettled = counts["unsettled"] ?? 0
        var wrong = 0
        for page in 0..<Self.pages where Self.word(image, page: page) != (1 << 32 | UInt64(page)) { wrong += 1 }
        // A page reported unsettled is left a hole (zeros): it counts as neither right nor wrong.
        #expect(wrong <= unsettled, "\(wrong) pages wrong, \(unsettled) reported: \(counts)")
    }

    @Test("--freeze: a point-in-time image, every page whole, the target resumed", .needsSwapAndRoot, .needsBPF,
          .needsTool("python3", package: "python3"), .requires(FileManager.default.fileExists(atPath: "/sys/class/zram-control/hot_add"), "zram (CONFIG_ZRAM), for a swap area of the test's own"))
    func frozen() throws {
        let (image, counts) = try Self.snapshot(mode: "write", freeze: true)
        try #require(image.count == Self.pages * 4096)
        #expect(counts["unsettled"] == 0, "\(counts)")
        for page in 0..<Self.pages {
            let word = Self.word(image, page: page)
            #expect(word.map { $0 & 0xffff_ffff } == UInt64(page), "page \(page) is torn or stale")
        }
    }
}
}

/// A directory under /var/tmp, removed with its contents when the value goes away.
final class SnapshotScratch {
    let path: String

    init() throws {
        var template = Array("/var/tmp/pagestat-snapshot-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        path = String(cString: made)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
