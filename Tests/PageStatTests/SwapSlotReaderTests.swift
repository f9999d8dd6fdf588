import CPagestat
import Foundation
import SystemPackage
import Testing

@testable import PageStat
@testable import PageStatCore

/// A swap area of one backend, turned on for one test at priority 100 or what the test asks, but
/// always above every area already on (the session's, a host's own zram), so the test's
/// page-outs land there; turned off and removed by `remove()`, also on failure.
final class BackendSwapArea {
    enum Kind { case ddFile, fallocatedFileOnLoopExt4, loopPartition, zram }

    /// The path /proc/swaps names.
    private(set) var path = ""
    private var cleanups: [() -> Void] = []

    /// `stale`: the byte a loop device's image is filled with before mkswap, so a slot that
    /// swap never wrote holds it.
    init(_ kind: Kind, megabytes: Int = 32, stale: UInt8? = nil, priority: Int = 100) throws {
        do { try arrange(kind, megabytes: megabytes, stale: stale, priority: priority) } catch {
            remove()
            throw error
        }
    }

    private func arrange(_ kind: Kind, megabytes: Int, stale: UInt8?, priority: Int) throws {
        let name = "pagestat-slots-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        switch kind {
        case .ddFile:
            path = "/var/tmp/\(name).swap"
            try writeZeros(path, megabytes: megabytes)
            cleanups.append { [path] in unlink(path) }
        case .fallocatedFileOnLoopExt4:
            let image = "/var/tmp/\(name).img"
            try writeZeros(image, megabytes: megabytes + 32, sparse: true)
            cleanups.append { unlink(image) }
            let loop = try Self.output("losetup", ["-f", "--show", image])
            cleanups.append { _ = try? Self.output("losetup", ["-d", loop]) }
            _ = try Self.output("mkfs.ext4", ["-q", "-F", loop])
            let mountPoint = "/var/tmp/\(name).mnt"
            try #require(mkdir(mountPoint, 0o700) == 0)
            cleanups.append { rmdir(mountPoint) }
            _ = try Self.output("mount", [loop, mountPoint])
            cleanups.append { _ = try? Self.output("umount", [mountPoint]) }
            path = "\(mountPoint)/swapfile"
            _ = try Self.output("fallocate", ["-l", "\(megabytes)M", path])
            cleanups.append { [path] in unlink(path) }
            #expect(chmod(path, 0o600) == 0)
        case .loopPartition:
            let image = "/var/tmp/\(name).img"
            try writeZeros(image, megabytes: megabytes, sparse: stale == nil, byte: stale ?? 0)
            cleanups.append { unlink(image) }
            path = try Self.output("losetup", ["-f", "--show", image])
            cleanups.append { [path] in _ = try? Self.output("losetup", ["-d", path]) }
        case .zram:
            let text = try String(contentsOfFile: "/sys/class/zram-control/hot_add", encoding: .utf8)
            let id = try #require(Int(text.trimmingCharacters(in: .whitespacesAndNewlines)))
            cleanups.append {
                // A reset fails (EBUSY) while anything still holds the device open, such as a
                // slot reader not yet released: try again for up to two seconds, then remove it.
                for _ in 0..<100 {
                    if (try? "1".write(toFile: "/sys/block/zram\(id)/reset", atomically: false, encoding: .utf8)) != nil { break }
                    usleep(20_000)
                }
                try? "\(id)".write(toFile: "/sys/class/zram-control/hot_remove", atomically: false, encoding: .utf8)
            }
            try "\(megabytes)M".write(toFile: "/sys/block/zram\(id)/disksize", atomically: false, encoding: .utf8)
            path = "/dev/zram\(id)"
        }
        _ = try Self.output("mkswap", ["-q", path])
        _ = try Self.output("swapon", ["-p", "\(Self.above(priority))", path])
        cleanups.append { [path] in _ = try? Self.output("swapoff", [path]) }
    }

    /// `priority`, or one above the highest area on now (an equal priority would share the
    /// page-outs round-robin), at most swapon's 32767.
    static func above(_ priority: Int) -> Int {
        guard let highest = SwapArea.active().compactMap(\.priority).max() else { return priority }
        return min(32767, max(priority, highest + 1))
    }

    /// Turns the area off and undoes everything it arranged, last first.
    func remove() {
        while let cleanup = cleanups.popLast() { cleanup() }
    }

    private func writeZeros(_ path: String, megabytes: Int, sparse: Bool = false, byte: UInt8 = 0) throws {
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { close(fd) }
        if sparse {
            try #require(ftruncate(fd, off_t(megabytes) << 20) == 0)
            return
        }
        let chunk = [UInt8](repeating: byte, count: 1 << 20)
        for _ in 0..<megabytes { try #require(write(fd, chunk, chunk.count) == chunk.count) }
        try #require(fsync(fd) == 0)
    }

    /// Runs a tool found through PATH (or /usr/sbin, /sbin); its standard output, trimmed.
    @discardableResult
    static func output(_ tool: String, _ arguments: [String]) throws -> String {
        let candidates: [String] = ["/usr/sbin/" + tool, "/sbin/" + tool]
        let system = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        let path = TestEnvironment.tool(tool) ?? system ?? tool
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw POSIXError(.EIO, userInfo: [NSLocalizedDescriptionKey: "\(tool) \(arguments.joined(separator: " ")) failed"])
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Whether the running kernel is at least major.minor (uname).
func kernelAtLeast(_ major: Int, _ minor: Int) -> Bool {
    var name = utsname()
    uname(&name)
    let release = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
    guard parts.count == 2 else { return false }
    return (parts[0], parts[1]) >= (major, minor)
}

/// Waits (up to 5 s) until no page is under writeback (/proc/vmstat nr_writeback), so the
/// slots the page-out wrote hold their pages.
func waitForWriteback() {
    for _ in 0..<100 {
        let vmstat = (try? kernelText("/proc/vmstat")) ?? ""
        if vmstat.split(separator: "\n").contains("nr_writeback 0") { return }
        usleep(50_000)
    }
}

@Suite(.serialized) struct SwapSlotReaderTests {
    static let page = TestEnvironment.pageSize
    static let pages = 256

    /// Pages of the test's own: every page holds its pattern, except every 8th, which was
    /// written and then zeroed (a zero page when swapped out).
    static func fill(_ base: UnsafeMutableRawPointer, tag: UInt64) {
        for index in 0..<pages {
            patternPage(index: index, tag: tag).withUnsafeBytes { (base + index * page).copyMemory(from: $0.baseAddress!, byteCount: page) }
            if index % 8 == 7 { memset(base + index * page, 0, page) }
        }
    }

    static func expected(_ index: Int, tag: UInt64) -> [UInt8] {
        index % 8 == 7 ? [UInt8](repeating: 0, count: page) : patternPage(index: index, tag: tag)
    }

    /// Pages out a memfd (shared: located with the BPF engine) and a private anonymous region
    /// (located with pagemap), reads every slot that landed in `area` through the reader, and
    /// checks the bytes: a slot on the device holds its page, a zeromapped one is a zero page.
    static func proveSlots(_ area: BackendSwapArea, backend check: (SwapBackend) -> Bool) throws {
        let tag = UInt64.random(in: 1...UInt64.max)
        let length = pages * page

        let memfd = CPagestat_memfd_create("pagestat-slots", 0)
        try #require(memfd >= 0)
        defer { close(memfd) }
        try #require(ftruncate(memfd, off_t(length)) == 0)
        let shared = try #require(mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0))
        defer { munmap(shared, length) }
        let anonymous = try #require(mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        defer { munmap(anonymous, length) }
        fill(shared, tag: tag)
        fill(anonymous, tag: ~tag)
        #expect(madvise(shared, length, CPagestat_MADV_PAGEOUT) == 0)
        #expect(madvise(anonymous, length, CPagestat_MADV_PAGEOUT) == 0)
        waitForWriteback()
        // Made after the page-out: a CPU's swap cluster may name the area only from then on.
        let reader = try SwapSlotReader()
        let access = try #require(reader.areas.first { $0.path == area.path }, "\(area.path) is not in \(reader.areas.map(\.path))")
        #expect(check(access.backend), "backend of \(area.path): \(access.backend)")

        // Where each page went: (page index, tag, swap offset) for slots in the test's area.
        var located: [(index: Int, tag: UInt64, offset: UInt64)] = []
        let walker = try XArrayWalker.shared()
        try walker.walk(fd: FileDescriptor(rawValue: memfd), first: 0, count: UInt64(pages)) { run in
            guard case let .swap(type, offset) = run.kind, Int(type) == access.type else { return }
            for page in 0..<run.pages { located.append((Int(run.first + page), tag, offset + page)) }
        }
        for index in 0..<pages {
            guard let entry = Pagemap.ownEntry(anonymous + index * page), entry.isSwap, !entry.isPresent,
                  Int(entry.swapType) == access.type else { continue }
            located.append((index, ~tag, entry.swapOffset))
        }
        var types: [UInt8: Int] = [:]
        for index in 0..<pages {
            if let entry = Pagemap.ownEntry(anonymous + index * page), entry.isSwap { types[entry.swapType, default: 0] += 1 }
        }
        let elsewhere = "the anonymous pages' swap types: \(types). On 6.18 (per-CPU swap clusters, 6.15+) a CPU takes page-outs from its cached swap "
            + "cluster of a non-rotational area already on before a new area of higher priority: run with no other such area on"
        #expect(located.count >= pages, "only \(located.count) of \(2 * pages) pages went to \(area.path) (type \(access.type)); \(elsewhere)")

        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: page, alignment: page)
        defer { buffer.deallocate() }
        var onDevice = 0, zero = 0
        for page in located {
            let state = try #require(reader.slotStates(type: access.type, offset: page.offset, count: 1).first)
            let want = expected(page.index, tag: page.tag)
            switch state {
            case .zero:
                #expect(page.index % 8 == 7, "page \(page.index) at slot \(page.offset) is zeromapped but was not zero")
                zero += 1
            case _ where page.index % 8 == 7 && access.slotStates == .bpf(zeromap: true):
                Issue.record("zero page \(page.index) at slot \(page.offset): \(state), not zeromapped")
            case .onDevice, .inSwapCache, .unknown:
                // Writeback is done: a page still in the swap cache is on the device too. A zero
                // page's slot was never written where the kernel has a zeromap (6.12+), so
                // without slot states it holds stale bytes: not compared.
                if case .unknown = state, page.index % 8 == 7, kernelAtLeast(6, 12) { continue }
                try reader.read(type: access.type, offset: page.offset, count: 1, into: buffer)
                #expect(Array(buffer) == want, "page \(page.index) (tag \(page.tag)) at slot \(page.offset): \(state)")
                onDevice += 1
            case .free:
                Issue.record("page \(page.index) at slot \(page.offset): free")
            }
        }
        // Consecutive slots in one read: the memfd's pages, wherever a run of them is contiguous.
        if let first = located.first, located.count >= 4 {
            let run = located.enumerated().prefix { pair in
                pair.element.tag == first.tag && pair.element.index == first.index + pair.offset
                    && pair.element.offset == first.offset + UInt64(pair.offset)
            }.count
            let many = UnsafeMutableRawBufferPointer.allocate(byteCount: run * Self.page, alignment: Self.page)
            defer { many.deallocate() }
            try reader.read(type: access.type, offset: first.offset, count: run, into: many)
            let states = try reader.slotStates(type: access.type, offset: first.offset, count: run)
            for (i, state) in states.enumerated() where state != .zero && !((first.index + i) % 8 == 7 && kernelAtLeast(6, 12)) {
                #expect(Array(many[(i * Self.page)..<((i + 1) * Self.page)]) == expected(first.index + i, tag: first.tag), "slot \(first.offset + UInt64(i)) in a read of \(run)")
            }
        }
        #expect(onDevice >= located.count / 2, "only \(onDevice) of \(located.count) slots read back")
        if case .bpf(zeromap: true) = access.slotStates {
            #expect(zero >= located.count / 16, "only \(zero) zeromapped slots of \(located.count) (every 8th page was zero)")
        }
    }

    /// A swap file on a rotational disk is never named by a CPU's percpu_swap_cluster, but the
    /// list of active areas leads to it from one that is: a small zram area (non-rotational),
    /// filled by a page-out first, then the swap file above it. Exactly the zero pages are
    /// `.zero` there.
    @Test(.needsSwapAndRoot, .needsBPF, .needsTool("mkswap", package: "util-linux"),
          .requires(FileManager.default.fileExists(atPath: "/sys/class/zram-control/hot_add"), "zram (CONFIG_ZRAM)"),
          .requiresKernel("percpu-swap-cluster", kernelAtLeast(6, 15), "Linux 6.15+ (percpu_swap_cluster)"))
    func swapFileReachedFromAnotherArea() throws {
        let zram = try BackendSwapArea(.zram, megabytes: 2, priority: 150)
        defer { zram.remove() }
        // Fill the zram area (its one cluster), so the CPUs' swap clusters name it and the
        // pages below go to the swap file.
        let seedLength = 1024 * Self.page
        let seed = try #require(mmap(nil, seedLength, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        defer { munmap(seed, seedLength) }
        for index in 0..<1024 { memset(seed + index * Self.page, Int32(index % 251 + 1), Self.page) }
        #expect(madvise(seed, seedLength, CPagestat_MADV_PAGEOUT) == 0)
        waitForWriteback()
        let file = try BackendSwapArea(.ddFile, priority: 200)
        defer { file.remove() }
        let reader = try SwapSlotReader()
        let access = try #require(reader.areas.first { $0.path == file.path })
        #expect(access.slotStates == .bpf(zeromap: true), "\(access.slotStates)")
        try Self.proveSlots(file) { _ in true }
    }

    @Test(.needsSwapAndRoot, .needsBPF, .needsTool("mkswap", package: "util-linux"))
    func ddWrittenSwapFileOnExt4() throws {
        let area = try BackendSwapArea(.ddFile)
        defer { area.remove() }
        try Self.proveSlots(area) { backend in
            switch backend {
            case .fileOnDevice(fileSystem: "ext4", _), .fileDirect(fileSystem: "ext4"): true
            default: false
            }
        }
    }

    @Test(.needsSwapAndRoot, .needsBPF, .needsTool("losetup", package: "mount"), .needsTool("mkfs.ext4", package: "e2fsprogs"))
    func fallocatedSwapFileOnLoopExt4ReadsTheDevice() throws {
        let area = try BackendSwapArea(.fallocatedFileOnLoopExt4)
        defer { area.remove() }
        try Self.proveSlots(area) { backend in
            if case .fileOnDevice(fileSystem: "ext4", let device) = backend { device.hasPrefix("/dev/loop") } else { false }
        }
    }

    @Test(.needsSwapAndRoot, .needsBPF, .needsTool("losetup", package: "mount"))
    func swapPartitionOnLoopDevice() throws {
        let area = try BackendSwapArea(.loopPartition)
        defer { area.remove() }
        try Self.proveSlots(area) { $0 == .blockDevice(path: area.path) }
    }

    @Test(.needsSwapAndRoot, .needsBPF, .requires(FileManager.default.fileExists(atPath: "/sys/class/zram-control/hot_add"), "zram (CONFIG_ZRAM)"))
    func zramDevice() throws {
        let area = try BackendSwapArea(.zram)
        defer { area.remove() }
        try Self.proveSlots(area) { $0 == .blockDevice(path: area.path) }
    }

    /// A page that was all zeros is only a zeromap bit (6.12+): its slot holds stale bytes (here
    /// the 0x5a the device was filled with), which must never be taken for it: its state is
    /// `.zero` where the BPF slot-state reader runs, `.unknown` where it cannot, never `.onDevice`.
    @Test(.needsSwapAndRoot, .needsTool("losetup", package: "mount"),
          .requiresKernel("zeromap", kernelAtLeast(6, 12), "Linux 6.12+ (the swap zeromap)"))
    func zeroPageIsNeverStaleData() throws {
        let area = try BackendSwapArea(.loopPartition, stale: 0x5a)
        defer { area.remove() }
        let reader = try SwapSlotReader()
        let access = try #require(reader.areas.first { $0.path == area.path })
        let length = Self.pages * Self.page
        let zeros = try #require(mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        defer { munmap(zeros, length) }
        for index in 0..<Self.pages {
            memset(zeros + index * Self.page, 0x33, Self.page)
            memset(zeros + index * Self.page, 0, Self.page)
        }
        #expect(madvise(zeros, length, CPagestat_MADV_PAGEOUT) == 0)
        waitForWriteback()
        var located = 0, zeroSlots = 0, staleSlots = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.page, alignment: Self.page)
        defer { buffer.deallocate() }
        for index in 0..<Self.pages {
            guard let entry = Pagemap.ownEntry(zeros + index * Self.page), entry.isSwap, !entry.isPresent,
                  Int(entry.swapType) == access.type else { continue }
            located += 1
            let state = try #require(reader.slotStates(type: access.type, offset: entry.swapOffset, count: 1).first)
            switch (access.slotStates, state) {
            case (.bpf(zeromap: true), .zero): zeroSlots += 1
            case (.unavailable(let reason, _), .unknown(let why)):
                #expect(!reason.isEmpty && why.contains(reason))
            default: Issue.record("zero page \(index) at slot \(entry.swapOffset): \(state) (slot states: \(access.slotStates))")
            }
            try reader.read(type: access.type, offset: entry.swapOffset, count: 1, into: buffer)
            if buffer.contains(0x5a) { staleSlots += 1 }
        }
        #expect(located >= Self.pages / 2, "only \(located) zero pages went to \(area.path)")
        // What makes the zeromap necessary: the slots hold the old bytes, not zeros.
        #expect(staleSlots == located, "\(located - staleSlots) zero pages' slots were written")
        if case .bpf(zeromap: true) = access.slotStates { #expect(zeroSlots == located) }
    }

    @Test(.needsSwapAndRoot, .requires(FileManager.default.fileExists(atPath: "/sys/module/zswap/parameters/enabled"), "zswap built in"))
    func zswapEnabledIsRefused() throws {
        let knob = "/sys/module/zswap/parameters/enabled"
        let saved = try kernelText(knob).trimmingCharacters(in: .whitespacesAndNewlines)
        try "Y".write(toFile: knob, atomically: false, encoding: .utf8)
        let reader: SwapSlotReader
        do {
            reader = try SwapSlotReader()
        } catch {
            try? saved.write(toFile: knob, atomically: false, encoding: .utf8)
            throw error
        }
        // Others share this machine: zswap is restored at once.
        try saved.write(toFile: knob, atomically: false, encoding: .utf8)
        #expect(try kernelText(knob).trimmingCharacters(in: .whitespacesAndNewlines) == saved)
        let area = try #require(reader.areas.first)
        #expect(area.backend == .refused(.zswapEnabled))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.page, alignment: Self.page)
        defer { buffer.deallocate() }
        #expect(throws: PageStatError.swapAreaRefused(area: area.path, refusal: .zswapEnabled)) {
            try reader.read(type: area.type, offset: 1, count: 1, into: buffer)
        }
        #expect(PageStatError.swapAreaRefused(area: area.path, refusal: .zswapEnabled).description.contains("turn zswap off"))
    }

    /// A swap file on a file system whose blocks are not a device's: tmpfs (where a swap file
    /// cannot even be turned on) is refused by name, before anything is read.
    @Test func swapFileOnTmpfsIsRefused() throws {
        let path = "/dev/shm/pagestat-slots-\(getpid())"
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { unlink(path) }
        #expect(ftruncate(fd, off_t(16 * Self.page)) == 0)
        close(fd)
        let opened = SwapSlotReader.open(path)
        #expect(opened.backend == .refused(.fileSystem("tmpfs")))
        #expect(opened.readable == nil)
        #expect(SwapRefusal.fileSystem("tmpfs").description.contains("ext4 or xfs"))
    }

    @Test(.needsRoot, .needsTool("mkfs.btrfs", package: "btrfs-progs"), .needsTool("losetup", package: "mount"))
    func swapFileOnBtrfsIsRefused() throws {
        let name = "pagestat-slots-\(getpid())"
        let image = "/var/tmp/\(name).img"
        let fd = open(image, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { unlink(image) }
        #expect(ftruncate(fd, 256 << 20) == 0)
        close(fd)
        let loop = try BackendSwapArea.output("losetup", ["-f", "--show", image])
        defer { _ = try? BackendSwapArea.output("losetup", ["-d", loop]) }
        try BackendSwapArea.output("mkfs.btrfs", ["-q", loop])
        let mountPoint = "/var/tmp/\(name).mnt"
        try #require(mkdir(mountPoint, 0o700) == 0)
        defer { rmdir(mountPoint) }
        try BackendSwapArea.output("mount", [loop, mountPoint])
        defer { _ = try? BackendSwapArea.output("umount", [mountPoint]) }
        let file = "\(mountPoint)/swapfile"
        let swapFile = open(file, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        try #require(swapFile >= 0)
        close(swapFile)
        defer { unlink(file) }
        #expect(SwapSlotReader.open(file).backend == .refused(.fileSystem("btrfs")))
    }

    /// Without root nothing can be read in place: doctor says so per area.
    @Test(.needsSwapAndRoot, .needsTool("setpriv", package: "util-linux"))
    func withoutRootDoctorSaysWhy() throws {
        let run = try runPagestat(["doctor"], asUser: 65534)
        let lines = run.stdout.split(separator: "\n").filter { $0.hasPrefix("swap slots") }
        #expect(!lines.isEmpty, "\(run.stdout)")
        for line in lines { #expect(line.contains("NO"), "\(line)") }
    }

    /// Root: doctor names each area's backend.
    @Test(.needsSwapAndRoot, .needsBPF)
    func doctorNamesEachBackend() throws {
        let run = try runPagestat(["doctor"])
        let lines = run.stdout.split(separator: "\n").filter { $0.hasPrefix("swap slots") }
        #expect(lines.count == SwapArea.active().count, "\(run.stdout)")
        #expect(lines.allSatisfy { $0.contains("type ") }, "\(lines)")
    }

    // MARK: Decoders, no kernel needed

    @Test func slotStateFromSwapMapByte() {
        #expect(SwapSlotReader.state(swapMap: 0, zero: false) == .free)
        #expect(SwapSlotReader.state(swapMap: 1, zero: false) == .onDevice)
        #expect(SwapSlotReader.state(swapMap: 0x41, zero: false) == .inSwapCache)
        #expect(SwapSlotReader.state(swapMap: 0x40, zero: false) == .inSwapCache)
        #expect(SwapSlotReader.state(swapMap: 1, zero: true) == .zero)
        #expect(SwapSlotReader.state(swapMap: 0x81, zero: false) == .onDevice)
        #expect(SwapSlotReader.state(swapMap: 0x3f, zero: false) != .onDevice)
    }

    /// A file system of 1 KiB blocks leaves extents that start inside a page: swapon keeps only
    /// their whole pages and numbers slots across them, so slot N is not at file offset N pages.
    @Test func slotsOfUnalignedExtentsAreTheirWholePages() {
        let k: UInt64 = 1024, page = UInt64(Self.page)
        let file = [
            SwapSlotReader.Extent(logical: 0, physical: 10241 * k, length: 4 * k),
            SwapSlotReader.Extent(logical: 4 * k, physical: 10245 * k, length: 6140 * k),   // continues on the device
            SwapSlotReader.Extent(logical: 6144 * k, physical: 20481 * k, length: 4096 * k),
        ]
        let slots = SwapSlotReader.slotExtents(file).map { [$0.logical, $0.physical, $0.length] }
        let first = (10241 * k + page - 1) / page, end = (16385 * k) / page
        let second = (20481 * k + page - 1) / page, secondEnd = (24577 * k) / page
        #expect(slots == [[0, first * page, (end - first) * page],
                          [(end - first) * page, second * page, (secondEnd - second) * page]])
        let aligned = [SwapSlotReader.Extent(logical: 0, physical: 1 << 20, length: 8 * page)]
        #expect(SwapSlotReader.slotExtents(aligned).map { [$0.logical, $0.physical, $0.length] } == [[0, 1 << 20, 8 * page]])
    }

    @Test func extentsMapFileOffsetsToTheDevice() {
        let extents = [
            SwapSlotReader.Extent(logical: 0, physical: 1 << 20, length: 8192),
            SwapSlotReader.Extent(logical: 8192, physical: (1 << 20) + 8192, length: 4096),   // continues on the device
            SwapSlotReader.Extent(logical: 12288, physical: 5 << 20, length: 4096),
        ]
        func located(_ offset: UInt64) -> [UInt64]? { SwapSlotReader.locate(offset, in: extents).map { [$0.device, $0.length] } }
        #expect(located(0) == [1 << 20, 12288])
        #expect(located(4096) == [(1 << 20) + 4096, 8192])
        #expect(located(12288) == [5 << 20, 4096])
        #expect(SwapSlotReader.locate(16384, in: extents) == nil)
    }
}
