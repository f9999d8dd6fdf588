/// The one rule for every name that text output prints (paths, memfd names, commands), and for
/// notes, warnings and error lines that may carry one. Like `ls -b`: what a terminal would act on
/// is written as an escape, so a name can neither start a new line nor colour the terminal.
///
/// - `\` is written `\\`;
/// - newline, tab and ESC are written `\n`, `\t`, `\e`;
/// - every other control character (C0, DEL, C1) and the characters that move text around a
///   line (U+2028, U+2029 and the bidirectional controls U+061C, U+200E, U+200F, U+202A-U+202E,
///   U+2066-U+2069) are written `\xHH`, one per byte of their UTF-8;
/// - a byte that is not part of valid UTF-8 (see `NameBytes`) is written `\xHH`;
/// - everything else (printable Unicode) is written as it is.
///
/// So `\xHH` is always exactly one byte of the name, and the escaped form reads back to the
/// name's bytes.
package func escapedName(_ name: String) -> String {
    if name.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x5C }) { return name }
    var out = ""
    out.reserveCapacity(name.utf8.count + 8)
    let digits = Array("0123456789abcdef")
    func byte(_ value: UInt8) {
        out += "\\x"
        out.append(digits[Int(value >> 4)])
        out.append(digits[Int(value & 0xF)])
    }
    for scalar in name.unicodeScalars {
        if let raw = NameBytes.rawByte(scalar) {
            byte(raw)
            continue
        }
        switch scalar.value {
        case 0x5C: out += "\\\\"
        case 0x0A: out += "\\n"
        case 0x09: out += "\\t"
        case 0x1B: out += "\\e"
        case 0x00..<0x20, 0x7F...0x9F, 0x2028, 0x2029, 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069:
            for value in String(scalar).utf8 { byte(value) }
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}
