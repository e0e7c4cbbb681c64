import CPorter
import Glibc

/// Socket calls, each a thin wrapper; every socket is created close-on-exec.
public enum Socket {
    /// The caller owns the returned fd. The corresponding C function is socket(2).
    public static func open(family: Int32, type: Int32, nonBlocking: Bool) throws(SysError) -> FileDescriptor {
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        return FileDescriptor(try retrying("socket") { socket(family, type | flags, 0) })
    }

    /// The corresponding C function is setsockopt(2).
    public static func setOption(_ fd: FileDescriptor, _ level: Int32, _ name: Int32, _ value: Int32) throws(SysError) {
        var v = value
        _ = try retrying("setsockopt") {
            setsockopt(fd.rawValue, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// A string option (SO_BINDTODEVICE). The corresponding C function is setsockopt(2).
    public static func setOption(_ fd: FileDescriptor, _ level: Int32, _ name: Int32, string: String) throws(SysError) {
        var bytes = Array(string.utf8)
        _ = try retrying("setsockopt") {
            setsockopt(fd.rawValue, level, name, &bytes, socklen_t(bytes.count))
        }
    }

    /// Attaches a classic BPF program (code, jt, jf, k per instruction),
    /// replacing the socket's filter; an empty program detaches it. The
    /// corresponding C function is setsockopt(2) with SO_ATTACH_FILTER.
    public static func setFilter(_ fd: FileDescriptor, _ program: [(code: UInt16, jt: UInt8, jf: UInt8, k: UInt32)]) throws(SysError) {
        let insns = program.map { porter_bpf_insn(code: $0.code, jt: $0.jt, jf: $0.jf, k: $0.k) }
        let r = insns.withUnsafeBufferPointer { porter_socket_filter(fd.rawValue, $0.baseAddress, UInt16(clamping: $0.count)) }
        if r < 0 { throw SysError(call: "setsockopt(SO_ATTACH_FILTER)", errno: -r) }
    }

    /// The corresponding C function is getsockopt(2).
    public static func option(_ fd: FileDescriptor, _ level: Int32, _ name: Int32) throws(SysError) -> Int32 {
        var v: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        _ = try retrying("getsockopt") { getsockopt(fd.rawValue, level, name, &v, &len) }
        return v
    }

    /// The corresponding C function is bind(2).
    public static func bind(_ fd: FileDescriptor, _ address: SocketAddress) throws(SysError) {
        _ = try retrying("bind") { address.withSockaddr { Glibc.bind(fd.rawValue, $0, $1) } }
    }

    /// The corresponding C function is listen(2).
    public static func listen(_ fd: FileDescriptor, backlog: Int32) throws(SysError) {
        _ = try retrying("listen") { Glibc.listen(fd.rawValue, backlog) }
    }

    /// The corresponding C function is connect(2).
    public static func connect(_ fd: FileDescriptor, _ address: SocketAddress) throws(SysError) {
        _ = try retrying("connect") { address.withSockaddr { Glibc.connect(fd.rawValue, $0, $1) } }
    }

    /// Tries a non-blocking stream connect to a Unix socket path and hangs
    /// up: 0 when it connected, otherwise the errno (ECONNREFUSED: nothing
    /// listens on the file; EAGAIN: a listener with a full backlog;
    /// EPROTOTYPE: a socket of another type is bound there).
    public static func probeUnix(_ path: String) -> Int32 {
        guard let fd = try? open(family: AF_UNIX, type: Int32(SOCK_STREAM.rawValue), nonBlocking: true) else { return EMFILE }
        defer { fd.close() }
        let address = SocketAddress(unix: Array(path.utf8), abstract: false)
        do { try connect(fd, address) } catch { return error.errno }
        return 0
    }

    /// Accepts one connection, close-on-exec and blocking (it is meant for a
    /// child that expects an ordinary socket); nil when none is waiting.
    /// ECONNABORTED (the peer gave up in the queue) also returns nil.
    /// The caller owns the returned fd. The corresponding C function is accept4(2).
    /// With `nonBlocking`, the connection is non-blocking (for porter's own use: a relay).
    public static func accept(_ fd: FileDescriptor, peer: inout SocketAddress, nonBlocking: Bool = false) throws(SysError) -> FileDescriptor? {
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        while true {
            let r = peer.withMutableSockaddr { porter_accept4(fd.rawValue, $0, $1, flags) }
            if r >= 0 { return FileDescriptor(r) }
            let e = SysError.current
            switch e {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK, ECONNABORTED: return nil
            default: throw SysError(call: "accept4", errno: e)
            }
        }
    }

    /// Writes `bytes` to a connected socket without waiting (MSG_DONTWAIT)
    /// and without SIGPIPE; the count written, which may be short (0 when
    /// the socket has no room). The corresponding C function is send(2).
    public static func sendNow(_ fd: FileDescriptor, _ bytes: [UInt8]) throws(SysError) -> Int {
        try retryingNonBlocking("send") {
            bytes.withUnsafeBytes { Glibc.send(fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL)) }
        } ?? 0
    }

    /// The corresponding C function is getsockname(2).
    public static func localAddress(_ fd: FileDescriptor) throws(SysError) -> SocketAddress {
        var a = SocketAddress()
        _ = try retrying("getsockname") { a.withMutableSockaddr { getsockname(fd.rawValue, $0, $1) } }
        return a
    }

    /// The corresponding C function is getpeername(2).
    public static func peerAddress(_ fd: FileDescriptor) throws(SysError) -> SocketAddress {
        var a = SocketAddress()
        _ = try retrying("getpeername") { a.withMutableSockaddr { getpeername(fd.rawValue, $0, $1) } }
        return a
    }

    /// The kernel's 64-bit socket cookie (SO_COOKIE), unique while the system runs.
    public static func cookie(_ fd: FileDescriptor) -> UInt64 {
        var v: UInt64 = 0
        var len = socklen_t(MemoryLayout<UInt64>.size)
        _ = getsockopt(fd.rawValue, SOL_SOCKET, SO_COOKIE, &v, &len)
        return v
    }

    /// SO_PEERCRED of a Unix connection: pid, uid, gid of the peer.
    public static func peerCredentials(_ fd: FileDescriptor) -> PeerCredentials? {
        var c = porter_peer_credentials()
        return porter_peer_credentials(fd.rawValue, &c) == 0 ? PeerCredentials(pid: c.pid, uid: c.uid, gid: c.gid) : nil
    }

    /// The pidfd inode id of a Unix peer (SO_PEERPIDFD, Linux 6.5+, on pidfs).
    public static func peerPidfdID(_ fd: FileDescriptor) -> UInt64? {
        var pidfd: Int32 = -1
        var len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd.rawValue, SOL_SOCKET, 77 /* SO_PEERPIDFD */, &pidfd, &len) == 0, pidfd >= 0 else { return nil }
        defer { FileDescriptor(pidfd).close() }
        var st = stat()
        guard fstat(pidfd, &st) == 0 else { return nil }
        return UInt64(st.st_ino)
    }

    /// How long a TCP connection has carried no data either way, in ms
    /// (TCP_INFO's tcpi_last_data_recv and tcpi_last_data_sent); nil when
    /// the socket is not TCP.
    public static func quietFor(_ fd: FileDescriptor) -> UInt32? {
        var info = tcp_info()
        var len = socklen_t(MemoryLayout<tcp_info>.size)
        guard getsockopt(fd.rawValue, Int32(IPPROTO_TCP), TCP_INFO, &info, &len) == 0 else { return nil }
        return min(info.tcpi_last_data_recv, info.tcpi_last_data_sent)
    }

    /// Bytes waiting to be read (SIOCINQ / FIONREAD).
    public static func pendingBytes(_ fd: FileDescriptor) -> Int {
        var n: Int32 = 0
        return porter_ioctl_int(fd.rawValue, UInt(FIONREAD), &n) == 0 ? Int(n) : 0
    }

    /// The socket's type (SOCK_STREAM, SOCK_DGRAM, ...).
    public static func type(_ fd: FileDescriptor) -> Int32 {
        (try? option(fd, SOL_SOCKET, SO_TYPE)) ?? -1
    }
}

/// Who is at the other end of a Unix socket (SO_PEERCRED), as of its
/// connect(2) or listen(2).
public struct PeerCredentials: Equatable, Sendable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}
