import Foundation
import Testing

import CPagestat
@testable import PageStat

/// What commands change on the host (a temporary swap file, vm.max_map_count) is put back on
/// every way out: a closed pipe, SIGINT, SIGTERM, SIGHUP, SIGQUIT, a signal during set-up. The
/// kernel is the oracle: /proc/swaps, the directory, /proc/sys. Each run gets a directory of its
/// own under /var/tmp for its swap file, and the test removes whatever a failing run left.
@Suite(.serialized)
struct LifecycleTests {
    /// A fresh directory on /var/tmp (a disk filesystem) for the temporary swap files of one test.
    final class SwapDirectory {
        let path: String

        init() throws {
            var template = Array("/var/tmp/pagestat-lifecycle.XXXXXX".utf8CString)
            let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
            path = String(cString: try #require(made))
        }

        /// Active swap areas in this directory (the kernel's /proc/swaps).
        var activeAreas: [String] { SwapArea.active().map(\.path).filter { $0.hasPrefix(path + "/") } }
        /// Files in this directory.
        var files: [String] { (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] }

        /// What a run left: nothing, or a description (and then it is cleaned up).
        func leftover() -> String? {
            let areas = activeAreas
            let left = files
            guard !areas.isEmpty || !left.isEmpty else { return nil }
            for area in areas { _ = CPagestat_swapoff(area) }
            for file in left { unlink(path + "/" + file) }
            return "swap on: \(areas), files: \(left)"
        }

        deinit {
            _ = leftover()
            rmdir(path)
        }
    }

    /// Starts `pagestat ARGUMENTS` with SIGINT, SIGQUIT, SIGPIPE... at their defaults, no core
    /// dump and no Swift backtrace (its symbolication of a debug build takes minutes), output to
    /// /dev/null.
    static func start(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "ulimit -c 0; exec env --default-signal SWIFT_BACKTRACE=enable=no \"$0\" \"$@\" >/dev/null",
                             TestEnvironment.pagestatPath] + arguments
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Waits up to `seconds` for `condition`.
    static func wait(seconds: Double, until condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(2000)
        }
        return condition()
    }

    @Test(.needsRoot, arguments: [["demo"], ["doctor", "--verify"]])
    func pipedIntoHeadLeavesNoSwap(command: [String]) throws {
        let directory = try SwapDirectory()
        let option = command == ["demo"] ? "--swap-directory" : "--directory"
        let arguments = command + ["--temporary-swap", option, directory.path]
        let line = ([TestEnvironment.pagestatPath] + arguments).map { "'\($0)'" }.joined(separator: " ")
        // The reader takes one line and goes: the next write gets SIGPIPE.
        let run = try runCommand("/bin/bash", ["-c", "ulimit -c 0; env --default-signal SWIFT_BACKTRACE=enable=no \(line) | head -1 >/dev/null; echo ${PIPESTATUS[0]}"])
        #expect(run.stdout == "141\n", "\(command): ended with \(run.stdout) \(run.stderr)")
        #expect(directory.leftover() == nil, "\(command) | head -1")
    }

    @Test(.needsRoot, arguments: [SIGINT, SIGTERM, SIGHUP, SIGQUIT])
    func signalAfterSetUpLeavesNoSwap(signal: Int32) throws {
        let directory = try SwapDirectory()
        let process = try Self.start(["demo", "--temporary-swap", "--swap-directory", directory.path, "--pages", "65536"])
        let on = Self.wait(seconds: 60) { !directory.activeAreas.isEmpty || !process.isRunning }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        #expect(on, "the demo's swap file never came on")
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == signal,
                "signal \(signal): ended with \(process.terminationReason) \(process.terminationStatus)")
        #expect(directory.leftover() == nil, "signal \(signal) after set-up")
    }

    /// The signal comes anywhere from before the handlers exist to the middle of set-up (a 1 GiB
    /// file: allocated, header written and synced, swapon), at random.
    @Test(.needsRoot, arguments: [SIGINT, SIGTERM, SIGQUIT])
    func signalDuringSetUpLeavesNoSwap(signal: Int32) throws {
        let directory = try SwapDirectory()
        var generator = SystemRandomNumberGenerator()
        for round in 0..<12 {
            let delay = UInt32.random(in: 0...40_000, using: &generator)
            let process = try Self.start(["demo", "--temporary-swap", "--swap-directory", directory.path, "--pages", "131072"])
            usleep(delay)
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
            let left = directory.leftover()
            #expect(left == nil, "round \(round), signal \(signal) after \(delay) us: \(left ?? "")")
        }
    }

    /// SIGKILL cannot be caught: doctor names what it left, and --clean removes it.
    @Test(.needsRoot) func doctorNamesAndCleansWhatSigkillLeft() throws {
        let directory = try SwapDirectory()
        let process = try Self.start(["demo", "--temporary-swap", "--swap-directory", directory.path, "--pages", "65536"])
        let on = Self.wait(seconds: 60) { !directory.activeAreas.isEmpty || !process.isRunning }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try #require(on, "the demo's swap file never came on")
        let left = "\(directory.path)/pagestat-\(process.processIdentifier).swap"
        #expect(directory.activeAreas == [left])

        let report = try runPagestat(["doctor", "--directory", directory.path, "--format", "json"])
        let json = try #require(try JSONSerialization.jsonObject(with: report.output) as? [String: Any])
        #expect(json["leftover_swap_files"] as? [String] == [left])
        let text = try runPagestat(["doctor", "--directory", directory.path])
        #expect(text.stdout.contains("Left over: \(left)"))

        let clean = try runPagestat(["doctor", "--directory", directory.path, "--clean"])
        #expect(clean.status == 0, "\(clean.stderr)")
        #expect(clean.stderr.contains("removed \(left)"))
        #expect(!clean.stdout.contains("Left over"))
        #expect(directory.leftover() == nil)
    }

    @Test func unusableSwapDirectoriesAreRefused() throws {
        let empty = try runPagestat(["demo", "--swap-directory", ""])
        #expect(empty.status == 64)
        #expect(empty.stderr.contains("--swap-directory is empty"))
        let emptyDoctor = try runPagestat(["doctor", "--verify", "--directory", ""])
        #expect(emptyDoctor.status == 64)
        guard TestEnvironment.isRoot else { try notRunHere("root, to try swap on tmpfs (the checks above ran)") }
        let tmpfs = try runPagestat(["demo", "--temporary-swap", "--swap-directory", "/dev/shm"])
        #expect(tmpfs.status == 64)
        #expect(tmpfs.stderr == "pagestat: /dev/shm is on tmpfs: a swap file there would live in memory (and swapon refuses it); name a directory on a disk filesystem\n")
        #expect(!SwapArea.active().contains { $0.path.hasPrefix("/dev/shm/") })
    }

    /// `bench --mappings` raises vm.max_map_count for its run; SIGINT in the middle puts it back.
    @Test(.needsSwapAndRoot) func benchRestoresMaxMapCountOnSigint() throws {
        let path = "/proc/sys/vm/max_map_count"
        let original = try String(contentsOfFile: path, encoding: .utf8)
        defer {
            if (try? String(contentsOfFile: path, encoding: .utf8)) != original {
                try? original.write(toFile: path, atomically: false, encoding: .utf8)
            }
        }
        let mappings = (Int(original.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 65530) + 1
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["--default-signal", "SWIFT_BACKTRACE=enable=no", TestEnvironment.pagestatPath, "bench", "--mappings", String(mappings), "--runs", "1"]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        var lines: [String] = []
        while true {
            let line = String(decoding: readLine(err), as: UTF8.self)
            if line.isEmpty && !process.isRunning { break }
            lines.append(line)
            if line.contains("raised vm.max_map_count") { break }
        }
        let raised = try String(contentsOfFile: path, encoding: .utf8)
        usleep(100_000)
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        #expect(raised != original, "bench did not raise it: \(lines)")
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGINT)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == original)
    }
}
