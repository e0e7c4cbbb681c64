import CPorter
import Glibc

/// One Unix socket described by the kernel through sock_diag (unix_diag):
/// asked for by its sockfs inode, one attribute back.
enum UnixDiag {
    /// The payload of attribute `attribute` for the socket `fd` in one of
    /// `states` (a bit per TCP_* state), asked with `show` (UDIAG_SHOW_*),
    /// through `netlink` (a NETLINK_SOCK_DIAG socket); nil when the kernel
    /// does not say.
    static func attribute(_ fd: FileDescriptor, states: UInt32, show: UInt32, attribute: UInt16,
                          netlink: FileDescriptor) -> [UInt8]? {
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0 else { return nil }
        // nlmsghdr + unix_diag_req, asking for one socket by inode.
        var request = [UInt8](repeating: 0, count: 16 + 24)
        func put32(_ v: UInt32, at o: Int) { for i in 0..<4 { request[o + i] = UInt8((v >> (8 * UInt32(i))) & 0xff) } }
        func put16(_ v: UInt16, at o: Int) { request[o] = UInt8(v & 0xff); request[o + 1] = UInt8(v >> 8) }
        put32(UInt32(request.count), at: 0)
        put16(UInt16(SOCK_DIAG_BY_FAMILY), at: 4)
        put16(UInt16(NLM_F_REQUEST), at: 6)
        put32(1, at: 8)
        request[16] = UInt8(AF_UNIX)
        put32(states, at: 20)
        put32(UInt32(truncatingIfNeeded: st.st_ino), at: 24)
        put32(show, at: 28)
        put32(UInt32.max, at: 32)               // cookie: INET_DIAG_NOCOOKIE
        put32(UInt32.max, at: 36)
        guard send(netlink.rawValue, request, request.count, 0) == request.count else { return nil }

        var reply = [UInt8](repeating: 0, count: 512)
        let n = recv(netlink.rawValue, &reply, reply.count, 0)
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
            if type == attribute { return Array(reply[(o + 4)..<min(o + len, end)]) }
            o += (len + 3) & ~3
        }
        return nil
    }

    static func openNetlink() -> FileDescriptor? {
        let s = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_SOCK_DIAG)
        return s >= 0 ? FileDescriptor(s) : nil
    }

    /// The inode number (low 32 bits, as unix_diag_vfs has it) of the file
    /// a bound Unix socket created; nil when the kernel does not say.
    static func boundFileInode(_ fd: FileDescriptor) -> UInt32? {
        guard let netlink = openNetlink() else { return nil }
        defer { netlink.close() }
        // Any state: a listening stream socket or a bound datagram socket.
        guard let vfs = attribute(fd, states: UInt32.max, show: UInt32(UDIAG_SHOW_VFS), attribute: UInt16(UNIX_DIAG_VFS),
                                  netlink: netlink), vfs.count >= 8 else { return nil }
        return UInt32(vfs[0]) | UInt32(vfs[1]) << 8 | UInt32(vfs[2]) << 16 | UInt32(vfs[3]) << 24
    }
}
