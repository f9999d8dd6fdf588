import CPagestat
import Foundation
import PageStatRender
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// What the target does while it is read: a mapping replaced under `raw`, a mapped file renamed
/// between two reads of maps. Arranged on this very process, between the library's steps.
@Suite("Target changes while it is read: replaced mappings, renamed files")
struct TargetChangeTests {
    /// The hostile case: half of a private mapping replaced (MAP_FIXED) by a memfd, written and
    /// paged out, between two batches of `raw`. The stream ends before any entry of the memfd is
    /// written (pagemap reads its swapped pages as 0, which `raw` would pass on as "not there").
    @Test(.needsSwapAndRoot) func rawEndsWhenAMappingIsReplacedWhileItReads() throws {
        let pages = 512, batch = 64
        let pageSize = TestEnvironment.pageSize
        let memory = try ArrangedMemory(pages: pages, backing: .privateAnonymous)
        memory.write(0..<pages)
        let memfd = CPagestat_memfd_create("pagestat-replacing", 1 /* MFD_CLOEXEC */)
        try #require(memfd >= 0)
        defer { close(memfd) }
        try #require(ftruncate(memfd, off_t(pages / 2 * pageSize)) == 0)
        let half = UnsafeMutableRawPointer(bitPattern: UInt(memory.address) + UInt(pages / 2 * pageSize))!
        let raw = try RawPagemap(pid: getpid(), batchPages: batch)
        var entries: [UInt64] = []
        var replaced = false
        var message: String?
        do throws(PageStatError) {
            try raw.stream(memory.range) { (bytes: UnsafeRawBufferPointer) throws(PageStatError) in
                entries += Array(bytes.bindMemory(to: UInt64.self))
                guard !replaced else { return }
                replaced = true
                // While `raw` waits on its reader: the second half becomes the memfd's.
                let mapped = mmap(half, pages / 2 * pageSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, memfd, 0)
                guard mapped == half else { return }
                for page in 0..<pages / 2 { half.storeBytes(of: 0x77, toByteOffset: page * pageSize, as: UInt8.self) }
                _ = try? ArrangedMemory.pageOut(half, length: pages / 2 * pageSize, mappingStart: UInt64(UInt(bitPattern: half)),
                                                untilSwapped: pages / 2)
            }
        } catch {
            guard case .mappingReplaced(_, let text) = error else { throw error }
            message = text
        }
        #expect(replaced)
        let text = try #require(message, "the stream went on over the replaced half")
        #expect(text.contains("is now") && text.contains("not written") && text.contains("/memfd:pagestat-replacing"), "\(text)")
        // What was written is the private half's, entry for entry; nothing of the memfd's.
        #expect(entries.count == pages / 2, "\(entries.count) entries written")
        #expect(entries.allSatisfy { $0 & (RawPagemap.presentBit | RawPagemap.swapBit) != 0 })
        // A fresh raw reads it whole and marks the memfd's paged-out pages swapped: the zeros
        // pagemap gave the old stream there were wrong.
        var fresh: [UInt64] = []
        try RawPagemap(pid: getpid(), batchPages: batch).stream(memory.range) { (bytes: UnsafeRawBufferPointer) throws(PageStatError) in
            fresh += Array(bytes.bindMemory(to: UInt64.self))
        }
        #expect(fresh.count == pages)
        #expect(fresh[(pages / 2)...].contains { $0 & RawPagemap.swapBit != 0 && $0 & RawPagemap.presentBit == 0 })
    }

    /// The error of a replacement: the command exits 9 (an object changed while it was read)
    /// with one line naming both mappings.
    @Test func replacementFoundBetweenBatchesNamesBothMappings() {
        func mapping(_ start: UInt64, _ end: UInt64, _ permissions: String, inode: UInt64, path: String) -> Mapping {
            Mapping(range: AddressRange(start: start, end: end), permissions: permissions, offset: 0, deviceMajor: 0,
                    deviceMinor: inode == 0 ? 0 : 1, inode: inode, path: path, kind: inode == 0 ? .privateAnon : .shmem)
        }
        let before = [mapping(0x10000, 0x30000, "rw-p", inode: 0, path: "")]
        let now = [mapping(0x10000, 0x20000, "rw-p", inode: 0, path: ""),
                   mapping(0x20000, 0x30000, "rw-s", inode: 7, path: "/memfd:x (deleted)")]
        // The first half of the batch still stands; the second was replaced.
        #expect(RawPagemap.replaced(in: AddressRange(start: 0x10000, end: 0x20000), before: before, now: now) == nil)
        let found = RawPagemap.replaced(in: AddressRange(start: 0x18000, end: 0x28000), before: before, now: now)
        #expect(found?.now.path == "/memfd:x (deleted)")
        // Unmapped, not replaced: pagemap's 0 is the truth there (a note says so at the end).
        #expect(RawPagemap.replaced(in: AddressRange(start: 0x20000, end: 0x30000), before: before, now: [now[0]]) == nil)
    }

    /// A mapped file renamed (and then unlinked) between two reads of maps: the same mapping
    /// (device, inode, offset, range, permissions), only the path text changed.
    @Test func renamedFileIsTheSameMapping() throws {
        let pages = 16
        let pageSize = TestEnvironment.pageSize
        let path = "/var/tmp/pagestat-rename-\(getpid())"
        let renamed = path + "-renamed"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        try #require(fd >= 0, "create \(path)")
        defer { close(fd); unlink(path); unlink(renamed) }
        try #require(ftruncate(fd, off_t(pages * pageSize)) == 0)
        let memory = try ArrangedMemory(pages: pages, backing: .file(fd: fd, shared: true))
        memory.write(0..<pages / 2)
        func ours() throws -> [Mapping] {
            try ProcMaps.read(pid: getpid()).filter { $0.range.overlaps(memory.range) }
        }
        let before = try ours()
        try #require(before.count == 1 && before[0].path == path)
        try #require(rename(path, renamed) == 0)
        let now = try ours()
        try #require(now.count == 1 && now[0].path == renamed, "maps names the new path")
        #expect(ProcessScanner.changedMappings(before, now: now).isEmpty, "a rename is not a change of the mapping")
        #expect(ProcessScanner.standing(before, now: now) == [0])
        try #require(unlink(renamed) == 0)
        let deleted = try ours()
        #expect(deleted.first?.path == renamed + " (deleted)")
        #expect(ProcessScanner.changedMappings(before, now: deleted).isEmpty, "nor is an unlink")
        // Another file mapped in its place is.
        let other = "/var/tmp/pagestat-rename-other-\(getpid())"
        let otherFD = open(other, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        try #require(otherFD >= 0)
        defer { close(otherFD); unlink(other) }
        try #require(ftruncate(otherFD, off_t(pages * pageSize)) == 0)
        let base = UnsafeMutableRawPointer(bitPattern: UInt(memory.address))!
        try #require(mmap(base, pages * pageSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, otherFD, 0) == base)
        #expect(ProcessScanner.changedMappings(before, now: try ours()) == [0])
        withExtendedLifetime(memory) {}
    }

    /// The same during a scan: the file renamed while the scan hands on the mapping before it,
    /// so that the next wave's read of maps names it anew. Its pages are still read, not
    /// `unknown` with a "changed during the scan" note.
    @Test func fileRenamedDuringAScanIsStillRead() throws {
        let pages = 64
        let pageSize = TestEnvironment.pageSize
        let path = "/var/tmp/pagestat-rename-scan-\(getpid())"
        let renamed = path + "-renamed"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        try #require(fd >= 0, "create \(path)")
        defer { close(fd); unlink(path); unlink(renamed) }
        try #require(ftruncate(fd, off_t(pages * pageSize)) == 0)
        // Private memory, then the file right above it: two mappings, one wave each.
        let memory = try ArrangedMemory(pages: 2 * pages, backing: .privateAnonymous)
        memory.write(0..<pages)
        let upper = UnsafeMutableRawPointer(bitPattern: UInt(memory.address) + UInt(pages * pageSize))!
        try #require(mmap(upper, pages * pageSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == upper)
        for page in 0..<pages { upper.storeBytes(of: 0x42, toByteOffset: page * pageSize, as: UInt8.self) }

        struct Renaming: ScanConsumer {
            let from: String, to: String
            var renamed = false
            var runs: [PageRun] = []
            mutating func begin(_ mapping: Mapping, scanned: AddressRange) {
                if !renamed { renamed = rename(from, to) == 0 }
            }
            mutating func runs(_ runs: [PageRun]) { self.runs += runs }
            mutating func end(use: MemoryUse?) {}
        }
        var consumer = Renaming(from: path, to: renamed)
        var options = ScanOptions(range: memory.range, hugeAndZeroFlags: false)
        options.wavePages = UInt64(pages)
        let result = try ProcessScanner(pid: getpid()).scan(options, into: &consumer)
        #expect(consumer.renamed)
        #expect(!result.notes.contains { if case .mappingsChanged = $0 { true } else { false } }, "\(result.notes)")
        let fileRuns = consumer.runs.filter { $0.start >= UInt64(UInt(bitPattern: upper)) }
        #expect(fileRuns.reduce(0) { $0 + $1.pages } == UInt64(pages))
        #expect(fileRuns.allSatisfy { $0.state == .present }, "\(fileRuns)")
        withExtendedLifetime(memory) {}
    }
}

/// `--engine bpf` where the BPF engine cannot run: every command that takes `--engine` exits 7
/// with one line naming what is missing, whatever the target holds, and writes nothing.
@Suite("--engine bpf that cannot run: exit 7 on every command")
struct EngineRefusalTests {
    /// The commands that take --engine, on a target of shared anonymous memory (nothing that
    /// unprivileged pagestat can open: before, the file side was never reached), a private
    /// range and a /dev/shm file.
    func commands(pid: Int32, shared: String, stack: String, file: String) -> [[String]] {
        [["show", String(pid)], ["summary", String(pid)], ["map", String(pid)],
         ["raw", "--pid", String(pid), "--range", shared], ["raw", "--pid", String(pid), "--range", stack],
         ["map", "--file", file], ["file", file], ["objects"]].map { $0 + ["--engine", "bpf"] }
    }

    func target(asUser uid: UInt32?) throws -> (FixtureProcess, shared: String, stack: String) {
        let fixture = try FixtureProcess(arguments: ["lab", "hold", "--vanish", "--pages", "64"], asUser: uid)
        let start = UInt64(try #require(fixture.layout["start"] as? Int))
        let stack = try #require(try ProcMaps.read(pid: fixture.pid).first { $0.path == "[stack]" }).range
        return (fixture, "\(hex(start))+256K", "\(hex(stack.end - 0x1000))+4K")
    }

    func expectRefused(_ run: Run, _ command: [String], reason: String) {
        #expect(run.status == 7, "\(command): exit \(run.status), \(run.stderr)")
        #expect(run.stderr.hasPrefix("pagestat: ") && run.stderr.contains("not supported by this kernel: BPF page-cache reader: "),
                "\(command): \(run.stderr)")
        #expect(run.stderr.contains(reason), "\(command): the reason names what is missing: \(run.stderr)")
        #expect(run.stderr.split(separator: "\n").count == 1, "\(command): one line: \(run.stderr)")
        #expect(run.output.isEmpty, "\(command): nothing written")
    }

    @Test(.requires(TestEnvironment.isRoot, "root (to run pagestat as another user)")) func withoutPrivilege() throws {
        let (fixture, shared, stack) = try target(asUser: 65534)
        defer { fixture.stop() }
        let file = "/dev/shm/pagestat-engine-refusal-user-\(getpid())"
        try #require(FileManager.default.createFile(atPath: file, contents: Data(count: 4096), attributes: [.posixPermissions: 0o644]))
        defer { unlink(file) }
        for command in commands(pid: fixture.pid, shared: shared, stack: stack, file: file) {
            expectRefused(try runPagestat(command, asUser: 65534), command, reason: "not permitted to load a BPF iterator")
        }
    }

    /// As root on a host without libbpf: arranged in a mount namespace of the test's own, where
    /// /dev/null is bind-mounted over libbpf.so.1's file.
    @Test(.requires(TestEnvironment.isRoot, "root (a mount namespace)")) func asRootWithoutLibbpf() throws {
        let library = URL(fileURLWithPath: "/usr/lib/x86_64-linux-gnu/libbpf.so.1").resolvingSymlinksInPath().path
        try #require(FileManager.default.fileExists(atPath: library), "\(library) is not there to hide")
        let (fixture, shared, stack) = try target(asUser: nil)
        defer { fixture.stop() }
        let file = "/dev/shm/pagestat-engine-refusal-root-\(getpid())"
        try #require(FileManager.default.createFile(atPath: file, contents: Data(count: 4096)))
        defer { unlink(file) }
        for command in commands(pid: fixture.pid, shared: shared, stack: stack, file: file) {
            let quoted = ([TestEnvironment.pagestatPath] + command).map { "'\($0)'" }.joined(separator: " ")
            // Pins off too: a host without libbpf cannot have pinned the program, and this one may
            // have (bpffs mounted at /sys/fs/bpf, as systemd does, with an earlier run's pin).
            let run = try runCommand("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c",
                                                          "mount --bind /dev/null '\(library)' && PAGESTAT_BPF_PIN_ROOT=off exec \(quoted)"])
            expectRefused(run, command, reason: "libbpf.so.1 could not be opened")
        }
    }
}
