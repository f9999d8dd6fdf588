import PageStat

/// Output formats every command offers.
public enum OutputFormat: String, Sendable, CaseIterable {
    case text, json, csv
}

/// Human units for sizes: binary prefixes, one decimal.
public func humanBytes(_ bytes: UInt64) -> String {
    let buffer = JSONWriter.Buffer(capacity: 16)
    buffer.appendHumanBytes(bytes)
    return String(decoding: UnsafeBufferPointer(start: buffer.base, count: buffer.count), as: UTF8.self)
}

/// How sizes are written in text output: human units (the default), exact bytes, or pages.
/// JSON and CSV always carry exact integers, the unit in the key.
public enum SizeUnit: String, Sendable, CaseIterable {
    case human, bytes, pages

    /// A size in bytes, as a table cell: `1.5 MiB`, `1572864`, or `384` (pages, with one
    /// decimal when not whole, as a PSS may be).
    public func cell(bytes: UInt64, pageSize: UInt64) -> String {
        switch self {
        case .human: return humanBytes(bytes)
        case .bytes: return String(bytes)
        case .pages:
            if bytes % pageSize == 0 { return String(bytes / pageSize) }
            let tenths = (bytes * 10 + pageSize / 2) / pageSize
            return "\(tenths / 10).\(tenths % 10)"
        }
    }

    /// A size in bytes in running text, with its unit: `1.5 MiB`, `1572864 B`, `384 pages`.
    public func text(bytes: UInt64, pageSize: UInt64) -> String {
        switch self {
        case .human: humanBytes(bytes)
        case .bytes: "\(bytes) B"
        case .pages: bytes % pageSize == 0 ? counted(bytes / pageSize, "page") : "\(cell(bytes: bytes, pageSize: pageSize)) pages"
        }
    }
}

/// `1 page`, `2 pages`: a count and its noun, singular for one (`plural` when not just an s).
public func counted<T: BinaryInteger>(_ count: T, _ singular: String, _ plural: String? = nil) -> String {
    "\(count) " + (count == 1 ? singular : plural ?? singular + "s")
}

/// The units of `humanBytes(_:)`, for writers that want no String.
private let humanUnits: [StaticString] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]

/// `0x`-prefixed lowercase hexadecimal, the way addresses are written in text output.
public func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// A minimal streaming JSON writer with stable key order. It builds UTF-8 bytes; given a sink it
/// hands them over every 64 KiB, so a report with millions of runs is never held whole.
public struct JSONWriter {
    /// The bytes written and not yet flushed: a plain growable buffer (no copy-on-write checks
    /// on the hot path). Its state sits behind a pointer held in a `let`: stored `var`s of a
    /// class would cost a dynamic exclusivity check (swift_beginAccess) on every byte appended.
    final class Buffer {
        private struct Storage {
            var base: UnsafeMutablePointer<UInt8>
            var count: Int
            var capacity: Int
        }
        private let storage: UnsafeMutablePointer<Storage>

        var base: UnsafeMutablePointer<UInt8> {
            @inline(__always) get { storage.pointee.base }
            @inline(__always) set { storage.pointee.base = newValue }
        }
        var count: Int {
            @inline(__always) get { storage.pointee.count }
            @inline(__always) set { storage.pointee.count = newValue }
        }
        var capacity: Int {
            @inline(__always) get { storage.pointee.capacity }
            @inline(__always) set { storage.pointee.capacity = newValue }
        }

        init(capacity: Int) {
            storage = .allocate(capacity: 1)
            storage.initialize(to: Storage(base: .allocate(capacity: capacity), count: 0, capacity: capacity))
        }

        deinit {
            storage.pointee.base.deallocate()
            storage.deinitialize(count: 1)
            storage.deallocate()
        }

        @inline(__always)
        func reserve(_ extra: Int) {
            guard count + extra > capacity else { return }
            var newCapacity = capacity * 2
            while count + extra > newCapacity { newCapacity *= 2 }
            let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
            grown.update(from: base, count: count)
            base.deallocate()
            base = grown
            capacity = newCapacity
        }

        @inline(__always)
        func append(_ byte: UInt8) {
            reserve(1)
            base[count] = byte
            count += 1
        }

        @inline(__always)
        func append(_ bytes: UnsafeBufferPointer<UInt8>) {
            reserve(bytes.count)
            (base + count).update(from: bytes.baseAddress!, count: bytes.count)
            count += bytes.count
        }

        @inline(__always)
        func append(_ string: StaticString) {
            // A one-scalar literal has no pointer: its UTF-8 is at most four bytes.
            write(atMost: string.hasPointerRepresentation ? string.utf8CodeUnitCount : 4) { $0.put(string) }
        }

        /// Copies the few bytes of a key or separator without a call to memmove: a report writes
        /// several per run, millions of runs (a call each cost about 8% of a fragmented `show`).
        /// Two overlapping unaligned loads and stores cover 8-16, 4-7 and 2-3 bytes.
        @inline(__always)
        static func copyShort(from source: UnsafeRawPointer, to target: UnsafeMutableRawPointer, count: Int) {
            /// The first and the last `Word` of the bytes, both loaded before either is stored.
            @inline(__always)
            func overlapping<Word: FixedWidthInteger>(_: Word.Type) {
                let head = source.loadUnaligned(as: Word.self)
                let tail = source.loadUnaligned(fromByteOffset: count - MemoryLayout<Word>.size, as: Word.self)
                target.storeBytes(of: head, as: Word.self)
                target.storeBytes(of: tail, toByteOffset: count - MemoryLayout<Word>.size, as: Word.self)
            }
            switch count {
            case 8...16: overlapping(UInt64.self)
            case 4...7: overlapping(UInt32.self)
            case 2...3: overlapping(UInt16.self)
            case 1: target.storeBytes(of: source.load(as: UInt8.self), as: UInt8.self)
            case 0: break
            default: target.copyMemory(from: source, byteCount: count)
            }
        }
        /// Appends `value` in decimal.
        @inline(__always)
        func appendDecimal(_ value: UInt64) {
            write(atMost: 20) { $0.putDecimal(value) }
        }

        /// Appends `0x` and `value` in lowercase hexadecimal, as `hex(_:)` writes it.
        @inline(__always)
        func appendHex(_ value: UInt64) {
            reserve(18)
            base[count] = 0x30
            base[count + 1] = 0x78
            count += 2
            let digits = value == 0 ? 1 : (67 - value.leadingZeroBitCount) / 4
            var rest = value
            var position = count + digits
            while position > count {
                position -= 1
                let nibble = UInt8(truncatingIfNeeded: rest & 0xF)
                base[position] = nibble < 10 ? 0x30 + nibble : 0x57 + nibble
                rest >>= 4
            }
            count += digits
        }

        /// Appends a size as `humanBytes(_:)` writes it (`4.0 KiB`, `512 B`), with the same arithmetic.
        func appendHumanBytes(_ bytes: UInt64) {
            var value = Double(bytes)
            var unit = 0
            while value >= 1024 && unit < humanUnits.count - 1 {
                value /= 1024
                unit += 1
            }
            if unit == 0 {
                appendDecimal(bytes)
                append(" B")
                return
            }
            let tenths = Int((value * 10).rounded())
            appendDecimal(UInt64(tenths / 10))
            append(0x2e)
            appendDecimal(UInt64(tenths % 10))
            append(0x20)
            append(humanUnits[unit])
        }

        /// Right-aligns what was appended since `start` in `width` columns (ASCII), spaces before it.
        @inline(__always)
        func alignRight(from start: Int, width: Int) {
            let written = count - start
            guard written < width else { return }
            let shift = width - written
            reserve(shift)
            var index = count - 1
            while index >= start {
                base[index + shift] = base[index]
                index -= 1
            }
            for index in start..<(start + shift) { base[index] = 0x20 }
            count += shift
        }

        /// Appends a String's UTF-8.
        func appendString(_ string: String) {
            var string = string
            string.withUTF8 { append($0) }
        }

        /// Hands the bytes to `sink` and empties the buffer.
        func flush(to sink: (UnsafeRawBufferPointer) -> Void) {
            sink(UnsafeRawBufferPointer(start: base, count: count))
            count = 0
        }
    }

    private let buffer = Buffer(capacity: 1 << 16)
    private let sink: ((UnsafeRawBufferPointer) -> Void)?
    /// Per open container, as a bit stack (bit 0: the innermost): whether the next element
    /// needs a comma before it. JSON here nests a few levels deep, far below 64.
    private var needsComma: UInt64 = 0
    /// Whether a key was just written, so the next value belongs to it.
    private var afterKey = false

    public init(sink: ((UnsafeRawBufferPointer) -> Void)? = nil) {
        self.sink = sink
    }

    /// What was written (without a sink).
    public var output: String {
        String(decoding: UnsafeBufferPointer(start: buffer.base, count: buffer.count), as: UTF8.self)
    }

    /// Hands what is buffered to the sink.
    public mutating func flush() {
        guard let sink, buffer.count > 0 else { return }
        sink(UnsafeRawBufferPointer(start: buffer.base, count: buffer.count))
        buffer.count = 0
    }

    @inline(__always)
    private mutating func maybeFlush() {
        if sink != nil && buffer.count >= 1 << 16 { flush() }
    }

    @inline(__always)
    private mutating func separator() {
        if needsComma & 1 != 0 { buffer.append(0x2c) }
        needsComma |= 1
    }

    @inline(__always)
    private mutating func beforeValue() {
        if afterKey { afterKey = false } else { separator() }
    }

    public mutating func key(_ name: String) {
        separator()
        appendQuoted(name)
        buffer.append(0x3a)
        afterKey = true
    }

    /// Appends bytes known to be valid JSON as they are: for writers of many small objects.
    @inline(__always)
    public mutating func raw(_ bytes: StaticString) {
        buffer.append(bytes)
    }

    /// Lets `body` write at most `bound` bytes of valid JSON through a cursor (inside a raw element).
    @inline(__always)
    mutating func rawWrite(atMost bound: Int, _ body: (inout ByteCursor) -> Void) {
        buffer.write(atMost: bound, body)
    }

    /// Appends an unsigned integer as it is (after `raw` bytes that expect a value).
    @inline(__always)
    public mutating func raw(_ number: UInt64) {
        appendDecimal(number)
    }

    /// Appends `"a","b",...` (names known to need no escaping), inside a raw array.
    @inline(__always)
    public mutating func rawNames<S: Sequence>(_ names: S) where S.Element == StaticString {
        var first = true
        for name in names {
            if !first { buffer.append(0x2c) }
            buffer.append(0x22)
            buffer.append(name)
            buffer.append(0x22)
            first = false
        }
    }

    /// Appends `"name"` (known to need no escaping) inside a raw array, after a comma unless
    /// it is the `first`.
    @inline(__always)
    public mutating func rawName(_ name: StaticString, first: Bool) {
        if !first { buffer.append(0x2c) }
        buffer.append(0x22)
        buffer.append(name)
        buffer.append(0x22)
    }

    /// A number or null.
    public mutating func field(_ name: String, optional number: UInt64?) {
        key(name)
        if let number { value(number) } else { null() }
    }

    /// Starts an element of the current container, written with `raw`: the comma before it.
    @inline(__always)
    public mutating func rawElement() {
        beforeValue()
    }

    /// Ends a raw element: flushes to the sink when enough is buffered.
    @inline(__always)
    public mutating func rawElementDone() {
        maybeFlush()
    }

    /// A key known at compile time (no escaping needed).
    public mutating func key(static name: StaticString) {
        separator()
        buffer.append(0x22)
        buffer.append(name)
        buffer.append(0x22)
        buffer.append(0x3a)
        afterKey = true
    }

    /// A string value known at compile time (no escaping needed).
    public mutating func value(static string: StaticString) {
        beforeValue()
        buffer.append(0x22)
        buffer.append(string)
        buffer.append(0x22)
    }

    public mutating func beginObject() { beforeValue(); buffer.append(0x7b); needsComma <<= 1 }
    public mutating func endObject() { needsComma >>= 1; buffer.append(0x7d); maybeFlush() }
    public mutating func beginArray() { beforeValue(); buffer.append(0x5b); needsComma <<= 1 }
    public mutating func endArray() { needsComma >>= 1; buffer.append(0x5d); maybeFlush() }
    public mutating func value(_ string: String) { beforeValue(); appendQuoted(string) }
    public mutating func value<T: BinaryInteger>(_ number: T) {
        beforeValue()
        if let unsigned = UInt64(exactly: number) {
            appendDecimal(unsigned)
        } else {
            var text = String(number)
            text.withUTF8 { buffer.append($0) }
        }
    }
    public mutating func value(_ bool: Bool) { beforeValue(); buffer.append(bool ? "true" : "false") }
    public mutating func null() { beforeValue(); buffer.append("null") }

    public mutating func field(_ name: String, _ string: String) { key(name); value(string) }
    public mutating func field<T: BinaryInteger>(_ name: String, _ number: T) { key(name); value(number) }
    public mutating func field(_ name: String, _ bool: Bool) { key(name); value(bool) }
    /// A name from the kernel (a path, a command): `"key": "text"` with the name's valid UTF-8 as
    /// it is and each byte that is not UTF-8 as U+FFFD; when there are such bytes, also
    /// `"key_bytes": "hex"`, the name's exact bytes in lowercase hexadecimal (see `NameBytes`).
    public mutating func field(_ key: String, name: String) {
        self.key(key)
        if NameBytes.isValidUTF8(name) {
            value(NameBytes.lossy(name))
        } else {
            let bytes = NameBytes.bytes(of: name)
            value(String(decoding: bytes, as: UTF8.self))
            let digits = Array("0123456789abcdef".utf8)
            var hex = [UInt8]()
            hex.reserveCapacity(bytes.count * 2)
            for byte in bytes {
                hex.append(digits[Int(byte >> 4)])
                hex.append(digits[Int(byte & 0xF)])
            }
            field(key + "_bytes", String(decoding: hex, as: UTF8.self))
        }
    }

    public mutating func field(_ name: String, strings: [String]) {
        key(name)
        beginArray()
        for string in strings { value(string) }
        endArray()
    }

    @inline(__always)
    private func appendDecimal(_ value: UInt64) {
        buffer.appendDecimal(value)
    }

    private func appendQuoted(_ string: String) {
        buffer.append(0x22)
        // Most strings need no escaping: copy them whole.
        // 0xF4 may start a scalar that stands for a byte that is not UTF-8 (`NameBytes`).
        let plain = string.utf8.withContiguousStorageIfAvailable { utf8 -> Bool in
            for byte in utf8 where byte < 0x20 || byte == 0x22 || byte == 0x5c || byte == 0xF4 { return false }
            buffer.append(utf8)
            return true
        }
        if plain != true {
            let hex = Array("0123456789abcdef".utf8)
            for scalar in string.unicodeScalars {
                guard scalar.isASCII else {
                    // A byte that is not UTF-8 reads as U+FFFD here; `field(_:name:)` keeps it exactly.
                    let written = NameBytes.rawByte(scalar) == nil ? scalar : "\u{FFFD}"
                    for byte in String(written).utf8 { buffer.append(byte) }
                    continue
                }
                let byte = UInt8(scalar.value)
                switch byte {
                case 0x22: buffer.append(0x5c); buffer.append(0x22)
                case 0x5c: buffer.append(0x5c); buffer.append(0x5c)
                case 0x0a: buffer.append(0x5c); buffer.append(0x6e)
                case 0x0d: buffer.append(0x5c); buffer.append(0x72)
                case 0x09: buffer.append(0x5c); buffer.append(0x74)
                case 0..<0x20:
                    for escaped in [0x5c, 0x75, 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xf)]] { buffer.append(escaped) }
                default: buffer.append(byte)
                }
            }
        }
        buffer.append(0x22)
    }
}
