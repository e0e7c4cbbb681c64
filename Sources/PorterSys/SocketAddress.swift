import CPorter
import Glibc
import PorterCore

/// A socket address as the kernel takes it: sockaddr_storage and its length.
public struct SocketAddress: CustomStringConvertible {
    public var storage = sockaddr_storage()
    public var length = socklen_t(MemoryLayout<sockaddr_storage>.size)

    public init() {}

    public var family: Int32 { Int32(storage.ss_family) }

    /// The kernel form of a configured address. `.anyPort` becomes `[::]:port`
    /// (or `0.0.0.0:port` with `ipv4Fallback`); an IPv6 scope name is looked
    /// up with if_nametoindex.
    public init(_ address: ListenAddress, ipv4Fallback: Bool = false) throws(SysError) {
        switch address {
        case .anyPort(let port):
            if ipv4Fallback {
                self.init(ipv4: [0, 0, 0, 0], port: port)
            } else {
                self.init(ipv6: [UInt8](repeating: 0, count: 16), port: port, scope: 0)
            }
        case .ipv4(let a, let port):
            self.init(ipv4: a, port: port)
        case .ipv6(let a, let port, let scopeName):
            var scope: UInt32 = 0
            if let scopeName {
                scope = if_nametoindex(scopeName)
                if scope == 0 { throw SysError(call: "if_nametoindex(\(scopeName))", errno: SysError.current) }
            }
            self.init(ipv6: a, port: port, scope: scope)
        case .unixPath(let path):
            self.init(unix: Array(path.utf8), abstract: false)
        case .abstract(let name):
            self.init(unix: Array(name.utf8), abstract: true)
        }
    }

    init(ipv4 a: [UInt8], port: UInt16) {
        withUnsafeMutableBytes(of: &storage) { raw in
            let sin = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
            sin.pointee.sin_family = sa_family_t(AF_INET)
            sin.pointee.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin.pointee.sin_addr) { $0.copyBytes(from: a) }
        }
        length = socklen_t(MemoryLayout<sockaddr_in>.size)
    }

    init(ipv6 a: [UInt8], port: UInt16, scope: UInt32) {
        withUnsafeMutableBytes(of: &storage) { raw in
            let sin6 = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
            sin6.pointee.sin6_family = sa_family_t(AF_INET6)
            sin6.pointee.sin6_port = port.bigEndian
            sin6.pointee.sin6_scope_id = scope
            withUnsafeMutableBytes(of: &sin6.pointee.sin6_addr) { $0.copyBytes(from: a) }
        }
        length = socklen_t(MemoryLayout<sockaddr_in6>.size)
    }

    /// Abstract names are not NUL-terminated: the length says where they end
    /// (unix(7)), and systemd binds them the same way.
    init(unix bytes: [UInt8], abstract: Bool) {
        let pathOffset = MemoryLayout<sa_family_t>.size
        withUnsafeMutableBytes(of: &storage) { raw in
            raw.storeBytes(of: sa_family_t(AF_UNIX), toByteOffset: 0, as: sa_family_t.self)
            var offset = pathOffset
            if abstract {
                raw[offset] = 0
                offset += 1
            }
            for b in bytes {
                raw[offset] = b
                offset += 1
            }
            if !abstract { raw[offset] = 0 }
        }
        // One byte more than the name: the leading NUL of an abstract name,
        // or the trailing NUL of a path.
        length = socklen_t(pathOffset + bytes.count + 1)
    }

    /// Runs `body` with the address as a sockaddr pointer.
    public func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        withUnsafeBytes(of: storage) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
        }
    }

    public mutating func withMutableSockaddr<T>(_ body: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> T) -> T {
        length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        var len = length
        let r = withUnsafeMutableBytes(of: &storage) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &len)
        }
        length = len
        return r
    }

    /// The IP address as text, IPv4-mapped IPv6 addresses shown as IPv4, as
    /// systemd does for REMOTE_ADDR and instance names. nil for Unix sockets.
    public var ipString: String? {
        withUnsafeBytes(of: storage) { raw -> String? in
            switch family {
            case AF_INET:
                let sin = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                return IPAddress.formatIPv4(withUnsafeBytes(of: sin.pointee.sin_addr) { Array($0) })
            case AF_INET6:
                let sin6 = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                let bytes = withUnsafeBytes(of: sin6.pointee.sin6_addr) { Array($0) }
                if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
                    return IPAddress.formatIPv4(Array(bytes[12...]))
                }
                return IPAddress.formatIPv6(bytes)
            default:
                return nil
            }
        }
    }

    /// True for AF_INET6 addresses that are not IPv4-mapped.
    public var isIPv6: Bool {
        family == AF_INET6 && !(ipString?.contains(".") ?? false)
    }

    public var port: UInt16? {
        withUnsafeBytes(of: storage) { raw -> UInt16? in
            switch family {
            case AF_INET: return UInt16(bigEndian: raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self).pointee.sin_port)
            case AF_INET6: return UInt16(bigEndian: raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self).pointee.sin6_port)
            default: return nil
            }
        }
    }

    /// The path of a Unix address ("@name" for abstract ones), nil otherwise.
    public var unixPath: String? {
        guard family == AF_UNIX else { return nil }
        let pathOffset = MemoryLayout<sa_family_t>.size
        let n = Int(length) - pathOffset
        guard n > 0 else { return "" }
        return withUnsafeBytes(of: storage) { raw in
            let bytes = Array(raw[pathOffset..<(pathOffset + n)])
            if bytes[0] == 0 { return "@" + String(decoding: bytes.dropFirst(), as: UTF8.self) }
            return String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    public var description: String {
        if let ip = ipString, let port {
            return isIPv6 ? "[\(ip)]:\(port)" : "\(ip):\(port)"
        }
        return unixPath ?? "?"
    }
}
