import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab
@testable import PageStatRender

/// A memory cgroup whose name is bytes (any but NUL and '/'), made beside this test process's own
/// and removed on every way out (its processes moved back first).
final class ByteNamedCgroup {
    let home: String
    let name: [UInt8]

    init(_ name: [UInt8]) throws {
        let hierarchy = try MemoryCgroup.locate()
        home = hierarchy.mountPoint + (hierarchy.current == "/" ? "" : hierarchy.current)
        self.name = name
        let made = path("").withUnsafeBufferPointer { mkdir(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), 0o755) }
        if made != 0 && errno != EEXIST {
            throw PageStatError.system(call: "mkdir \(escapedName(NameBytes.decode(path("").dropLast())))", errno: .init(rawValue: errno))
        }
    }

    /// The NUL-terminated path of `file` in the cgroup (the directory itself for "").
    func path(_ file: String) -> [UInt8] {
        Array(home.utf8) + [0x2f] + name + (file.isEmpty ? [] : [0x2f] + Array(file.utf8)) + [0]
    }

    func enter(_ pid: Int32) throws {
        let fd = path("cgroup.procs").withUnsafeBufferPointer { open(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), O_WRONLY) }
        guard fd >= 0 else { throw PageStatError.system(call: "open cgroup.procs", errno: .init(rawValue: errno)) }
        defer { close(fd) }
        let text = Array(String(pid).utf8)
        guard write(fd, text, text.count) == text.count else { throw PageStatError.system(call: "write cgroup.procs", errno: .init(rawValue: errno)) }
    }

    func remove() {
        // A path that is not UTF-8 cannot go through Foundation: read it with open(2).
        let fd = path("cgroup.procs").withUnsafeBufferPointer { open(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), O_RDONLY) }
        if fd >= 0 {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let got = read(fd, &buffer, buffer.count)
            close(fd)
            if got > 0 {
                for pid in buffer[0..<got].split(separator: 0x0a) { try? MemoryCgroup.writeFile(home + "/cgroup.procs", String(decoding: pid, as: UTF8.self)) }
            }
        }
        for _ in 0..<100 {
            let removed = path("").withUnsafeBufferPointer { rmdir(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self)) }
            if removed == 0 || errno != EBUSY { break }
            usleep(10_000)
        }
    }

    deinit { remove() }
}

/// A child that sleeps until stopped: a process to put somewhere.
final class Sleeper {
    let process = Process()
    var pid: Int32 { process.processIdentifier }

    init() throws {
        process.executableURL = URL(fileURLWithPath: "/bin/sleep")
        process.arguments = ["600"]
        try process.run()
    }

    /// SIGKILL: a child inherits the test process's signal mask, where SIGTERM may be blocked.
    func stop() {
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

@Suite("Fleet views keep apart what differs only in bytes or device (needs root)", .serialized,
       .needsRoot)
struct FleetKeyTests {
    /// Two cgroups whose names differ only in a byte that is not UTF-8 (`\xff`, `\xfe`): two rows
    /// in text, JSON, CSV and Prometheus, each name written reversibly.
    @Test func cgroupsThatAreNotUTF8StayApart() throws {
        let stem = Array("pagestat-adv-\(getpid())-x".utf8)
        let ff = try ByteNamedCgroup(stem + [0xff])
        defer { ff.remove() }
        let fe = try ByteNamedCgroup(stem + [0xfe])
        defer { fe.remove() }
        let a = try Sleeper()
        defer { a.stop() }
        let b = try Sleeper()
        defer { b.stop() }
        try ff.enter(a.pid)
        try fe.enter(b.pid)
        let pids = ["--pid", String(a.pid), "--pid", String(b.pid)]
        let suffixes = ["pagestat-adv-\(getpid())-x\\xff", "pagestat-adv-\(getpid())-x\\xfe"]

        let text = try runPagestat(["top", "--by", "cgroup"] + pids)
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("2 processes in 2 cgroups"), "\(text.stdout)")
        for suffix in suffixes { #expect(text.stdout.contains(suffix + "\n"), "\(text.stdout)") }

        let json = try runPagestat(["top", "--by", "cgroup", "--format", "json"] + pids)
        let object = try #require(try JSONSerialization.jsonObject(with: json.output) as? [String: Any])
        let groups = try #require(object["groups"] as? [[String: Any]])
        #expect(groups.count == 2)
        let hex = Set(groups.compactMap { $0["cgroup_bytes"] as? String })
        #expect(hex.count == 2 && hex.allSatisfy { $0.hasSuffix("78ff") || $0.hasSuffix("78fe") }, "\(groups)")

        let csv = csvRows(try runPagestat(["top", "--by", "cgroup", "--format", "csv"] + pids).stdout)
        #expect(csv.count == 3, "\(csv)")
        for suffix in suffixes { #expect(csv.contains { $0["cgroup"]?.hasSuffix(suffix) == true }, "\(csv)") }

        let metrics = try runPagestat(["top", "--by", "cgroup", "--format", "prometheus"] + pids)
        let processes = try #require(try Prometheus.parse(metrics.stdout).first { $0.name == "pagestat_processes" })
        #expect(processes.samples.count == 2, "\(metrics.stdout)")
        for suffix in suffixes {
            #expect(processes.samples.contains { $0.value == 1 && $0.labels.contains { $0.0 == "cgroup" && $0.1.hasSuffix(suffix) } }, "\(metrics.stdout)")
        }
    }
}

/// A shmem file held mapped by a child in a mount namespace of its own, on a fresh tmpfs mounted
/// at `directory`: `pages` pages written, the first `swapped` paged out (MADV_PAGEOUT).
final class NamespacedShmemHolder {
    let child: ReadyChild
    var pid: Int32 { child.pid }

    init(directory: String, file: String, pages: Int, swapped: Int) throws {
        let script = """
        import mmap, os, sys
        path, pages, swapped = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        size = mmap.PAGESIZE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(fd, pages * size)
        m = mmap.mmap(fd, pages * size, mmap.MAP_SHARED)
        for page in range(pages):
            m[page * size] = 1
        m.madvise(21, 0, swapped * size)  # MADV_PAGEOUT
        print("ready", flush=True)
        sys.stdin.read()
        """
        child = try ReadyChild("the shmem holder", "/usr/bin/unshare",
                               ["--mount", "--propagation", "private", "/bin/sh", "-c",
                                "mount -t tmpfs pagestat-test \"$1\" && exec python3 -c \"$2\" \"$1/$3\" \"$4\" \"$5\"", "sh",
                                directory, script, file, String(pages), String(swapped)])
    }

    func stop() { child.stop() }
}

/// A child that prints "ready" once it has arranged what it holds, and holds it until its
/// standard input closes.
final class ReadyChild {
    let process = Process()
    let stdin = Pipe()
    var pid: Int32 { process.processIdentifier }

    init(_ what: String, _ executable: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardInput = stdin
        try process.run()
        let line = readLine(out)
        guard line == Data("ready".utf8) else {
            stop()
            throw PageStatError.invalidInput("\(what) did not start: \(String(decoding: line, as: UTF8.self))")
        }
    }

    func stop() {
        try? stdin.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    deinit { stop() }
}

@Suite("Objects keyed by device and inode (needs root and swap)", .serialized,
       .needsSwapAndRoot)
struct ObjectDeviceKeyTests {
    /// Two tmpfs mounts in two mount namespaces, at the same directory, each with the same file
    /// (so the same path and inode), part of it swapped: two object series, each with its own
    /// swapped bytes; none is lost.
    @Test func samePathAndInodeOnTwoDevicesAreTwoObjects() throws {
        let directory = "/tmp/pagestat-dev-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let page = TestEnvironment.pageSize
        let one = try NamespacedShmemHolder(directory: directory, file: "vm-ram", pages: 96, swapped: 64)
        defer { one.stop() }
        let two = try NamespacedShmemHolder(directory: directory, file: "vm-ram", pages: 96, swapped: 32)
        defer { two.stop() }
        let path = directory + "/vm-ram"

        let metrics = try runPagestat(["top", "--format", "prometheus", "--objects", "100", "--pid", String(one.pid), "--pid", String(two.pid)])
        #expect(metrics.status == 0, "\(metrics.stderr)")
        let families = try Prometheus.parse(metrics.stdout)
        let swapped = try #require(families.first { $0.name == "pagestat_object_swapped_bytes" })
        let ours = swapped.samples.filter { $0.labels.contains { $0 == ("path", path) } }
        #expect(ours.count == 2, "\(metrics.stdout)")
        let inodes = Set(ours.compactMap { sample in sample.labels.first { $0.0 == "inode" }?.1 })
        let devices = Set(ours.compactMap { sample in sample.labels.first { $0.0 == "dev" }?.1 })
        #expect(inodes.count == 1 && devices.count == 2, "the arranged case: one path and inode, two devices: \(ours)")
        // Every label set is unique, and each object keeps its own swap.
        for family in families {
            let keys = family.samples.map { $0.labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",") }
            #expect(Set(keys).count == keys.count, "\(family.name) repeats a label set")
        }
        #expect(Set(ours.map(\.value)) == [Double(64 * page), Double(32 * page)], "\(ours)")

        // objects: both, each with its device.
        let json = try runPagestat(["objects", "--format", "json"])
        let objects = try #require((try JSONSerialization.jsonObject(with: json.output) as? [String: Any])?["objects"] as? [[String: Any]])
        let listed = objects.filter { $0["path"] as? String == path }
        #expect(listed.count == 2 && Set(listed.compactMap { $0["dev"] as? String }).count == 2, "\(listed)")
    }
}

@Suite("Without privilege, unknown is never 0 (needs root and swap, to run both sides)", .serialized,
       .needsSwapAndRoot)
struct UnprivilegedFleetTests {
    /// A `lab hold` child of an unprivileged user holds shared memory (memfd, /dev/shm, shared
    /// anonymous, SysV; part in memory, part swapped). Root counts it; the same user cannot open
    /// the objects (map_files needs CAP_SYS_ADMIN), so its shares are unknown, not 0.
    @Test func topSharesAreUnknownNotZero() throws {
        let fixture = try FixtureProcess(asUser: 65534)
        defer { fixture.stop() }
        let pid = ["--pid", String(fixture.pid)]

        // Root: the truth, shared memory in memory and in swap.
        let root = try runPagestat(["top", "--format", "json"] + pid)
        let rootRow = try #require(((try JSONSerialization.jsonObject(with: root.output) as? [String: Any])?["processes"] as? [[String: Any]])?.first)
        let rootShmem = try #require(rootRow["shmem_resident"] as? UInt64)
        #expect(rootShmem > 0 && (rootRow["shmem_swap"] as? UInt64 ?? 0) > 0, "\(rootRow)")

        // The user: unknown, with the reason, in every format.
        let json = try runPagestat(["top", "--format", "json"] + pid, asUser: 65534)
        #expect(json.status == 0, "\(json.stderr)")
        let row = try #require(((try JSONSerialization.jsonObject(with: json.output) as? [String: Any])?["processes"] as? [[String: Any]])?.first)
        for key in ["shmem_resident", "shmem_swap", "shmem_cached_bytes", "swap"] { #expect(row[key] is NSNull, "\(key): \(row)") }
        let shared = try #require(row["shared"] as? [String: Any])
        #expect(shared["shmem"] is NSNull && shared["shared-anon"] is NSNull, "\(shared)")
        let reasons = try #require(row["unknown"] as? [String: String])
        #expect(reasons["shmem"]?.contains("CAP_SYS_ADMIN") == true, "\(reasons)")

        let text = try runPagestat(["top", "-o", "pid,shmem,shmem-swap,name"] + pid, asUser: 65534)
        let line = try #require(text.stdout.split(separator: "\n").first { $0.hasPrefix("\(fixture.pid) ") || $0.contains(" \(fixture.pid) ") })
        let cells = line.split(separator: " ", omittingEmptySubsequences: true)
        #expect(cells.count >= 3 && cells[1] == "?" && cells[2] == "?", "\(text.stdout)")
        #expect(text.stdout.contains("unknown (?)"), "\(text.stdout)")

        let csv = csvRows(try runPagestat(["top", "--format", "csv"] + pid, asUser: 65534).stdout)
        let csvRow = try #require(csv.first { $0["pid"] == String(fixture.pid) })
        #expect(csvRow["shmem_resident"] == "" && csvRow["shmem_swap"] == "", "\(csvRow)")

        // Prometheus: the series absent, and a series that says why.
        let metrics = try runPagestat(["top", "--format", "prometheus", "--by", "process"] + pid, asUser: 65534)
        let families = try Prometheus.parse(metrics.stdout)
        for name in ["pagestat_shared_resident_bytes", "pagestat_shared_swapped_bytes", "pagestat_shared_cached_bytes"] {
            let samples = families.first { $0.name == name }?.samples ?? []
            #expect(!samples.contains { $0.labels.contains { $0 == ("kind", "shmem") } }, "\(name): \(metrics.stdout)")
        }
        let unknown = try #require(families.first { $0.name == "pagestat_shared_unknown_processes" })
        #expect(unknown.samples.contains { $0.labels.contains { $0 == ("kind", "shmem") } && $0.value == 1 }, "\(metrics.stdout)")
        #expect(try sampleValue(metrics.stdout, "pagestat_privileged") == 0)

        // objects: the memfd's size is unknown for the user (root knows it).
        let rootObjects = try runPagestat(["objects", "--format", "json"])
        let memfd = try #require(fixture.paths["memfd"])
        func entry(_ run: Run) throws -> [String: Any] {
            let objects = try #require((try JSONSerialization.jsonObject(with: run.output) as? [String: Any])?["objects"] as? [[String: Any]])
            return try #require(objects.first { object in
                (object["processes"] as? [[String: Any]])?.contains { $0["pid"] as? Int == Int(fixture.pid) } == true
                    && (object["path"] as? String).map { memfd.hasSuffix($0) || $0.hasPrefix("/memfd:") } == true
            })
        }
        #expect(try entry(rootObjects)["size"] as? UInt64 ?? 0 > 0)
        let userObjects = try runPagestat(["objects", "--format", "json"], asUser: 65534)
        let userEntry = try entry(userObjects)
        #expect(userEntry["size"] is NSNull && userEntry["unknown"] is String, "\(userEntry)")
        let userText = try runPagestat(["objects"], asUser: 65534).stdout
        let memfdLine = try #require(userText.split(separator: "\n").first { $0.contains("/memfd:") && $0.contains("\(fixture.pid)/") })
        #expect(memfdLine.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first == "?", "\(memfdLine)")
    }
}

/// Runs the built pagestat with `arguments`, its output thrown away: its exit status, its peak
/// memory (GNU time's %M: ru_maxrss from wait4(2), KiB) and its standard error.
func peakRSS(_ arguments: [String]) throws -> (status: Int32, kib: Int, stderr: String) {
    let report = NSTemporaryDirectory() + "pagestat-peak-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: report) }
    let run = try runCommand("/bin/sh", ["-c", "exec /usr/bin/time -f %M -o \"$0\" \"$@\" > /dev/null", report,
                                         TestEnvironment.pagestatPath] + arguments)
    let text = try String(contentsOfFile: report, encoding: .utf8)
    let kib = Int(text.split(separator: "\n").last.map(String.init) ?? "") ?? -1
    return (run.status, kib, run.stderr)
}

/// A child with `gib` GiB of private anonymous memory (MAP_NORESERVE, read-only) of which every
/// other page is read: each read maps the shared zero page, so the child costs page tables only
/// (2 MiB per GiB), yet its mapping holds 2 runs per 2 pages (zero page, none). Holds it until
/// standard input closes.
final class ZeroPageHolder {
    let child: ReadyChild
    var pid: Int32 { child.pid }

    init(gib: Int) throws {
        let script = """
        import mmap, sys
        size = int(sys.argv[1]) << 30
        m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000, prot=mmap.PROT_READ)  # MAP_NORESERVE
        page = mmap.PAGESIZE
        total = 0
        for offset in range(0, size, 2 * page):
            total += m[offset]
        print("ready", flush=True)
        sys.stdin.read()
        """
        child = try ReadyChild("the zero-page holder", "/usr/bin/env", ["python3", "-c", script, String(gib)])
    }

    func stop() { child.stop() }
}

@Suite("summary and top stream: peak memory bounded by a mapping, not by runs (needs root)", .serialized,
       .needsRoot)
struct FleetStreamingTests {
    /// 8 GiB of private memory, every other page the zero page: one mapping of 2^21 runs. `show`
    /// streams them; `summary` and `top` must too, their peak memory near `show`'s, nowhere near
    /// what holding the runs takes (64 MiB of runs alone).
    @Test func summaryAndTopPeakMemoryStaysBounded() throws {
        let child = try ZeroPageHolder(gib: 8)
        defer { child.stop() }
        let pid = String(child.pid)
        let show = try peakRSS(["show", pid, "--format", "csv"])
        let summary = try peakRSS(["summary", pid])
        let top = try peakRSS(["top", "--pid", pid])
        #expect(show.status == 0 && summary.status == 0 && top.status == 0, "\(show.stderr) \(summary.stderr) \(top.stderr)")
        #expect(summary.kib < 64 * 1024, "summary peaked at \(summary.kib) KiB (show: \(show.kib) KiB)")
        #expect(top.kib < 64 * 1024, "top peaked at \(top.kib) KiB (show: \(show.kib) KiB)")
    }
}

@Suite("The degraded exporter: unknown shares absent, never 0 (needs root and swap, to run both sides)", .serialized,
       .needsSwapAndRoot)
struct DegradedExporterTests {
    /// An unprivileged exporter scraping an unprivileged `lab hold` child: the child's shmem share
    /// cannot be counted, so its series are absent and pagestat_shared_unknown_processes says
    /// so; root's exporter has them.
    @Test func sharesItCannotCountAreAbsent() throws {
        let fixture = try FixtureProcess(asUser: 65534)
        defer { fixture.stop() }
        let mine: (String, String) = ("pid", String(fixture.pid))

        let root = try ExporterProcess(["--min-interval", "600", "--by", "process"])
        defer { root.stop() }
        let rootMetrics = try #require(httpRequest(root.port, "/metrics"))
        #expect(try sampleValue(rootMetrics.body, "pagestat_shared_resident_bytes", [mine, ("kind", "shmem")]) ?? 0 > 0, "\(rootMetrics.body)")

        let user = try ExporterProcess(["--min-interval", "600", "--by", "process"], asUser: 65534)
        defer { user.stop() }
        let metrics = try #require(httpRequest(user.port, "/metrics"))
        #expect(metrics.status == 200)
        #expect(try sampleValue(metrics.body, "pagestat_processes", [mine]) == 1, "the child is scanned")
        for name in ["pagestat_shared_resident_bytes", "pagestat_shared_swapped_bytes", "pagestat_shared_cached_bytes"] {
            #expect(try sampleValue(metrics.body, name, [mine, ("kind", "shmem")]) == nil, "\(name) is not unknown")
        }
        #expect(try sampleValue(metrics.body, "pagestat_swap_bytes", [mine]) == nil)
        #expect(try sampleValue(metrics.body, "pagestat_shared_unknown_processes", [mine, ("kind", "shmem")]) == 1)
        #expect(try sampleValue(metrics.body, "pagestat_objects_uncounted", [("kind", "shmem")]) ?? 0 > 0)
        #expect(try sampleValue(metrics.body, "pagestat_objects_resident_bytes", [("kind", "shmem")]) == nil)
    }
}
