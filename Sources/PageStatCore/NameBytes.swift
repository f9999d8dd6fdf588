/// Names that come from the kernel (mapping paths, memfd names, file names, a process's comm)
/// are bytes, not text: any byte but NUL (and '/' inside a file name) may occur, valid UTF-8 or
/// not. pagestat keeps them in `String`s without losing a byte:
///
/// - valid UTF-8 is kept as it is;
/// - each byte that is not part of valid UTF-8 (always 0x80-0xFF) becomes the private-use scalar
///   U+10FF00 + byte (U+10FF80-U+10FFFF), one scalar per byte;
/// - so that the mapping stays reversible, a name's own scalars from that range (valid UTF-8,
///   F4 8F BE 80 to F4 8F BF BF) are kept the same way: one such scalar per byte.
///
/// `bytes(of:)` gives back the exact bytes, `withCString` hands them to a system call, and the
/// renderers show them as `\xHH` (text) or in a `*_bytes` field (JSON). A name that never
/// passed through `decode` (plain text) reads back as its UTF-8.
package enum NameBytes {
    /// Scalars U+10FF80 to U+10FFFF stand for single bytes 0x80 to 0xFF.
    static let byteScalarBase: UInt32 = 0x10FF00
    static let byteScalars: ClosedRange<UInt32> = 0x10FF80...0x10FFFF

    /// The byte a scalar stands for, if it stands for one.
    @inline(__always)
    package static func rawByte(_ scalar: Unicode.Scalar) -> UInt8? {
        byteScalars.contains(scalar.value) ? UInt8(truncatingIfNeeded: scalar.value - byteScalarBase) : nil
    }

    /// A name's bytes as a `String`, every byte kept (see the type's documentation).
    package static func decode(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        var plain = true
        for byte in bytes where byte >= 0x80 {
            plain = false
            break
        }
        if plain { return String(decoding: bytes, as: UTF8.self) }
        if let text = String(validating: bytes, as: UTF8.self), !containsByteScalars(text) { return text }
        var scalars = String.UnicodeScalarView()
        var index = 0
        while index < bytes.count {
            let length = validSequenceLength(bytes, at: index)
            if length == 0 {
                scalars.append(Unicode.Scalar(byteScalarBase + UInt32(bytes[index]))!)
                index += 1
                continue
            }
            let scalar = decodeScalar(bytes, at: index, length: length)
            if byteScalars.contains(scalar.value) {
                for byte in bytes[index..<index + length] { scalars.append(Unicode.Scalar(byteScalarBase + UInt32(byte))!) }
            } else {
                scalars.append(scalar)
            }
            index += length
        }
        return String(scalars)
    }

    /// A name's bytes as a `String`, every byte kept.
    package static func decode(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBufferPointer { decode($0) }
    }

    /// A NUL-terminated name (a command-line argument, a directory entry), every byte kept.
    package static func decode(cString: UnsafePointer<CChar>) -> String {
        var length = 0
        while cString[length] != 0 { length += 1 }
        return cString.withMemoryRebound(to: UInt8.self, capacity: length) {
            decode(UnsafeBufferPointer(start: $0, count: length))
        }
    }

    /// The exact bytes of a name made by `decode` (the UTF-8 of any other string).
    package static func bytes(of name: String) -> [UInt8] {
        guard containsByteScalars(name) else { return Array(name.utf8) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(name.utf8.count)
        for scalar in name.unicodeScalars {
            if let byte = rawByte(scalar) { bytes.append(byte) } else { bytes.append(contentsOf: String(scalar).utf8) }
        }
        return bytes
    }

    /// Whether a name's bytes are valid UTF-8 (its `String` is then exactly its text).
    package static func isValidUTF8(_ name: String) -> Bool {
        guard containsByteScalars(name) else { return true }
        return bytes(of: name).withUnsafeBufferPointer { String(validating: $0, as: UTF8.self) != nil }
    }

    /// The name as a UTF-8 decoder that replaces what it cannot decode would show it: bytes that
    /// are not UTF-8 become U+FFFD.
    package static func lossy(_ name: String) -> String {
        guard containsByteScalars(name) else { return name }
        return String(decoding: bytes(of: name), as: UTF8.self)
    }

    /// Calls `body` with the name's exact bytes, NUL-terminated: for open(2), stat(2) and the like.
    package static func withCString<T>(_ name: String, _ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
        guard containsByteScalars(name) else { return try name.withCString(body) }
        var bytes = bytes(of: name)
        bytes.append(0)
        return try bytes.withUnsafeBufferPointer { buffer in
            try buffer.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }

    /// Whether `name` holds scalars that stand for bytes: their UTF-8 is F4 8F BE xx or F4 8F BF xx.
    @inline(__always)
    package static func containsByteScalars(_ name: String) -> Bool {
        let utf8 = name.utf8
        if let found = utf8.withContiguousStorageIfAvailable({ buffer -> Bool in
            guard buffer.count >= 4 else { return false }
            for index in 0..<buffer.count - 3 where buffer[index] == 0xF4 && buffer[index + 1] == 0x8F
                && (buffer[index + 2] == 0xBE || buffer[index + 2] == 0xBF) {
                return true
            }
            return false
        }) {
            return found
        }
        return name.unicodeScalars.contains { byteScalars.contains($0.value) }
    }

    /// The length of the well-formed UTF-8 sequence at `index` (Unicode's table 3-7), or 0.
    static func validSequenceLength(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Int {
        let first = bytes[index]
        func continuation(_ offset: Int, _ range: ClosedRange<UInt8> = 0x80...0xBF) -> Bool {
            index + offset < bytes.count && range.contains(bytes[index + offset])
        }
        switch first {
        case 0x00...0x7F: return 1
        case 0xC2...0xDF: return continuation(1) ? 2 : 0
        case 0xE0: return continuation(1, 0xA0...0xBF) && continuation(2) ? 3 : 0
        case 0xE1...0xEC, 0xEE...0xEF: return continuation(1) && continuation(2) ? 3 : 0
        case 0xED: return continuation(1, 0x80...0x9F) && continuation(2) ? 3 : 0
        case 0xF0: return continuation(1, 0x90...0xBF) && continuation(2) && continuation(3) ? 4 : 0
        case 0xF1...0xF3: return continuation(1) && continuation(2) && continuation(3) ? 4 : 0
        case 0xF4: return continuation(1, 0x80...0x8F) && continuation(2) && continuation(3) ? 4 : 0
        default: return 0
        }
    }

    /// The scalar of a well-formed sequence.
    static func decodeScalar(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int, length: Int) -> Unicode.Scalar {
        let first = UInt32(bytes[index])
        var value: UInt32
        switch length {
        case 1: value = first
        case 2: value = first & 0x1F
        case 3: value = first & 0x0F
        default: value = first & 0x07
        }
        for offset in 1..<max(1, length) { value = value << 6 | UInt32(bytes[index + offset] & 0x3F) }
        return Unicode.Scalar(value)!
    }
}
