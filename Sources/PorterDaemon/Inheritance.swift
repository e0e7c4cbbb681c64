import Glibc
import PorterCore
import PorterSys

/// What porter was handed on purpose when it started: listening sockets
/// (LISTEN_FDS, when porter itself is socket-activated by systemd or by
/// another porter, sd_listen_fds(3)), or everything an earlier image of
/// porter handed over in an upgrade (PORTER_UPGRADE_FD, see Upgrade).
/// Read before porter closes what it inherited, so these survive.
public enum Inheritance {
    nonisolated(unsafe) static var listenFDs: [Int32] = []
    nonisolated(unsafe) static var upgrade: UpgradeHandover?

    /// The fds to keep open; the environment variables that named them
    /// are removed (nothing of them reaches a service).
    public static func keptDescriptors() -> Set<Int32> {
        var keep: Set<Int32> = []
        if let pid = getenv("LISTEN_PID").flatMap({ Int32(String(cString: $0)) }), pid == getpid(),
           let n = getenv("LISTEN_FDS").flatMap({ Int32(String(cString: $0)) }), n > 0, n < 65536 {
            listenFDs = Array(3..<(3 + n))
            keep.formUnion(listenFDs)
        }
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] { unsetenv(name) }
        if let raw = getenv(UpgradeHandover.variable).flatMap({ Int32(String(cString: $0)) }) {
            unsetenv(UpgradeHandover.variable)
            upgrade = UpgradeHandover.read(from: raw)
            if let u = upgrade { keep.formUnion(u.descriptors) }
        }
        return keep
    }
}

/// Listening sockets porter was handed: each unit that listens on the same
/// address (and socket type) takes its socket instead of binding a new
/// one, so no connection waiting in its backlog is lost. What no unit
/// takes is closed once the units are set up, and named.
final class AdoptionPool {
    struct Key: Hashable {
        var type: Int32
        var address: [UInt8]
    }

    private var fds: [Key: FileDescriptor] = [:]
    /// Where the fds came from, for messages: "LISTEN_FDS", "upgrade".
    let origin: String

    init(_ handed: [FileDescriptor], origin: String) {
        self.origin = origin
        for fd in handed {
            // Never passed on by accident: porter passes sockets explicitly.
            try? fd.setCloseOnExec(true)
            let type = Socket.type(fd)
            guard type > 0, let local = try? Socket.localAddress(fd) else {
                Log.warning("\(origin): fd \(fd.rawValue) is not a socket; closed")
                fd.close()
                continue
            }
            let key = Key(type: type, address: local.identity)
            if let other = fds[key] {
                Log.warning("\(origin): fd \(fd.rawValue) is bound to \(local), as fd \(other.rawValue) is; closed")
                fd.close()
                continue
            }
            fds[key] = fd
        }
    }

    var isEmpty: Bool { fds.isEmpty }

    /// The handed socket for `listen`, if there is one; the caller owns it.
    func take(_ listen: Listen) -> FileDescriptor? {
        guard !fds.isEmpty, let address = try? SocketAddress(listen.address) else { return nil }
        let type: Int32
        switch listen.kind {
        case .stream: type = Int32(SOCK_STREAM.rawValue)
        case .datagram: type = Int32(SOCK_DGRAM.rawValue)
        case .sequentialPacket: type = Int32(SOCK_SEQPACKET.rawValue)
        }
        return fds.removeValue(forKey: Key(type: type, address: address.identity))
    }

    /// Closes what no unit took.
    func closeRest() {
        for (_, fd) in fds {
            let at = (try? Socket.localAddress(fd)).map(\.description) ?? "?"
            Log.warning("\(origin): fd \(fd.rawValue) (\(at)) matches no listen address of a unit; closed")
            fd.close()
        }
        fds.removeAll()
    }
}
