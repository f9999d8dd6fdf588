import PageStat

/// A write position in a byte buffer with room reserved ahead of it, for the writers of
/// millions of small records (a fragmented report's runs). Kept in a local variable, the position
/// stays in a register: a `JSONWriter.Buffer`'s count, read and written through memory on every
/// append, had to be reloaded after each byte store (a byte store may alias anything).
struct ByteCursor {
    var position: UnsafeMutablePointer<UInt8>

    @inline(__always)
    init(_ position: UnsafeMutablePointer<UInt8>) { self.position = position }

    @inline(__always)
    mutating func put(_ byte: UInt8) {
        position.pointee = byte
        position += 1
    }

    /// Copies a literal's bytes (a key, a separator, a state's name).
    @inline(__always)
    mutating func put(_ string: StaticString) {
        guard string.hasPointerRepresentation else {
            // A one-scalar literal (`"]"`) is stored as its scalar: its UTF-8, one to four bytes.
            string.withUTF8Buffer { for byte in $0 { put(byte) } }
            return
        }
        let count = string.utf8CodeUnitCount
        JSONWriter.Buffer.copyShort(from: UnsafeRawPointer(string.utf8Start), to: UnsafeMutableRawPointer(position), count: count)
        position += count
    }

    /// "00" "01" ... "99": two ASCII digits per value below 100, in the binary's read-only data.
    @inline(__always)
    private static var pairs: UnsafeRawPointer {
        UnsafeRawPointer(("00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"
            as StaticString).utf8Start)
    }

    /// The two digits of `value` (below 100) at `target`.
    @inline(__always)
    private static func pair(_ value: UInt32, at target: UnsafeMutablePointer<UInt8>) {
        UnsafeMutableRawPointer(target).storeBytes(of: pairs.loadUnaligned(fromByteOffset: Int(value) * 2, as: UInt16.self),
                                                   as: UInt16.self)
    }

    /// `value` in decimal. A 64-bit value is cut into parts of eight digits, each written with
    /// 32-bit arithmetic in independent steps: a 15-digit address costs one 64-bit division by a
    /// constant, where digit pairs from the right cost seven dependent ones.
    @inline(__always)
    mutating func putDecimal(_ value: UInt64) {
        if value < 100_000_000 {
            putShort(UInt32(truncatingIfNeeded: value))
            return
        }
        let high = value / 100_000_000
        let low = UInt32(truncatingIfNeeded: value &- high &* 100_000_000)
        if high < 100_000_000 {
            putShort(UInt32(truncatingIfNeeded: high))
        } else {
            let top = high / 100_000_000
            putShort(UInt32(truncatingIfNeeded: top))
            putEight(UInt32(truncatingIfNeeded: high &- top &* 100_000_000))
        }
        putEight(low)
    }

    /// Exactly eight digits (leading zeros included) of `value` (below 10^8).
    @inline(__always)
    private mutating func putEight(_ value: UInt32) {
        let upper = value / 10_000
        let lower = value &- upper &* 10_000
        let a = upper / 100, b = lower / 100
        Self.pair(a, at: position)
        Self.pair(upper &- a &* 100, at: position + 2)
        Self.pair(b, at: position + 4)
        Self.pair(lower &- b &* 100, at: position + 6)
        position += 8
    }

    /// `value` (below 10^8) in as many digits as it has.
    @inline(__always)
    private mutating func putShort(_ value: UInt32) {
        let digits = value < 10_000
            ? (value < 100 ? (value < 10 ? 1 : 2) : (value < 1_000 ? 3 : 4))
            : (value < 1_000_000 ? (value < 100_000 ? 5 : 6) : (value < 10_000_000 ? 7 : 8))
        var end = position + digits
        var rest = value
        while rest >= 100 {
            let next = rest / 100
            end -= 2
            Self.pair(rest &- next &* 100, at: end)
            rest = next
        }
        if rest >= 10 {
            Self.pair(rest, at: position)
        } else {
            position.pointee = 0x30 &+ UInt8(truncatingIfNeeded: rest)
        }
        position += digits
    }
}

extension ByteCursor {
    /// The names of the flags set in `flags`, in their fixed order, separated by commas, each in
    /// double quotes when `quoted`. Returns how many it wrote. At most 100 bytes.
    @inline(__always) @discardableResult
    mutating func putNames(of flags: PageFlags, quoted: Bool) -> Int {
        var written = 0
        for (flag, name) in PageFlags.staticNames where flags.contains(flag) {
            putName(name, after: written, quoted: quoted)
            written += 1
        }
        return written
    }

    /// The same for the kernel's page flags. At most 400 bytes.
    @inline(__always) @discardableResult
    mutating func putNames(of flags: KPageFlags, quoted: Bool) -> Int {
        var written = 0
        for (bit, name) in KPageFlags.staticNames where flags.rawValue & (1 << UInt64(bit)) != 0 {
            putName(name, after: written, quoted: quoted)
            written += 1
        }
        return written
    }

    @inline(__always)
    private mutating func putName(_ name: StaticString, after written: Int, quoted: Bool) {
        if written > 0 { put(0x2c) }
        if quoted { put(0x22) }
        put(name)
        if quoted { put(0x22) }
    }
}

extension JSONWriter.Buffer {
    /// Lets `body` write at most `bound` bytes through a cursor, then counts what it wrote.
    @inline(__always)
    func write(atMost bound: Int, _ body: (inout ByteCursor) -> Void) {
        reserve(bound)
        var cursor = ByteCursor(base + count)
        body(&cursor)
        count = cursor.position - base
    }
}
