import Foundation
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore
@testable import PageStatLab

/// A name with every kind of byte a hostile process may choose: newline, tab, an ANSI colour
/// sequence, a backslash, DEL, a C1 control (U+0085), two bytes that are not UTF-8, a
/// right-to-left override (U+202E), a space.
let hostileName: [UInt8] = Array("ev\nil\t\u{1b}[31mX\\\u{7f}".utf8) + [0xC2, 0x85, 0xFF, 0xFE] + Array("\u{202E} z".utf8)
/// How text output must show it, by the one escaping rule.
let hostileNameEscaped = #"ev\nil\t\e[31mX\\\x7f\xc2\x85\xff\xfe\xe2\x80\xae z"#
/// The same name as /proc/PID/maps prints it: the kernel writes a newline in a path as `\012`.
let hostileNameInMaps: [UInt8] = Array("ev\\012il\t\u{1b}[31mX\\\u{7f}".utf8) + [0xC2, 0x85, 0xFF, 0xFE] + Array("\u{202E} z".utf8)
let hostileNameInMapsEscaped = #"ev\\012il\t\e[31mX\\\x7f\xc2\x85\xff\xfe\xe2\x80\xae z"#
/// The comm the kernel keeps: the first 15 bytes, which end inside the C1 character (a lone 0xC2).
let hostileComm = Array(hostileName.prefix(15))
let hostileCommEscaped = #"ev\nil\t\e[31mX\\\x7f\xc2"#

func hexBytes(_ hex: String) -> [UInt8]? {
    let digits = Array(hex.utf8)
    guard digits.count % 2 == 0 else { return nil }
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(decoding: digits[$0..<$0 + 2], as: UTF8.self), radix: 16) }
        .reduce(into: [UInt8]?([])) { result, byte in if let byte { result?.append(byte) } else { result = nil } }
}

func hexString(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

/// The exact bytes a JSON name field stands for: `key_bytes` when there, else the UTF-8 of `key`.
func jsonNameBytes(_ object: [String: Any], _ key: String) -> [UInt8]? {
    if let hex = object[key + "_bytes"] as? String { return hexBytes(hex) }
    return (object[key] as? String).map { Array($0.utf8) }
}

/// Fails the test where text output holds a byte a terminal would act on: any control
/// character but the newline ending each line, DEL, C1, or bytes that are not UTF-8.
func expectNoControlBytes(_ output: Data, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    guard let text = String(data: output, encoding: .utf8) else {
        Issue.record("\(what): output is not UTF-8", sourceLocation: sourceLocation)
        return
    }
    let bad = text.unicodeScalars.filter { scalar in
        let value = scalar.value
        return (value < 0x20 && value != 0x0a) || (0x7F...0x9F).contains(value) || value == 0x202E
    }
    #expect(bad.isEmpty, "\(what): raw control characters \(bad.map { String($0.value, radix: 16) })", sourceLocation: sourceLocation)
}

@Suite("Hostile names: the escaping rule and the byte-exact names")
struct NameEscapingTests {
    @Test func namesKeepEveryByte() {
        let name = NameBytes.decode(hostileName)
        #expect(NameBytes.bytes(of: name) == hostileName)
        #expect(!NameBytes.isValidUTF8(name))
        #expect(NameBytes.lossy(name) == "ev\nil\t\u{1b}[31mX\\\u{7f}\u{85}\u{FFFD}\u{FFFD}\u{202E} z")
        // Valid UTF-8 stays as it is; a name's own U+10FF80-U+10FFFF survives byte for byte.
        #expect(NameBytes.decode(Array("plain ü €".utf8)) == "plain ü €")
        let privateUse: [UInt8] = Array("a".utf8) + [0xF4, 0x8F, 0xBE, 0x9B] + [0xF4, 0x8F]  // U+10FF9B, then a cut-off sequence
        let decoded = NameBytes.decode(privateUse)
        #expect(NameBytes.bytes(of: decoded) == privateUse)
        #expect(!NameBytes.isValidUTF8(decoded))
        #expect(NameBytes.isValidUTF8(NameBytes.decode(Array(privateUse.prefix(5)))))
        // Overlong forms and encoded surrogates are not UTF-8.
        for invalid: [UInt8] in [[0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xE2, 0x80]] {
            let text = NameBytes.decode(invalid)
            #expect(NameBytes.bytes(of: text) == invalid)
            #expect(text.unicodeScalars.count == invalid.count, "\(invalid)")
        }
    }

    @Test func oneEscapingRule() {
        #expect(escapedName(NameBytes.decode(hostileName)) == hostileNameEscaped)
        #expect(escapedName("/dev/shm/vm-ram (deleted)") == "/dev/shm/vm-ram (deleted)")
        #expect(escapedName("naïve 名前") == "naïve 名前")
        #expect(escapedName("a\rb\u{0}c\u{9b}d\u{2028}") == #"a\x0db\x00c\xc2\x9bd\xe2\x80\xa8"#)
        #expect(escapedName(#"C:\x41"#) == #"C:\\x41"#)
        #expect(escapedName(NameBytes.decode([0xF4, 0x8F, 0xBE, 0x9B])) == #"\xf4\x8f\xbe\x9b"#)
    }

    @Test func jsonKeepsTheExactBytes() throws {
        var json = JSONWriter()
        json.beginObject()
        json.field("path", name: NameBytes.decode(hostileName))
        json.field("command", name: "plain\u{1b}")
        json.field("notes", strings: [NameBytes.decode([0x61, 0xFF])])
        json.endObject()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
        #expect(jsonNameBytes(object, "path") == hostileName)
        #expect(object["path_bytes"] as? String == hexString(hostileName))
        #expect(object["command"] as? String == "plain\u{1b}")
        #expect(object["command_bytes"] == nil)
        #expect(object["notes"] as? [String] == ["a\u{FFFD}"])
        // CSV is text: bytes that are not UTF-8 read as U+FFFD there.
        #expect(CSVTable.field(NameBytes.decode([0x61, 0xFF])) == "a\u{FFFD}")
    }
}

/// `pagestat fixture --hostile-name` as a child: comm, memfd and two /dev/shm files named with
/// hostile bytes.
final class HostileFixture {
    let fixture: FixtureProcess
    let directory: String

    init(pages: Int = 16) throws {
        directory = "/dev/shm/pagestat-names-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        fixture = try FixtureProcess(arguments: ["lab", "hold", "--pages", String(pages), "--hostile-name", hexString(hostileName),
                                                 "--file-directory", directory])
    }

    var pid: Int32 { fixture.pid }
    var mappedFile: [UInt8] { Array((directory + "/m").utf8) + hostileName }
    var mappedFileInMaps: [UInt8] { Array((directory + "/m").utf8) + hostileNameInMaps }
    var openFile: [UInt8] { Array((directory + "/o").utf8) + hostileName }
    var memfdInMaps: [UInt8] { Array("/memfd:".utf8) + hostileNameInMaps + Array(" (deleted)".utf8) }

    func stop() {
        fixture.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Lines of text output (each ends in a newline).
func lines(_ output: Data) -> [String] {
    var text = String(decoding: output, as: UTF8.self)
    if text.hasSuffix("\n") { text.removeLast() }
    return text.isEmpty ? [] : text.components(separatedBy: "\n")
}

@Suite("Hostile names end to end (needs root)", .serialized,
       .requires(TestEnvironment.isRoot, "root: map_files, other processes' fds and comm"))
struct HostileNameEndToEndTests {
    @Test func showPrintsEachMappingOnItsOwnLine() throws {
        let hostile = try HostileFixture()
        defer { hostile.stop() }
        let pages = UInt64(hostile.fixture.pages * TestEnvironment.pageSize)
        for (region, inMaps, escaped) in [("memfd", hostile.memfdInMaps, "/memfd:" + hostileNameInMapsEscaped + " (deleted)"),
                                          ("tmpfs", hostile.mappedFileInMaps, hostile.directory + "/m" + hostileNameInMapsEscaped)] {
            let range = "\(try #require(hostile.fixture.regions[region]))+\(pages)"
            let text = try runPagestat(["show", "--pid", String(hostile.pid), "--range", range])
            #expect(text.status == 0, "\(text.stderr)")
            expectNoControlBytes(text.output, "show \(region)")
            let json = try runPagestat(["show", "--pid", String(hostile.pid), "--range", range, "--format", "json"])
            let report = try #require(try JSONSerialization.jsonObject(with: json.output) as? [String: Any])
            let mappings = try #require(report["mappings"] as? [[String: Any]])
            try #require(mappings.count == 1)
            #expect(jsonNameBytes(mappings[0], "path") == inMaps, "\(region)")
            // pid line; per mapping a blank line, the mapping, its summary and its runs; a blank
            // line and the totals; the notes.
            let runs = try #require(mappings[0]["runs"] as? [[String: Any]])
            let notes = try #require(report["notes"] as? [String])
            let output = lines(text.output)
            #expect(output.count == 1 + 3 + runs.count + 2 + notes.count, "\(output)")
            #expect(output[2].hasSuffix("  " + escaped), "\(output[2])")
            #expect(runs.map { $0["state"] as? String } == ["present", "none"])
        }
    }

    @Test func objectsPrintsEachObjectOnItsOwnLine() throws {
        let hostile = try HostileFixture()
        defer { hostile.stop() }
        let text = try runPagestat(["objects"])
        #expect(text.status == 0, "\(text.stderr)")
        expectNoControlBytes(text.output, "objects")
        let output = lines(text.output)
        // A header, one line per object, the count, the notes.
        let countLine = try #require(output.lastIndex { !$0.hasPrefix("note: ") })
        let count = try #require(Int(output[countLine].prefix { $0.isNumber }))
        #expect(countLine == count + 1)
        #expect(output.count == count + 2 + output.filter { $0.hasPrefix("note: ") }.count)
        let user = "\(hostile.pid)/\(hostileCommEscaped)"
        for path in ["/memfd:" + hostileNameInMapsEscaped + " (deleted)", hostile.directory + "/m" + hostileNameInMapsEscaped,
                     hostile.directory + "/o" + hostileNameEscaped] {
            #expect(output.filter { $0.contains("  " + path + " ") && $0.hasSuffix("  " + user) }.count == 1, "\(path)")
        }

        let json = try runPagestat(["objects", "--format", "json"])
        let report = try #require(try JSONSerialization.jsonObject(with: json.output) as? [String: Any])
        let objects = try #require(report["objects"] as? [[String: Any]])
        for path in [hostile.memfdInMaps, hostile.mappedFileInMaps, hostile.openFile] {
            let object = try #require(objects.first { jsonNameBytes($0, "path") == path }, "\(hexString(path))")
            let users = try #require(object["processes"] as? [[String: Any]])
            let user = try #require(users.first { $0["pid"] as? Int == Int(hostile.pid) })
            #expect(jsonNameBytes(user, "command") == hostileComm)
        }
    }

    @Test func topPrintsEachProcessOnItsOwnLine() throws {
        let hostile = try HostileFixture()
        defer { hostile.stop() }
        let text = try runPagestat(["top"])
        #expect(text.status == 0, "\(text.stderr)")
        expectNoControlBytes(text.output, "top")
        let output = lines(text.output)
        // A header, one line per process, the TOTAL row, the count, the notes.
        let countLine = try #require(output.lastIndex { !$0.hasPrefix("note: ") })
        let count = try #require(Int(output[countLine].prefix { $0.isNumber }))
        #expect(countLine == count + 2)
        #expect(output.count == count + 3 + output.filter { $0.hasPrefix("note: ") }.count)
        #expect(output.filter { $0.drop { $0 == " " }.hasPrefix("\(hostile.pid) ") }.count == 1)
        // Rows by command name (comm): the hostile name, escaped, on one line of its own.
        let byCommand = try runPagestat(["top", "--by", "command"])
        #expect(byCommand.status == 0, "\(byCommand.stderr)")
        expectNoControlBytes(byCommand.output, "top --by command")
        #expect(lines(byCommand.output).filter { $0.hasSuffix("  " + hostileCommEscaped) }.count == 1)

        let json = try runPagestat(["top", "--format", "json"])
        let report = try #require(try JSONSerialization.jsonObject(with: json.output) as? [String: Any])
        let processes = try #require(report["processes"] as? [[String: Any]])
        let process = try #require(processes.first { $0["pid"] as? Int == Int(hostile.pid) })
        // `command` is the command line as ps shows it; `comm` the name the process gave itself.
        #expect(jsonNameBytes(process, "comm") == hostileComm)
        #expect(process["comm_bytes"] as? String == hexString(hostileComm))
    }

    @Test func filePrintsEachFileOnItsOwnLine() throws {
        let hostile = try HostileFixture()
        defer { hostile.stop() }
        let text = try runPagestat(["file", "--recursive", "--pages", hostile.directory])
        #expect(text.status == 0, "\(text.stderr)")
        expectNoControlBytes(text.output, "file")
        let json = try runPagestat(["file", "--recursive", "--pages", hostile.directory, "--format", "json"])
        let report = try #require(try JSONSerialization.jsonObject(with: json.output) as? [String: Any])
        let files = try #require(report["files"] as? [[String: Any]])
        #expect(files.compactMap { jsonNameBytes($0, "path") } == [hostile.mappedFile, hostile.openFile])
        // The table (a header, a line per file, a total line for more than one file); per file a
        // blank line, its path and its runs.
        let runs = files.map { ($0["runs"] as? [Any])?.count ?? 0 }
        let output = lines(text.output)
        #expect(output.count == 1 + files.count + (files.count > 1 ? 1 : 0) + runs.reduce(0) { $0 + 2 + $1 }, "\(output)")
        let mapped = hostile.directory + "/m" + hostileNameEscaped
        let open = hostile.directory + "/o" + hostileNameEscaped
        #expect(output[1].hasSuffix("  " + mapped) && output[2].hasSuffix("  " + open), "\(output)")
        #expect(output.filter { $0 == mapped + ":" || $0 == open + ":" }.count == 2)

        // Named on the command line, byte for byte (through sh's printf, which can pass any byte).
        let octal = hostile.openFile.map { String(format: "\\0%03o", $0) }.joined()
        let shell = try runCommand("/bin/sh", ["-c", #"exec "$0" file --format json "$(printf '%b' "$1")" "$(printf '%b' "$1\\033-gone")""#,
                                               TestEnvironment.pagestatPath, octal])
        let outData = shell.output
        let errData = Data(shell.stderr.utf8)
        let named = try #require(try JSONSerialization.jsonObject(with: outData) as? [String: Any])
        let namedFiles = try #require(named["files"] as? [[String: Any]])
        #expect(namedFiles.compactMap { jsonNameBytes($0, "path") } == [hostile.openFile])
        #expect(shell.status == 64)
        // The error line names the missing file escaped, on one line.
        expectNoControlBytes(errData, "file's error line")
        #expect(String(decoding: errData, as: UTF8.self) == "pagestat: \(open)\\e-gone: no such file\n")
    }
}
