import CBench
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where clients connect: a loopback TCP port or a Unix socket path.
enum Address: CustomStringConvertible {
    case tcp(port: UInt16)
    case unix(String)

    var description: String {
        switch self {
        case .tcp(let p): return "127.0.0.1:\(p)"
        case .unix(let path): return path
        }
    }

    /// sockaddr bytes and family.
    func sockaddr() -> (family: Int32, bytes: [UInt8]) {
        switch self {
        case .tcp(let port):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            return (AF_INET, withUnsafeBytes(of: sin) { Array($0) })
        case .unix(let path):
            var sun = sockaddr_un()
            sun.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &sun.sun_path) { raw in
                for (i, b) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = b }
            }
            return (AF_UNIX, withUnsafeBytes(of: sun) { Array($0) })
        }
    }
}

/// What a batch of connections measured.
struct ConnStats {
    var ok = 0
    var errors = 0
    var seconds = 0.0
    /// connect → first byte and connect → end of file, in µs.
    var firstByte: [Double] = []
    var eof: [Double] = []

    var rate: Double { seconds > 0 ? Double(ok) / seconds : 0 }
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    guard !values.isEmpty else { return .nan }
    let s = values.sorted()
    let rank = max(1, Int((p * Double(s.count)).rounded(.up)))
    return s[min(rank, s.count) - 1]
}

func median(_ values: [Double]) -> Double {
    let v = values.filter { !$0.isNaN }
    guard !v.isEmpty else { return .nan }
    let s = v.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// The load generator: `total` connections, `concurrency` at a time, spread
/// round-robin over `targets`; each reads to end of file and must start with
/// `expect`. Bounded by count and by `maxSeconds`.
func loadConnections(_ targets: [Address], total: Int, concurrency: Int, expect: String = "hello\n",
                     perConnection: Double = 10, maxSeconds: Double = 90) -> ConnStats {
    struct Slot {
        var fd: Int32 = -1
        var t0: UInt64 = 0
        var tfb: UInt64 = 0
        var head: [UInt8] = []
        var connected = false
    }
    let addresses = targets.map { $0.sockaddr() }
    let ep = epoll_create1(Int32(EPOLL_CLOEXEC))
    defer { close(ep) }
    var slots = [Slot](repeating: Slot(), count: concurrency)
    var stats = ConnStats()
    var launched = 0, finished = 0
    let start = nowNS()
    let hardStop = start + UInt64(maxSeconds * 1e9)
    var lastDone = start
    let expected = Array(expect.utf8)
    var buf = [UInt8](repeating: 0, count: 65536)

    func finish(_ i: Int, ok: Bool) {
        let now = nowNS()
        epoll_ctl(ep, EPOLL_CTL_DEL, slots[i].fd, nil)
        close(slots[i].fd)
        if ok && slots[i].head.starts(with: expected) {
            stats.ok += 1
            stats.firstByte.append(Double(slots[i].tfb - slots[i].t0) / 1000)
            stats.eof.append(Double(now - slots[i].t0) / 1000)
        } else {
            stats.errors += 1
        }
        slots[i] = Slot()
        finished += 1
        lastDone = now
    }

    func launch(_ i: Int) -> Bool {
        let (family, bytes) = addresses[launched % addresses.count]
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        let t0 = nowNS()
        let r = bytes.withUnsafeBytes { connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(bytes.count)) }
        if r < 0 && errno == EAGAIN {
            // A full Unix backlog: try again in a moment.
            close(fd)
            return false
        }
        launched += 1
        slots[i] = Slot(fd: fd, t0: t0, tfb: 0, head: [], connected: r == 0)
        if r < 0 && errno != EINPROGRESS {
            finish(i, ok: false)
            return true
        }
        // Waiting for writability only while the connect is in progress: a
        // connected socket is always writable and would wake us for nothing.
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | (r == 0 ? 0 : EPOLLOUT.rawValue)
        ev.data.u64 = UInt64(i)
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)
        return true
    }

    var events = [epoll_event](repeating: epoll_event(), count: 64)
    while finished < total && nowNS() < hardStop {
        for i in 0..<concurrency where slots[i].fd < 0 && launched < total {
            if !launch(i) {
                usleep(100)
                break
            }
        }
        let n = epoll_wait(ep, &events, Int32(events.count), 100)
        let now = nowNS()
        for k in 0..<max(0, Int(n)) {
            let i = Int(events[k].data.u64)
            guard slots[i].fd >= 0 else { continue }
            if !slots[i].connected {
                var err: Int32 = 0
                var len = socklen_t(4)
                getsockopt(slots[i].fd, SOL_SOCKET, SO_ERROR, &err, &len)
                if err != 0 {
                    finish(i, ok: false)
                    continue
                }
                slots[i].connected = true
                var ev = epoll_event()
                ev.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
                ev.data.u64 = UInt64(i)
                epoll_ctl(ep, EPOLL_CTL_MOD, slots[i].fd, &ev)
            }
            while true {
                let r = read(slots[i].fd, &buf, buf.count)
                if r > 0 {
                    if slots[i].tfb == 0 { slots[i].tfb = now }
                    if slots[i].head.count < 64 { slots[i].head += buf[0..<min(r, 64)] }
                    continue
                }
                if r == 0 { finish(i, ok: slots[i].tfb != 0) }
                else if errno != EAGAIN && errno != EINTR { finish(i, ok: false) }
                break
            }
        }
        // Per-connection timeout.
        for i in 0..<concurrency where slots[i].fd >= 0 && now - slots[i].t0 > UInt64(perConnection * 1e9) {
            finish(i, ok: false)
        }
    }
    for i in 0..<concurrency where slots[i].fd >= 0 { finish(i, ok: false) }
    stats.seconds = Double(lastDone - start) / 1e9
    return stats
}

/// One blocking connection: connect → first byte in µs, or nil.
func oneConnection(_ target: Address, timeout: Double = 5) -> (firstByte: Double, eof: Double)? {
    let s = loadConnections([target], total: 1, concurrency: 1, perConnection: timeout, maxSeconds: timeout + 1)
    guard s.ok == 1 else { return nil }
    return (s.firstByte[0], s.eof[0])
}

/// Counts the ports of `range` in LISTEN state (IPv4 or IPv6), asking the
/// kernel through sock_diag (inet_diag), so the check never connects and
/// never triggers an activation.
func listeningPorts(_ range: ClosedRange<UInt16>) -> Int {
    var seen = Set<UInt16>()
    for family in [AF_INET, AF_INET6] {
        let fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 4 /* NETLINK_SOCK_DIAG */)
        guard fd >= 0 else { continue }
        defer { close(fd) }
        // nlmsghdr (16) + inet_diag_req_v2 (56)
        var req = [UInt8](repeating: 0, count: 72)
        func put32(_ v: UInt32, _ o: Int) { for i in 0..<4 { req[o + i] = UInt8((v >> (8 * UInt32(i))) & 0xff) } }
        func put16(_ v: UInt16, _ o: Int) { req[o] = UInt8(v & 0xff); req[o + 1] = UInt8(v >> 8) }
        put32(72, 0)
        put16(20, 4)                    // SOCK_DIAG_BY_FAMILY
        put16(0x1 | 0x300, 6)           // NLM_F_REQUEST | NLM_F_DUMP
        req[16] = UInt8(family)
        req[17] = UInt8(IPPROTO_TCP)
        put32(1 << 10, 20)              // idiag_states: TCP_LISTEN
        guard send(fd, req, req.count, 0) == req.count else { continue }
        var buf = [UInt8](repeating: 0, count: 65536)
        var done = false
        while !done {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            var o = 0
            while o + 16 <= n {
                let len = Int(UInt32(buf[o]) | UInt32(buf[o + 1]) << 8 | UInt32(buf[o + 2]) << 16 | UInt32(buf[o + 3]) << 24)
                let type = UInt16(buf[o + 4]) | UInt16(buf[o + 5]) << 8
                if type == 3 /* NLMSG_DONE */ || type == 2 /* NLMSG_ERROR */ || len < 16 { done = true; break }
                let sport = UInt16(buf[o + 16 + 4]) << 8 | UInt16(buf[o + 16 + 5])
                if range.contains(sport) { seen.insert(sport) }
                o += (len + 3) & ~3
            }
        }
    }
    return seen.count
}

/// Whether a Unix socket path is listening (/proc/net/unix, flag __SO_ACCEPTCON).
func unixListening(_ path: String) -> Bool {
    readText("/proc/net/unix").split(separator: "\n").contains { line in
        line.hasSuffix(" " + path) && line.split(separator: " ", omittingEmptySubsequences: true)[3] == "00010000"
    }
}

/// Waits until `target` listens, giving up when a process in `pids` dies.
func waitListening(_ target: Address, pids: [pid_t], seconds: Double = 15) -> Bool {
    let deadline = nowNS() + UInt64(seconds * 1e9)
    while nowNS() < deadline {
        switch target {
        case .tcp(let p): if listeningPorts(p...p) == 1 { return true }
        case .unix(let path): if unixListening(path) { return true }
        }
        if !pids.allSatisfy(alive) { return false }
        usleep(500)
    }
    return false
}

/// A blocking socket connected to 127.0.0.1:`port` (TCP, or UDP with
/// `datagram`), or nil; the caller closes it.
func connectedSocket(_ port: UInt16, datagram: Bool = false) -> Int32? {
    let fd = socket(AF_INET, Int32(datagram ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    let (_, addr) = Address.tcp(port: port).sockaddr()
    guard addr.withUnsafeBytes({ connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(addr.count)) }) == 0 else {
        close(fd)
        return nil
    }
    return fd
}
