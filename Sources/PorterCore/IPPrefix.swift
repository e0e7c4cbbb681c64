/// An IPv4 or IPv6 address prefix (`10.0.0.0/8`, `::1/128`), as the
/// IPAddressAllow=/IPAddressDeny= lists of systemd.resource-control(5)
/// hold them. The bits past the prefix length are zero.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    /// 4 bytes for IPv4, 16 for IPv6.
    public let bytes: [UInt8]
    public let length: Int

    /// `bytes` masked to `length` bits.
    public init(bytes: [UInt8], length: Int) {
        precondition(bytes.count == 4 || bytes.count == 16)
        precondition(length >= 0 && length <= bytes.count * 8)
        self.length = length
        self.bytes = Self.mask(bytes, length)
    }

    public var isIPv4: Bool { bytes.count == 4 }

    static func mask(_ b: [UInt8], _ length: Int) -> [UInt8] {
        b.enumerated().map { i, byte in
            let bits = length - i * 8
            if bits >= 8 { return byte }
            if bits <= 0 { return 0 }
            return byte & UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
        }
    }

    /// Whether `address` (4 or 16 bytes; an IPv4-mapped IPv6 address is
    /// given as its 4 IPv4 bytes) is inside this prefix.
    public func contains(_ address: [UInt8]) -> Bool {
        address.count == bytes.count && Self.mask(address, length) == bytes
    }

    /// Whether every address of `other` is inside this prefix.
    public func covers(_ other: IPPrefix) -> Bool {
        other.bytes.count == bytes.count && other.length >= length && contains(other.bytes)
    }

    public var description: String {
        let text = isIPv4 ? IPAddress.formatIPv4(bytes) : IPAddress.formatIPv6(bytes)
        return length == bytes.count * 8 ? text : "\(text)/\(length)"
    }

    /// systemd's symbolic names (systemd.resource-control(5)).
    public static let symbolic: [String: [IPPrefix]] = [
        "any": [IPPrefix(bytes: [0, 0, 0, 0], length: 0), IPPrefix(bytes: Array(repeating: 0, count: 16), length: 0)],
        "localhost": [IPPrefix(bytes: [127, 0, 0, 0], length: 8), IPPrefix(bytes: Array(repeating: 0, count: 15) + [1], length: 128)],
        "link-local": [IPPrefix(bytes: [169, 254, 0, 0], length: 16), IPPrefix(bytes: [0xFE, 0x80] + Array(repeating: 0, count: 14), length: 64)],
        "multicast": [IPPrefix(bytes: [224, 0, 0, 0], length: 4), IPPrefix(bytes: [0xFF] + Array(repeating: 0, count: 15), length: 8)],
    ]

    /// One word of an IPAddressAllow=/IPAddressDeny= value: a symbolic
    /// name, or ADDRESS[/PREFIXLENGTH] (no length: the whole address).
    public static func parse(_ word: String) throws(ValueError) -> [IPPrefix] {
        if let named = symbolic[word] { return named }
        var text = Substring(word), length: Int?
        if let slash = word.firstIndex(of: "/") {
            text = word[..<slash]
            let digits = word[word.index(after: slash)...]
            guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy(\.isASCIIDigit), let n = Int(digits) else {
                throw ValueError("invalid prefix length in \(Quote.value(word)), expected ADDRESS/LENGTH")
            }
            length = n
        }
        let bytes: [UInt8]
        if let v4 = IPAddress.parseIPv4(text) {
            bytes = v4
        } else if let v6 = IPAddress.parseIPv6(text) {
            bytes = v6
        } else {
            throw ValueError("\(Quote.value(word)) is not an IP address, a prefix or one of any, localhost, link-local, multicast")
        }
        let bits = bytes.count * 8
        if let length, length > bits {
            throw ValueError("prefix length \(length) in \(Quote.value(word)) is longer than the address (\(bits) bits)")
        }
        return [IPPrefix(bytes: bytes, length: length ?? bits)]
    }

    /// This prefix without the addresses of `hole`: the smallest set of
    /// prefixes that covers the rest (one per bit between the two lengths).
    /// xinetd's "the more specific match wins" between only_from and
    /// no_access becomes systemd's lists this way.
    public func subtracting(_ hole: IPPrefix) -> [IPPrefix] {
        guard hole.bytes.count == bytes.count, covers(hole) else {
            return hole.covers(self) ? [] : [self]
        }
        var out: [IPPrefix] = []
        for bit in length..<hole.length {
            // The sibling at this depth: the hole's bits up to `bit`, then the other value of bit `bit`.
            var b = hole.bytes
            b[bit / 8] ^= UInt8(0x80 >> (bit % 8))
            out.append(IPPrefix(bytes: b, length: bit + 1))
        }
        return out
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
