/// sock_diag(7) over netlink, as bytes: the requests porter sends and the
/// replies it reads, built and parsed without syscalls (the transport is
/// PorterSys's SockDiagSocket). Numbers are the kernel's ABI
/// (linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h, linux/unix_diag.h).
public enum SockDiag {
    static let byFamily: UInt16 = 20          // SOCK_DIAG_BY_FAMILY
    static let request: UInt16 = 0x1          // NLM_F_REQUEST
    static let dump: UInt16 = 0x300           // NLM_F_ROOT | NLM_F_MATCH
    static let done: UInt16 = 3               // NLMSG_DONE
    static let error: UInt16 = 2              // NLMSG_ERROR
    public static let afUnix: UInt8 = 1, afInet: UInt8 = 2, afInet6: UInt8 = 10
    public static let tcp: UInt8 = 6
    public static let unixName: UInt16 = 0, unixVFS: UInt16 = 1, unixRQLen: UInt16 = 4   // UNIX_DIAG_*
    public static let showName: UInt32 = 0x1, showVFS: UInt32 = 0x2, showRQLen: UInt32 = 0x10  // UDIAG_SHOW_*
    /// TCP states as idiag_states bits.
    public static let established: UInt32 = 1 << 1, synRecv: UInt32 = 1 << 3, closeWait: UInt32 = 1 << 8, listen: UInt32 = 1 << 10

    static func header(_ payload: Int, flags: UInt16) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 16)
        put32(&h, UInt32(16 + payload), 0)
        put16(&h, byFamily, 4)
        put16(&h, flags, 6)
        put32(&h, 1, 8)
        return h
    }

    /// inet_diag_req_v2 for every socket of `family`/`proto` in `states`
    /// whose source port is `port`: the kernel filters by port itself
    /// (id.idiag_sport, big-endian), so unrelated sockets are not copied out.
    public static func inetDump(family: UInt8, proto: UInt8, states: UInt32, sourcePort port: UInt16) -> [UInt8] {
        var req = header(56, flags: request | dump)
        var body = [UInt8](repeating: 0, count: 56)
        body[0] = family
        body[1] = proto
        put32(&body, states, 4)
        body[8] = UInt8(port >> 8)
        body[9] = UInt8(port & 0xff)
        put32(&body, UInt32.max, 48)  // cookie: INET_DIAG_NOCOOKIE
        put32(&body, UInt32.max, 52)
        req += body
        return req
    }

    /// unix_diag_req: a dump of the sockets in `states` (inode 0), or one
    /// socket by its inode.
    public static func unixRequest(states: UInt32, show: UInt32, inode: UInt32? = nil) -> [UInt8] {
        var req = header(24, flags: inode == nil ? request | dump : request)
        var body = [UInt8](repeating: 0, count: 24)
        body[0] = afUnix
        put32(&body, states, 4)
        put32(&body, inode ?? 0, 8)
        put32(&body, show, 12)
        put32(&body, UInt32.max, 16)
        put32(&body, UInt32.max, 20)
        req += body
        return req
    }

    /// What one received datagram holds: the payloads (after each
    /// nlmsghdr), and whether the dump ended (NLMSG_DONE) or failed
    /// (NLMSG_ERROR or a malformed header).
    public struct Reply: Equatable {
        public var payloads: [Range<Int>] = []
        public var done = false
        public var failed = false
    }

    public static func parse(_ b: [UInt8]) -> Reply {
        var r = Reply()
        var o = 0
        while o + 16 <= b.count {
            let len = Int(le32(b, o)), type = le16(b, o + 4)
            if type == done { r.done = true; return r }
            if type == error || len < 16 { r.failed = true; return r }
            r.payloads.append((o + 16)..<min(o + len, b.count))
            o += (len + 3) & ~3
        }
        return r
    }

    /// The source port of an inet_diag_msg (family, state, timer, retrans,
    /// then the big-endian source port).
    public static func inetSourcePort(_ b: [UInt8], _ payload: Range<Int>) -> UInt16? {
        guard payload.count >= 6 else { return nil }
        return UInt16(b[payload.lowerBound + 4]) << 8 | UInt16(b[payload.lowerBound + 5])
    }

    /// The attributes after a unix_diag_msg (16 bytes), as (type, value).
    /// Whether a UNIX_DIAG_NAME value is `name` (a path, or "@name" for
    /// an abstract one). The kernel reports the address as bound: a path
    /// with its terminating NUL (unix_bind counts it in the length), an
    /// abstract name with its leading NUL and nothing after. Comparing a
    /// path without the NUL matched nothing, so a connection a service
    /// had accepted but not answered looked idle.
    public static func unixName(_ value: ArraySlice<UInt8>, is name: String) -> Bool {
        if name.hasPrefix("@") { return value.elementsEqual([0] + Array(name.utf8.dropFirst())) }
        let path = value.last == 0 ? value.dropLast() : value
        return path.elementsEqual(name.utf8)
    }

    public static func unixAttributes(_ b: [UInt8], _ payload: Range<Int>) -> [(type: UInt16, value: ArraySlice<UInt8>)] {
        var out: [(UInt16, ArraySlice<UInt8>)] = []
        var a = payload.lowerBound + 16
        let end = payload.upperBound
        while a + 4 <= end {
            let len = Int(le16(b, a)), type = le16(b, a + 2)
            if len < 4 { break }
            out.append((type, b[(a + 4)..<min(a + len, end)]))
            a += (len + 3) & ~3
        }
        return out
    }

    /// A little-endian u32 attribute value.
    public static func u32(_ v: ArraySlice<UInt8>) -> UInt32? {
        guard v.count >= 4 else { return nil }
        let s = v.startIndex
        return UInt32(v[s]) | UInt32(v[s + 1]) << 8 | UInt32(v[s + 2]) << 16 | UInt32(v[s + 3]) << 24
    }

    @inline(__always) static func le16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
    @inline(__always) static func le32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(le16(b, o)) | UInt32(le16(b, o + 2)) << 16 }
    static func put32(_ b: inout [UInt8], _ v: UInt32, _ o: Int) { for i in 0..<4 { b[o + i] = UInt8((v >> (8 * UInt32(i))) & 0xff) } }
    static func put16(_ b: inout [UInt8], _ v: UInt16, _ o: Int) { b[o] = UInt8(v & 0xff); b[o + 1] = UInt8(v >> 8) }
}
