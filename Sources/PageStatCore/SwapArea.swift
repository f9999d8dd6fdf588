/// Swap areas as /proc/swaps lists them: the parser, pure (`SwapArea.active()` in the library
/// reads the file).
public enum SwapArea {
    /// One line of /proc/swaps.
    public struct Entry: Sendable, Equatable {
        /// The swap file or partition, unescaped.
        public var path: String
        /// `file` or `partition`.
        public var type: String
        /// Its size in KiB.
        public var sizeKiB: UInt64
        /// How much of it is in use, in KiB.
        public var usedKiB: UInt64
        /// Its priority (page-outs go to the highest first); nil where the line has none.
        public var priority: Int?

        /// An entry as /proc/swaps would list it.
        public init(path: String, type: String, sizeKiB: UInt64, usedKiB: UInt64, priority: Int? = nil) {
            self.path = path
            self.type = type
            self.sizeKiB = sizeKiB
            self.usedKiB = usedKiB
            self.priority = priority
        }
    }

    /// Parses /proc/swaps text (a header line, then `Filename Type Size Used Priority`). The
    /// kernel writes a space, tab, newline or backslash in a filename as `\ooo` (`\040`); the
    /// path comes back unescaped.
    public static func parse(_ text: String) -> [Entry] {
        text.split(separator: "\n").dropFirst().compactMap { line in
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 4, let size = UInt64(fields[2]), let used = UInt64(fields[3]) else { return nil }
            return Entry(path: ProcEscape.unescape(fields[0]), type: String(fields[1]), sizeKiB: size, usedKiB: used,
                         priority: fields.count > 4 ? Int(fields[4]) : nil)
        }
    }
}
