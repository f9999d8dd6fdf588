/// Output formats every command offers.
public enum OutputFormat: String, Sendable, CaseIterable {
    case text, json, csv
}

/// Human units for sizes: binary prefixes, one decimal.
public func humanBytes(_ bytes: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    if unit == 0 { return "\(bytes) B" }
    let tenths = (value * 10).rounded()
    let whole = Int(tenths) / 10
    let fraction = Int(tenths) % 10
    return "\(whole).\(fraction) \(units[unit])"
}

/// `0x`-prefixed lowercase hexadecimal, the way addresses are written in text output.
public func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// A minimal streaming JSON writer with stable key order.
public struct JSONWriter {
    public private(set) var output = ""
    /// Per open container: whether the next element needs a comma before it.
    private var needsComma: [Bool] = [false]
    /// Whether a key was just written, so the next value belongs to it.
    private var afterKey = false

    public init() {}

    private mutating func separator() {
        if needsComma[needsComma.count - 1] { output += "," }
        needsComma[needsComma.count - 1] = true
    }

    private mutating func beforeValue() {
        if afterKey { afterKey = false } else { separator() }
    }

    public mutating func key(_ name: String) {
        separator()
        output += JSONWriter.quote(name) + ":"
        afterKey = true
    }

    public mutating func beginObject() { beforeValue(); output += "{"; needsComma.append(false) }
    public mutating func endObject() { needsComma.removeLast(); output += "}" }
    public mutating func beginArray() { beforeValue(); output += "["; needsComma.append(false) }
    public mutating func endArray() { needsComma.removeLast(); output += "]" }
    public mutating func value(_ string: String) { beforeValue(); output += JSONWriter.quote(string) }
    public mutating func value<T: BinaryInteger>(_ number: T) { beforeValue(); output += String(number) }
    public mutating func value(_ bool: Bool) { beforeValue(); output += bool ? "true" : "false" }
    public mutating func null() { beforeValue(); output += "null" }

    public mutating func field(_ name: String, _ string: String) { key(name); value(string) }
    public mutating func field<T: BinaryInteger>(_ name: String, _ number: T) { key(name); value(number) }
    public mutating func field(_ name: String, _ bool: Bool) { key(name); value(bool) }
    public mutating func field(_ name: String, strings: [String]) {
        key(name)
        beginArray()
        for string in strings { value(string) }
        endArray()
    }

    public static func quote(_ string: String) -> String {
        var result = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                let digits = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
