/// IPv4 and IPv6 addresses in text, parsed and printed as inet_pton(3) and
/// inet_ntop(3) do, without the C library (PorterCore stays pure).
public enum IPAddress {
    /// Dotted quad: four decimal parts 0-255, no leading zeros (as glibc).
    public static func parseIPv4(_ s: some StringProtocol) -> [UInt8]? {
        let parts = s.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            if p.count > 1 && p.first == 0x30 { return nil }
            let v = p.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            guard v <= 255 else { return nil }
            out.append(UInt8(v))
        }
        return out
    }

    /// RFC 4291 text: eight groups of 1-4 hex digits, one `::` for a run of
    /// zero groups, the last 32 bits optionally as a dotted quad.
    public static func parseIPv6(_ s: some StringProtocol) -> [UInt8]? {
        let text = String(s)
        guard !text.isEmpty, text.utf8.count <= 45 else { return nil }
        var halves: [String] = [text]
        if let r = text.firstRange(of: "::") {
            halves = [String(text[..<r.lowerBound]), String(text[r.upperBound...])]
            guard !halves[1].contains("::") else { return nil }
        }
        func groups(_ part: String, allowIPv4: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            var out: [UInt16] = []
            for (i, f) in fields.enumerated() {
                if i == fields.count - 1, allowIPv4, f.contains(".") {
                    guard let v4 = parseIPv4(f) else { return nil }
                    out.append(UInt16(v4[0]) << 8 | UInt16(v4[1]))
                    out.append(UInt16(v4[2]) << 8 | UInt16(v4[3]))
                    continue
                }
                guard !f.isEmpty, f.utf8.count <= 4, let v = UInt16(f, radix: 16),
                      f.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) }) else { return nil }
                out.append(v)
            }
            return out
        }
        var words: [UInt16]
        if halves.count == 2 {
            guard let left = groups(halves[0], allowIPv4: false), let right = groups(halves[1], allowIPv4: true),
                  left.count + right.count <= 7 else { return nil }
            words = left + [UInt16](repeating: 0, count: 8 - left.count - right.count) + right
        } else {
            guard let all = groups(halves[0], allowIPv4: true), all.count == 8 else { return nil }
            words = all
        }
        return words.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
    }

    public static func formatIPv4(_ b: [UInt8]) -> String {
        b.prefix(4).map(String.init).joined(separator: ".")
    }

    /// As glibc's inet_ntop: lowercase, no leading zeros, the longest run
    /// of two or more zero groups (the first of equals) as `::`, and the
    /// IPv4-compatible and IPv4-mapped forms with a dotted quad.
    public static func formatIPv6(_ b: [UInt8]) -> String {
        guard b.count >= 16 else { return "?" }
        let words = (0..<8).map { UInt16(b[2 * $0]) << 8 | UInt16(b[2 * $0 + 1]) }
        var best = (base: -1, len: 0), cur = (base: -1, len: 0)
        for i in 0..<8 {
            if words[i] == 0 {
                if cur.base == -1 { cur = (i, 1) } else { cur.len += 1 }
            } else if cur.base != -1 {
                if best.base == -1 || cur.len > best.len { best = cur }
                cur = (-1, 0)
            }
        }
        if cur.base != -1 && (best.base == -1 || cur.len > best.len) { best = cur }
        if best.base != -1 && best.len < 2 { best = (-1, 0) }
        var out = ""
        var i = 0
        while i < 8 {
            if best.base != -1 && i >= best.base && i < best.base + best.len {
                if i == best.base { out += ":" }
                i += 1
                continue
            }
            if i != 0 { out += ":" }
            if i == 6 && best.base == 0 && (best.len == 6 || (best.len == 5 && words[5] == 0xffff)) {
                out += formatIPv4(Array(b[12..<16]))
                return out
            }
            out += String(words[i], radix: 16)
            i += 1
        }
        if best.base != -1 && best.base + best.len == 8 { out += ":" }
        return out
    }
}
