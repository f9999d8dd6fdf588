/// Unsigned numbers in ASCII, as the kernel writes them in /proc and /sys (decimal, or
/// hexadecimal without `0x`): the one digit reader of every byte-level parser. No sign, no
/// spaces, no prefix; a value that does not fit 64 bits is no value.
package enum ASCIINumber {
    /// The longest run of digits (in `radix`, 10 or 16; hexadecimal in either case) at `start`:
    /// its value and the index after it. Nil where there is no digit at `start` or the value
    /// overflows.
    @inlinable
    package static func leading(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int,
                                radix: UInt64 = 10) -> (value: UInt64, end: Int)? {
        var index = start
        var value: UInt64 = 0
        while index < bytes.count {
            let byte = bytes[index]
            let digit: UInt64
            switch byte {
            case 0x30...0x39: digit = UInt64(byte &- 0x30)
            case 0x61...0x66 where radix == 16: digit = UInt64(byte &- 0x61 &+ 10)
            case 0x41...0x46 where radix == 16: digit = UInt64(byte &- 0x41 &+ 10)
            default: return index > start ? (value, index) : nil
            }
            let (shifted, overflow) = value.multipliedReportingOverflow(by: radix)
            let (sum, carry) = shifted.addingReportingOverflow(digit)
            guard !overflow && !carry else { return nil }
            value = sum
            index += 1
        }
        return index > start ? (value, index) : nil
    }

    /// `bytes` whole as a number: nil where anything in it is not a digit, or it is empty.
    package static func parse(_ bytes: ArraySlice<UInt8>, radix: UInt64 = 10) -> UInt64? {
        bytes.withUnsafeBufferPointer { buffer in
            guard let (value, end) = leading(buffer, from: 0, radix: radix), end == buffer.count else { return nil }
            return value
        }
    }
}
