/// `ProxyTo=` (porter's own key, in `[Service]`): where the service itself
/// listens. porter keeps the socket unit's listeners, accepts, starts the
/// service when it is not running, and relays each connection (or UDP
/// client flow) to this address.
public enum ProxyTarget: Hashable, Sendable, CustomStringConvertible {
    /// An IP literal with its port, a Unix path or an abstract name.
    case address(ListenAddress)
    /// A host name and port, resolved when the configuration is read
    /// (at start and at each reload): never on the loop, where a slow
    /// resolver would stall every unit.
    case host(String, port: UInt16)

    public static func parse(_ s: String) throws(ValueError) -> ProxyTarget {
        let expected = "expected host:port, IPv4:port, [IPv6]:port, /path or @abstract"
        guard !s.isEmpty else { throw ValueError("empty address, \(expected)") }
        if s.hasPrefix("/") || s.hasPrefix("@") || s.hasPrefix("[") {
            return .address(try ListenAddress.parse(s, kind: .stream))
        }
        guard let colon = s.lastIndex(of: ":") else {
            throw ValueError("\(Quote.value(s)) has no port, \(expected)")
        }
        let host = String(s[..<colon])
        let port = try ListenAddress.parsePort(String(s[s.index(after: colon)...]))
        if host.contains(":") { throw ValueError("\(Quote.value(s)): an IPv6 address needs brackets, \(expected)") }
        if let v4 = IPAddress.parseIPv4(host) { return .address(.ipv4(address: v4, port: port)) }
        // RFC 1123 host names: letters, digits, hyphens, dots.
        guard !host.isEmpty, host.utf8.count <= 253,
              host.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x2E }),
              !host.hasPrefix("-"), !host.hasPrefix("."), !host.contains("..") else {
            throw ValueError("invalid host \(Quote.value(host)) in \(Quote.value(s)), \(expected)")
        }
        return .host(host, port: port)
    }

    public var description: String {
        switch self {
        case .address(let a): return a.description
        case .host(let h, let p): return "\(h):\(p)"
        }
    }
}

/// `ProxyProtocol=`: the HAProxy PROXY protocol header porter sends the
/// backend first, so it sees the real client's address.
public enum ProxyProtocolVersion: String, Hashable, Sendable {
    case v1, v2
}

/// The PROXY protocol header (haproxy.org/download/2.9/doc/proxy-protocol.txt).
/// Pure: the addresses come in as bytes and ports.
public enum ProxyHeader {
    public struct Endpoint: Equatable, Sendable {
        /// 4 or 16 bytes.
        public var address: [UInt8]
        public var port: UInt16
        public init(address: [UInt8], port: UInt16) {
            self.address = address
            self.port = port
        }
    }

    /// The v2 signature: \r\n\r\n\0\r\nQUIT\n.
    public static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// The header for a connection (or datagram, `udp`) from `source` to
    /// `destination`; with nil addresses (a Unix client), the form that
    /// says "unknown": the backend then uses the connection's own.
    public static func make(_ version: ProxyProtocolVersion, source: Endpoint?, destination: Endpoint?, udp: Bool = false) -> [UInt8] {
        switch version {
        case .v1: return v1(source: source, destination: destination)
        case .v2: return v2(source: source, destination: destination, udp: udp)
        }
    }

    static func v1(source: Endpoint?, destination: Endpoint?) -> [UInt8] {
        guard let s = source, let d = destination, s.address.count == d.address.count else {
            return Array("PROXY UNKNOWN\r\n".utf8)
        }
        let six = s.address.count == 16
        func text(_ e: Endpoint) -> String { six ? IPAddress.formatIPv6(e.address) : IPAddress.formatIPv4(e.address) }
        return Array("PROXY \(six ? "TCP6" : "TCP4") \(text(s)) \(text(d)) \(s.port) \(d.port)\r\n".utf8)
    }

    static func v2(source: Endpoint?, destination: Endpoint?, udp: Bool) -> [UInt8] {
        var out = signature
        guard let s = source, let d = destination, s.address.count == d.address.count else {
            // LOCAL command, family UNSPEC: no address block.
            out += [0x20, 0x00, 0x00, 0x00]
            return out
        }
        let six = s.address.count == 16
        out.append(0x21)  // version 2, PROXY
        out.append((six ? 0x20 : 0x10) | (udp ? 0x02 : 0x01))
        let length = six ? 36 : 12
        out += [UInt8(length >> 8), UInt8(length & 0xFF)]
        out += s.address + d.address
        out += [UInt8(s.port >> 8), UInt8(s.port & 0xFF), UInt8(d.port >> 8), UInt8(d.port & 0xFF)]
        return out
    }
}
