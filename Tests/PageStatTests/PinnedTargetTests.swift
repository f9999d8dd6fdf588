import CPagestat
import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// A scanner is pinned to one process and one address space: exec, a vfork child's exec, exit
/// and zombies are told apart and reported, never answered for with another address space.
/// Each case is arranged on a real child process.
@Suite("Pinned target: exec, vfork, exit, zombie, changed mappings")
struct PinnedTargetTests {
    /// Polls `condition` every millisecond for up to five seconds.
    func waitUntil(_ condition: () -> Bool) -> Bool {
        for _ in 0..<5000 {
            if condition() { return true }
            usleep(1000)
        }
        return false
    }

    func executable(_ pid: Int32) -> String? { try? ProcFS.readLink("/proc/\(pid)/exe") }

    func state(_ pid: Int32) -> UInt8? {
        guard let stat = try? ProcFS.readBytes("/proc/\(pid)/stat", pid: pid, what: "stat"),
              let close = stat.lastIndex(of: 0x29), close + 2 < stat.count else { return nil }
        return stat[close + 2]
    }

    @Test func execAfterPinningIsReportedNotAnswered() throws {
        // sh waits for EOF on its input, then replaces itself with sleep.
        let child = try ChildProcess(["/bin/sh", "-c", "read x; exec /bin/sleep 100"], captureOutput: false)
        defer { child.signal(SIGKILL); child.wait() }
        let shell = executable(child.pid)
        let scanner = try ProcessScanner(pid: child.pid)
        child.closeInput()
        #expect(waitUntil { executable(child.pid) != shell }, "the child never exec'd")
        #expect(throws: PageStatError.addressSpaceReplaced(pid: child.pid)) { try scanner.scan() }
        // A new scanner pins the new program and reads it.
        let fresh = try ProcessScanner(pid: child.pid).scan()
        #expect(fresh.mappings.contains { $0.mapping.path.hasSuffix("/sleep") })
    }

    @Test func rawOfAProcessThatExecsOrDiesIsNeverATruncatedStream() throws {
        // Pinned before the exec: the stream would read nothing from the old address space.
        let child = try ChildProcess(["/bin/sh", "-c", "read x; exec /bin/sleep 100"], captureOutput: false)
        defer { child.signal(SIGKILL); child.wait() }
        let shell = executable(child.pid)
        let range = try #require(try ProcMaps.read(pid: child.pid).first { $0.path == "[stack]" }).range
        let raw = try RawPagemap(pid: child.pid)
        child.closeInput()
        #expect(waitUntil { executable(child.pid) != shell }, "the child never exec'd")
        var bytes = 0
        #expect(throws: PageStatError.addressSpaceReplaced(pid: child.pid)) {
            try raw.stream(range) { (chunk: UnsafeRawBufferPointer) throws(PageStatError) in bytes += chunk.count }
        }
        #expect(bytes == 0)
        // Killed, not reaped: exited, not an empty stream.
        let other = try ChildProcess(["/bin/sleep", "100"], captureOutput: false)
        defer { other.wait() }
        let otherRange = try #require(try ProcMaps.read(pid: other.pid).first { $0.path == "[stack]" }).range
        let otherRaw = try RawPagemap(pid: other.pid)
        other.signal(SIGKILL)
        #expect(waitUntil { state(other.pid) == UInt8(ascii: "Z") })
        #expect(throws: PageStatError.processExited(pid: other.pid)) {
            try otherRaw.stream(otherRange) { (_: UnsafeRawBufferPointer) throws(PageStatError) in }
        }
    }

    @Test func vforkChildThatExecsIsReportedNotReadFromItsParent() throws {
        // The child shares this process's address space until it execs: pinned then, its
        // descriptors keep reading ours afterwards, while its maps would name another program.
        var toChild: [Int32] = [-1, -1]
        var fromChild: [Int32] = [-1, -1]
        #expect(CPagestat_pipe_cloexec(&toChild) == 0 && CPagestat_pipe_cloexec(&fromChild) == 0)
        let inFD = toChild[0], outFD = fromChild[1]
        // vfork suspends the calling thread until the child execs: call it from another thread.
        let started = DispatchSemaphore(value: 0)
        let spawner = Thread {
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup("sleep"), strdup("100"), nil]
            var argvCopy = argv
            _ = CPagestat_vfork_exec_after_byte(inFD, outFD, "/bin/sleep", &argvCopy)
            for pointer in argv { free(pointer) }
            started.signal()
        }
        spawner.start()
        var child: Int32 = 0
        #expect(read(fromChild[0], &child, MemoryLayout<Int32>.size) == MemoryLayout<Int32>.size)
        defer {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
            for fd in toChild + fromChild { close(fd) }
        }
        // Pinned while it shares our address space.
        let scanner = try ProcessScanner(pid: child)
        var byte: UInt8 = 1
        #expect(write(toChild[1], &byte, 1) == 1)
        started.wait()
        #expect(waitUntil { executable(child)?.hasSuffix("/sleep") == true })
        #expect(throws: PageStatError.addressSpaceReplaced(pid: child)) { try scanner.scan() }
    }

    /// The hostile case: a vfork child that executes its parent's very program with ASLR off
    /// gets its parent's layout (the fingerprint cannot tell), while descriptors pinned before
    /// the exec go on reading the parent's address space, alive in the parent.
    @Test func vforkChildThatExecsTheSameProgramWithASLROffIsReportedNotReadFromItsParent() throws {
        let pages = 65536  // 256 MiB, written
        let lab = Process()
        lab.executableURL = URL(fileURLWithPath: "/usr/bin/setarch")
        lab.arguments = ["-R", TestEnvironment.pagestatPath, "lab", "hold", "--vfork-exec", "first", "--pages", String(pages)]
        let input = Pipe(), output = Pipe()
        lab.standardInput = input
        lab.standardOutput = output
        try lab.run()
        defer { try? input.fileHandleForWriting.close(); lab.waitUntilExit() }
        let layout = try #require(try JSONSerialization.jsonObject(with: readLine(output)) as? [String: Any])
        let parent = Int32(try #require(layout["pid"] as? Int))
        let start = UInt64(try #require(layout["start"] as? Int))
        let parentMemory = AddressRange(start: start, end: start + UInt64(pages * TestEnvironment.pageSize))
        // The vfork child, waiting for a byte before it execs.
        var child: Int32 = 0
        #expect(waitUntil {
            let listed = (try? ProcFS.readBytes("/proc/\(parent)/task/\(parent)/children", pid: parent, what: "children")) ?? []
            child = Int32(String(decoding: listed, as: UTF8.self).split(separator: " ").first ?? "") ?? 0
            return child > 0 && executable(child) != nil
        }, "the lab never vforked")
        // Pinned while it shares its parent's address space: then that is its memory.
        let scanner = try ProcessScanner(pid: child)
        let before = try #require(try ProcessHandle(pid: child).identity())
        #expect(try scanner.scan(ScanOptions(range: AddressRange(start: start, end: start + 0x1000))).mappings.count == 1)
        input.fileHandleForWriting.write(Data([0x0a]))
        let execed = try #require(try JSONSerialization.jsonObject(with: readLine(output)) as? [String: Any])
        #expect(execed["pid"] as? Int == Int(child) && execed["generation"] as? String == "again")
        // The case as arranged: the new program's layout fingerprint is the old one.
        try #require(try ProcessHandle(pid: child).identity()?.values == before.values,
                     "the exec'd program's layout differs (ASLR on?): the case is not arranged")
        #expect(throws: PageStatError.addressSpaceReplaced(pid: child)) { try scanner.scan() }
        // A scan started now reads the child's own address space, not its parent's 256 MiB.
        let fresh = try ProcessScanner(pid: child).scan()
        #expect(!fresh.mappings.contains { $0.mapping.range.overlaps(parentMemory) })
        let show = try runPagestat(["show", String(child), "--range", "0x\(String(start, radix: 16))+4K"])
        #expect(show.status == 5, "\(show.stderr)")
    }

    @Test func killedButNotReapedIsExitedNotUnknown() throws {
        let child = try ChildProcess(["/bin/sleep", "100"], captureOutput: false)
        defer { child.wait() }
        let scanner = try ProcessScanner(pid: child.pid)
        child.signal(SIGKILL)
        // Not reaped: /proc/PID stays, a zombie without memory.
        #expect(waitUntil { state(child.pid) == UInt8(ascii: "Z") })
        #expect(throws: PageStatError.processExited(pid: child.pid)) { try scanner.scan() }
        // A new scan of the zombie: no address space (exit 8), not an empty report.
        #expect(throws: PageStatError.noAddressSpace(pid: child.pid)) { try ProcessScanner(pid: child.pid) }
        let run = try runPagestat(["show", "--pid", String(child.pid)])
        #expect(run.status == 8, "\(run.stderr)")
        #expect(run.stdout.isEmpty)
    }

    @Test func reapedProcessIsNoSuchProcess() throws {
        let child = try ChildProcess(["/bin/sleep", "100"], captureOutput: false)
        let scanner = try ProcessScanner(pid: child.pid)
        child.signal(SIGKILL)
        child.wait()
        #expect(throws: PageStatError.processExited(pid: child.pid)) { try scanner.scan() }
        #expect(throws: PageStatError.noSuchProcess(pid: child.pid)) { try ProcessScanner(pid: child.pid) }
    }

    @Test func mappingsThatChangeBetweenReadsAreFound() {
        func mapping(_ start: UInt64, _ end: UInt64, _ path: String = "", permissions: String = "rw-p") -> Mapping {
            Mapping(range: AddressRange(start: start, end: end), permissions: permissions, offset: 0, deviceMajor: 0,
                    deviceMinor: 0, inode: 0, path: path, kind: .privateAnon)
        }
        func at(_ start: UInt64, _ end: UInt64, offset: UInt64) -> Mapping {
            Mapping(range: AddressRange(start: start, end: end), permissions: "rw-s", offset: offset, deviceMajor: 0,
                    deviceMinor: 1, inode: 9, path: "/memfd:x (deleted)", kind: .shmem)
        }
        let before = [mapping(0x1000, 0x3000), mapping(0x5000, 0x6000, "[heap]"), mapping(0x8000, 0x9000),
                      mapping(0xa000, 0xb000), mapping(0xc000, 0xd000), at(0x10000, 0x12000, offset: 0x4000),
                      at(0x20000, 0x21000, offset: 0)]
        // The first stays; the heap grew; the third was unmapped; the fourth changed protection;
        // the fifth merged with a new neighbour below it; the sixth shrank; the seventh was
        // mapped again at another offset of its object.
        let now = [mapping(0x1000, 0x3000), mapping(0x5000, 0x7000, "[heap]"),
                   mapping(0xa000, 0xb000, permissions: "r--p"), mapping(0xb000, 0xd000),
                   at(0x10000, 0x11000, offset: 0x4000), at(0x20000, 0x21000, offset: 0x1000)]
        #expect(ProcessScanner.changedMappings(before, now: now) == [2, 3, 5, 6])
        #expect(ProcessScanner.changedMappings(before, now: before).isEmpty)
        #expect(ProcessScanner.changedMappings(before, now: []) == Array(before.indices))
    }

    @Test func vsyscallIsUnknownWithItsReason() throws {
        let report = try ProcessScanner(pid: getpid()).scan()
        let above = report.mappings.filter { $0.mapping.range.start >= ProcessScanner.userSpaceEnd }
        try #require(!above.isEmpty, "this machine maps no [vsyscall]")
        for mapping in above {
            #expect(mapping.runs.allSatisfy { $0.state == .unknown })
        }
        #expect(report.notes.contains(.aboveUserAddressSpace(mapping: "[vsyscall]")))
        #expect(report.notes.contains { $0.description.hasPrefix("[vsyscall]: unknown: it lies above the user address space") })
    }

    @Test func identityParsesTheLayoutFieldsAfterAHostileName() throws {
        // A command name with spaces and parentheses: fields are counted from the last ')'.
        let fields = (3...52).map { String($0) }.joined(separator: " ")
        let stat = Array("42 (a) b (c) \(fields)".utf8)
        let identity = try #require(AddressSpaceIdentity(stat: stat))
        #expect(identity.values == [26, 27, 28, 45, 46, 47, 48, 49, 50, 51])
        let hidden = Array("42 (k) \((3...52).map { $0 == 3 ? "S" : "0" }.joined(separator: " "))".utf8)
        #expect(AddressSpaceIdentity(stat: hidden) == nil)
        #expect(ProcStat.isZombie(Array("7 (x) y) Z 1".utf8)))
        #expect(!ProcStat.isZombie(Array("7 (x) y) S 1".utf8)))
    }
}

/// A process that executes a new program every few milliseconds, scanned over and over: every
/// answer is either a whole, consistent report or exit 6 naming the exec, never a report of the
/// wrong address space (unknown pages beyond [vsyscall]'s, or a crash).
@Suite("Pinned target under a process that keeps executing")
struct ExecLoopTests {
    @Test(.requires(TestEnvironment.isRoot, "root: without it the cached pages of files this user may not write are unknown too"))
    func scansOfAnExecLoopAreWholeOrExit6() throws {
        let script = NSTemporaryDirectory() + "pagestat-exec-loop-\(getpid()).sh"
        try "sleep 0.003\nexec /bin/sh \"$0\"\n".write(toFile: script, atomically: true, encoding: .utf8)
        defer { unlink(script) }
        let child = try ChildProcess(["/bin/sh", script], captureOutput: false)
        defer { child.signal(SIGKILL); child.wait() }
        var replaced = 0
        for _ in 0..<40 {
            let run = try runPagestat(["show", "--pid", String(child.pid), "--format", "json"])
            switch run.status {
            case 0:
                let json = try #require(try JSONSerialization.jsonObject(with: run.output) as? [String: Any])
                let totals = try #require(json["totals"] as? [String: Int])
                let notes = try #require(json["notes"] as? [String])
                // [vsyscall]'s one page is the only unknown of a consistent scan of sh, unless a
                // mapping changed while it was read (sh's heap as it starts), which a note says.
                let changed = notes.contains { $0.contains("changed during the scan") }
                #expect((totals["unknown"] ?? -1) <= 1 || changed, "\(notes)")
            case 6:
                #expect(run.stderr.hasSuffix("executed a new program during the scan (its address space was replaced); scan it again\n")
                        || run.stderr.hasSuffix("exited during the scan\n"), "\(run.stderr)")
                #expect(run.stderr.split(separator: "\n").count == 1)
                replaced += 1
            default:
                Issue.record("exit \(run.status): \(run.stderr)")
            }
        }
        print("exec loop: \(replaced) of 40 scans saw the exec and said so")
    }
}
