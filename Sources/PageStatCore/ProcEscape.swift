/// The kernel's escaping of names in /proc text. seq_file's `mangle_path` writes each byte of a
/// file's escape set as a backslash and three octal digits: /proc/swaps and mountinfo escape
/// space, tab, newline and backslash (`/var/tmp/a\040b`, `\134` for a backslash), so their
/// fields split on blanks and unescape exactly. /proc/PID/maps escapes only the newline (`\012`)
/// and leaves backslashes as they are, so a maps path cannot be unescaped without ambiguity.
package enum ProcEscape {
    /// Undoes `\ooo` escapes (three octal digits, at most 0o377); any other backslash is kept.
    package static func unescape<S: StringProtocol>(_ text: S) -> String {
        guard text.utf8.contains(0x5c) else { return String(text) }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        func octal(_ byte: UInt8) -> UInt8? { (0x30...0x37).contains(byte) ? byte - 0x30 : nil }
        while index < bytes.count {
            if bytes[index] == 0x5c, index + 3 < bytes.count,
               let high = octal(bytes[index + 1]), high <= 3,
               let middle = octal(bytes[index + 2]), let low = octal(bytes[index + 3]) {
                out.append(high << 6 | middle << 3 | low)
                index += 4
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
