import PageStat

/// `pagestat map`: pictures of page states, one band (or strip) per mapping, drawn as a scan
/// streams. Each cell of a picture stands for a fixed number of consecutive pages of its mapping
/// and takes the state most of them have (ties go to the state listed first in `PageState`).
/// What is held is one mapping's cells at a time, never the runs of the whole report.

/// The per-cell page counts of one band: `pages` pages split into cells of `pagesPerCell` pages,
/// at most `maxCells` cells.
public struct StateBins {
    public private(set) var pages: UInt64 = 0
    public private(set) var pagesPerCell: UInt64 = 1
    public private(set) var cells = 0
    /// counts[cell * 5 + state]
    private var counts: [UInt64] = []

    public init() {}

    /// Starts a band of `pages` pages in at most `maxCells` cells.
    public mutating func reset(pages: UInt64, maxCells: Int) {
        let maxCells = UInt64(max(1, maxCells))
        self.pages = pages
        pagesPerCell = max(1, (pages + maxCells - 1) / maxCells)
        cells = Int((pages + pagesPerCell - 1) / pagesPerCell)
        let needed = cells * PageState.allCases.count
        if counts.count < needed { counts = Array(repeating: 0, count: needed) } else {
            for index in 0..<needed { counts[index] = 0 }
        }
    }

    /// Counts `count` pages in `state` from page `first` of the band (pages past its end are dropped).
    public mutating func add(first: UInt64, count: UInt64, state: PageState) {
        guard first < pages, count > 0 else { return }
        let end = min(pages, first + count)
        let stride = UInt64(PageState.allCases.count)
        let s = UInt64(state.rawValue)
        var page = first
        while page < end {
            let cell = page / pagesPerCell
            let cellEnd = min(end, (cell + 1) * pagesPerCell)
            counts[Int(cell * stride + s)] += cellEnd - page
            page = cellEnd
        }
    }

    /// The state most pages of `cell` have; ties go to the state first in `PageState.allCases`.
    public func majority(_ cell: Int) -> PageState {
        let base = cell * PageState.allCases.count
        var best = PageState.none
        var bestCount: UInt64 = 0
        for state in PageState.allCases where counts[base + Int(state.rawValue)] > bestCount {
            best = state
            bestCount = counts[base + Int(state.rawValue)]
        }
        return best
    }
}

/// Colours and characters of the states, shared by the terminal and SVG pictures.
public enum PageMapStyle {
    /// The character of a state in a picture without colour.
    public static func character(_ state: PageState) -> Character {
        switch state {
        case .present: "#"
        case .swapped: "s"
        case .cached: "c"
        case .none: "-"  // not "." : a row ending in ... would read as cut short
        case .unknown: "?"
        }
    }

    /// The SVG fill of a state, as RGB.
    public static func rgb(_ state: PageState) -> (UInt8, UInt8, UInt8) {
        switch state {
        case .present: (0x2f, 0x9e, 0x44)
        case .swapped: (0xd6, 0x27, 0x28)
        case .cached: (0x1f, 0x77, 0xb4)
        case .none: (0xe0, 0xe0, 0xe0)
        case .unknown: (0xa0, 0x70, 0xc8)
        }
    }

    static func fill(_ state: PageState) -> String {
        let (r, g, b) = rgb(state)
        return "#" + [r, g, b].map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// The ANSI SGR background colour of a state (the 16 basic colours, which every colour
    /// terminal has).
    static func ansiBackground(_ state: PageState) -> String {
        switch state {
        case .present: "42"
        case .swapped: "41"
        case .cached: "44"
        case .none: "100"
        case .unknown: "45"
        }
    }

    /// One cell in the terminal: a coloured blank, or the state's character.
    static func terminalCell(_ state: PageState, colour: Bool) -> String {
        colour ? "\u{1B}[\(ansiBackground(state))m \u{1B}[0m" : String(character(state))
    }

    /// `START-END perms size kind [path]`.
    static func label(_ mapping: Mapping, scanned: AddressRange, path: String) -> String {
        let label = "\(hex(scanned.start))-\(hex(scanned.end)) \(mapping.permissions) \(humanBytes(scanned.length)) \(mapping.kind.rawValue)"
        return path.isEmpty ? label : label + " " + path
    }

}

/// Text for XML attributes and character data: the name rule of text output (`escapedName`),
/// then the five XML entities; a character XML cannot carry (U+FFFE, U+FFFF) is written `\xHH`.
public func xmlEscaped(_ text: String) -> String {
    var out = ""
    for scalar in escapedName(text).unicodeScalars {
        switch scalar {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        case "\u{FFFE}", "\u{FFFF}":
            for byte in String(scalar).utf8 { out += "\\x" + String(byte, radix: 16) }
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}

/// The terminal picture, written as a scan streams it: a header line per mapping (its range,
/// permissions, size, kind, path and how many pages one cell stands for), then its strip of at
/// most `width` cells.
public struct TerminalMapStream: ScanConsumer {
    private let width: Int
    private let colour: Bool
    private let pageSize: UInt64
    private let sink: (String) -> Void
    private var bins = StateBins()
    private var scanned = AddressRange(start: 0, end: 0)
    private var totals = PageCounts()
    private var mappings = 0

    public init(title: String, width: Int, colour: Bool, pageSize: UInt64, sink: @escaping (String) -> Void) {
        self.width = max(8, width)
        self.colour = colour
        self.pageSize = pageSize
        self.sink = sink
        var legend = "legend:"
        for state in PageState.allCases {
            legend += " " + PageMapStyle.terminalCell(state, colour: colour) + " \(state)"
        }
        sink(title + "\n" + legend + "; each cell is the state most of its pages are in\n")
    }

    public mutating func begin(_ mapping: Mapping, scanned: AddressRange) {
        beginBand(header: PageMapStyle.label(mapping, scanned: scanned, path: escapedName(mapping.path)),
                  pages: scanned.length / pageSize)
        self.scanned = scanned
    }

    public mutating func runs(_ runs: [PageRun]) {
        for run in runs {
            add(first: (run.start - scanned.start) / pageSize, count: run.pages, state: run.state)
        }
    }

    public mutating func end(use: MemoryUse?) { endBand() }

    /// Begins a band that is not a mapping (a file, by page offset).
    public mutating func beginBand(header: String, pages: UInt64) {
        mappings += 1
        bins.reset(pages: pages, maxCells: width)
        let cell = bins.pagesPerCell == 1 ? "1 cell = 1 page" : "1 cell = \(bins.pagesPerCell) pages"
        sink("\n" + header + "  (" + counted(pages, "page") + ", " + cell + ")\n")
    }

    public mutating func add(first: UInt64, count: UInt64, state: PageState) {
        bins.add(first: first, count: count, state: state)
        totals[state] += count
    }

    public mutating func endBand() {
        var line = ""
        line.reserveCapacity(bins.cells * (colour ? 10 : 1) + 1)
        if colour {
            // One colour sequence per stretch of equal cells.
            var cell = 0
            while cell < bins.cells {
                let state = bins.majority(cell)
                var end = cell + 1
                while end < bins.cells && bins.majority(end) == state { end += 1 }
                line += "\u{1B}[\(PageMapStyle.ansiBackground(state))m" + String(repeating: " ", count: end - cell) + "\u{1B}[0m"
                cell = end
            }
        } else {
            for cell in 0..<bins.cells { line.append(PageMapStyle.character(bins.majority(cell))) }
        }
        sink(line + "\n")
    }

    /// The totals and notes.
    public mutating func finish(notes: [ScanNote]) {
        var out = "\ntotal: \(ReportRenderer.summary(totals, pageSize: pageSize)) in \(counted(mappings, "mapping"))\n"
        for note in notes { out += "note: \(escapedName(note.description))\n" }
        sink(out)
    }
}

/// The SVG picture: a title, a legend and an axis at the top, then one band per mapping: a label
/// (range, permissions, size, kind, path, pages per cell) over rows of `columns` cells, each cell
/// a `cellSize`-pixel square. A cell is one page while the mapping fits in `maxRows` rows; a
/// larger mapping's cells stand for N pages each (the band's label says so).
///
/// Each band is a `<g>` with `data-start` (its first address, hex), `data-top` (the y of its
/// first row), `data-pages-per-cell` and `data-columns`, so a reader can find a page's pixel.
/// The picture is held until the end, because the SVG's height comes first and is known only
/// then: at most one rectangle per stretch of equal cells in a row, at most `columns` × `maxRows`
/// cells per band, whatever the mapping's size.
public struct SVGMapStream: ScanConsumer {
    public static let left = 10
    public let columns: Int
    public let maxRows: Int
    public let cellSize: Int
    private let pageSize: UInt64
    private let title: String
    private let sink: (String) -> Void
    private var body = ""
    private var y = 0
    private var bins = StateBins()
    private var scanned = AddressRange(start: 0, end: 0)
    private var totals = PageCounts()
    private var mappings = 0
    private static let labelHeight = 14
    private static let gap = 8
    private static let headerHeight = 70

    public init(title: String, pageSize: UInt64, columns: Int = 256, maxRows: Int = 64, cellSize: Int = 4,
                sink: @escaping (String) -> Void) {
        self.title = title
        self.pageSize = pageSize
        self.columns = max(16, columns)
        self.maxRows = max(1, maxRows)
        self.cellSize = max(1, cellSize)
        self.sink = sink
        y = Self.headerHeight
    }

    private var width: Int { Self.left * 2 + columns * cellSize }

    public mutating func begin(_ mapping: Mapping, scanned: AddressRange) {
        self.scanned = scanned
        beginBand(start: scanned.start,
                  label: PageMapStyle.label(mapping, scanned: scanned, path: mapping.path),
                  pages: scanned.length / pageSize)
    }

    public mutating func runs(_ runs: [PageRun]) {
        for run in runs {
            add(first: (run.start - scanned.start) / pageSize, count: run.pages, state: run.state)
        }
    }

    public mutating func end(use: MemoryUse?) { endBand() }

    /// Begins a band; `label` is escaped here. `start` names the band in `data-start`.
    public mutating func beginBand(start: UInt64, label: String, pages: UInt64) {
        mappings += 1
        bins.reset(pages: pages, maxCells: columns * maxRows)
        let perCell = bins.pagesPerCell == 1 ? "1 cell = 1 page" : "1 cell = \(bins.pagesPerCell) pages"
        body += "<g class=\"band\" data-start=\"\(hex(start))\" data-top=\"\(y + Self.labelHeight)\" "
        body += "data-pages-per-cell=\"\(bins.pagesPerCell)\" data-columns=\"\(columns)\">\n"
        body += "<text x=\"\(Self.left)\" y=\"\(y + Self.labelHeight - 3)\">\(xmlEscaped(label))  ("
        body += "\(counted(pages, "page")), \(perCell))</text>\n"
    }

    public mutating func add(first: UInt64, count: UInt64, state: PageState) {
        bins.add(first: first, count: count, state: state)
        totals[state] += count
    }

    public mutating func endBand() {
        let top = y + Self.labelHeight
        let cells = bins.cells
        let rows = (cells + columns - 1) / columns
        // The band's cells in `none`'s colour, then the other states over them, one rectangle
        // per stretch of equal cells in a row.
        let fullRows = cells / columns
        if fullRows > 0 { rect(0, top, columns, fullRows, .none) }
        if cells % columns != 0 { rect(0, top + fullRows * cellSize, cells % columns, 1, .none) }
        var cell = 0
        while cell < cells {
            let state = bins.majority(cell)
            var end = cell + 1
            while end < cells && end % columns != 0 && bins.majority(end) == state { end += 1 }
            if state != .none { rect(cell % columns, top + (cell / columns) * cellSize, end - cell, 1, state) }
            cell = end
        }
        body += "</g>\n"
        y = top + rows * cellSize + Self.gap
    }

    private mutating func rect(_ column: Int, _ top: Int, _ cells: Int, _ rows: Int, _ state: PageState) {
        body += "<rect x=\"\(Self.left + column * cellSize)\" y=\"\(top)\" width=\"\(cells * cellSize)\" "
        body += "height=\"\(rows * cellSize)\" fill=\"\(PageMapStyle.fill(state))\"/>\n"
    }

    /// Writes the whole SVG: header, legend, axis, the bands, and the totals and notes as a
    /// comment at the end.
    public mutating func finish(notes: [ScanNote]) {
        let height = y + 20
        var head = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        head += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" "
        head += "viewBox=\"0 0 \(width) \(height)\" shape-rendering=\"crispEdges\" "
        head += "font-family=\"monospace\" font-size=\"11\">\n"
        head += "<rect width=\"\(width)\" height=\"\(height)\" fill=\"#ffffff\"/>\n"
        head += "<text x=\"\(Self.left)\" y=\"14\" font-size=\"13\">\(xmlEscaped(title))</text>\n"
        // Legend: a swatch and a name per state.
        var x = Self.left
        for state in PageState.allCases {
            head += "<rect x=\"\(x)\" y=\"22\" width=\"10\" height=\"10\" fill=\"\(PageMapStyle.fill(state))\" stroke=\"#808080\"/>"
            head += "<text x=\"\(x + 14)\" y=\"31\">\(state)</text>\n"
            x += 90
        }
        head += "<text x=\"\(x)\" y=\"31\">a cell (\(cellSize)x\(cellSize) px) is one page, or as its band says</text>\n"
        // Axis: cells along a row, ticks every eighth of the row.
        let axisY = 52
        head += "<line x1=\"\(Self.left)\" y1=\"\(axisY)\" x2=\"\(Self.left + columns * cellSize)\" y2=\"\(axisY)\" stroke=\"#404040\"/>\n"
        for tick in stride(from: 0, through: columns, by: max(1, columns / 8)) {
            let tx = Self.left + tick * cellSize
            head += "<line x1=\"\(tx)\" y1=\"\(axisY - 4)\" x2=\"\(tx)\" y2=\"\(axisY + 4)\" stroke=\"#404040\"/>"
            // The last label ends at its tick, inside the picture.
            let anchor = tick == columns ? " text-anchor=\"end\"" : ""
            head += "<text x=\"\(tick == columns ? tx : tx + 2)\" y=\"\(axisY - 6)\" font-size=\"9\"\(anchor)>\(tick)</text>\n"
        }
        head += "<text x=\"\(Self.left)\" y=\"\(axisY + 14)\" font-size=\"9\">cells from the start of a row "
        head += "(\(columns) cells a row: \(humanBytes(UInt64(columns) * pageSize)) of a band of one page per cell)</text>\n"
        sink(head)
        sink(body)
        body = ""
        var tail = "<!-- total: \(xmlComment(ReportRenderer.summary(totals, pageSize: pageSize))) in \(counted(mappings, "mapping")) -->\n"
        for note in notes { tail += "<!-- note: \(xmlComment(note.description)) -->\n" }
        sink(tail + "</svg>\n")
    }

    /// Text for an XML comment, which may not hold `--`.
    private func xmlComment(_ text: String) -> String {
        var out = ""
        for character in xmlEscaped(text) {
            if character == "-" && out.last == "-" { out += " " }
            out.append(character)
        }
        return out
    }
}
