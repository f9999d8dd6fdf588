import Foundation
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore
@testable import PageStatLab

/// rsvg-convert (Debian's librsvg2-bin; `Scripts/test.sh` installs it as root) and python3 (which
/// decodes its PNG): the real renderer the SVG pictures are checked with.
enum Rasterizer {
    static let rsvg = TestEnvironment.tool("rsvg-convert")
    static let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static var available: Bool { rsvg != nil && python != nil }

    /// An RGB image, row by row.
    struct Image {
        var width: Int
        var height: Int
        var pixels: Data

        func rgb(_ x: Int, _ y: Int) -> (UInt8, UInt8, UInt8) {
            let offset = (y * width + x) * 3
            return (pixels[offset], pixels[offset + 1], pixels[offset + 2])
        }
    }

    /// Renders `svg` with rsvg-convert and decodes the PNG; temporary files are removed, also on failure.
    static func render(_ svg: String) throws -> Image {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pagestat-map-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let svgPath = directory.appendingPathComponent("map.svg").path
        let pngPath = directory.appendingPathComponent("map.png").path
        try Data(svg.utf8).write(to: URL(fileURLWithPath: svgPath))
        let convert = try runCommand(try #require(rsvg), ["-f", "png", "-o", pngPath, svgPath])
        #expect(convert.status == 0, "rsvg-convert: \(convert.stderr)")
        let script = try #require(Bundle.module.url(forResource: "Fixtures/png-to-ppm", withExtension: "py")).path
        let decode = try runCommand(try #require(python), [script, pngPath])
        #expect(decode.status == 0, "png-to-ppm: \(decode.stderr)")
        // "P6\nW H\n255\n" then the pixels.
        var fields: [Int] = []
        var index = decode.output.startIndex
        var field = ""
        while fields.count < 4 && index < decode.output.endIndex {
            let byte = decode.output[index]
            index += 1
            if byte == 0x0a || byte == 0x20 {
                if field == "P6" { fields.append(6) } else if let value = Int(field) { fields.append(value) }
                field = ""
            } else {
                field.append(Character(UnicodeScalar(byte)))
            }
        }
        try #require(fields.count == 4 && fields[0] == 6)
        let pixels = decode.output[index...]
        try #require(pixels.count == fields[1] * fields[2] * 3)
        return Image(width: fields[1], height: fields[2], pixels: Data(pixels))
    }
}

/// The geometry of one band of an SVG map, read from its `<g>` (see `SVGMapStream`).
struct SVGBand {
    var top: Int
    var pagesPerCell: Int
    var columns: Int

    init(_ svg: String, start: UInt64) throws {
        let marker = "data-start=\"\(hex(start))\""
        let at = try #require(svg.range(of: marker), "no band for \(hex(start))")
        let tail = svg[at.upperBound...].prefix(200)
        func attribute(_ name: String) throws -> Int {
            let open = try #require(tail.range(of: "\(name)=\""))
            return try #require(Int(tail[open.upperBound...].prefix { $0 != "\"" }))
        }
        top = try attribute("data-top")
        pagesPerCell = try attribute("data-pages-per-cell")
        columns = try attribute("data-columns")
    }

    /// The centre of page `page`'s cell, for cells of `cellSize` pixels.
    func centre(page: Int, cellSize: Int = 4) -> (Int, Int) {
        let cell = page / pagesPerCell
        return (SVGMapStream.left + (cell % columns) * cellSize + cellSize / 2, top + (cell / columns) * cellSize + cellSize / 2)
    }
}

/// Whether a pixel has a state's colour (rendering may round a channel by one).
func colour(_ pixel: (UInt8, UInt8, UInt8), is state: PageState) -> Bool {
    let want = PageMapStyle.rgb(state)
    return abs(Int(pixel.0) - Int(want.0)) <= 2 && abs(Int(pixel.1) - Int(want.1)) <= 2 && abs(Int(pixel.2) - Int(want.2)) <= 2
}

@Suite("pagestat map: its cells and its pictures")
struct MapTests {
    @Test func cellsTakeTheMajorityState() {
        var bins = StateBins()
        bins.reset(pages: 10, maxCells: 4)
        #expect(bins.pagesPerCell == 3 && bins.cells == 4)
        bins.add(first: 0, count: 2, state: .swapped)
        bins.add(first: 2, count: 5, state: .present)
        bins.add(first: 7, count: 3, state: .none)
        #expect((0..<4).map(bins.majority) == [.swapped, .present, .none, .none])
        // Ties go to the state first in PageState; a band of fewer pages than cells is one page a cell.
        bins.reset(pages: 4, maxCells: 80)
        #expect(bins.pagesPerCell == 1 && bins.cells == 4)
        bins.reset(pages: 2, maxCells: 1)
        bins.add(first: 0, count: 1, state: .cached)
        bins.add(first: 1, count: 1, state: .swapped)
        #expect(bins.majority(0) == .swapped)
        // A run past the band's end is cut; a huge band costs its cells, not its pages.
        bins.reset(pages: 1 << 34, maxCells: 100)
        bins.add(first: 0, count: 1 << 40, state: .present)
        #expect(bins.cells == 100 && bins.majority(99) == .present)
    }

    @Test func namesAreEscapedForXML() {
        #expect(xmlEscaped("a<b>&\"c'") == "a&lt;b&gt;&amp;&quot;c&apos;")
        #expect(xmlEscaped("x\ny\u{1B}") == "x\\ny\\e")
        #expect(xmlEscaped("\u{FFFE}") == "\\xef\\xbf\\xbe")
    }

    /// A mapping of `pages` pages, every other 1/64 of it swapped, drawn as SVG.
    static func svg(pages: UInt64, path: String) -> String {
        var out = ""
        var stream = SVGMapStream(title: "test", pageSize: 4096) { out += $0 }
        let mapping = Mapping(range: AddressRange(start: 0x10000, end: 0x10000 + pages * 4096), permissions: "rw-s",
                              offset: 0, deviceMajor: 0, deviceMinor: 1, inode: 2, path: path, kind: .shmem)
        stream.begin(mapping, scanned: mapping.range)
        // Every other 1/64 of the mapping swapped.
        let piece = pages / 64
        stream.runs((0..<64).map { PageRun(start: 0x10000 + UInt64($0) * piece * 4096, pages: piece,
                                           state: $0 % 2 == 0 ? .swapped : .present, flags: []) })
        stream.end(use: nil)
        stream.finish(notes: [.aboveUserAddressSpace(mapping: "a note -- with dashes")])
        return out
    }

    static let hostilePath = "/dev/shm/<&\"]]>--\n\u{1B}[31m\u{FFFF}"

    /// A mapping far larger than the picture: the SVG stays the same size whatever the mapping's
    /// size, and a hostile name is escaped.
    @Test func svgCostFollowsCellsNotPages() throws {
        let small = Self.svg(pages: 1 << 14, path: "/dev/shm/a")
        let huge = Self.svg(pages: 1 << 34, path: "/dev/shm/a")
        #expect(huge.contains("1 cell = \((1 << 34) / (256 * 64)) pages"))
        #expect(abs(huge.utf8.count - small.utf8.count) < 200, "\(small.utf8.count) vs \(huge.utf8.count) bytes")
        let hostile = Self.svg(pages: 64, path: Self.hostilePath)
        #expect(hostile.contains("/dev/shm/&lt;&amp;&quot;]]&gt;--\\n\\e[31m\\xef\\xbf\\xbf"))
    }

    /// A hostile name still makes a picture rsvg-convert draws, in the right colours.
    @Test(.needsRasterizer) func svgWithAHostileNameIsDrawn() throws {
        let hostile = Self.svg(pages: 64, path: Self.hostilePath)
        let image = try Rasterizer.render(hostile)
        let band = try SVGBand(hostile, start: 0x10000)
        let (x, y) = band.centre(page: 0)
        #expect(colour(image.rgb(x, y), is: .swapped))
    }
}

@Suite("pagestat map on a child process (needs root and swap)", .serialized,
       .needsSwapAndRoot)
struct MapEndToEndTests {
    /// The whole process drawn as SVG, rasterized by rsvg-convert: every page of every arranged
    /// region has its state's colour.
    @Test(.needsRasterizer) func svgPixelsShowTheArrangedPages() throws {
        let fixture = try FixtureProcess()
        defer { fixture.stop() }
        let run = try runPagestat(["map", String(fixture.pid), "--format", "svg"])
        #expect(run.status == 0, "\(run.stderr)")
        let svg = run.stdout
        #expect(svg.hasPrefix("<?xml") && svg.hasSuffix("</svg>\n"))
        let image = try Rasterizer.render(svg)
        let q = fixture.pages / 4
        for region in ArrangedLayout.regionNames {
            let band = try SVGBand(svg, start: try fixture.range(region).start)
            #expect(band.pagesPerCell == 1)
            let expected = ShowEndToEndTests.expected(region, q: q)
            var wrong: [Int] = []
            for (page, state) in expected.enumerated() {
                let (x, y) = band.centre(page: page)
                if !colour(image.rgb(x, y), is: state) { wrong.append(page) }
            }
            #expect(wrong.isEmpty, "\(region): pages \(wrong) do not have their state's colour")
        }
    }

    /// Without a terminal, a strip is characters, one page a cell.
    @Test func textStripsAreCharactersWithoutATerminal() throws {
        let fixture = try FixtureProcess()
        defer { fixture.stop() }
        let range = try fixture.range("memfd")
        let run = try runPagestat(["map", "-p", String(fixture.pid), "--range", "\(String(range.start, radix: 16))-\(String(range.end, radix: 16))"])
        #expect(run.status == 0, "\(run.stderr)")
        let q = fixture.pages / 4
        let strip = String(repeating: "c", count: q) + String(repeating: "#", count: q) + String(repeating: "s", count: q)
            + String(repeating: "-", count: q)
        #expect(run.stdout.contains("\n" + strip + "\n"), "\(run.stdout)")
        #expect(run.stdout.contains("(\(fixture.pages) pages, 1 cell = 1 page)"))
        #expect(!run.stdout.contains("\u{1B}["))
        // Pages never written are "-", which no strip ends in as "..." (read as cut short).
        #expect(run.stdout.contains(" - none "), "\(run.stdout)")
        #expect(!run.stdout.contains("..."), "\(run.stdout)")
        // In colour: coloured blanks, one colour sequence per stretch (blue cached, green present, red swapped, grey none).
        let coloured = try runPagestat(["map", String(fixture.pid), "--kind", "shmem", "--path", "memfd:", "--color", "always"])
        #expect(coloured.status == 0, "\(coloured.stderr)")
        #expect(coloured.stdout.contains("\u{1B}[44m" + String(repeating: " ", count: q) + "\u{1B}[0m\u{1B}[42m"
                                         + String(repeating: " ", count: q) + "\u{1B}[0m\u{1B}[41m" + String(repeating: " ", count: q)
                                         + "\u{1B}[0m\u{1B}[100m" + String(repeating: " ", count: q) + "\u{1B}[0m\n"), "\(coloured.stdout)")
        #expect(coloured.stdout.components(separatedBy: "\n0x").count == 2, "one mapping: \(coloured.stdout)")
        // Narrower than the mapping: cells of 2 pages, still their majority state.
        let narrow = try runPagestat(["map", String(fixture.pid), "--range", "\(hex(range.start))+\(range.length)", "--width", "32"])
        let half = q / 2
        #expect(narrow.stdout.contains("\n" + String(repeating: "c", count: half) + String(repeating: "#", count: half)
                                       + String(repeating: "s", count: half) + String(repeating: "-", count: half) + "\n"))
        // The file form: the memfd through the fixture's descriptor, from its own side (the
        // pages the fixture maps are in its page cache: cached).
        let file = try runPagestat(["map", "--file", try #require(fixture.paths["memfd"])])
        #expect(file.status == 0, "\(file.stderr)")
        let fileStrip = String(repeating: "c", count: 2 * q) + String(repeating: "s", count: q) + String(repeating: "-", count: q)
        #expect(file.stdout.contains("\n" + fileStrip + "\n"), "\(file.stdout)")
    }
}

extension Trait where Self == Requirement {
    /// rsvg-convert and python3, which the SVG pictures are checked with.
    static var needsRasterizer: Self {
        requires(Rasterizer.available, "rsvg-convert (Debian's librsvg2-bin; `bash Scripts/test.sh` installs it as root) and python3")
    }
}
