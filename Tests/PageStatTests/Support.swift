import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// What this machine lets the tests do. A test that needs more than every machine has (root,
/// swap, BPF, a tool, a kernel feature) says so with a `Requirement` trait: `.needsSwapAndRoot`,
/// `.needsRoot`, `.needsBPF`, `.needsTool(...)`, `.requiresKernel(...)` or
/// `.requires(condition, "reason")`; what it finds missing only while it runs, with `notRunHere`.
enum TestEnvironment {
    static let isRoot = geteuid() == 0
    static let swapOn = !SwapArea.active().isEmpty
    static let isCI = ProcessInfo.processInfo.environment["CI"] == "true"
    /// The kernel features CI declares its kernel to lack (PAGESTAT_KERNEL_LACKS, separated by
    /// commas or spaces): NOT RUN under CI too.
    static let kernelLacks = Set((ProcessInfo.processInfo.environment["PAGESTAT_KERNEL_LACKS"] ?? "")
        .split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init))
    static let pageSize = ProcFS.pageSize

    static let swapAndRoot = isRoot && swapOn

    /// Whether the BPF engine loads here (tried once).
    static let bpfLoads = (try? XArrayWalker.shared()) != nil

    /// The path of an executable found through PATH, as a shell would find it.
    static func tool(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The built `pagestat` executable, beside the test bundle.
    static var pagestatPath: String {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var directory = bundle
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("pagestat").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("pagestat").path
    }

    static func fixture(_ name: String) throws -> String {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
        return try String(contentsOf: url, encoding: .utf8)
    }
}

/// What a test or suite needs beyond what every machine has. Without it the test is NOT RUN:
/// skipped, with one line `NOT RUN: <file>/<test>: needs <reason>` on stderr (Scripts/test.sh counts
/// the skips), never passed and never failed. Under CI (CI=true, which .ci/run sets) it is not
/// skipped but fails: there every test runs or fails. The one exception is a kernel feature that
/// CI declares its kernel to lack, by name in PAGESTAT_KERNEL_LACKS (e.g. "soft-dirty"): NOT RUN
/// there too. On a suite it applies to each test in it.
struct Requirement: TestTrait, SuiteTrait {
    /// What is missing when `met` is false, e.g. "root and swap on".
    var reason: String
    var met: @Sendable () -> Bool
    /// The kernel feature's name, for a requirement that only the kernel's build can meet.
    var kernelFeature: String? = nil

    var isRecursive: Bool { true }

    func prepare(for test: Test) async throws {
        guard !test.isSuite, !met() else { return }
        let name = "\(test.sourceLocation.fileName)/\(test.name)"
        if TestEnvironment.isCI, !TestEnvironment.kernelLacks.contains(kernelFeature ?? "") {
            let declare = kernelFeature.map { " (a CI host whose kernel lacks it names \"\($0)\" in PAGESTAT_KERNEL_LACKS)" } ?? ""
            throw NotRunUnderCI(description: "NOT RUN under CI=true is a failure: \(name) needs \(reason)\(declare)")
        }
        FileHandle.standardError.write(Data("NOT RUN: \(name): needs \(reason)\n".utf8))
        // The one public way to skip: a condition trait that does not hold.
        try await ConditionTrait.disabled(Comment(rawValue: "NOT RUN: needs \(reason)")).prepare(for: test)
    }
}

/// For what only the test itself finds missing, part way through (the kernel did not arrange
/// what was asked): NOT RUN as a `Requirement` says it, a failure under CI. Test.cancel
/// (Swift 6.3) skips the rest; an older toolchain cannot skip a running test, so there it fails.
func notRunHere(_ reason: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Never {
    let name = Test.current.map { "\($0.sourceLocation.fileName)/\($0.name)" } ?? "a test"
    if TestEnvironment.isCI {
        throw NotRunUnderCI(description: "NOT RUN under CI=true is a failure: \(name) needs \(reason)")
    }
    #if compiler(>=6.3)
    FileHandle.standardError.write(Data("NOT RUN: \(name): needs \(reason)\n".utf8))
    try Test.cancel(Comment(rawValue: "NOT RUN: needs \(reason)"), sourceLocation: sourceLocation)
    #else
    throw NotRunUnderCI(description: "\(name) needs \(reason), and this toolchain cannot skip a test once it runs")
    #endif
}

/// The failure of a test whose requirement is missing under CI.
struct NotRunUnderCI: Error, CustomStringConvertible {
    var description: String
}

extension Trait where Self == Requirement {
    /// Runs only where `met` holds (evaluated when the test is about to run); NOT RUN otherwise.
    static func requires(_ met: @autoclosure @escaping @Sendable () -> Bool, _ reason: String) -> Self {
        Requirement(reason: reason, met: met)
    }

    /// A feature of the kernel (its version or build) that the test needs, named for
    /// PAGESTAT_KERNEL_LACKS.
    static func requiresKernel(_ feature: String, _ met: @autoclosure @escaping @Sendable () -> Bool, _ reason: String) -> Self {
        Requirement(reason: reason, met: met, kernelFeature: feature)
    }

    /// Root (map_files, PFNs, mounts, other users).
    static var needsRoot: Self {
        requires(TestEnvironment.isRoot, "root: run `bash Scripts/test.sh` as root")
    }

    /// Root and a swap area on (memory the test pages out).
    static var needsSwapAndRoot: Self {
        requires(TestEnvironment.swapAndRoot, "root and swap on: run `bash Scripts/test.sh` as root")
    }

    /// The BPF engine loads (root, the kernel's BTF, libbpf.so.1).
    static var needsBPF: Self {
        requires(TestEnvironment.bpfLoads, "the BPF engine, which does not load here (root, /sys/kernel/btf/vmlinux and libbpf.so.1)")
    }

    /// An executable found through PATH; `package` says where it comes from.
    static func needsTool(_ name: String, package: String) -> Self {
        requires(TestEnvironment.tool(name) != nil, "\(name) (Debian's \(package); `bash Scripts/test.sh` installs it as root)")
    }
}

/// A /proc or /sys file read whole, to its end (String(contentsOfFile:) stops after the first
/// read of a file that reports size 0).
func kernelText(_ path: String) throws -> String {
    guard let handle = FileHandle(forReadingAtPath: path) else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .ENOENT) }
    defer { try? handle.close() }
    return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
}

/// Every page's state, in order, for a report over a small range.
func pageStates(_ report: ProcessReport) -> [PageState] {
    report.mappings.flatMap { $0.runs.flatMap { Array(repeating: $0.state, count: Int($0.pages)) } }
}

/// Every page's flags, in order.
func pageFlags(_ report: ProcessReport) -> [PageFlags] {
    report.mappings.flatMap { $0.runs.flatMap { Array(repeating: $0.flags, count: Int($0.pages)) } }
}

/// `count` copies of `state`: for building expected page lists.
func pages(_ count: Int, _ state: PageState) -> [PageState] { Array(repeating: state, count: count) }

/// Scans part of this very process.
func scanSelf(_ range: AddressRange, view: ReportView = .truth) throws -> ProcessReport {
    let scanner = try ProcessScanner(pid: getpid())
    return try scanner.scan(ScanOptions(range: range, view: view))
}

/// The smaps entry of the mapping that holds `address`, in this process.
func smapsEntry(pid: Int32 = getpid(), containing address: UInt64) throws -> ProcMaps.SmapsEntry {
    let entries = try ProcMaps.readSmaps(pid: pid)
    return try #require(entries.first { $0.range.start <= address && address < $0.range.end })
}

/// A child process: runs the built pagestat with arguments, returns its exit status and output.
struct Run {
    var status: Int32
    /// Standard output as it came, for binary output such as `raw`'s.
    var output: Data
    var stderr: String

    var stdout: String { String(decoding: output, as: UTF8.self) }
}

/// Points `process` at the built pagestat with `arguments`, as another user (no capabilities)
/// through setpriv(1) when `uid` is given.
func configure(_ process: Process, pagestat arguments: [String], asUser uid: UInt32?) {
    if let uid {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "--inh-caps=-all",
                             TestEnvironment.pagestatPath] + arguments
    } else {
        process.executableURL = URL(fileURLWithPath: TestEnvironment.pagestatPath)
        process.arguments = arguments
    }
}

/// Reads one line (up to a newline or EOF) from a child's pipe.
func readLine(_ pipe: Pipe) -> Data {
    var line = Data()
    while true {
        let byte = pipe.fileHandleForReading.readData(ofLength: 1)
        if byte.isEmpty || byte == Data([0x0a]) { break }
        line.append(byte)
    }
    return line
}

func runPagestat(_ arguments: [String], asUser uid: UInt32? = nil) throws -> Run {
    let process = Process()
    configure(process, pagestat: arguments, asUser: uid)
    return try run(process)
}

/// Runs `executable` with `arguments` (e.g. a shell that passes pagestat bytes no Swift string holds).
func runCommand(_ executable: String, _ arguments: [String]) throws -> Run {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    return try run(process)
}

/// Starts a configured process and collects its status and output.
func run(_ process: Process) throws -> Run {
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read both pipes before waiting, so a large report cannot fill a pipe and stall.
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Run(status: process.terminationStatus, output: outData, stderr: String(decoding: errData, as: UTF8.self))
}

/// `pagestat fixture` running as a child: every layout, arranged, until `stop()`.
final class FixtureProcess {
    let process = Process()
    let stdin = Pipe()
    let pid: Int32
    let pages: Int
    /// The JSON line the fixture printed once its layout was ready.
    let layout: [String: Any]
    let regions: [String: UInt64]
    let paths: [String: String]

    init(pages: Int = 64, arguments: [String]? = nil, asUser uid: UInt32? = nil) throws {
        configure(process, pagestat: arguments ?? ["lab", "hold", "--pages", String(pages)], asUser: uid)
        let out = Pipe()
        process.standardOutput = out
        process.standardInput = stdin
        try process.run()
        // One JSON line once the layout is ready.
        let line = readLine(out)
        layout = try #require(try JSONSerialization.jsonObject(with: line) as? [String: Any], "fixture printed no layout")
        pid = Int32(try #require(layout["pid"] as? Int))
        self.pages = try #require(layout["pages"] as? Int)
        regions = ((layout["regions"] as? [String: Any]) ?? [:]).compactMapValues { ($0 as? NSNumber)?.uint64Value }
        paths = ((layout["paths"] as? [String: Any]) ?? [:]).compactMapValues { $0 as? String }
    }

    func range(_ name: String) throws -> AddressRange {
        let start = try #require(regions[name])
        return AddressRange(start: start, end: start + UInt64(pages * TestEnvironment.pageSize))
    }

    func stop() {
        try? stdin.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    deinit { stop() }
}
