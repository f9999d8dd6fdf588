import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

// Property tests of the /proc parsers on generated text: lines written the way the kernel writes
// them, from fields the generator chose, must parse back to those fields; mutated, truncated and
// oversized input must never crash a parser nor give a mapping that breaks its invariants. The
// generator is seeded, so a failure names a case that fails again. The committed corpus
// (Fixtures/corpus, also the libFuzzer harness's seed corpus in Fuzz/) is replayed the same way.

/// The lab's SplitMix64 (small, fast and the same on every machine), with the draws the
/// generators below need.
struct SeededGenerator: RandomNumberGenerator {
    var base: SplitMix64
    init(seed: UInt64) { base = SplitMix64(seed: seed) }
    mutating func next() -> UInt64 { base.next() }

    mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &self) < percent }
    mutating func below(_ bound: Int) -> Int { Int.random(in: 0..<bound, using: &self) }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }

    /// A number of any size, with small ones and the extremes often.
    mutating func number(bits: Int = 64) -> UInt64 {
        let mask: UInt64 = bits == 64 ? .max : (1 << UInt64(bits)) - 1
        switch below(6) {
        case 0: return 0
        case 1: return mask
        case 2: return UInt64(below(4096)) & mask
        default: return next() >> UInt64(below(64)) & mask
        }
    }
}

/// Lowercase hexadecimal, zero-padded to at least `width` digits (the kernel's seq_put_hex_ll).
func kernelHex(_ value: UInt64, width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// seq_file's mangle_path: each byte of `set` as a backslash and three octal digits.
func kernelEscape(_ bytes: [UInt8], _ set: [UInt8]) -> [UInt8] {
    bytes.flatMap { byte -> [UInt8] in
        guard set.contains(byte) else { return [byte] }
        return Array("\\\(byte >> 6)\((byte >> 3) & 7)\(byte & 7)".utf8)
    }
}

/// What /proc/swaps and mountinfo escape: space, tab, newline, backslash.
let blankEscapes: [UInt8] = [0x20, 0x09, 0x0a, 0x5c]

extension SeededGenerator {
    /// A file name's bytes: spaces, tabs, newlines, backslashes, colons, brackets, UTF-8 and bytes
    /// that are not UTF-8 at all.
    mutating func nameBytes(maxLength: Int = 16, plain: Bool = false) -> [UInt8] {
        let simple = Array("abcxyz0189._-".utf8)
        let odd: [[UInt8]] = [[0x20], [0x09], [0x0a], [0x5c], [0x3a], [0x28], [0x29], [0x5b], [0x5d],
                              [0xc3, 0xa9], [0xe2, 0x82, 0xac], [0xff], [0x80], [0xc3], Array("\\012".utf8)]
        var bytes: [UInt8] = []
        for _ in 0..<(1 + below(maxLength)) {
            if plain || chance(70) { bytes.append(pick(simple)) } else { bytes += pick(odd) }
        }
        return bytes
    }

    /// An absolute path of one to three names (never starting with /SYSV, /memfd: or /dev/).
    mutating func pathBytes(plain: Bool = false) -> [UInt8] {
        var bytes = Array("/f".utf8)
        for index in 0..<(1 + below(3)) {
            if index > 0 { bytes.append(0x2f) }
            bytes += nameBytes(plain: plain)
        }
        return bytes
    }
}

// MARK: maps

/// A maps line the generator wrote, with the fields it wrote and where they sit in its bytes.
struct GeneratedMapsLine {
    var bytes: [UInt8]
    var mapping: Mapping
    var inodeStart: Int
    var inodeEnd: Int
    var pathStart: Int?
}

let fuzzShmemDevices: Set<ProcMaps.Device> = [ProcMaps.Device(major: 0, minor: 0x1b), ProcMaps.Device(major: 0, minor: 0x17)]

extension SeededGenerator {
    /// One maps line as show_map_vma writes it: `%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu `,
    /// then, for a named mapping, spaces to column 73 (at least one) and the name, in which the
    /// kernel escapes only a newline (`\012`).
    mutating func mapsLine() -> GeneratedMapsLine {
        var start = chance(20) ? number() : UInt64(below(1 << 20)) << 12
        if start == .max { start -= 1 }
        let length = chance(50) ? UInt64(below(1 << 12)) << 12 : number()
        let end = start + 1 + min(length, UInt64.max - start - 1)
        var shared = chance(40)
        var device = ProcMaps.Device(major: UInt32(number(bits: 12)), minor: UInt32(number(bits: 20)))
        let path: [UInt8]
        let kind: MappingKind
        switch below(10) {
        case 0:
            path = []
            kind = shared ? .sharedAnon : .privateAnon
        case 1:
            path = Array(pick(["[heap]", "[stack]", "[anon:arena one]", "[anon:x]"]).utf8)
            shared = false
            kind = .privateAnon
        case 2:
            path = Array(pick(["[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]"]).utf8)
            kind = .special
        case 3:
            path = Array("[anon_shmem:vm ram]".utf8)
            shared = true
            kind = .sharedAnon
        case 4:
            path = Array("/memfd:".utf8) + kernelEscape(nameBytes(), [0x0a]) + (chance(80) ? Array(" (deleted)".utf8) : [])
            kind = .shmem
        case 5:
            path = Array("/SYSV\(kernelHex(number(bits: 32), width: 8))\(chance(80) ? " (deleted)" : "")".utf8)
            shared = true
            kind = .shmem
        case 6:
            shared = chance(50)
            path = Array((shared ? "/dev/zero (deleted)" : "/dev/zero").utf8)
            kind = shared ? .sharedAnon : .privateAnon
        default:
            var name = kernelEscape(pathBytes(), [0x0a])
            if chance(20) { name += Array(" (deleted)".utf8) }
            if chance(10) { name += [0x20, 0x20] }  // a name that ends in spaces
            path = name
            if chance(30) { device = pick(Array(fuzzShmemDevices)) }
            kind = fuzzShmemDevices.contains(device) ? .shmem : .file
        }
        let permissions = (chance(80) ? "r" : "-") + (chance(50) ? "w" : "-") + (chance(30) ? "x" : "-") + (shared ? "s" : "p")
        let offset = chance(50) ? 0 : number()
        let inode = chance(50) ? UInt64(below(1 << 24)) : number()
        var text = "\(kernelHex(start, width: 8))-\(kernelHex(end, width: 8)) \(permissions) \(kernelHex(offset, width: 8)) "
        text += "\(kernelHex(UInt64(device.major), width: 2)):\(kernelHex(UInt64(device.minor), width: 2)) "
        var bytes = Array(text.utf8)
        let inodeStart = bytes.count
        bytes += Array(String(inode).utf8)
        let inodeEnd = bytes.count
        bytes.append(0x20)
        var pathStart: Int?
        if !path.isEmpty {
            while bytes.count < 72 { bytes.append(0x20) }
            bytes.append(0x20)
            pathStart = bytes.count
            bytes += path
        } else if chance(30) {
            bytes += Array(repeating: 0x20, count: below(40))  // older kernels padded nameless lines
        }
        let mapping = Mapping(range: AddressRange(start: start, end: end), permissions: permissions, offset: offset,
                              deviceMajor: device.major, deviceMinor: device.minor, inode: inode,
                              path: NameBytes.decode(path), kind: kind)
        return GeneratedMapsLine(bytes: bytes, mapping: mapping, inodeStart: inodeStart, inodeEnd: inodeEnd, pathStart: pathStart)
    }

    /// Damage: cut, overwrite, insert, or swap a number for one too large for 64 bits.
    mutating func mutate(_ bytes: [UInt8]) -> [UInt8] {
        var bytes = bytes
        for _ in 0..<(1 + below(3)) {
            switch below(6) {
            case 0 where !bytes.isEmpty:
                bytes.removeSubrange(below(bytes.count)...)
            case 1 where !bytes.isEmpty:
                bytes[below(bytes.count)] = UInt8(truncatingIfNeeded: next())
            case 2:
                let noise = (0..<(1 + below(8))).map { _ in pick([0x20, 0x2d, 0x3a, 0x0a, 0x30, 0x66, 0x5c, 0x00, 0xff, UInt8(truncatingIfNeeded: next())]) }
                bytes.insert(contentsOf: noise, at: below(bytes.count + 1))
            case 3:
                let huge = Array(pick(["18446744073709551616", "99999999999999999999999", "ffffffffffffffff0",
                                       "10000000000000000", "18446744073709551615", "-1", "4294967296"]).utf8)
                bytes.insert(contentsOf: huge, at: below(bytes.count + 1))
            case 4 where bytes.count > 1:
                let cut = below(bytes.count)
                bytes = Array(bytes[cut...] + bytes[..<cut])
            default:
                bytes += bytes.prefix(below(bytes.count + 1))
            }
        }
        return bytes
    }
}

func parseMaps(_ bytes: [UInt8], shmemDevices: Set<ProcMaps.Device> = fuzzShmemDevices) -> [Mapping] {
    bytes.withUnsafeBufferPointer { ProcMaps.parse(bytes: $0, shmemDevices: shmemDevices) }
}

func parseSmaps(_ bytes: [UInt8]) -> [ProcMaps.SmapsEntry] {
    bytes.withUnsafeBufferPointer { ProcMaps.parseSmaps(bytes: $0) }
}

/// What any parsed mapping must be, whatever the input.
func expectWellFormed(_ mappings: [Mapping], _ comment: @autoclosure () -> String, sourceLocation: SourceLocation = #_sourceLocation) {
    for mapping in mappings {
        #expect(mapping.range.start < mapping.range.end, "\(comment())", sourceLocation: sourceLocation)
        #expect(mapping.permissions.utf8.count == 4, "\(comment())", sourceLocation: sourceLocation)
        #expect(!mapping.path.utf8.contains(0x0a), "\(comment())", sourceLocation: sourceLocation)
    }
}

@Suite("Parser properties on generated input")
struct ParserPropertyTests {
    @Test func mapsLinesParseBackToTheirFields() {
        var generator = SeededGenerator(seed: 0x6d61_7073)
        for case_ in 0..<3000 {
            let line = generator.mapsLine()
            let parsed = parseMaps(line.bytes)
            #expect(parsed == [line.mapping], "case \(case_): \(String(decoding: line.bytes, as: UTF8.self))")
        }
    }

    @Test func mapsFilesParseBackInOrder() {
        var generator = SeededGenerator(seed: 0x6669_6c65)
        for case_ in 0..<200 {
            let lines = (0..<(1 + generator.below(40))).map { _ in generator.mapsLine() }
            let text = lines.map(\.bytes).joined(separator: [0x0a]) + (generator.chance(80) ? [0x0a] : [])
            #expect(parseMaps(Array(text)) == lines.map(\.mapping), "case \(case_)")
        }
    }

    @Test func truncatedMapsLines() {
        // Cut anywhere: before the inode, no mapping; within it, the digits so far; after it, the
        // fields and as much of the name as there is.
        var generator = SeededGenerator(seed: 0x6375_74)
        for case_ in 0..<200 {
            let line = generator.mapsLine()
            for cut in 0..<line.bytes.count {
                let parsed = parseMaps(Array(line.bytes[..<cut]))
                let context = "case \(case_) cut at \(cut): \(String(decoding: line.bytes[..<cut], as: UTF8.self))"
                if cut <= line.inodeStart {
                    #expect(parsed.isEmpty, "\(context)")
                    continue
                }
                var expected = line.mapping
                expected.inode = UInt64(String(decoding: line.bytes[line.inodeStart..<min(cut, line.inodeEnd)], as: UTF8.self))!
                let path = line.pathStart.map { start in cut > start ? Array(line.bytes[start..<cut]) : [] } ?? []
                expected.path = NameBytes.decode(path)
                // A cut name may change the kind; whole lines check kinds.
                expected.kind = parsed.first?.kind ?? expected.kind
                #expect(parsed == [expected], "\(context)")
            }
        }
    }

    @Test func damagedMapsNeverCrashAndStayWellFormed() {
        var generator = SeededGenerator(seed: 0x6461_6d61)
        for case_ in 0..<3000 {
            let lines = (0..<(1 + generator.below(4))).map { _ in generator.mapsLine().bytes }
            let damaged = generator.mutate(Array(lines.joined(separator: [0x0a])))
            expectWellFormed(parseMaps(damaged), "case \(case_)")
            _ = parseSmaps(damaged)
        }
    }

    @Test func mapsNumbersAtAndBeyond64Bits() {
        let valid = "1000-2000 r--p 00000000 fe:00 18446744073709551615 /x"
        #expect(parseMaps(Array(valid.utf8)).first?.inode == .max)
        #expect(parseMaps(Array("ffffffffff600000-ffffffffffffffff --xp 00000000 00:00 0 [vsyscall]".utf8)).first?.range
            == AddressRange(start: 0xffff_ffff_ff60_0000, end: .max))
        for bad in ["1000-2000 r--p 00000000 fe:00 18446744073709551616 /x",   // inode 2^64
                    "1000-2000 r--p 00000000 fe:00 18446744073709551619 /x",   // 2^64 + 3: the sum overflows, not the product
                    "1000-2000 r--p 00000000 fe:00 99999999999999999999 /x",
                    "10000000000000000-20000000000000000 r--p 00000000 fe:00 1 /x",
                    "1000-2000 r--p 10000000000000000 fe:00 1 /x",
                    "1000-2000 r--p 00000000 100000000:00 1 /x",               // a major beyond 32 bits
                    "2000-1000 r--p 00000000 fe:00 1 /x",                      // an inverted range
                    "2000-2000 r--p 00000000 fe:00 1 /x"] {
            #expect(parseMaps(Array(bad.utf8)).isEmpty, "\(bad)")
        }
    }

    // MARK: smaps

    @Test func smapsParsesBackToItsFields() {
        var generator = SeededGenerator(seed: 0x736d_6170)
        let kilobyteKeys = ["Size", "KernelPageSize", "MMUPageSize", "Rss", "Pss", "Pss_Dirty", "Shared_Clean", "Shared_Dirty",
                            "Private_Clean", "Private_Dirty", "Referenced", "Anonymous", "KSM", "LazyFree", "AnonHugePages",
                            "ShmemPmdMapped", "FilePmdMapped", "Shared_Hugetlb", "Private_Hugetlb", "Swap", "SwapPss", "Locked"]
        let vmFlags = ["rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "pf", "lo", "io", "sr", "rr", "dc", "de", "ac",
                       "nr", "ht", "sf", "nl", "ar", "wf", "dd", "sd", "mm", "hg", "nh", "mg", "um", "uw", "ss", "sl"]
        for case_ in 0..<300 {
            var text: [UInt8] = []
            var expected: [(AddressRange, [String: UInt64], [String])] = []
            for _ in 0..<(1 + generator.below(6)) {
                let header = generator.mapsLine()
                text += header.bytes + [0x0a]
                var fields: [String: UInt64] = [:]
                for key in kilobyteKeys where generator.chance(80) {
                    let spaces = String(repeating: " ", count: 1 + generator.below(12))
                    if generator.chance(5) {
                        text += Array("\(key):\(spaces)\(generator.pick(["18446744073709551616", "99999999999999999999999"])) kB\n".utf8)
                        continue  // beyond 64 bits: left out
                    }
                    let value = generator.chance(90) ? UInt64(generator.below(1 << 30)) : generator.number()
                    text += Array("\(key):\(spaces)\(value) kB\n".utf8)
                    let (bytes, overflow) = value.multipliedReportingOverflow(by: 1024)
                    if !overflow { fields[key] = bytes }
                }
                for key in ["THPeligible", "ProtectionKey"] where generator.chance(70) {
                    let value = generator.number()
                    text += Array("\(key):    \(value)\n".utf8)
                    fields[key] = value
                }
                let flags = vmFlags.filter { _ in generator.chance(25) }
                text += Array("VmFlags:\(flags.map { " \($0)" }.joined()) \n".utf8)
                expected.append((header.mapping.range, fields, flags))
            }
            let entries = parseSmaps(text)
            #expect(entries.count == expected.count, "case \(case_)")
            for (entry, (range, fields, flags)) in zip(entries, expected) {
                #expect(entry.range == range, "case \(case_)")
                #expect(entry.fields == fields, "case \(case_)")
                #expect(entry.vmFlags == flags, "case \(case_)")
            }
        }
    }

    @Test func smapsValuesAtAndBeyond64Bits() {
        func value(_ text: String) -> UInt64? {
            Array(text.utf8).withUnsafeBufferPointer { ProcMaps.smapsValue($0) }
        }
        #expect(value("   132 kB") == 132 * 1024)
        #expect(value(" 7") == 7)
        #expect(value(" 18014398509481983 kB") == UInt64(18014398509481983) * 1024)  // the largest kB value that fits
        #expect(value(" 18014398509481984 kB") == nil)
        #expect(value(" 18446744073709551615") == .max)
        #expect(value(" 18446744073709551616") == nil)
        #expect(value(" 18446744073709551619 kB") == nil)
        #expect(value(" kB") == nil && value("") == nil && value(" 5 k") == 5 && value(" 5 KB") == 5)
        let smaps = "1000-2000 rw-p 00000000 00:00 0 \nRss:   99999999999999999999 kB\nSwap:  18014398509481984 kB\nPss:  4 kB\n"
        let entry = parseSmaps(Array(smaps.utf8)).first
        #expect(entry?.fields == ["Pss": 4096])
    }

    // MARK: mountinfo and /proc/self/cgroup

    struct GeneratedMount {
        var line: String
        var device: ProcMaps.Device
        var fsType: String
        var root: String
        var mountPoint: String
        var superOptions: String
    }

    static func mount(_ generator: inout SeededGenerator, fsType: String? = nil, root: [UInt8]? = nil,
                      superOptions: String? = nil) -> GeneratedMount {
        let device = ProcMaps.Device(major: UInt32(generator.number(bits: 12)), minor: UInt32(generator.number(bits: 20)))
        let fsType = fsType ?? generator.pick(["tmpfs", "ext4", "proc", "sysfs", "devtmpfs", "overlay", "fuse.sshfs", "cgroup", "cgroup2", "ramfs"])
        let root = root ?? (generator.chance(70) ? Array("/".utf8) : generator.pathBytes())
        let mountPoint = generator.pathBytes()
        let name = generator.nameBytes()
        let source = generator.pick([Array("none".utf8), Array(fsType.utf8), Array("/dev/sda1".utf8), Array("-".utf8), name])
        let superOptions = superOptions ?? generator.pick(["rw", "rw,size=1024k", "rw,memory", "rw,cpu,cpuacct", "ro,nsdelegate"])
        let group = generator.below(99)
        let tags = (0..<generator.below(3)).map { _ in generator.pick(["shared:\(group)", "master:3", "propagate_from:2", "unbindable"]) }
        var fields = ["\(generator.below(1000))", "\(generator.below(1000))", "\(device.major):\(device.minor)",
                      String(decoding: kernelEscape(root, blankEscapes), as: UTF8.self),
                      String(decoding: kernelEscape(mountPoint, blankEscapes), as: UTF8.self),
                      generator.pick(["rw,relatime", "ro,nosuid,nodev", "rw"])]
        fields += tags
        fields += ["-", fsType, String(decoding: kernelEscape(source, blankEscapes), as: UTF8.self), superOptions]
        return GeneratedMount(line: fields.joined(separator: " "), device: device, fsType: fsType,
                              root: String(decoding: root, as: UTF8.self), mountPoint: String(decoding: mountPoint, as: UTF8.self),
                              superOptions: superOptions)
    }

    @Test func mountinfoTmpfsDevices() {
        var generator = SeededGenerator(seed: 0x6d6e_74)
        for case_ in 0..<400 {
            let mounts = (0..<(1 + generator.below(20))).map { _ in Self.mount(&generator) }
            let text = mounts.map(\.line).joined(separator: "\n") + "\n"
            let expected = Set(mounts.filter { $0.fsType == "tmpfs" }.map(\.device))
            #expect(ProcMaps.shmemDevices(mountinfo: text) == expected, "case \(case_)")
        }
    }

    @Test func cgroupHierarchiesFromGeneratedMountsAndMembership() {
        var generator = SeededGenerator(seed: 0x6367_7270)
        for case_ in 0..<500 {
            var mounts = (0..<generator.below(6)).map { _ in
                let fsType = generator.pick(["tmpfs", "ext4", "proc"])
                return Self.mount(&generator, fsType: fsType)
            }
            // Where this process sits below each hierarchy's mounted root.
            let sub = generator.chance(30) ? "" : "/" + String(decoding: generator.nameBytes(plain: true), as: UTF8.self)
                + (generator.chance(30) ? "/job:1 x" : "")
            var v1: GeneratedMount?
            var v2: GeneratedMount?
            if generator.chance(60) {
                let root = generator.chance(70) ? Array("/".utf8) : Array("/docker/ab".utf8)
                let mount = Self.mount(&generator, fsType: "cgroup2", root: root, superOptions: "rw")
                mounts.insert(mount, at: generator.below(mounts.count + 1))
                v2 = mount
            }
            if generator.chance(60) {
                let root = generator.chance(70) ? Array("/".utf8) : Array("/docker/cd".utf8)
                let options = generator.pick(["rw,memory", "rw,nosuid,memory", "rw,memory,hugetlb"])
                let mount = Self.mount(&generator, fsType: "cgroup", root: root, superOptions: options)
                mounts.insert(mount, at: generator.below(mounts.count + 1))
                v1 = mount
                // A v1 hierarchy without the memory controller, after it.
                mounts.append(Self.mount(&generator, fsType: "cgroup", superOptions: "rw,cpu,cpuacct"))
            }
            func membership(_ mount: GeneratedMount?) -> String {
                guard let mount else { return "/elsewhere" }
                let path = (mount.root == "/" ? "" : mount.root) + sub
                return path.isEmpty ? "/" : path
            }
            var selfCgroup = ["9:cpu,cpuacct:/other", "4:memory:\(membership(v1))", "1:name=systemd:/x", "0::\(membership(v2))"]
            selfCgroup.shuffle(using: &generator)
            let found = MemoryCgroup.locate(mountinfo: mounts.map(\.line).joined(separator: "\n"),
                                            selfCgroup: selfCgroup.joined(separator: "\n") + "\n")
            let expected = (v1.map { (MemoryCgroup.Version.v1, $0) } ?? v2.map { (.v2, $0) }).map {
                MemoryCgroup.Hierarchy(version: $0.0, mountPoint: $0.1.mountPoint, current: sub.isEmpty ? "/" : sub)
            }
            #expect(found == expected, "case \(case_)")
        }
    }

    // MARK: /proc/sysvipc/shm and /proc/swaps

    @Test func sysvShmParsesBackToItsSegments() throws {
        var generator = SeededGenerator(seed: 0x7379_7376)
        let header = try #require(try TestEnvironment.fixture("sysvipc-shm.txt").split(separator: "\n").first)
        func pad(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }
        for case_ in 0..<1000 {
            var lines = [String(header)]
            var expected: [SysVShm.Segment] = []
            for _ in 0..<generator.below(8) {
                // "%10d %10d  %4o %21lu %5u %5u  %5lu %5u %5u %5u %5u %10llu %10llu %10llu %21lu %21lu"
                let segment = SysVShm.Segment(key: Int64(Int32(truncatingIfNeeded: generator.next())), shmid: generator.number(bits: 31),
                                              size: generator.number(), attachments: generator.number(bits: 32),
                                              rss: generator.number(), swap: generator.number())
                let times = (0..<3).map { _ in pad(String(generator.number()), 10) }.joined(separator: " ")
                var line = "\(pad(String(segment.key), 10)) \(pad(String(segment.shmid), 10))  \(pad(String(generator.below(0o1000), radix: 8), 4)) "
                line += "\(pad(String(segment.size), 21)) \(pad("1234", 5)) \(pad("99", 5))  \(pad(String(segment.attachments), 5)) "
                line += "\(pad("0", 5)) \(pad("0", 5)) \(pad("1000", 5)) \(pad("1000", 5)) \(times) "
                if generator.chance(5) {
                    line += "\(pad("18446744073709551616", 21)) \(pad(String(segment.swap), 21))"  // rss beyond 64 bits: left out
                } else {
                    line += "\(pad(String(segment.rss), 21)) \(pad(String(segment.swap), 21))"
                    expected.append(segment)
                }
                lines.append(line)
            }
            #expect(SysVShm.parse(lines.joined(separator: "\n") + "\n") == expected, "case \(case_)")
            let joined = Array(lines.joined(separator: "\n").utf8)
            let damaged = generator.mutate(joined)
            _ = SysVShm.parse(String(decoding: damaged, as: UTF8.self))
        }
    }

    @Test func swapsParseBackToTheirUnescapedPaths() {
        var generator = SeededGenerator(seed: 0x7377_6170)
        for case_ in 0..<1000 {
            var text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
            var expected: [SwapArea.Entry] = []
            for _ in 0..<generator.below(5) {
                // The path with space, tab, newline and backslash escaped, padded with spaces to
                // column 40 (at least one), the type, then tab-separated numbers.
                let path = generator.chance(20) ? Array("/dev/zram0".utf8) : generator.pathBytes() + (generator.chance(10) ? Array(" (deleted)".utf8) : [])
                let escaped = kernelEscape(path, blankEscapes)
                let partition = generator.chance(30)
                let size = generator.chance(80) ? UInt64(generator.below(1 << 30)) : generator.number()
                let used = generator.chance(80) ? UInt64(generator.below(1 << 20)) : generator.number()
                var line = String(decoding: escaped, as: UTF8.self) + String(repeating: " ", count: max(1, 40 - escaped.count))
                line += partition ? "partition" : "file\t"
                let priority = generator.below(200) - 100
                line += "\t\(size)\t\(size < 10_000_000 ? "\t" : "")\(used)\t\(used < 10_000_000 ? "\t" : "")\(priority)\n"
                text += line
                expected.append(SwapArea.Entry(path: String(decoding: path, as: UTF8.self), type: partition ? "partition" : "file",
                                               sizeKiB: size, usedKiB: used, priority: Int(priority)))
            }
            #expect(SwapArea.parse(text) == expected, "case \(case_)")
            let bytes = Array(text.utf8)
            _ = SwapArea.parse(String(decoding: generator.mutate(bytes), as: UTF8.self))
        }
    }

    @Test func textParsersNeverCrashOnDamage() throws {
        // Every fixture, damaged a thousand ways, through every parser.
        var generator = SeededGenerator(seed: 0x6e6f_6973)
        let texts = try ["maps.txt", "smaps.txt", "mountinfo.txt", "sysvipc-shm.txt", "swaps.txt"].map { Array(try TestEnvironment.fixture($0).utf8) }
        for case_ in 0..<500 {
            let text = generator.pick(texts)
            let damaged = generator.mutate(text)
            runEveryParser(damaged, "case \(case_)")
        }
    }

    @Test func corpusReplays() throws {
        let corpus = try #require(Bundle.module.url(forResource: "Fixtures/corpus", withExtension: nil))
        let files = try #require(FileManager.default.enumerator(at: corpus, includingPropertiesForKeys: nil))
            .compactMap { $0 as? URL }.filter { !$0.hasDirectoryPath }
        #expect(files.count >= 10)
        for file in files {
            runEveryParser(Array(try Data(contentsOf: file)), file.lastPathComponent)
        }
    }
}

/// Feeds the same bytes to every parser; mappings must come out well-formed.
func runEveryParser(_ bytes: [UInt8], _ comment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    expectWellFormed(parseMaps(bytes), comment, sourceLocation: sourceLocation)
    for entry in parseSmaps(bytes) {
        #expect(entry.range.start < entry.range.end, "\(comment)", sourceLocation: sourceLocation)
    }
    let text = String(decoding: bytes, as: UTF8.self)
    _ = ProcMaps.shmemDevices(mountinfo: text)
    _ = MemoryCgroup.locate(mountinfo: text, selfCgroup: text)
    _ = SysVShm.parse(text)
    _ = SwapArea.parse(text)
}
