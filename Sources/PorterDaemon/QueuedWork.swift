import Glibc
import PorterCore
import PorterSys

/// How much work waits on a listening socket, measured exactly:
/// - TCP listener: the accept queue length, which TCP_INFO reports in
///   tcpi_unacked for a socket in LISTEN state (net/ipv4/tcp.c, tcp_get_info);
/// - Unix stream/seqpacket listener: the accept queue length from unix_diag
///   (UDIAG_SHOW_RQLEN: sk_receive_queue.qlen of a listener);
/// - datagram socket: bytes queued (SO_MEMINFO, SK_MEMINFO_RMEM_ALLOC).
/// Porter compares the figure when a service starts and when it exits to
/// tell a run that took its work from one that left it queued, and uses it
/// with `connections(of:)` to tell an idle service from a busy one.
public final class QueuedWork {
    private var diag: SockDiagSocket?

    public init() {}

    public func close() { diag?.close() }

    /// nil when the kernel does not say.
    public func measure(_ fd: FileDescriptor) -> Int? {
        let type = Socket.type(fd)
        if type == Int32(SOCK_DGRAM.rawValue) {
            var info = [UInt32](repeating: 0, count: 16)
            var len = socklen_t(info.count * 4)
            guard getsockopt(fd.rawValue, SOL_SOCKET, 55 /* SO_MEMINFO */, &info, &len) == 0 else { return nil }
            return Int(info[0])
        }
        guard let local = try? Socket.localAddress(fd) else { return nil }
        if local.family == AF_INET || local.family == AF_INET6 {
            var info = tcp_info()
            var len = socklen_t(MemoryLayout<tcp_info>.size)
            guard getsockopt(fd.rawValue, Int32(IPPROTO_TCP), TCP_INFO, &info, &len) == 0 else { return nil }
            return Int(info.tcpi_unacked)
        }
        if local.family == AF_UNIX {
            guard let inode = Socket.inode(fd),
                  let rqlen = query(SockDiag.unixRequest(states: SockDiag.listen, show: SockDiag.showRQLen, inode: inode), SockDiag.unixRQLen),
                  let n = SockDiag.u32(rqlen) else { return nil }
            return Int(n)
        }
        return nil
    }

    /// Connections accepted from the listener `fd` that are still open
    /// (ESTABLISHED, SYN_RECV, CLOSE_WAIT), through sock_diag: for TCP every
    /// socket with the listener's local port, whatever its local address (a
    /// connection to another address on that port counts too, erring on the
    /// side of busy); for Unix every connected socket carrying the
    /// listener's name, which accepted sockets inherit. nil when it cannot
    /// be measured.
    public func connections(of fd: FileDescriptor) -> Int? {
        guard Socket.type(fd) != Int32(SOCK_DGRAM.rawValue), let local = try? Socket.localAddress(fd) else { return nil }
        if local.family == AF_INET || local.family == AF_INET6 {
            guard let port = local.port else { return nil }
            // A dual-stack listener's IPv4 connections are AF_INET6 sockets too.
            var total = 0
            for family in local.family == AF_INET ? [SockDiag.afInet] : [SockDiag.afInet6, SockDiag.afInet] {
                var count = 0
                let request = SockDiag.inetDump(family: family, proto: SockDiag.tcp,
                                                states: SockDiag.established | SockDiag.synRecv | SockDiag.closeWait, sourcePort: port)
                // The kernel filtered by port; checked again all the same.
                guard dump(request, { b, payload in if SockDiag.inetSourcePort(b, payload) == port { count += 1 } }) else { return nil }
                total += count
            }
            return total
        }
        if local.family == AF_UNIX, let name = local.unixPath, !name.isEmpty {
            var count = 0
            let ok = dump(SockDiag.unixRequest(states: SockDiag.established, show: SockDiag.showName)) { b, payload in
                if SockDiag.unixAttributes(b, payload).contains(where: { $0.type == SockDiag.unixName && SockDiag.unixName($0.value, is: name) }) { count += 1 }
            }
            return ok ? count : nil
        }
        return nil
    }

    /// Whether any UDP socket is bound to `port` (IPv4 or IPv6): how porter
    /// tells that a ProxyTo= datagram backend has come up, since a UDP
    /// address cannot be probed by connecting. nil when it cannot be told.
    public func udpBound(port: UInt16) -> Bool? {
        var found = false
        for family in [SockDiag.afInet, SockDiag.afInet6] {
            let ok = dump(SockDiag.inetDump(family: family, proto: 17 /* IPPROTO_UDP */, states: UInt32.max, sourcePort: port)) { b, payload in
                if SockDiag.inetSourcePort(b, payload) == port { found = true }
            }
            if !ok { return nil }
        }
        return found
    }

    private func socket() -> SockDiagSocket? {
        if diag == nil { diag = SockDiagSocket() }
        return diag
    }

    /// Sends a dump request and calls `each` with every answer's payload.
    /// False when the kernel refused.
    private func dump(_ request: [UInt8], _ each: ([UInt8], Range<Int>) -> Void) -> Bool {
        guard let diag = socket(), diag.send(request) else { return false }
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            guard let n = diag.receive(into: &buf) else { return false }
            let bytes = Array(buf.prefix(n))
            let reply = SockDiag.parse(bytes)
            for p in reply.payloads { each(bytes, p) }
            if reply.done { return true }
            if reply.failed { return false }
        }
    }

    /// One socket's attribute, asked by inode.
    private func query(_ request: [UInt8], _ attribute: UInt16) -> ArraySlice<UInt8>? {
        guard let diag = socket() else { return nil }
        return Self.query(request, attribute, diag)
    }

    static func query(_ request: [UInt8], _ attribute: UInt16, _ diag: SockDiagSocket) -> ArraySlice<UInt8>? {
        guard diag.send(request) else { return nil }
        var buf = [UInt8](repeating: 0, count: 512)
        guard let n = diag.receive(into: &buf) else { return nil }
        let bytes = Array(buf.prefix(n))
        let reply = SockDiag.parse(bytes)
        guard let p = reply.payloads.first else { return nil }
        return SockDiag.unixAttributes(bytes, p).first { $0.type == attribute }?.value
    }

    /// The inode number (low 32 bits, as unix_diag_vfs has it) of the file
    /// a bound Unix socket created; nil when the kernel does not say.
    static func boundFileInode(_ fd: FileDescriptor) -> UInt32? {
        guard let diag = SockDiagSocket(), let inode = Socket.inode(fd) else { return nil }
        defer { diag.close() }
        return query(SockDiag.unixRequest(states: UInt32.max, show: SockDiag.showVFS, inode: inode), SockDiag.unixVFS, diag)
            .flatMap(SockDiag.u32)
    }
}
