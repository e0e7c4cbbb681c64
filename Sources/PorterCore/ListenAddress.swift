/// Which `Listen*=` key a socket came from, and so its socket type.
public enum SocketKind: String, Sendable, Hashable {
    case stream = "ListenStream"
    case datagram = "ListenDatagram"
    case sequentialPacket = "ListenSequentialPacket"
}

/// A listening address in every form systemd.socket(5) accepts for
/// `ListenStream=`, `ListenDatagram=` and `ListenSequentialPacket=`.
public enum ListenAddress: Hashable, Sendable, CustomStringConvertible {
    /// A bare port: `[::]:port`, reachable over IPv4 too unless
    /// BindIPv6Only=ipv6-only; IPv4 `0.0.0.0:port` where IPv6 is missing.
    case anyPort(UInt16)
    case ipv4(address: [UInt8], port: UInt16)
    case ipv6(address: [UInt8], port: UInt16, scope: String?)
    case unixPath(String)
    /// Linux abstract namespace, written `@name`.
    case abstract(String)

    /// sun_path is 108 bytes; one is kept for the terminating NUL.
    public static let maxUnixPathBytes = 107

    public static func parse(_ s: String, kind: SocketKind) throws(ValueError) -> ListenAddress {
        let expected = "invalid address \(Quote.value(s)), expected a port, IPv4:port, [IPv6]:port, /path or @abstract"
        let u = s.utf8
        guard let first = u.first else { throw ValueError(expected) }
        var address: ListenAddress
        switch first {
        case UInt8(ascii: "/"):
            guard u.count <= maxUnixPathBytes else {
                throw ValueError("path \(Quote.value(s)) too long (\(u.count) bytes), at most \(maxUnixPathBytes) for a Unix socket")
            }
            address = .unixPath(s)
        case UInt8(ascii: "@"):
            // sun_path holds the leading NUL and then the name: 107 bytes of
            // name, since an abstract name needs no terminating NUL.
            guard u.count >= 2, u.count - 1 <= maxUnixPathBytes else {
                throw ValueError("abstract name \(Quote.value(s)) must be 1-\(maxUnixPathBytes) bytes")
            }
            address = .abstract(String(decoding: u.dropFirst(), as: UTF8.self))
        case UInt8(ascii: "["):
            guard let close = u.firstIndex(of: UInt8(ascii: "]")) else { throw ValueError(expected) }
            var host = String(decoding: u[u.index(after: u.startIndex)..<close], as: UTF8.self)
            let rest = u[u.index(after: close)...]
            guard rest.first == UInt8(ascii: ":") else {
                throw ValueError("\(Quote.value(s)) has no port, expected [IPv6]:port")
            }
            let port = try parsePort(String(decoding: rest.dropFirst(), as: UTF8.self))
            var scope: String? = nil
            if let pct = host.utf8.firstIndex(of: UInt8(ascii: "%")) {
                scope = String(decoding: host.utf8[host.utf8.index(after: pct)...], as: UTF8.self)
                host = String(decoding: host.utf8[..<pct], as: UTF8.self)
                guard !scope!.isEmpty else { throw ValueError(expected) }
            }
            guard let bytes = IPAddress.parseIPv6(host) else {
                throw ValueError("invalid IPv6 address \(Quote.value(host)) in \(Quote.value(s))")
            }
            address = .ipv6(address: bytes, port: port, scope: scope)
        default:
            if let colon = u.lastIndex(of: UInt8(ascii: ":")) {
                let hostBytes = u[..<colon]
                let host = String(decoding: hostBytes, as: UTF8.self)
                if hostBytes.contains(UInt8(ascii: ":")) {
                    throw ValueError("\(Quote.value(s)): an IPv6 address needs brackets, expected [IPv6]:port")
                }
                if host.hasPrefix("vsock") {
                    throw ValueError("\(Quote.value(s)): vsock addresses are not supported by porter")
                }
                let port = try parsePort(String(decoding: u[u.index(after: colon)...], as: UTF8.self))
                guard let bytes = IPAddress.parseIPv4(host) else {
                    throw ValueError("invalid IPv4 address \(Quote.value(host)) in \(Quote.value(s)), expected a.b.c.d:port")
                }
                address = .ipv4(address: bytes, port: port)
            } else if u.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
                address = .anyPort(try parsePort(s))
            } else {
                throw ValueError(expected)
            }
        }
        if kind == .sequentialPacket, address.isInet {
            throw ValueError("\(Quote.value(s)): sequential packet sockets are Unix only, expected /path or @abstract")
        }
        return address
    }

    static func parsePort(_ s: String) throws(ValueError) -> UInt16 {
        let u = s.utf8
        guard !u.isEmpty, u.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(String(decoding: u.prefix(9), as: UTF8.self)) else {
            throw ValueError("invalid port \(Quote.value(s)), expected a number 1-65535")
        }
        guard (1...65535).contains(n), u.count < 9 else {
            throw ValueError("port \(s) out of range 1-65535")
        }
        return UInt16(n)
    }

    public var isInet: Bool {
        switch self {
        case .anyPort, .ipv4, .ipv6: return true
        case .unixPath, .abstract: return false
        }
    }

    public var port: UInt16? {
        switch self {
        case .anyPort(let p), .ipv4(_, let p), .ipv6(_, let p, _): return p
        default: return nil
        }
    }

    public var unixPath: String? {
        if case .unixPath(let p) = self { return p }
        return nil
    }

    public var description: String {
        switch self {
        case .anyPort(let p): return String(p)
        case .ipv4(let a, let p): return "\(IPAddress.formatIPv4(a)):\(p)"
        case .ipv6(let a, let p, let scope):
            return "[\(IPAddress.formatIPv6(a))\(scope.map { "%" + $0 } ?? "")]:\(p)"
        case .unixPath(let path): return path
        case .abstract(let name): return "@" + name
        }
    }

}
