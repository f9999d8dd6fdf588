import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab
import PageStatRender

@Suite("Address ranges: whole pages, overflow-safe, errors that name the part")
struct AddressRangeParsingTests {
    func message(_ text: String) -> String? {
        do {
            _ = try AddressRange(parsing: text, pageSize: 4096)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func widenedToWholePages() throws {
        #expect(try AddressRange(parsing: "0x1001+1", pageSize: 4096) == AddressRange(start: 0x1000, end: 0x2000))
        #expect(try AddressRange(parsing: "0x1fff-0x2001", pageSize: 4096) == AddressRange(start: 0x1000, end: 0x3000))
        #expect(try AddressRange(parsing: "100+5000", pageSize: 4096) == AddressRange(start: 0, end: 8192))
        // START-END is hexadecimal, as /proc/PID/maps writes it, also when every digit is decimal.
        #expect(try AddressRange(parsing: "7f12a000-7f12c000", pageSize: 4096) == AddressRange(start: 0x7f12a000, end: 0x7f12c000))
        #expect(try AddressRange(parsing: "00400000-00452000", pageSize: 4096) == AddressRange(start: 0x400000, end: 0x452000))
        #expect(try AddressRange(parsing: "55d0be00a000-55d0be435000", pageSize: 4096)
                == AddressRange(start: 0x55d0be00a000, end: 0x55d0be435000))
        #expect(try AddressRange(parsing: "10000000-10021000", pageSize: 4096) == AddressRange(start: 0x1000_0000, end: 0x1002_1000))
        #expect(try AddressRange(parsing: "4096-8192", pageSize: 4096) == AddressRange(start: 0x4000, end: 0x9000))
        #expect(try AddressRange(parsing: "0x1000-2000", pageSize: 4096) == AddressRange(start: 0x1000, end: 0x2000))
        #expect(try AddressRange(parsing: "7f12a000+8K", pageSize: 4096) == AddressRange(start: 0x7f12a000, end: 0x7f12c000))
        #expect(try AddressRange(parsing: "4096+8K", pageSize: 4096) == AddressRange(start: 4096, end: 4096 + 8192))
        #expect(try AddressRange(parsing: "0x1000+4k", pageSize: 4096) == AddressRange(start: 0x1000, end: 0x2000))
        #expect(try AddressRange(parsing: "0x1000+1TiB", pageSize: 4096) == AddressRange(start: 0x1000, end: 0x1000 + (1 << 40)))
        #expect(try AddressRange(parsing: " 0x1000 + 0x10 ", pageSize: 4096) == AddressRange(start: 0x1000, end: 0x2000))
        // The last page of the address space is a range; an end past it is not.
        #expect(try AddressRange(parsing: "0x1000-0xfffffffffffff000", pageSize: 4096)
                == AddressRange(start: 0x1000, end: 0xffff_ffff_ffff_f000))
        #expect(throws: PageStatError.self) { try AddressRange(parsing: "0xfffffffffffff000+0xff0", pageSize: 4096) }
        #expect(AddressRange(start: 5, end: UInt64.max).pageAligned(pageSize: 4096) == nil)
    }

    @Test func errorsNameThePart() {
        #expect(message("0x1000+4Q") == "invalid range '0x1000+4Q': length '4Q': unknown unit 'Q' (use K, M, G or T)")
        #expect(message("0x1000-0xffffffffffffffff")
                == "invalid range '0x1000-0xffffffffffffffff': end '0xffffffffffffffff': rounded up to a whole page, it passes the top of the address space (2^64)")
        #expect(message("0xfffffffffffff000+0xfff")
                == "invalid range '0xfffffffffffff000+0xfff': length '0xfff': the end, rounded up to a whole page, passes the top of the address space (2^64)")
        #expect(message("1+18446744073709551615")
                == "invalid range '1+18446744073709551615': length '18446744073709551615': START+LENGTH passes the top of the address space (2^64)")
        #expect(message("zz-0x10") == "invalid range 'zz-0x10': start 'zz' is not hexadecimal (START-END is hexadecimal, as /proc/PID/maps writes it; for decimal write START+LENGTH)")
        #expect(message("zz+0x10") == "invalid range 'zz+0x10': start 'zz': not a number (0x-prefixed hex or decimal)")
        #expect(message("0x10-0x2g") == "invalid range '0x10-0x2g': end '0x2g' is not hexadecimal (START-END is hexadecimal, as /proc/PID/maps writes it; for decimal write START+LENGTH)")
        #expect(message("0x10-4K") == "invalid range '0x10-4K': end '4K' is not hexadecimal (START-END is hexadecimal, as /proc/PID/maps writes it; for decimal write START+LENGTH)")
        #expect(message("0x3000-0x1000") == "invalid range '0x3000-0x1000': end '0x1000': must be greater than start '0x3000'")
        #expect(message("0x1000+0") == "invalid range '0x1000+0': length '0': must be greater than 0")
        #expect(message("0x1000+99999999999T") == "invalid range '0x1000+99999999999T': length '99999999999T': larger than 2^64 - 1")
        #expect(message("0x10000000000000000-0x1") == "invalid range '0x10000000000000000-0x1': start '0x10000000000000000': larger than 2^64 - 1")
        #expect(message("12") == "invalid range '12': expected START-END (hexadecimal, as /proc/PID/maps writes it) or START+LENGTH (0x-prefixed hex or decimal)")
        #expect(message("7f12a000-7f12g000") == "invalid range '7f12a000-7f12g000': end '7f12g000' is not hexadecimal (START-END is hexadecimal, as /proc/PID/maps writes it; for decimal write START+LENGTH)")
        #expect(message("7f12c000-7f12a000") == "invalid range '7f12c000-7f12a000': end '7f12a000': must be greater than start '7f12c000'")
        #expect(message("0x1000+\u{1b}[31m") == #"invalid range '0x1000+\e[31m': length '\e[31m': not a number (0x-prefixed hex or decimal)"#)
    }

    @Test func firstUnmappedPart() {
        func mapping(_ start: UInt64, _ end: UInt64) -> Mapping {
            Mapping(range: AddressRange(start: start, end: end), permissions: "rw-p", offset: 0, deviceMajor: 0, deviceMinor: 0,
                    inode: 0, path: "", kind: .privateAnon)
        }
        let mappings = [mapping(0x1000, 0x3000), mapping(0x3000, 0x5000), mapping(0x8000, 0x9000)]
        #expect(RawPagemap.firstUnmapped(AddressRange(start: 0x1000, end: 0x5000), mappings) == nil)
        #expect(RawPagemap.firstUnmapped(AddressRange(start: 0x2000, end: 0x9000), mappings) == AddressRange(start: 0x5000, end: 0x8000))
        #expect(RawPagemap.firstUnmapped(AddressRange(start: 0x0, end: 0x2000), mappings) == AddressRange(start: 0x0, end: 0x1000))
        #expect(RawPagemap.firstUnmapped(AddressRange(start: 0x8000, end: 0xa000), mappings) == AddressRange(start: 0x9000, end: 0xa000))
        #expect(RawPagemap.firstUnmapped(AddressRange(start: 0x6000, end: 0x7000), mappings) == AddressRange(start: 0x6000, end: 0x7000))
    }
}

/// `pagestat fixture --vanish`: shared memory with a 16-page hole after it, unmapped on request.
final class VanishingFixture {
    let fixture: FixtureProcess
    let start: UInt64
    let pages: Int

    init(pages: Int) throws {
        fixture = try FixtureProcess(arguments: ["lab", "hold", "--vanish", "--pages", String(pages)])
        start = try #require((fixture.layout["start"] as? NSNumber)?.uint64Value)
        self.pages = pages
    }

    var pid: Int32 { fixture.pid }
    var end: UInt64 { start + UInt64(pages * TestEnvironment.pageSize) }

    /// Asks the fixture to unmap its memory and waits until its maps say so.
    func unmap() throws {
        try fixture.stdin.fileHandleForWriting.write(contentsOf: Data("unmap\n".utf8))
        for _ in 0..<1000 {
            if !(try ProcMaps.read(pid: pid)).contains(where: { $0.range.start == start }) { return }
            usleep(10_000)
        }
        Issue.record("the fixture did not unmap its memory")
    }

    func stop() { fixture.stop() }
}

@Suite("raw and show on ranges of a child process (needs root)", .serialized,
       .requires(TestEnvironment.isRoot, "root: PFNs and map_files"))
struct RangeEndToEndTests {
    @Test func hugeRangesAreUsageErrorsNotCrashes() throws {
        let run = try runPagestat(["raw", "--pid", String(getpid()), "--range", "0x1000-0xffffffffffffffff"])
        #expect(run.status == 64)
        #expect(run.output.isEmpty)
        #expect(run.stderr.contains("end '0xffffffffffffffff': rounded up to a whole page"), "\(run.stderr)")
        let unit = try runPagestat(["show", "--pid", String(getpid()), "--range", "0x1000+4Q"])
        #expect(unit.status == 64)
        #expect(unit.stderr.contains("invalid range '0x1000+4Q': length '4Q': unknown unit 'Q' (use K, M, G or T)"), "\(unit.stderr)")
    }

    @Test func rawWritesNothingUnlessEveryPageIsMapped() throws {
        let vanishing = try VanishingFixture(pages: 64)
        defer { vanishing.stop() }
        let pid = String(vanishing.pid)
        let pageSize = UInt64(TestEnvironment.pageSize)
        // The mapping and one page of the hole after it.
        let over = try runPagestat(["raw", "--pid", pid, "--range", "\(hex(vanishing.start))-\(hex(vanishing.end + pageSize))"])
        #expect(over.status == 5)
        #expect(over.output.isEmpty)
        #expect(over.stderr == "pagestat: range \(AddressRange(start: vanishing.end, end: vanishing.end + pageSize)) is not mapped in process \(pid)\n")
        // Nearly the whole address space: the first unmapped part is named, nothing written, no crash.
        let huge = try runPagestat(["raw", "--pid", pid, "--range", "0x1000-0xfffffffffffff000"])
        #expect(huge.status == 5)
        #expect(huge.output.isEmpty)
        #expect(huge.stderr.hasPrefix("pagestat: range 0x1000-0x"), "\(huge.stderr)")
        // Exactly the mapping: one entry per page.
        let exact = try runPagestat(["raw", "--pid", pid, "--range", "\(hex(vanishing.start))-\(hex(vanishing.end))"])
        #expect(exact.status == 0, "\(exact.stderr)")
        #expect(exact.output.count == vanishing.pages * 8)
    }

    @Test func unalignedRangesCoverWholePages() throws {
        let vanishing = try VanishingFixture(pages: 64)
        defer { vanishing.stop() }
        let pid = String(vanishing.pid)
        let pageSize = UInt64(TestEnvironment.pageSize)
        // 100 bytes into the first page, 5000 bytes long: the first two pages.
        let range = "\(vanishing.start + 100)+5000"
        let show = try runPagestat(["show", "--pid", pid, "--range", range, "--format", "json"])
        #expect(show.status == 0, "\(show.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: show.output) as? [String: Any])
        let mappings = try #require(report["mappings"] as? [[String: Any]])
        try #require(mappings.count == 1)
        #expect((mappings[0]["start"] as? NSNumber)?.uint64Value == vanishing.start)
        #expect((mappings[0]["end"] as? NSNumber)?.uint64Value == vanishing.start + 2 * pageSize)
        let runs = try #require(mappings[0]["runs"] as? [[String: Any]])
        #expect(runs.map { ($0["start"] as? NSNumber)?.uint64Value } == [vanishing.start, vanishing.start + pageSize])
        #expect(runs.map { $0["state"] as? String } == ["present", "none"])
        #expect(runs.map { $0["pages"] as? Int } == [1, 1])

        let raw = try runPagestat(["raw", "--pid", pid, "--range", range, "--kernel"])
        #expect(raw.status == 0, "\(raw.stderr)")
        let entries = raw.output.withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }.map(UInt64.init(littleEndian:))
        #expect(entries.count == 2)
        #expect(entries.first.map { $0 & RawPagemap.presentBit != 0 } == true)
        #expect(entries.last == 0)
    }

    /// A mapping that goes away while raw writes: the output keeps one entry per page, the
    /// entries read after the unmap are 0, raw exits 0 and says so on stderr.
    @Test func mappingThatVanishesMidStream() throws {
        let batch = 1 << 16  // raw's pagemap batch, in pages
        let vanishing = try VanishingFixture(pages: 4 * batch)
        defer { vanishing.stop() }
        let process = Process()
        configure(process, pagestat: ["raw", "--pid", String(vanishing.pid), "--range", "\(hex(vanishing.start))-\(hex(vanishing.end))"],
                  asUser: nil)
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // raw writes its first batch (512 KiB) in one go: it is now blocked on the full pipe.
        var output = out.fileHandleForReading.readData(ofLength: 4096)
        try #require(output.count == 4096)
        try vanishing.unmap()
        output.append(out.fileHandleForReading.readDataToEndOfFile())
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()

        #expect(process.terminationStatus == 0, "\(stderr)")
        #expect(output.count == vanishing.pages * 8)
        let entries = output.withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }.map(UInt64.init(littleEndian:))
        // The first batch was read before the unmap: every 512th page present, the rest 0.
        let firstBatch = entries.prefix(batch)
        #expect(firstBatch.indices.allSatisfy { index in
            (firstBatch[index] & RawPagemap.presentBit != 0) == (index % 512 == 0)
        })
        // Every later batch was read after it: 0, as pagemap gives for unmapped addresses.
        #expect(entries[batch...].allSatisfy { $0 == 0 })
        #expect(stderr.contains("was unmapped while the range was read"), "\(stderr)")
    }
}
