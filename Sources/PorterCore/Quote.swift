/// How a value from a unit file appears inside a message: in single quotes,
/// control bytes written as `\xNN` (a NUL or an escape sequence must not
/// reach the terminal or the log raw), and cut after `maxBytes` with the
/// size said, so a 100 KB value gives a one-line error, not 100 KB of log.
public enum Quote {
    public static let maxBytes = 200

    public static func value(_ s: some StringProtocol) -> String {
        "'" + escaped(s) + "'"
    }

    /// The same without the quotes.
    public static func escaped(_ s: some StringProtocol) -> String {
        let utf8 = s.utf8
        let long = utf8.count > maxBytes
        // Fast path: short, printable, nothing to change.
        if !long && !utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) { return String(s) }
        var out = ""
        var used = 0
        for scalar in s.unicodeScalars {
            let width = String(scalar).utf8.count
            if used + width > maxBytes { break }
            used += width
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16)
                out += "\\x" + (hex.count == 1 ? "0" : "") + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        if long { out += "…(\(utf8.count) bytes)" }
        return out
    }

    /// Bytes that may not be UTF-8 (a file name from readdir): valid
    /// sequences as text, every other byte as `\xNN`.
    public static func escaped(bytes: some Collection<UInt8>) -> String {
        var out = ""
        var i = bytes.startIndex
        while i != bytes.endIndex {
            // Take the longest valid prefix of up to 4 bytes as one scalar.
            var taken = false
            for len in (1...4).reversed() {
                guard let end = bytes.index(i, offsetBy: len, limitedBy: bytes.endIndex) else { continue }
                if let s = String(validating: bytes[i..<end], as: UTF8.self), s.unicodeScalars.count == 1 {
                    out += escaped(s)
                    i = end
                    taken = true
                    break
                }
            }
            if !taken {
                out += "\\x" + String(bytes[i] >> 4, radix: 16) + String(bytes[i] & 0xF, radix: 16)
                i = bytes.index(after: i)
            }
        }
        return out
    }
}

/// What the parsers refuse in text before they interpret it: porter keeps
/// values as the admin wrote them or refuses them, never repairs them.
public enum TextCheck {
    /// Why `bytes` cannot be taken as text, or nil: a NUL byte (which would
    /// cut an argument or path where it reaches C), or invalid UTF-8 (which
    /// decoding would turn into U+FFFD, a different path or argument).
    public static func problem(_ bytes: some Collection<UInt8>) -> String? {
        var high = false
        for b in bytes {
            if b == 0 { return "NUL byte" }
            if b >= 0x80 { high = true }
        }
        if high && String(validating: bytes, as: UTF8.self) == nil { return "invalid UTF-8" }
        return nil
    }
}
