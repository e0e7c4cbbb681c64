import CPorter
import Glibc

/// How much work waits on a listening socket, measured exactly:
/// - TCP listener: the accept queue length, which TCP_INFO reports in
///   tcpi_unacked for a socket in LISTEN state (net/ipv4/tcp.c, tcp_get_info);
/// - Unix stream/seqpacket listener: the accept queue length from unix_diag
///   (UDIAG_SHOW_RQLEN: sk_receive_queue.qlen of a listener);
/// - datagram socket: bytes queued (SO_MEMINFO, SK_MEMINFO_RMEM_ALLOC).
/// Porter compares the figure when a service starts and when it exits to
/// tell a run that took its work from one that left it queued.
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

    private func unixAcceptQueue(_ fd: FileDescriptor) -> Int? {
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0 else { return nil }
        if diag == nil {
            let s = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_SOCK_DIAG)
            guard s >= 0 else { return nil }
            diag = FileDescriptor(s)
        }
        guard let diag else { return nil }

        // nlmsghdr + unix_diag_req, asking for one socket by inode.
        var request = [UInt8](repeating: 0, count: 16 + 24)
        func put32(_ v: UInt32, at o: Int) { withUnsafeBytes(of: v.littleEndian) { for i in 0..<4 { request[o + i] = $0[i] } } }
        func put16(_ v: UInt16, at o: Int) { withUnsafeBytes(of: v.littleEndian) { for i in 0..<2 { request[o + i] = $0[i] } } }
        put32(UInt32(request.count), at: 0)
        put16(UInt16(SOCK_DIAG_BY_FAMILY), at: 4)
        put16(UInt16(NLM_F_REQUEST), at: 6)
        put32(1, at: 8)
        request[16] = UInt8(AF_UNIX)
        put32(UInt32(1 << 10), at: 20)          // udiag_states: TCP_LISTEN
        put32(UInt32(truncatingIfNeeded: st.st_ino), at: 24)
        put32(UInt32(UDIAG_SHOW_RQLEN), at: 28)
        put32(UInt32.max, at: 32)               // cookie: INET_DIAG_NOCOOKIE
        put32(UInt32.max, at: 36)
        guard send(diag.rawValue, request, request.count, 0) == request.count else { return nil }

        var reply = [UInt8](repeating: 0, count: 512)
        let n = recv(diag.rawValue, &reply, reply.count, 0)
        guard n >= 16 + 16 else { return nil }
        func get16(_ o: Int) -> UInt16 { UInt16(reply[o]) | UInt16(reply[o + 1]) << 8 }
        func get32(_ o: Int) -> UInt32 { UInt32(get16(o)) | UInt32(get16(o + 2)) << 16 }
        guard get16(4) == UInt16(SOCK_DIAG_BY_FAMILY) else { return nil }
        // Attributes follow the 16-byte unix_diag_msg.
        var o = 16 + 16
        let end = min(Int(get32(0)), n)
        while o + 4 <= end {
            let len = Int(get16(o)), type = get16(o + 2)
            if len < 4 { break }
            if type == UInt16(UNIX_DIAG_RQLEN), len >= 12 { return Int(get32(o + 4)) }
            o += (len + 3) & ~3
        }
        return nil
    }
}
