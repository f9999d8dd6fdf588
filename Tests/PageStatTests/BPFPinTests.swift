import Foundation
import Testing

@testable import PageStat

/// A bpffs of the test's own, mounted on a new directory, that the runs pin into
/// (PAGESTAT_BPF_PIN_ROOT): the host's /sys/fs/bpf is never touched. `close()` unmounts it and
/// removes the directory (call it in a defer, so it runs on failure too).
private final class PrivateBPFFS {
    let root = "/tmp/pagestat-bpffs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    private var mounted = false

    init() throws {
        guard mkdir(root, 0o700) == 0 else { throw POSIXError(.EEXIST) }
        guard mount("bpf", root, "bpf", 0, nil) == 0 else {
            let error = errno
            close()
            throw POSIXError(POSIXErrorCode(rawValue: error) ?? .EINVAL)
        }
        mounted = true
    }

    var directory: String { root + "/pagestat" }
    var current: String { directory + "/" + (XArrayWalker.Pin.currentName ?? "?") }

    /// `pagestat ARGUMENTS` pinning here, saying on stderr where its BPF program came from.
    func run(_ arguments: [String]) throws -> Run {
        let process = Process()
        configure(process, pagestat: arguments, asUser: nil)
        var environment = ProcessInfo.processInfo.environment
        environment["PAGESTAT_BPF_PIN_ROOT"] = root
        environment["PAGESTAT_DEBUG_BPF"] = "1"
        process.environment = environment
        return try PageStatTests.run(process)
    }

    func close() {
        if mounted { umount2(root, Int32(MNT_DETACH)) }
        rmdir(root)
    }
}

/// The line a run printed about its BPF program (PAGESTAT_DEBUG_BPF).
private func origin(_ run: Run) -> String {
    run.stderr.split(separator: "\n").first { $0.hasPrefix("pagestat: BPF page-cache reader: ") }.map(String.init) ?? ""
}

private func owner(_ path: String) -> (uid: uid_t, mode: mode_t)? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return nil }
    return (st.st_uid, st.st_mode & 0o7777)
}

@Suite("the BPF program pinned in bpffs", .serialized, .needsRoot, .needsBPF)
struct BPFPinTests {
    /// The first run loads with libbpf and pins, root's alone; the second takes the pin.
    @Test func secondRunLoadsFromThePin() throws {
        let bpffs = try PrivateBPFFS()
        defer { bpffs.close() }
        let first = try bpffs.run(["doctor"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(origin(first).contains("loaded with libbpf and pinned at \(bpffs.current)"), "\(first.stderr)")
        #expect(owner(bpffs.directory).map { $0.uid == 0 && $0.mode == 0o700 } == true)
        #expect(owner(bpffs.current).map { $0.uid == 0 && $0.mode == 0o700 } == true)
        for pin in ["prog", "xw_io"] {
            #expect(owner(bpffs.current + "/" + pin).map { $0.uid == 0 && $0.mode == 0o600 } == true, "\(pin)")
        }
        let second = try bpffs.run(["doctor"])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(origin(second) == "pagestat: BPF page-cache reader: loaded from pin \(bpffs.current)", "\(second.stderr)")
        // Doctor names it, and says how it goes.
        let text = String(decoding: second.output, as: UTF8.self)
        #expect(text.contains("loaded from pin \(bpffs.current)"), "\(text)")
        #expect(text.contains("Pinned: \(bpffs.current), the BPF program this kernel's runs reuse: pagestat doctor --clean removes it."), "\(text)")
    }

    /// The walk of a program taken from its pin is the walk of a fresh load: `show --engine bpf`
    /// gives the same swap locations and states.
    @Test(.needsSwapAndRoot) func thePinnedProgramWalksAsTheLoadedOne() throws {
        let bpffs = try PrivateBPFFS()
        defer { bpffs.close() }
        let child = try FixtureProcess()
        defer { child.stop() }
        let arguments = ["show", "--pid", String(child.pid), "--engine", "bpf", "--format", "json"]
        let first = try bpffs.run(arguments)
        let second = try bpffs.run(arguments)
        #expect(first.status == 0 && second.status == 0, "\(first.stderr) \(second.stderr)")
        #expect(origin(second).contains("loaded from pin"), "\(second.stderr)")
        let firstJSON = try #require(try JSONSerialization.jsonObject(with: first.output) as? [String: Any])
        let secondJSON = try #require(try JSONSerialization.jsonObject(with: second.output) as? [String: Any])
        // Shared memory, where the walk answers (the file pages of pagestat's own binary, which
        // each run maps too, may change from run to run).
        func shared(_ json: [String: Any]) throws -> [[String: Any]] {
            try #require(json["mappings"] as? [[String: Any]]).filter { ["shared-anon", "shmem"].contains($0["kind"] as? String) }
        }
        let mappings = try shared(secondJSON)
        #expect(!mappings.isEmpty)
        #expect(NSArray(array: mappings).isEqual(to: try shared(firstJSON)))
        #expect(mappings.contains { ($0["runs"] as? [[String: Any]])?.contains { $0["swap"] != nil } == true }, "no swap location")
    }

    /// A pin that is not root's alone, or not the program (here: the map pinned as `prog`), is
    /// refused, removed and replaced; a pin of another object or kernel is removed.
    @Test func stalePinsAreRefusedAndReplaced() throws {
        let bpffs = try PrivateBPFFS()
        defer { bpffs.close() }
        // Another object's or kernel's pin, and a current one owned by nobody.
        let other = bpffs.directory + "/xarray-0000000000000000-0_0_0-old"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try FileManager.default.createDirectory(atPath: bpffs.current, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        chmod(bpffs.directory, 0o700)
        #expect(chown(bpffs.current, 65534, 65534) == 0)
        let notRoots = try bpffs.run(["doctor"])
        #expect(origin(notRoots).contains("the program pinned at \(bpffs.current) was refused (its directory is not root's alone) and removed"),
                "\(notRoots.stderr)")
        #expect(origin(notRoots).contains("pinned at \(bpffs.current) for later runs"), "\(notRoots.stderr)")
        #expect(owner(bpffs.current)?.uid == 0)
        #expect(owner(other) == nil, "the other kernel's pin stayed")

        // Tampered: `prog` is the map.
        #expect(unlink(bpffs.current + "/prog") == 0)
        #expect(link(bpffs.current + "/xw_io", bpffs.current + "/prog") == 0)
        let tampered = try bpffs.run(["doctor"])
        #expect(origin(tampered).contains("was refused (it is not the xw_task_file iterator) and removed")
                    || origin(tampered).contains("was refused (its program could not be read) and removed"), "\(tampered.stderr)")
        #expect(origin(tampered).contains("pinned at \(bpffs.current) for later runs"), "\(tampered.stderr)")
        let after = try bpffs.run(["doctor"])
        #expect(origin(after).contains("loaded from pin"), "\(after.stderr)")

        // The base directory open to others: replaced before pinning.
        #expect(removeTree(bpffs.directory) == 0)
        #expect(mkdir(bpffs.directory, 0o777) == 0 && chmod(bpffs.directory, 0o777) == 0)
        let open = try bpffs.run(["doctor"])
        #expect(origin(open).contains("pinned at \(bpffs.current) for later runs"), "\(open.stderr)")
        #expect(owner(bpffs.directory).map { $0.uid == 0 && $0.mode == 0o700 } == true)
    }

    /// doctor --clean removes every pin; the next run pins again.
    @Test func doctorCleanRemovesThePins() throws {
        let bpffs = try PrivateBPFFS()
        defer { bpffs.close() }
        _ = try bpffs.run(["doctor"])
        #expect(owner(bpffs.current) != nil)
        let clean = try bpffs.run(["doctor", "--clean", "--format", "json"])
        #expect(clean.status == 0, "\(clean.stderr)")
        #expect(clean.stderr.contains("pagestat doctor: removed \(bpffs.current)"), "\(clean.stderr)")
        #expect(owner(bpffs.directory) == nil, "pins left after --clean")
        let json = try #require(try JSONSerialization.jsonObject(with: clean.output) as? [String: Any])
        #expect((json["bpf_pins"] as? [String]) == [])
        let again = try bpffs.run(["doctor"])
        #expect(origin(again).contains("pinned at \(bpffs.current) for later runs"), "\(again.stderr)")
    }

    /// Where the pin root is not bpffs, nothing is pinned and the run says why.
    @Test func noBPFFSNoPin() throws {
        let directory = "/tmp/pagestat-nobpffs-\(getpid())"
        mkdir(directory, 0o700)
        defer { rmdir(directory) }
        let process = Process()
        configure(process, pagestat: ["doctor"], asUser: nil)
        var environment = ProcessInfo.processInfo.environment
        environment["PAGESTAT_BPF_PIN_ROOT"] = directory
        environment["PAGESTAT_DEBUG_BPF"] = "1"
        process.environment = environment
        let run = try PageStatTests.run(process)
        #expect(origin(run) == "pagestat: BPF page-cache reader: not pinned: bpffs is not mounted at \(directory)", "\(run.stderr)")
        #expect(owner(directory + "/pagestat") == nil)
    }
}

private func removeTree(_ path: String) -> Int32 {
    (try? FileManager.default.removeItem(atPath: path)) != nil ? 0 : -1
}
