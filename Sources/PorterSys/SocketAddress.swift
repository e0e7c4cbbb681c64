import CPorter
import Glibc

/// A socket address as the kernel takes it: sockaddr_storage and its length.
public struct SocketAddress {
    public var storage = sockaddr_storage()
    public var length = socklen_t(MemoryLayout<sockaddr_storage>.size)

    public init() {}

    public var family: Int32 { Int32(storage.ss_family) }

    /// An interface's index for an IPv6 scope (`%eth0`).
    /// The corresponding C function is if_nametoindex(3).
    public static func interfaceIndex(_ name: String) throws(SysError) -> UInt32 {
        let index = if_nametoindex(name)
        if index == 0 { throw SysError(call: "if_nametoindex(\(name))", errno: SysError.current) }
        return index
    }

    public init(ipv4 a: [UInt8], port: UInt16) {
        withUnsafeMutableBytes(of: &storage) { raw in
            let sin = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
            sin.pointee.sin_family = sa_family_t(AF_INET)
            sin.pointee.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin.pointee.sin_addr) { $0.copyBytes(from: a) }
        }
        length = socklen_t(MemoryLayout<sockaddr_in>.size)
    }

    public init(ipv6 a: [UInt8], port: UInt16, scope: UInt32) {
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
    public init(unix bytes: [UInt8], abstract: Bool) {
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

    /// The IP address's bytes: 4 for IPv4 and for IPv4-mapped IPv6
    /// addresses (as systemd shows them in REMOTE_ADDR and instance names),
    /// 16 for other IPv6 ones; nil for Unix sockets.
    public var ipBytes: [UInt8]? {
        withUnsafeBytes(of: storage) { raw -> [UInt8]? in
            switch family {
            case AF_INET:
                let sin = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                return withUnsafeBytes(of: sin.pointee.sin_addr) { Array($0) }
            case AF_INET6:
                let sin6 = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                let bytes = withUnsafeBytes(of: sin6.pointee.sin6_addr) { Array($0) }
                if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff { return Array(bytes[12...]) }
                return bytes
            default:
                return nil
            }
        }
    }

    /// True for AF_INET6 addresses that are not IPv4-mapped.
    public var isIPv6: Bool { ipBytes?.count == 16 }

    public var port: UInt16? {
        withUnsafeBytes(of: storage) { raw -> UInt16? in
            switch family {
            case AF_INET: return UInt16(bigEndian: raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self).pointee.sin_port)
            case AF_INET6: return UInt16(bigEndian: raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self).pointee.sin6_port)
            default: return nil
            }
        }
    }

    /// What makes two addresses the same binding, as bytes: the family,
    /// then the port and address (and IPv6 scope) or the Unix name. A
    /// socket porter was handed is matched to a unit by it.
    public var identity: [UInt8] {
        withUnsafeBytes(of: storage) { raw -> [UInt8] in
            var out: [UInt8] = [UInt8(truncatingIfNeeded: family), UInt8(truncatingIfNeeded: family >> 8)]
            switch family {
            case AF_INET:
                let sin = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                withUnsafeBytes(of: sin.pointee.sin_port) { out += $0 }
                withUnsafeBytes(of: sin.pointee.sin_addr) { out += $0 }
            case AF_INET6:
                let sin6 = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                withUnsafeBytes(of: sin6.pointee.sin6_port) { out += $0 }
                withUnsafeBytes(of: sin6.pointee.sin6_addr) { out += $0 }
                withUnsafeBytes(of: sin6.pointee.sin6_scope_id) { out += $0 }
            case AF_UNIX:
                let offset = MemoryLayout<sa_family_t>.size
                var name = Array(raw[offset..<max(offset, Int(length))])
                // A path's terminating NUL is not part of it (getsockname may leave it out).
                if name.first != 0 { name = Array(name.prefix { $0 != 0 }) }
                out += name
            default:
                break
            }
            return out
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

}

/// Host names to addresses, for ProxyTo=: done when the configuration is
/// read, never on the loop (a resolver that does not answer would stall
/// every unit). The corresponding C function is getaddrinfo(3).
public enum Resolver {
    /// The first address `host` has for a TCP (or, with `datagram`, UDP)
    /// connection to `port`; the error's text when there is none.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    public static func resolve(_ host: String, port: UInt16, datagram: Bool = false) -> Result<SocketAddress, Failure> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = datagram ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let r = getaddrinfo(host, String(port), &hints, &list)
        guard r == 0, let first = list else {
            let why = r == EAI_SYSTEM ? SysError.describe(SysError.current) : String(cString: gai_strerror(r))
            return .failure(Failure(description: "cannot resolve '\(host)': \(why)"))
        }
        defer { freeaddrinfo(list) }
        var a = SocketAddress()
        withUnsafeMutableBytes(of: &a.storage) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
        }
        a.length = first.pointee.ai_addrlen
        return .success(a)
    }

    /// Every address `host` has (4 bytes for IPv4, 16 for IPv6, without
    /// repeats), nil when it has none: xinetd's host names in only_from
    /// and no_access, resolved once when the configuration is read.
    public static func addresses(_ host: String) -> [[UInt8]]? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>? = nil
        guard getaddrinfo(host, nil, &hints, &list) == 0, list != nil else { return nil }
        defer { freeaddrinfo(list) }
        var out: [[UInt8]] = []
        var next = list
        while let ai = next {
            switch ai.pointee.ai_family {
            case AF_INET:
                ai.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    out.append(withUnsafeBytes(of: sin.pointee.sin_addr) { Array($0) })
                }
            case AF_INET6:
                ai.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    out.append(withUnsafeBytes(of: sin6.pointee.sin6_addr) { Array($0) })
                }
            default: break
            }
            next = ai.pointee.ai_next
        }
        var seen = Set<[UInt8]>()
        out = out.filter { seen.insert($0).inserted }
        return out.isEmpty ? nil : out
    }
}
