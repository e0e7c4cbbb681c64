import Glibc
import PorterCore
import PorterSys

extension SocketAddress: CustomStringConvertible {
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
            self.init(ipv6: a, port: port, scope: try scopeName.map { (n) throws(SysError) in try SocketAddress.interfaceIndex(n) } ?? 0)
        case .unixPath(let path):
            self.init(unix: Array(path.utf8), abstract: false)
        case .abstract(let name):
            self.init(unix: Array(name.utf8), abstract: true)
        }
    }

    /// The IP address as text (IPv4-mapped addresses as IPv4); nil for Unix sockets.
    public var ipString: String? {
        ipBytes.map { $0.count == 4 ? IPAddress.formatIPv4($0) : IPAddress.formatIPv6($0) }
    }

    public var description: String {
        if let ip = ipString, let port {
            return isIPv6 ? "[\(ip)]:\(port)" : "\(ip):\(port)"
        }
        return unixPath ?? "?"
    }
}
