import Foundation
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore
@testable import PageStatLab

@Suite("Parsers and decoders on fixtures")
struct ParserTests {
    @Test func mapsLinesAndKinds() throws {
        let mountinfo = try TestEnvironment.fixture("mountinfo.txt")
        let devices = ProcMaps.shmemDevices(mountinfo: mountinfo)
        // mountinfo prints device numbers in decimal; maps prints them in hex (00:1b is 0:27).
        #expect(devices.contains(ProcMaps.Device(major: 0, minor: 27)))
        #expect(devices.contains(ProcMaps.Device(major: 0, minor: 23)))
        #expect(!devices.contains(ProcMaps.Device(major: 254, minor: 0)))

        let maps = ProcMaps.parse(try TestEnvironment.fixture("maps.txt"), shmemDevices: devices)
        func mapping(_ path: String) throws -> Mapping { try #require(maps.first { $0.path == path }) }

        let heap = try mapping("[heap]")
        #expect(heap.range == AddressRange(start: 0x560fc39c9000, end: 0x560fc39ea000))
        #expect(heap.permissions == "rw-p")
        #expect(heap.kind == .privateAnon)

        let file = try mapping("/var/tmp/pagestat-fixture-4953.data")
        #expect(file.kind == .file)
        #expect(file.deviceMajor == 0xfe && file.deviceMinor == 0 && file.inode == 6725633)

        #expect(try mapping("/SYSV00000000 (deleted)").kind == .shmem)
        #expect(try mapping("/dev/shm/pagestat-fixture-4953").kind == .shmem)
        #expect(try mapping("/memfd:pagestat-fixture (deleted)").kind == .shmem)
        #expect(try mapping("/dev/zero (deleted)").kind == .sharedAnon)
        #expect(try mapping("/dev/zero").kind == .privateAnon)
        #expect(try mapping("[anon:my arena]").kind == .privateAnon)
        #expect(try mapping("[anon_shmem:vm ram]").kind == .sharedAnon)
        #expect(try mapping("[vdso]").kind == .special)
        #expect(try mapping("[vvar]").kind == .special)
        #expect(try mapping("[vsyscall]").kind == .special)
        #expect(try mapping("[stack]").kind == .privateAnon)
        #expect(try mapping("").kind == .privateAnon)
        let spaced = try mapping("/home/user/a file with spaces.bin")
        #expect(spaced.offset == 0x1000 && spaced.kind == .file)
        let binary = try #require(maps.first { $0.path.hasSuffix("/pagestat") && $0.permissions == "r--p" })
        #expect(binary.offset == 0x29c000)
        #expect(maps.count == 19)
    }

    @Test func malformedMapsLinesAreSkipped() {
        let text = "garbage\n1000-2000 rw-p 0 00:00 0\n3000-4000 rw-p zz 00:00 0\n5000-6000 rwxp 00000000 00:00 0  \n"
        let maps = ProcMaps.parse(text)
        #expect(maps.count == 2)
        #expect(maps[1].range.start == 0x5000 && maps[1].path == "")
    }

    @Test func smapsFields() throws {
        let entries = ProcMaps.parseSmaps(try TestEnvironment.fixture("smaps.txt"))
        #expect(entries.count == 5)
        let sysv = try #require(entries.first { $0.range.start == 0x7f4ae6940000 })
        #expect(sysv["Rss"] == 64 * 1024)
        #expect(sysv["Swap"] == 64 * 1024)
        #expect(sysv["Size"] == 256 * 1024)
        #expect(sysv.vmFlags.contains("sh"))
        let heap = try #require(entries.first)
        #expect(heap["Pss_Dirty"] == 52 * 1024)
        #expect(heap["THPeligible"] == 0)
        #expect(heap.vmFlags == ["rd", "wr", "mr", "mw", "me", "ac"])
    }

    @Test func statFingerprintParentAndState() throws {
        // A real line of a process whose command name is "x) y z": fields count from the last ')'.
        let stat = Array(try TestEnvironment.fixture("stat.txt").utf8)
        let identity = try #require(AddressSpaceIdentity(stat: stat))
        #expect(identity.values == [94107074887680, 94107074905609, 140737484858624,
                                    94107074919696, 94107074920960, 94107258847232,
                                    140737484864200, 140737484864215, 140737484864215, 140737484865516])
        #expect(identity.sharers.isEmpty)
        #expect(ProcStat.parentPID(stat) == 14767)
        #expect(!ProcStat.isZombie(stat))
        #expect(ProcStat.parentPID(Array("7 (x) 0 S".utf8)) == nil)
        #expect(ProcStat.parentPID(Array("7 (x".utf8)) == nil)
        #expect(ProcStat.parentPID(Array("7 (x) S 99999999999".utf8)) == nil)
        // Cut before field 51: hidden or no address space.
        #expect(AddressSpaceIdentity(stat: Array(stat.prefix(200))) == nil)
    }

    @Test func smapsFieldOfOneVMAFromBytes() throws {
        let smaps = Array(try TestEnvironment.fixture("smaps.txt").utf8)
        #expect(ProcMaps.smapsField(smaps, vmaStart: 0x7f4ae6940000, key: "Swap") == 64 * 1024)
        #expect(ProcMaps.smapsField(smaps, vmaStart: 0x7f4ae6940000, key: "Nonexistent") == nil)
        #expect(ProcMaps.smapsField(smaps, vmaStart: 0x1000, key: "Swap") == nil)
        #expect(ProcMaps.parseSmaps(bytes: smaps).map(\.range) == ProcMaps.parseSmaps(String(decoding: smaps, as: UTF8.self)).map(\.range))
    }

    @Test func mapsBytesAndTextParseAlike() throws {
        let text = try TestEnvironment.fixture("maps.txt")
        #expect(ProcMaps.parse(bytes: Array(text.utf8)) == ProcMaps.parse(text))
    }

    @Test func procSwaps() throws {
        let swaps = SwapArea.parse(try TestEnvironment.fixture("swaps.txt"))
        #expect(swaps == [
            SwapArea.Entry(path: "/var/tmp/dev.swap", type: "file", sizeKiB: 2097148, usedKiB: 1024, priority: -2),
            SwapArea.Entry(path: "/dev/zram0", type: "partition", sizeKiB: 8388604, usedKiB: 0, priority: 100),
        ])
        #expect(SwapArea.parse("Filename\tType\tSize\tUsed\tPriority\n").isEmpty)
    }

    @Test func pagemapEntryBits() {
        // A present, exclusive, shared page with a PFN (as a privileged read shows it).
        let present = PagemapEntry(rawValue: 0xa100_0000_0018_8b37)
        #expect(present.isPresent && present.isFile && present.isExclusive && !present.isSwap)
        #expect(present.pfn == 0x188b37)
        #expect(present.flags == [.exclusive, .file])
        // A private swap entry: type 0, offset 0x91.
        let swapped = PagemapEntry(rawValue: (1 << 62) | (0x91 << 5))
        #expect(swapped.isSwap && !swapped.isPresent && swapped.swapType == 0 && swapped.swapOffset == 0x91)
        #expect(!swapped.isSpecialSwapType)
        // A guard region as this kernel reports it: a PTE marker, type 31.
        let guardEntry = PagemapEntry(rawValue: 0x4400_0000_0000_009f)
        #expect(guardEntry.isSwap && guardEntry.isGuard && guardEntry.swapType == 31 && guardEntry.isSpecialSwapType)
        // Soft-dirty on an empty entry (VM_SOFTDIRTY).
        let empty = PagemapEntry(rawValue: 1 << 55)
        #expect(!empty.isPresent && !empty.isSwap && empty.flags == [.softDirty])
        #expect(PagemapEntry(rawValue: 1 << 57).flags == [.uffdWP])
    }

    @Test func decoderStatesByKindAndPrivilege() {
        let swap2 = UInt64(1 << 62) | (7 << 5) | 2
        let marker = UInt64(1 << 62) | (1 << 57) | 31  // uffd-wp PTE marker, privileged view
        let unprivilegedSwap = UInt64(1 << 62)
        let present: UInt64 = 0xA000_0000_0000_1234

        let anon = PagemapDecoder(kind: .privateAnon, shared: false, privileged: true, view: .truth)
        #expect(anon.decode(0).state == .none)
        #expect(anon.decode(swap2).state == .swapped)
        #expect(anon.decode(swap2).swap == SwapLocation(type: 2, offset: 7))
        #expect(anon.decode(marker).state == .none)
        #expect(anon.decode(marker).flags == [.uffdWP, .nonSwapEntry])
        #expect(anon.decode(0x4400_0000_0000_009f).state == .none)
        #expect(anon.decode(0x4400_0000_0000_009f).flags.contains(.guardRegion))
        #expect(anon.decode(present).pfn == 0x1234)
        // A migration, device or hwpoison entry (type 29 here) is never taken for a present page
        // nor for swap: unknown, flagged, and the scanner says why.
        #expect(anon.decode(UInt64(1 << 62) | 29).state == .unknown)
        #expect(anon.decode(UInt64(1 << 62) | 29).flags == [.nonSwapEntry])
        #expect(anon.decode(UInt64(1 << 62) | 29).swap == nil)

        let shmem = PagemapDecoder(kind: .shmem, shared: true, privileged: true, view: .truth)
        #expect(shmem.decode(0).state == .unknown)
        #expect(shmem.decode(0).flags.contains(.pendingFileSide))
        #expect(shmem.decode(marker).flags.contains(.pendingFileSide))
        #expect(shmem.decode(present).state == .present)

        // Without privilege a bit-62 entry in shared memory cannot be swap: the file side decides.
        let shmemUnprivileged = PagemapDecoder(kind: .sharedAnon, shared: true, privileged: false, view: .truth)
        #expect(shmemUnprivileged.decode(unprivilegedSwap).flags.contains(.pendingFileSide))
        #expect(shmemUnprivileged.decode(present).pfn == nil)
        let anonUnprivileged = PagemapDecoder(kind: .privateAnon, shared: false, privileged: false, view: .truth)
        #expect(anonUnprivileged.decode(unprivilegedSwap).state == .swapped)
        #expect(anonUnprivileged.decode(unprivilegedSwap).swap == nil)

        // The kernel view takes pagemap at its word.
        let kernel = PagemapDecoder(kind: .shmem, shared: true, privileged: true, view: .kernel)
        #expect(kernel.decode(0).state == .none)
        #expect(kernel.decode(marker).state == .swapped)
        #expect(PagemapDecoder(kind: .special, shared: false, privileged: true, view: .truth).decode(0).state == .none)
    }

    @Test func addressRanges() throws {
        #expect(try AddressRange(parsing: "0x1000-0x3000") == AddressRange(start: 0x1000, end: 0x3000))
        #expect(try AddressRange(parsing: "4096+8192") == AddressRange(start: 4096, end: 12288))
        #expect(try AddressRange(parsing: "0x7f0000000000+1G") == AddressRange(start: 0x7f00_0000_0000, end: 0x7f00_4000_0000))
        #expect(try AddressRange(parsing: "0x1000+4KiB") == AddressRange(start: 0x1000, end: 0x2000))
        for bad in ["", "0x3000-0x1000", "0x1000-0x1000", "12", "0x1000+0", "zz-0x10", "0x10+1Q", "1+18446744073709551615"] {
            #expect(throws: PageStatError.self, "\(bad)") { try AddressRange(parsing: bad) }
        }
        let range = AddressRange(start: 0x1000, end: 0x5000)
        #expect(range.overlaps(AddressRange(start: 0x4000, end: 0x9000)))
        #expect(!range.overlaps(AddressRange(start: 0x5000, end: 0x9000)))
        #expect(range.clamped(to: AddressRange(start: 0x2000, end: 0x9000)) == AddressRange(start: 0x2000, end: 0x5000))
    }

    @Test func runBuilderMergesOnlyAdjacentEqualRuns() {
        var builder = RunBuilder(pageSize: 4096)
        builder.append(start: 0x1000, pages: 2, state: .present, flags: [.exclusive], pfn: 10)
        builder.append(start: 0x3000, pages: 1, state: .present, flags: [.exclusive], pfn: 99)
        builder.append(start: 0x4000, pages: 1, state: .present, flags: [])
        builder.append(start: 0x6000, pages: 1, state: .present, flags: [])  // not adjacent
        builder.append(start: 0x7000, pages: 0, state: .none, flags: [])     // empty: ignored
        #expect(builder.runs.map(\.pages) == [3, 1, 1])
        #expect(builder.runs[0].pfn == 10)
    }

    @Test func flagNames() throws {
        let flags: PageFlags = [.softDirty, .exclusive, .uffdWP, .guardRegion, .file, .thp, .zeroPage, .nonSwapEntry]
        #expect(flags.names == ["soft-dirty", "exclusive", "uffd-wp", "guard", "file", "thp", "zero-page", "non-swap-entry"])
        #expect(try PageFlags(names: flags.names) == flags)
        #expect(throws: PageStatError.self) { try PageFlags(names: ["dirty"]) }
        #expect(PageFlags.pendingFileSide.names.isEmpty)
    }

    @Test func jsonWriterAndUnits() throws {
        var json = JSONWriter()
        json.beginObject()
        json.field("path", "a \"b\"\n\u{1}")
        json.key("list")
        json.beginArray()
        json.value(1)
        json.beginObject()
        json.endObject()
        json.endArray()
        json.field("ok", true)
        json.endObject()
        #expect(json.output == #"{"path":"a \"b\"\n\u0001","list":[1,{}],"ok":true}"#)
        let parsed = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        #expect(parsed?["path"] as? String == "a \"b\"\n\u{1}")

        // Every length of number (1 to 20 digits) and of short static string, written without
        // memmove: each copy width of the short copy, and the overlapping move of the digits.
        var numbers = JSONWriter()
        var expected = ""
        var n: UInt64 = 0
        for digits in 1...20 {
            let top = n == 0 ? 9 : (n.multipliedReportingOverflow(by: 10).overflow ? UInt64.max : n * 10 - 1)
            for value in [n, top, n == 0 ? 5 : n + n / 3] where String(value).count == digits {
                numbers.raw(value)
                numbers.raw(",")
                expected += "\(value),"
            }
            n = n == 0 ? 10 : (n > UInt64.max / 10 ? n : n * 10)
        }
        numbers.raw(UInt64.max)
        expected += "\(UInt64.max)"
        for piece: StaticString in ["", "a", "ab", "abc", "abcd", "abcdefg", "abcdefgh", "abcdefghijklmno", "abcdefghijklmnop",
                                     "abcdefghijklmnopq", "{\"start\":", "\",\"flags\":["] {
            numbers.raw(piece)
            expected += piece.description
        }
        #expect(numbers.output == expected)

        // Around the cuts into parts of eight digits (10^8, 10^16), parts with leading zeros,
        // and random values of every bit length.
        var parts = JSONWriter()
        var partsExpected = ""
        var values: [UInt64] = [100_000_001, 1_000_000_000_000_001, 1_000_000_000_000_000_001, 140_000_000_004_096]
        for power in [UInt64(100_000_000), 10_000_000_000_000_000] { values += [power - 1, power, power + 1, power * 7 + 9] }
        var generator = SystemRandomNumberGenerator()
        for bits in 1...64 {
            for _ in 0..<64 { values.append(generator.next() >> UInt64(64 - bits)) }
        }
        for value in values {
            parts.raw(value)
            parts.raw(",")
            partsExpected += "\(value),"
        }
        #expect(parts.output == partsExpected)

        #expect(humanBytes(512) == "512 B")
        #expect(humanBytes(4096) == "4.0 KiB")
        #expect(humanBytes(16 << 30) == "16.0 GiB")
        #expect(humanBytes(1536 * 1024) == "1.5 MiB")
    }
}

@Suite("Run layout")
struct RunLayoutTests {
    @Test func runsAreSmallAndKeepTheirDetails() {
        #expect(MemoryLayout<PageRun>.stride == 32)
        var run = PageRun(start: 0x1000, pages: 3, state: .swapped, flags: [.exclusive],
                          swap: SwapLocation(type: 3, offset: 0x1234), kernelFlags: KPageFlags(rawValue: 1 << 22))
        #expect(run.swap == SwapLocation(type: 3, offset: 0x1234) && run.pfn == nil)
        #expect(run.kernelFlags == KPageFlags(rawValue: 1 << 22))
        run.pfn = 42
        #expect(run.pfn == 42 && run.swap == nil)
        run.kernelFlags = nil
        #expect(run.kernelFlags == nil)
        #expect(PageRun(start: 0, pages: 1, state: .none, flags: [], kernelFlags: KPageFlags()).kernelFlags == KPageFlags())
    }
}

@Suite("Run lines with every flag")
struct RunLineTests {
    /// A run with every pagestat flag and every kernel flag, one with none, one with a swap
    /// location: the JSON and text lines list the names in their fixed order.
    @Test func everyFlagNameInOrder() throws {
        let mapping = Mapping(range: AddressRange(start: 0x10000, end: 0x14000), permissions: "rw-s", offset: 0, deviceMajor: 0,
                              deviceMinor: 1, inode: 2, path: "/memfd:x", kind: .shmem)
        let allFlags = PageFlags.staticNames.reduce(PageFlags()) { $0.union($1.0) }
        let allKernel = KPageFlags(rawValue: KPageFlags.documentedMask)
        let runs = [PageRun(start: 0x10000, pages: 1, state: .present, flags: allFlags, pfn: 0x1234, kernelFlags: allKernel),
                    PageRun(start: 0x11000, pages: 1, state: .none, flags: [], kernelFlags: KPageFlags()),
                    PageRun(start: 0x12000, pages: 2, state: .swapped, flags: [.exclusive], swap: SwapLocation(type: 3, offset: 99))]
        var json: [UInt8] = []
        var stream = JSONReportStream(pid: 1, pageSize: 4096, privileged: true, view: .truth) { json.append(contentsOf: $0) }
        stream.begin(mapping, scanned: mapping.range)
        stream.runs(runs)
        stream.end(use: nil)
        stream.finish(notes: [])
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
        let written = try #require(((parsed["mappings"] as? [[String: Any]])?.first?["runs"]) as? [[String: Any]])
        let pageNames = PageFlags.staticNames.map { $0.1.description }
        let kernelNames = KPageFlags.staticNames.map { $0.name.description }
        #expect(written[0]["flags"] as? [String] == pageNames)
        #expect(written[0]["kernel_flags"] as? [String] == kernelNames)
        #expect(written[0]["pfn"] as? Int == 0x1234)
        #expect(written[1]["flags"] as? [String] == [] && written[1]["kernel_flags"] as? [String] == [])
        #expect((written[2]["swap"] as? [String: Int]) == ["type": 3, "offset": 99])

        var text = ""
        var lines = TextReportStream(pid: 1, pageSize: 4096, privileged: true, view: .truth) { text += $0 }
        lines.begin(mapping, scanned: mapping.range)
        lines.runs(runs)
        lines.end(use: nil)
        lines.finish(notes: [])
        #expect(text.contains(" present  " + pageNames.joined(separator: ",") + " [" + kernelNames.joined(separator: ",") + "] pfn=0x1234\n"), "\(text)")
        #expect(text.contains("    0x11000         1 page     4.0 KiB  none\n"), "\(text)")
        #expect(text.contains(" swapped  exclusive swap=3:0x63\n"), "\(text)")
    }
}

@Suite("ASCII numbers (the one digit reader)")
struct ASCIINumberTests {
    @Test func leadingDigitsStopAtTheFirstOther() {
        let text = Array("7f12a000-7f12c000 1234 kB".utf8)
        text.withUnsafeBufferPointer { bytes in
            #expect(ASCIINumber.leading(bytes, from: 0, radix: 16)! == (0x7f12a000, 8))
            #expect(ASCIINumber.leading(bytes, from: 9, radix: 16)! == (0x7f12c000, 17))
            #expect(ASCIINumber.leading(bytes, from: 18)! == (1234, 22))
            #expect(ASCIINumber.leading(bytes, from: 8) == nil)  // '-': no digit
            #expect(ASCIINumber.leading(bytes, from: 0)! == (7, 1))  // 'f' is no decimal digit
            #expect(ASCIINumber.leading(bytes, from: bytes.count) == nil)
        }
    }

    @Test func wholeOrNothing() {
        #expect(ASCIINumber.parse(Array("18446744073709551615".utf8)[...]) == UInt64.max)
        #expect(ASCIINumber.parse(Array("18446744073709551616".utf8)[...]) == nil)  // overflow
        #expect(ASCIINumber.parse(Array("ffffffffffffffff".utf8)[...], radix: 16) == UInt64.max)
        #expect(ASCIINumber.parse(Array("10000000000000000".utf8)[...], radix: 16) == nil)
        #expect(ASCIINumber.parse(Array("12 ".utf8)[...]) == nil)
        #expect(ASCIINumber.parse(Array("".utf8)[...]) == nil)
        #expect(ASCIINumber.parse(Array("-1".utf8)[...]) == nil)
        #expect(ASCIINumber.parse(Array("0".utf8)[...]) == 0)
    }
}
