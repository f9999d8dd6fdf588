/// Sizes as people write them on a command line: `512K`, `4M`, `1G`, `4096`.
package enum ByteSize {
    /// Binary units: `K`, `KB` and `KiB` all mean 1024 (any case); a bare number or `B` is bytes.
    static let shifts: [String: UInt64] = {
        var table: [String: UInt64] = ["": 0, "B": 0]
        for (letter, shift) in [("K", 10), ("M", 20), ("G", 30), ("T", 40)] as [(String, UInt64)] {
            for suffix in ["", "B", "IB"] { table[letter + suffix] = shift }
        }
        return table
    }()

    /// Parses a byte count with an optional binary unit: `512K`, `4M`, `1GiB`, `4096`.
    package static func parse(_ text: String) throws(PageStatError) -> UInt64 {
        let digits = text.prefix(while: { $0.isASCII && $0.isNumber })
        guard !digits.isEmpty, let value = UInt64(digits),
              let shift = shifts[text.dropFirst(digits.count).uppercased()]
        else {
            throw .invalidInput("invalid size '\(text)': expected a number of bytes, optionally followed by K, M, G or T (e.g. 512K, 4M, 1G)")
        }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: 1 << shift)
        guard !overflow else { throw .invalidInput("invalid size '\(text)': too large") }
        return bytes
    }
}
