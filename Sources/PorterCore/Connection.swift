/// What porter knows about an accepted connection, and what it tells the
/// instance it starts for it: the instance name in systemd's form and the
/// environment variables of systemd (REMOTE_ADDR, REMOTE_PORT) and of
/// UCSPI (tcpserver's PROTO, TCPREMOTEIP, ... ; ucspi-unix's UNIXREMOTEPID, ...).
public struct Connection: Sendable, Codable {
    public enum Peer: Sendable, Codable {
        /// IPv4-mapped IPv6 addresses are given as IPv4, as systemd does.
        case ip(local: String, localPort: UInt16, remote: String, remotePort: UInt16, ipv6: Bool)
        case unix(pid: Int32, uid: UInt32, gid: UInt32, pidfdID: UInt64?)
        case unknown
    }

    /// How many connections this socket accepted before this one.
    public var number: UInt32
    /// The kernel's socket cookie (SO_COOKIE).
    public var cookie: UInt64
    public var peer: Peer
    /// The peer's IP address as bytes (4 for IPv4 and mapped addresses):
    /// what MaxConnectionsPerSource= counts by. nil for Unix peers.
    public var source: [UInt8]?

    public init(number: UInt32, cookie: UInt64, peer: Peer, source: [UInt8]? = nil) {
        self.number = number
        self.cookie = cookie
        self.peer = peer
        self.source = source
    }

    /// systemd's instance_from_socket(): `NR-COOKIE-LOCALIP:PORT-REMOTEIP:PORT`
    /// for IP, `NR-COOKIE-PID_PIDFDID-UID` (or `NR-COOKIE-PID-UID`) for Unix,
    /// `NR-COOKIE-unknown` when the peer's credentials are not visible.
    public var instanceName: String {
        switch peer {
        case .ip(let l, let lp, let r, let rp, _):
            return "\(number)-\(cookie)-\(l):\(lp)-\(r):\(rp)"
        case .unix(let pid, let uid, _, let pidfdID):
            if let pidfdID { return "\(number)-\(cookie)-\(pid)_\(pidfdID)-\(uid)" }
            return "\(number)-\(cookie)-\(pid)-\(uid)"
        case .unknown:
            return "\(number)-\(cookie)-unknown"
        }
    }

    /// The peer as a log line names it: `127.0.0.1:5555`, `[::1]:5555`,
    /// `pid 42 uid 1000`.
    public var remote: String {
        switch peer {
        case .ip(_, _, let r, let rp, let ipv6): return ipv6 ? "[\(r)]:\(rp)" : "\(r):\(rp)"
        case .unix(let pid, let uid, _, _): return "pid \(pid) uid \(uid)"
        case .unknown: return "an unknown peer"
        }
    }

    public var environment: [(String, String)] {
        switch peer {
        case .ip(let l, let lp, let r, let rp, let ipv6):
            var env: [(String, String)] = [
                ("REMOTE_ADDR", r), ("REMOTE_PORT", String(rp)),
                ("PROTO", ipv6 ? "TCP6" : "TCP"),
                ("TCPREMOTEIP", r), ("TCPREMOTEPORT", String(rp)),
                ("TCPLOCALIP", l), ("TCPLOCALPORT", String(lp)),
            ]
            if ipv6 {
                // ucspi-tcp6 names; the TCP* ones above keep tcpserver programs working.
                env += [("TCP6REMOTEIP", r), ("TCP6REMOTEPORT", String(rp)), ("TCP6LOCALIP", l), ("TCP6LOCALPORT", String(lp))]
            }
            return env
        case .unix(let pid, let uid, let gid, _):
            return [("PROTO", "UNIX"), ("UNIXREMOTEPID", String(pid)), ("UNIXREMOTEEUID", String(uid)), ("UNIXREMOTEEGID", String(gid))]
        case .unknown:
            return []
        }
    }
}
