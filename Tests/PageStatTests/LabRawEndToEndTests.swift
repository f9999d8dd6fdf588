import Foundation
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore
@testable import PageStatLab

/// `pagestat lab ARGUMENTS --exit-on-eof` running as a child, with its layout line read.
final class LabProcess {
    let process = Process()
    let stdin = Pipe()
    let stderr = Pipe()
    let pid: Int32
    let start: UInt64
    let pages: Int

    init(_ arguments: [String]) throws {
        configure(process, pagestat: ["lab"] + arguments + ["--exit-on-eof"], asUser: nil)
        let out = Pipe()
        process.standardOutput = out
        process.standardInput = stdin
        process.standardError = stderr
        try process.run()
        let line = readLine(out)
        let object = try #require(try? JSONSerialization.jsonObject(with: line) as? [String: Any],
                                  "lab printed no layout: \(String(decoding: line, as: UTF8.self))")
        #expect(Set(object.keys) == ["pid", "start", "pages", "page_size"])
        #expect(object["page_size"] as? Int == TestEnvironment.pageSize)
        pid = Int32(try #require(object["pid"] as? Int))
        start = try #require((object["start"] as? NSNumber)?.uint64Value)
        pages = try #require(object["pages"] as? Int)
    }

    var range: AddressRange { AddressRange(start: start, end: start + UInt64(pages * TestEnvironment.pageSize)) }
    var rangeArgument: String { "\(hex(range.start))-\(hex(range.end))" }
    var cgroupPath: String { LabCgroup.path(pid) }

    /// SIGTERM; returns the exit status.
    func terminate() -> Int32 {
        kill(pid, SIGTERM)
        process.waitUntilExit()
        return process.terminationStatus
    }

    func stop() {
        try? stdin.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// Where `pagestat lab --memory-limit` makes its cgroup on this machine, cgroup v1 or v2, and how
/// the kernel shows it.
enum LabCgroup {
    static let hierarchy = try? MemoryCgroup.locate()
    static var isV1: Bool { hierarchy?.version == .v1 }

    /// `<mount point>/pagestat-lab-PID`: /sys/fs/cgroup/memory/... on v1, /sys/fs/cgroup/... on v2.
    static func path(_ pid: Int32) -> String { (hierarchy?.mountPoint ?? "/sys/fs/cgroup") + "/pagestat-lab-\(pid)" }

    /// The line of /proc/PID/cgroup that names it.
    static func membership(_ pid: Int32) -> String { (isV1 ? "memory" : "0:") + ":/pagestat-lab-\(pid)\n" }

    /// The file that holds its limit.
    static var limitFile: String { isV1 ? "memory.limit_in_bytes" : "memory.max" }
}

/// `pagestat show --pid PID --range RANGE --format json`: the per-page states of its one mapping.
func showStates(pid: Int32, range: String) throws -> [PageState] {
    let run = try runPagestat(["show", "--pid", String(pid), "--range", range, "--format", "json"])
    #expect(run.status == 0, "\(run.stderr)")
    let json = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
    let mappings = try #require(json["mappings"] as? [[String: Any]])
    try #require(mappings.count == 1)
    return jsonPageStates(try #require(mappings[0]["runs"] as? [[String: Any]]))
}

/// `pagestat raw` as a child: its binary output as entries.
func rawEntries(pid: Int32, range: String, kernel: Bool = false) throws -> [UInt64] {
    let run = try runPagestat(["raw", "--pid", String(pid), "--range", range] + (kernel ? ["--kernel"] : []))
    #expect(run.status == 0 && run.stderr.isEmpty, "\(run.stderr)")
    try #require(run.output.count % 8 == 0)
    return run.output.withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }
}

/// Checks that `raw` equals `kernel` (itself equal to a direct pread) except at `swapped`, where
/// the kernel said 0 and raw says bit 62 and nothing above bit 54: the swap location in bits 0-54
/// where the BPF engine loads (`auto`), none (bit 62 alone) where it does not.
func expectMarked(raw: [UInt64], kernel: [UInt64], pread: [UInt64], swapped: Set<Int>,
                  sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(kernel == pread, "raw --kernel equals a pread of pagemap", sourceLocation: sourceLocation)
    #expect(raw.count == kernel.count, sourceLocation: sourceLocation)
    var differing = Set<Int>()
    for (index, (marked, own)) in zip(raw, kernel).enumerated() where marked != own {
        differing.insert(index)
        #expect(own == 0 && marked >> 55 == RawPagemap.swapBit >> 55, "entry \(index): \(hex(own)) became \(hex(marked))",
                sourceLocation: sourceLocation)
    }
    #expect(differing == swapped, "exactly the swapped shared pages differ", sourceLocation: sourceLocation)
}

@Suite("pagestat lab and raw on child processes (needs root and swap)", .serialized,
       .needsSwapAndRoot)
struct LabRawEndToEndTests {
    @Test func pageoutLayoutIsExactAndRawMarksIt() throws {
        let lab = try LabProcess(["--pages", "2048", "--shared", "--dirty", "50", "--pageout", "100"])
        let states = try showStates(pid: lab.pid, range: lab.rangeArgument)
        #expect(states == pages(1024, .swapped) + pages(1024, .none))
        #expect(try smapsSwappedPages(lab.start, pid: lab.pid) == 1024)

        // The range reaches two pages past the mapping; whatever is there, raw is the kernel's.
        let beyond = AddressRange(start: lab.range.start, end: lab.range.end + 2 * UInt64(TestEnvironment.pageSize))
        let argument = "\(hex(beyond.start))+\(beyond.length)"
        let raw = try rawEntries(pid: lab.pid, range: argument)
        let kernel = try rawEntries(pid: lab.pid, range: argument, kernel: true)
        expectMarked(raw: raw, kernel: kernel, pread: try RawPagemapRealMemoryTests.pagemap(lab.pid, beyond),
                     swapped: Set(0..<1024))
        let mapped = try ProcMaps.read(pid: lab.pid).contains { $0.range.overlaps(AddressRange(start: lab.range.end, end: beyond.end)) }
        if !mapped { #expect(raw[2048...].allSatisfy { $0 == 0 }, "pages outside any mapping read 0") }
        #expect(lab.terminate() == 0)
    }

    @Test func rawOnEveryFixtureLayout() throws {
        let fixture = try FixtureProcess()
        defer { fixture.stop() }
        let q = fixture.pages / 4
        // Where the fixture swapped shared memory out (see ShowEndToEndTests.expected).
        let swappedShared: [String: Range<Int>] = ["shared-anon": 0..<q, "sysv": 0..<q, "memfd": 2 * q..<3 * q, "tmpfs": 2 * q..<3 * q]
        for region in fixture.regions.keys.sorted() {
            let range = try fixture.range(region)
            let argument = "\(hex(range.start))-\(hex(range.end))"
            let raw = try rawEntries(pid: fixture.pid, range: argument)
            expectMarked(raw: raw, kernel: try rawEntries(pid: fixture.pid, range: argument, kernel: true),
                         pread: try RawPagemapRealMemoryTests.pagemap(fixture.pid, range),
                         swapped: Set(swappedShared[region] ?? 0..<0))
            if region == "memfd" || region == "tmpfs" {
                #expect(raw[0..<q].allSatisfy { $0 == 0 }, "\(region): cached (pwrite) pages stay 0")
            }
            if region == "private-anon" {
                #expect(raw[0..<q].allSatisfy { $0 & RawPagemap.swapBit != 0 }, "private swap entries, the kernel's own")
            }
        }
    }

    @Test func memoryLimitedCgroupSwapsAndIsRemoved() throws {
        let lab = try LabProcess(["--pages", "4096", "--shared", "--dirty", "100", "--memory-limit", "2M"])
        let cgroup = lab.cgroupPath
        #expect(FileManager.default.fileExists(atPath: cgroup))
        let membership = try ProcFS.readText("/proc/\(lab.pid)/cgroup", pid: lab.pid, what: "cgroup")
        #expect(membership.contains(LabCgroup.membership(lab.pid)), "\(membership)")
        #expect(try ProcFS.readText(cgroup + "/" + LabCgroup.limitFile, pid: lab.pid, what: "limit") == "2097152\n")

        // The cgroup may go on reclaiming for a moment after the lab has written its pages:
        // compare only what was read while smaps' count held still (before and after).
        var settled = false
        for _ in 0..<10 where !settled {
            let swapped = try smapsSwappedPages(lab.start, pid: lab.pid)
            let states = try showStates(pid: lab.pid, range: lab.rangeArgument)
            // raw marks exactly those pages.
            let raw = try rawEntries(pid: lab.pid, range: lab.rangeArgument)
            guard swapped == (try smapsSwappedPages(lab.start, pid: lab.pid)) else {
                usleep(50_000)
                continue
            }
            settled = true
            #expect(swapped > 0)
            #expect(UInt64(states.filter { $0 == .swapped }.count) == swapped)
            #expect(!states.contains(.none) && !states.contains(.unknown), "every page was written")
            // Shared memory: bit 62, with the swap location where the BPF engine loads (`auto`).
            let marked = raw.filter { $0 >> 55 == RawPagemap.swapBit >> 55 }.count
            #expect(UInt64(marked) == swapped)
        }
        #expect(settled, "the cgroup kept swapping under ten reads")

        #expect(lab.terminate() == 0)
        #expect(!FileManager.default.fileExists(atPath: cgroup), "the cgroup is removed at exit")
    }

    @Test func patternsAsPlanned() throws {
        let alternate = try LabProcess(["--pages", "64", "--private", "--dirty", "50", "--pattern", "alternate"])
        #expect(try showStates(pid: alternate.pid, range: alternate.rangeArgument)
            == (0..<64).map { $0 % 2 == 0 ? .present : .none })
        alternate.stop()
        #expect(alternate.process.terminationStatus == 0, "standard input ended: a clean exit")

        let random = try LabProcess(["--pages", "256", "--private", "--dirty", "30", "--pattern", "random", "--seed", "9"])
        let expected = writtenPages(DirtyPlan(pages: 256, percent: 30, pattern: .random, seed: 9)).map { $0 ? PageState.present : .none }
        #expect(try showStates(pid: random.pid, range: random.rangeArgument) == expected)
        #expect(random.terminate() == 0)
    }

    @Test func interruptedSetupRemovesTheCgroup() throws {
        // 1 GiB written under a generous limit: SIGTERM lands while it writes.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestEnvironment.pagestatPath)
        process.arguments = ["lab", "--pages", "262144", "--shared", "--dirty", "100", "--memory-limit", "8G"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = Pipe()
        try process.run()
        let cgroup = LabCgroup.path(process.processIdentifier)
        var waited = 0
        while !FileManager.default.fileExists(atPath: cgroup) && waited < 500 && process.isRunning {
            usleep(2_000)
            waited += 1
        }
        #expect(FileManager.default.fileExists(atPath: cgroup))
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit)
        // Caught while it wrote: 128 + SIGTERM. Only if the writes had finished first (its layout
        // line printed) is it the ordinary way out, 0.
        let finishedSetup = !out.fileHandleForReading.readDataToEndOfFile().isEmpty
        #expect(process.terminationStatus == (finishedSetup ? 0 : 128 + SIGTERM), "layout printed: \(finishedSetup)")
        #expect(!finishedSetup, "SIGTERM came after the 1 GiB was written: the test did not interrupt the setup")
        #expect(!FileManager.default.fileExists(atPath: cgroup))
    }

    @Test func failedSetupRemovesTheCgroup() throws {
        // 4 TiB of shared memory cannot be mapped (more than memory and swap): mmap fails after
        // the cgroup was made.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestEnvironment.pagestatPath)
        process.arguments = ["lab", "--pages", "1073741824", "--shared", "--dirty", "0", "--memory-limit", "1G"]
        let err = Pipe()
        process.standardOutput = Pipe()
        process.standardError = err
        try process.run()
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 1)
        #expect(errors == "pagestat: mmap: Cannot allocate memory\n")
        #expect(!FileManager.default.fileExists(atPath: LabCgroup.path(process.processIdentifier)))
    }

    @Test func cgroupWithoutPrivilegeIsPermissionDenied() throws {
        let run = try runPagestat(["lab", "--pages", "16", "--shared", "--dirty", "100", "--memory-limit", "1M"], asUser: 65534)
        #expect(run.status == 4)
        #expect(run.stderr.hasPrefix("pagestat: permission denied: \(LabCgroup.path(0).dropLast())"), "\(run.stderr)")
        #expect(run.stderr.split(separator: "\n").count == 1)
        #expect(run.stdout.isEmpty)
    }

    @Test func rawStopsQuietlyWhenTheReaderGoesAway() throws {
        // 512 KiB of entries into `head -c 16`: the pipe closes long before the end.
        let lab = try LabProcess(["--pages", "65536", "--private", "--dirty", "0"])
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", "\"$0\" raw --pid \(lab.pid) --range \(lab.rangeArgument) | head -c 16 | od -An -tx1; echo \"status=${PIPESTATUS[0]}\"",
                             TestEnvironment.pagestatPath]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // Ended by SIGPIPE, quietly, as a pipeline expects (128 + 13).
        #expect(output.hasSuffix("status=141\n"), "\(output)")
        #expect(errors.isEmpty, "\(errors)")
        #expect(lab.terminate() == 0)
    }
}

@Suite("pagestat lab and raw: usage, errors, help")
struct LabRawErrorTests {
    @Test func usageErrorsExit64() throws {
        let lab = ["lab", "--pages", "16"]
        for arguments in [lab + ["--shared", "--dirty", "150"], lab + ["--dirty", "50"],
                          lab + ["--shared", "--private", "--dirty", "50"], lab + ["--shared"],
                          lab + ["--shared", "--dirty", "50", "--memory-limit", "12Q"],
                          lab + ["--shared", "--dirty", "50", "--memory-limit", "0"],
                          lab + ["--shared", "--dirty", "50", "--swappiness", "10"],
                          lab + ["--shared", "--dirty", "50", "--memory-limit", "1M", "--swappiness", "300"],
                          lab + ["--shared", "--dirty", "50", "--pageout", "101"],
                          lab + ["--shared", "--dirty", "50", "--seed", "3"],
                          lab + ["--shared", "--dirty", "50", "--pattern", "sideways"],
                          ["lab", "--pages", "0", "--shared", "--dirty", "50"],
                          ["raw", "--pid", "1"], ["raw", "--pid", "1", "--range", "0x2000-0x1000"]] {
            let run = try runPagestat(arguments)
            #expect(run.status == 64, "\(arguments)")
            #expect(!run.stderr.isEmpty && run.stdout.isEmpty, "\(arguments)")
        }
    }

    @Test func rawErrors() throws {
        let unmapped = try runPagestat(["raw", "--pid", String(getpid()), "--range", "0x1000+4K"])
        #expect(unmapped.status == 5)
        #expect(unmapped.stderr == "pagestat: range 0x1000-0x2000 is not mapped in process \(getpid())\n")
        #expect(unmapped.stdout.isEmpty)
        let missing = try runPagestat(["raw", "--pid", "999999999", "--range", "0x1000+4K"])
        #expect(missing.status == 3)
        #expect(missing.stderr == "pagestat: no such process: 999999999\n")
    }

    @Test(.requires(FileManager.default.isExecutableFile(atPath: "/usr/bin/script"), "script(1) for a terminal (Debian's bsdutils)"))
    func rawRefusesATerminal() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        process.arguments = ["-qec", "\(TestEnvironment.pagestatPath) raw --pid \(getpid()) --range 0x1000+4K", "/dev/null"]
        let out = Pipe()
        process.standardOutput = out
        process.standardInput = Pipe()
        try process.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 64)
        #expect(output.contains("refusing to write binary pagemap entries to a terminal"))
    }

    @Test func helpTeaches() throws {
        /// Help text with its line wrapping undone.
        func help(_ command: String) throws -> String {
            let run = try runPagestat([command, "--help"])
            #expect(run.status == 0)
            return run.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
        let lab = try help("lab")
        for words in ["--memory-limit", "memory.limit_in_bytes", "MADV_PAGEOUT", "SIGTERM", "--exit-on-eof", "\"page_size\"", "Examples",
                      "pagestat lab hold", "anon (default)"] {
            #expect(lab.contains(words), "\(words)")
        }
        // The layouts the tests point pagestat at are a documented mode, not a hidden command.
        let hold = try runPagestat(["lab", "hold", "--help"])
        #expect(hold.status == 0)
        for words in ["end-to-end checks", "memfd", "SysV", "until standard input closes", "--repeated-mappings", "Examples"] {
            #expect(hold.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ").contains(words), "\(words)")
        }
        let raw = try help("raw")
        for words in ["carries bit 62", "swap type and offset stay 0", "(`cached` in `pagestat show`) stay 0", "hexdump -C",
                      "--kernel", "little-endian", "Examples"] {
            #expect(raw.contains(words), "\(words)")
        }
        let root = try runPagestat(["--help"])
        #expect(root.stdout.contains("lab") && root.stdout.contains("raw"))
    }
}
