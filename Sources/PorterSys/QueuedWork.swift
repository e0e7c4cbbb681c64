import CPorter
import Glibc

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
    private var diag: FileDescriptor?

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
            return unixAcceptQueue(fd)
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
            for family in local.family == AF_INET ? [AF_INET] : [AF_INET6, AF_INET] {
                guard let n = inetConnections(family: family, port: port) else { return nil }
                total += n
            }
            return total
        }
        if local.family == AF_UNIX, let name = local.unixPath, !name.isEmpty {
            return unixConnections(named: name)
        }
        return nil
    }

    private func diagSocket() -> FileDescriptor? {
        if diag == nil {
            let s = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_SOCK_DIAG)
            guard s >= 0 else { return nil }
            diag = FileDescriptor(s)
        }
        return diag
    }

    /// Sends one sock_diag dump request and calls `each` with every answer's
    /// payload (after the nlmsghdr). Returns false when the kernel refused.
    private func dump(_ request: [UInt8], _ each: ([UInt8], Int, Int) -> Void) -> Bool {
        guard let diag = diagSocket() else { return false }
        var req = request
        guard send(diag.rawValue, &req, req.count, 0) == req.count else { return false }
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(diag.rawValue, &buf, buf.count, 0)
            if n <= 0 { return false }
            var o = 0
            while o + 16 <= n {
                let len = Int(le32(buf, o)), type = le16(buf, o + 4)
                if type == 3 /* NLMSG_DONE */ { return true }
                if type == 2 /* NLMSG_ERROR */ || len < 16 { return false }
                each(buf, o + 16, min(o + len, n))
                o += (len + 3) & ~3
            }
        }
    }

    private func inetConnections(family: Int32, port: UInt16) -> Int? {
        // nlmsghdr + inet_diag_req_v2
        var req = [UInt8](repeating: 0, count: 16 + 56)
        put32(&req, UInt32(req.count), 0)
        put16(&req, UInt16(SOCK_DIAG_BY_FAMILY), 4)
        put16(&req, UInt16(NLM_F_REQUEST | NLM_F_DUMP), 6)
        req[16] = UInt8(family)
        req[17] = UInt8(IPPROTO_TCP)
        // TCP_ESTABLISHED (1), TCP_SYN_RECV (3), TCP_CLOSE_WAIT (8)
        put32(&req, (1 << 1) | (1 << 3) | (1 << 8), 20)
        // id.idiag_sport (big-endian): the kernel skips sockets on other
        // ports itself (inet_diag_dump_icsk), so a busy host's thousands of
        // unrelated connections are not copied out and parsed each time.
        req[24] = UInt8(port >> 8)
        req[25] = UInt8(port & 0xff)
        var count = 0
        let ok = dump(req) { b, o, _ in
            // inet_diag_msg: family, state, timer, retrans, then sport (big-endian).
            let sport = UInt16(b[o + 4]) << 8 | UInt16(b[o + 5])
            if sport == port { count += 1 }
        }
        return ok ? count : nil
    }

    private func unixConnections(named name: String) -> Int? {
        var req = [UInt8](repeating: 0, count: 16 + 24)
        put32(&req, UInt32(req.count), 0)
        put16(&req, UInt16(SOCK_DIAG_BY_FAMILY), 4)
        put16(&req, UInt16(NLM_F_REQUEST | NLM_F_DUMP), 6)
        req[16] = UInt8(AF_UNIX)
        put32(&req, 1 << 1, 20)                      // TCP_ESTABLISHED
        put32(&req, UInt32(UDIAG_SHOW_NAME), 28)
        put32(&req, UInt32.max, 32)
        put32(&req, UInt32.max, 36)
        // Abstract names come back with their leading NUL.
        let wanted: [UInt8] = name.hasPrefix("@") ? [0] + Array(name.utf8.dropFirst()) : Array(name.utf8)
        var count = 0
        let ok = dump(req) { b, o, end in
            var a = o + 16  // unix_diag_msg
            while a + 4 <= end {
                let len = Int(le16(b, a)), type = le16(b, a + 2)
                if len < 4 { break }
                if type == UInt16(UNIX_DIAG_NAME), Array(b[(a + 4)..<min(a + len, end)]) == wanted { count += 1 }
                a += (len + 3) & ~3
            }
        }
        return ok ? count : nil
    }

    private func unixAcceptQueue(_ fd: FileDescriptor) -> Int? {
        guard let netlink = diagSocket(),
              let rqlen = UnixDiag.attribute(fd, states: UInt32(1 << 10) /* TCP_LISTEN */, show: UInt32(UDIAG_SHOW_RQLEN),
                                             attribute: UInt16(UNIX_DIAG_RQLEN), netlink: netlink),
              rqlen.count >= 4 else { return nil }
        return Int(UInt32(rqlen[0]) | UInt32(rqlen[1]) << 8 | UInt32(rqlen[2]) << 16 | UInt32(rqlen[3]) << 24)
    }
}

@inline(__always) private func le16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
@inline(__always) private func le32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(le16(b, o)) | UInt32(le16(b, o + 2)) << 16 }
private func put32(_ b: inout [UInt8], _ v: UInt32, _ o: Int) { for i in 0..<4 { b[o + i] = UInt8((v >> (8 * UInt32(i))) & 0xff) } }
private func put16(_ b: inout [UInt8], _ v: UInt16, _ o: Int) { b[o] = UInt8(v & 0xff); b[o + 1] = UInt8(v >> 8) }
