import CPagestat
import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore

/// The built pagestat with standard output on `stdout` (standard input /dev/null): how it ended
/// and its stderr.
private func runPagestat(_ arguments: [String], stdout: FileHandle) throws -> (reason: Process.TerminationReason, status: Int32, stderr: String) {
    let process = Process()
    configure(process, pagestat: arguments, asUser: nil)
    let err = Pipe()
    process.standardOutput = stdout
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationReason, process.terminationStatus, String(decoding: errData, as: UTF8.self))
}

/// A range of this process's stack, as `raw` takes it.
private func stackRange() throws -> String {
    let maps = try ProcFS.readText("/proc/\(getpid())/maps", pid: getpid(), what: "maps")
    let line = try #require(maps.split(separator: "\n").first { $0.contains("[stack]") })
    return "0x" + String(try #require(line.split(separator: "-").first)) + "+4K"
}

/// Every command that writes to standard output, on this process where it takes one.
private func commandsThatWrite() throws -> [[String]] {
    let pid = String(getpid())
    return [
        ["show", pid], ["show", pid, "--format", "json"], ["show", pid, "--format", "csv"],
        ["summary", pid], ["summary", pid, "--format", "json"], ["summary", pid, "--interval", "0.1", "--count", "30"],
        ["top"], ["top", "--format", "prometheus"], ["top", "--by", "cgroup", "--format", "prometheus"],
        ["objects"], ["objects", "--format", "json"],
        ["file", "/proc/self/exe"],
        ["map", pid], ["map", pid, "--format", "svg"],
        ["raw", pid, "--range", try stackRange()],
        ["doctor"], ["doctor", "--format", "json"],
        ["lab", "--pages", "16", "--private", "--dirty", "50", "--exit-on-eof"],
        ["demo", "--pages", "30"],
        ["--help"], ["--version"], ["show", "--help"],
    ]
}

@Suite("Lost output is an error: a full disk exits 74 with one line, a reader that goes away is SIGPIPE")
struct LostOutputTests {
    /// /dev/full fails every write with ENOSPC, as a full filesystem does.
    @Test func fullDiskIsExit74WithOneLine() throws {
        for arguments in try commandsThatWrite() { try expectExit74OnAFullDisk(arguments) }
    }

    /// A pipe whose read end is closed before pagestat starts: every write fails with EPIPE.
    @Test func closedPipeEndsBySIGPIPEQuietly() throws {
        for arguments in try commandsThatWrite() { try expectSIGPIPEOnAClosedPipe(arguments) }
    }

    /// `lab hold` pages part of its layout out before it writes: it needs swap.
    @Test(.requires(TestEnvironment.swapOn, "swap on (lab hold pages part of its layout out)"))
    func labHoldLosesNoOutput() throws {
        try expectExit74OnAFullDisk(["lab", "hold", "--pages", "16"])
        try expectSIGPIPEOnAClosedPipe(["lab", "hold", "--pages", "16"])
    }

    private func expectExit74OnAFullDisk(_ arguments: [String]) throws {
        let full = try #require(FileHandle(forWritingAtPath: "/dev/full"))
        defer { try? full.close() }
        let run = try runPagestat(arguments, stdout: full)
        #expect(run.reason == .exit && run.status == 74, "\(arguments): \(run.reason) \(run.status) \(run.stderr)")
        #expect(run.stderr.hasSuffix("pagestat: write error: No space left on device\n"), "\(arguments): \(run.stderr)")
        #expect(run.stderr.split(separator: "\n").filter { !$0.hasPrefix("pagestat: note:") }.count == 1,
                "\(arguments): \(run.stderr)")
    }

    private func expectSIGPIPEOnAClosedPipe(_ arguments: [String]) throws {
        let pipe = Pipe()
        try pipe.fileHandleForReading.close()
        let run = try runPagestat(arguments, stdout: pipe.fileHandleForWriting)
        try? pipe.fileHandleForWriting.close()
        #expect(run.reason == .uncaughtSignal && run.status == SIGPIPE, "\(arguments): \(run.reason) \(run.status) \(run.stderr)")
        #expect(!run.stderr.contains("write"), "\(arguments): \(run.stderr)")
    }

    /// The same through a shell, as a user sees it: status 141 (128 + SIGPIPE).
    @Test func shellSeesStatus141() throws {
        let pagestat = TestEnvironment.pagestatPath
        // `true` has exited (the pipe's read end closed) a second before pagestat starts.
        let pipeline = try runCommand("/bin/bash", ["-c", "exec 3>&1; { sleep 1; \(pagestat) map \(getpid()) 3>&-; echo $? >&3; } | true"])
        #expect(pipeline.stdout == "141\n", "\(pipeline.stdout) \(pipeline.stderr)")
    }

    /// The textfile recipe on a full tmpfs fails and leaves the good file alone.
    @Test(.requires(TestEnvironment.isRoot, "root (mounting a small tmpfs)"))
    func textfileRecipeKeepsTheGoodFileOnAFullDisk() throws {
        let pagestat = TestEnvironment.pagestatPath

        let directory = "/tmp/pagestat-full-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        defer { rmdir(directory) }
        try #require(try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=4k", "pagestat-full", directory]).status == 0)
        defer { _ = try? runCommand("/bin/umount", [directory]) }
        let good = String(repeating: "# good metrics\n", count: 100)
        try good.write(toFile: "\(directory)/pagestat.prom", atomically: false, encoding: .utf8)
        let recipe = try runCommand("/bin/bash", ["-c", "cd \(directory) && \(pagestat) top --format prometheus > f.2 && mv f.2 pagestat.prom"])
        #expect(recipe.status == 74, "\(recipe.stderr)")
        #expect(recipe.stderr == "pagestat: write error: No space left on device\n")
        #expect(try String(contentsOfFile: "\(directory)/pagestat.prom", encoding: .utf8) == good)
    }

    @Test(.needsSwapAndRoot)
    func benchTablesToAFullDisk() throws {
        for arguments in [["bench", "--pages", "4096", "--runs", "1"], ["bench", "--mappings", "16", "--runs", "1"]] {
            let full = try #require(FileHandle(forWritingAtPath: "/dev/full"))
            defer { try? full.close() }
            let run = try runPagestat(arguments, stdout: full)
            #expect(run.reason == .exit && run.status == 74, "\(arguments): \(run.status) \(run.stderr)")
            #expect(run.stderr.hasSuffix("pagestat: write error: No space left on device\n"), "\(arguments): \(run.stderr)")
        }
    }
}

@Suite("Input as the kernel writes it: maps ranges are hexadecimal, -p on every command that takes a pid")
struct KernelFormInputTests {
    /// A mapping at 0x10000000: maps writes it `10000000-10021000`, every digit decimal.
    @Test func mapsRangeWithOnlyDecimalDigitsIsHexadecimal() throws {
        let length = 0x21000
        let wanted = UnsafeMutableRawPointer(bitPattern: 0x1000_0000)
        let address = mmap(wanted, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | CPagestat_MAP_FIXED_NOREPLACE, -1, 0)
        try #require(address == wanted, "0x10000000 is taken in this process: \(String(cString: strerror(errno)))")
        defer { munmap(address, length) }
        address!.storeBytes(of: 1, as: UInt8.self)
        let maps = try ProcFS.readText("/proc/\(getpid())/maps", pid: getpid(), what: "maps")
        #expect(maps.contains("10000000-10021000 rw-p"), "\(maps)")

        let run = try runPagestat(["show", String(getpid()), "--range", "10000000-10021000", "--format", "csv"])
        #expect(run.status == 0, "\(run.stderr)")
        let rows = run.stdout.split(separator: "\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        #expect(!rows.isEmpty)
        for row in rows {
            #expect(UInt64(row[0]) == 0x1000_0000 && UInt64(row[1]) == 0x1002_1000, "\(row)")
        }
    }

    /// `top -p PID`, as every other command that takes a pid.
    @Test(.requires(TestEnvironment.swapOn, "swap on (the lab hold child pages part of its layout out)"))
    func topTakesDashP() throws {
        let fixture = try FixtureProcess(pages: 16)
        defer { fixture.stop() }
        let run = try runPagestat(["top", "-p", String(fixture.pid), "--format", "csv", "-o", "pid"])
        #expect(run.status == 0, "\(run.stderr)")
        let rows = run.stdout.split(separator: "\n").dropFirst().filter { !$0.hasPrefix("TOTAL") && !$0.hasPrefix("total") }
        #expect(rows == ["\(fixture.pid)"], "\(run.stdout)")
    }
}
