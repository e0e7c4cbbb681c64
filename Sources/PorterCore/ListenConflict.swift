/// Which listen addresses cannot be bound by two units at once: porter
/// refuses the second in the configuration (with both positions) rather
/// than let the kernel refuse one at run time, or, for Unix paths, let the
/// second unlink the first one's live socket.
public enum ListenConflict {
    public struct Key: Hashable, Sendable {
        let text: String
    }

    /// The same file for any Unix kind, the same abstract name, the same
    /// protocol and port for IP (whatever the address: what EADDRINUSE
    /// reports between porter's own units).
    public static func key(_ l: Listen) -> Key {
        switch l.address {
        case .unixPath(let p): return Key(text: "file " + p)
        case .abstract(let n): return Key(text: "abstract " + n)
        case .anyPort(let p), .ipv4(_, let p), .ipv6(_, let p, _):
            return Key(text: (l.kind == .datagram ? "udp " : "tcp ") + String(p))
        }
    }

    /// The same address exactly (a bare port is [::]:port).
    static func exactKey(_ l: Listen) -> Key {
        switch l.address {
        case .unixPath, .abstract: return key(l)
        case .anyPort(let p):
            return Key(text: (l.kind == .datagram ? "udp " : "tcp ") + ListenAddress.ipv6(address: Array(repeating: 0, count: 16), port: p, scope: nil).description)
        default:
            return Key(text: (l.kind == .datagram ? "udp " : "tcp ") + l.address.description)
        }
    }

    /// Every listen address that an earlier unit (in name order) or an
    /// earlier line already has, as errors for the later position.
    public static func duplicates(_ sockets: [SocketConfig]) -> [(unit: UnitName, diagnostic: Diagnostic)] {
        var seen: [Key: String] = [:]
        var out: [(UnitName, Diagnostic)] = []
        for s in sockets.sorted(by: { $0.name < $1.name }) {
            for l in s.listens {
                let k = exactKey(l)
                if let other = seen[k] {
                    out.append((s.name, Diagnostic(.error, in: s.sources, line: l.line, key: l.kind.rawValue,
                        "\(l.address) is already a listen address of \(other); one address, one unit")))
                } else {
                    seen[k] = s.sources.at(l.line)
                }
            }
        }
        return out
    }
}
