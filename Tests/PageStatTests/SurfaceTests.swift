import Foundation
import Testing

/// The library's surface, read off its sources: what a stranger who imports PageStat gets. The
/// kernel readers stay few and safe; the lab is the package's own; the core reads nothing.
@Suite("Library surface")
struct SurfaceTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The Swift files under `folder` (a path in the repository), with their text.
    static func sources(_ folder: String) throws -> [(name: String, text: String)] {
        let directory = root.appendingPathComponent(folder)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            return [(folder, try String(contentsOf: directory, encoding: .utf8))]
        }
        let names = try FileManager.default.subpathsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".swift") }
        return try names.sorted().map { ($0, try String(contentsOf: directory.appendingPathComponent($0), encoding: .utf8)) }
    }

    /// The lines that declare something `public` (comments left out).
    static func publicDeclarations(_ text: String) -> [Substring] {
        text.split(separator: "\n").filter { line in
            let code = line.drop { $0 == " " }
            guard !code.hasPrefix("//") else { return false }
            let words = code.split(separator: " ")
            return words.first { !$0.hasPrefix("@") } == "public"
        }
    }

    @Test func kernelReadersAreFewAndSafe() throws {
        let files = try Self.sources("Sources/PageStat/Kernel") + Self.sources("Sources/PageStat/Exports.swift")
        let declarations = files.flatMap { Self.publicDeclarations($0.text) }
        #expect(declarations.count <= 100, "\(declarations.count) public declarations in Kernel/ and Exports.swift")
        for line in declarations {
            #expect(!line.contains("Unsafe"), "an unsafe pointer in a public signature: \(line)")
            #expect(!line.contains("FileDescriptor"), "a descriptor in a public signature: \(line)")
        }
        // The library reads; it never turns swap on.
        for file in files { #expect(!file.text.contains("swapon"), "swapon in \(file.name)") }
    }

    @Test func theLabIsThePackagesOwn() throws {
        for file in try Self.sources("Sources/PageStatLab") {
            #expect(Self.publicDeclarations(file.text).isEmpty, "public in PageStatLab/\(file.name)")
        }
    }

    @Test func theCoreDoesNoIO() throws {
        // No descriptors and no reads: bytes in, values out (libc for fnmatch(3) and a struct
        // stat's fields only).
        for file in try Self.sources("Sources/PageStatCore") {
            let code = file.text.split(separator: "\n").filter { !$0.drop { $0 == " " }.hasPrefix("//") }.joined(separator: "\n")
            for word in ["import CPagestat", "FileDescriptor", "open(", "openat(", "read(", "pread(", "readlink("] {
                #expect(!code.contains(word), "\(word) in PageStatCore/\(file.name)")
            }
        }
    }

    @Test func theLabCommandsOnlyParseAndRender() throws {
        for name in ["LabHold.swift", "TemporarySwap.swift", "Doctor.swift", "Demo.swift"] {
            let text = try String(contentsOf: Self.root.appendingPathComponent("Sources/pagestat/\(name)"), encoding: .utf8)
            for word in ["mmap(", "memfd_create", "swapon", "CPagestat_undo", "Verification(region"] {
                #expect(!text.contains(word), "\(word) in Sources/pagestat/\(name)")
            }
        }
    }
}
