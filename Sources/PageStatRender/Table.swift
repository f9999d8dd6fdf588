import PageStat

/// An aligned text table: left-aligned text columns, right-aligned number columns.
public struct TextTable {
    public var headers: [String]
    /// Which columns are right-aligned (numbers, sizes).
    public var rightAligned: Set<Int>
    public var rows: [[String]] = []

    public init(headers: [String], rightAligned: Set<Int>) {
        self.headers = headers
        self.rightAligned = rightAligned
    }

    public mutating func add(_ row: [String]) { rows.append(row) }

    public func render() -> String {
        let all = [headers] + rows
        let widths = headers.indices.map { column in all.map { $0.count > column ? $0[column].count : 0 }.max() ?? 0 }
        var out = ""
        for row in all {
            var cells: [String] = []
            for (column, cell) in row.enumerated() {
                let padding = String(repeating: " ", count: max(0, widths[column] - cell.count))
                let last = column == row.count - 1
                cells.append(rightAligned.contains(column) ? padding + cell : (last ? cell : cell + padding))
            }
            out += cells.joined(separator: "  ") + "\n"
        }
        return out
    }
}

/// RFC 4180 CSV: a header line, then rows; fields with commas, quotes or newlines are quoted.
public struct CSVTable {
    public var headers: [String]
    public var rows: [[String]] = []

    public init(headers: [String]) { self.headers = headers }

    public mutating func add(_ row: [String]) { rows.append(row) }

    /// A field, quoted when it needs to be. Names' bytes that are not UTF-8 (`NameBytes`) are
    /// written as U+FFFD: CSV is text; the JSON output keeps them exactly.
    public static func field(_ value: String) -> String {
        let value = NameBytes.lossy(value)
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        var quoted = "\""
        for character in value {
            quoted.append(character)
            if character == "\"" { quoted.append("\"") }
        }
        return quoted + "\""
    }

    public func render() -> String {
        ([headers] + rows).map { $0.map(Self.field).joined(separator: ",") }.joined(separator: "\n") + "\n"
    }
}
