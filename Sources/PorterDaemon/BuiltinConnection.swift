import Glibc
import PorterCore
import PorterSys

/// One connection to a built-in service (InternalService=), served in the
/// loop. What it may hold is bounded: echo keeps at most one read that the
/// client has not taken back yet (and stops reading until it has), chargen
/// only its place in the pattern, discard nothing.
final class BuiltinConnection {
    let id: UInt64
    let fd: FileDescriptor
    let socket: UnitID
    /// The handler that counted it: a reload that replaced the socket's
    /// built-in does not count its end against the new one.
    let link: SocketRuntime.InternalLink
    let peer: String
    /// For MaxConnectionsPerSource=.
    let source: [UInt8]?
    let started: Instant
    var token: UInt64 = 0
    /// What epoll is asked for now (level-triggered: one read or write per
    /// event keeps every connection's turn short).
    var interest: Epoll.Events = []
    /// echo: bytes read that the client has not taken yet.
    var pending: [UInt8] = []
    /// echo: the client shut down its side; close once `pending` is out.
    var clientDone = false
    /// chargen: where in the pattern the next byte comes from.
    var offset = 0
    var bytesIn: UInt64 = 0
    var bytesOut: UInt64 = 0

    init(id: UInt64, fd: FileDescriptor, socket: UnitID, link: SocketRuntime.InternalLink, peer: String, source: [UInt8]?, now: Instant) {
        self.id = id
        self.fd = fd
        self.socket = socket
        self.link = link
        self.peer = peer
        self.source = source
        started = now
    }

    var service: InternalService { link.service }

    /// The events this connection waits for in its present state.
    var wanted: Epoll.Events {
        switch service {
        case .chargen: return [.writable]
        case .echo: return pending.isEmpty ? [.readable, .readHangup] : [.writable]
        case .discard, .daytime, .time: return [.readable, .readHangup]
        }
    }

    enum Step { case again, done(String?) }

    /// One turn of work after epoll reported the connection (what it
    /// reported shows in what the read or write returns): `.done` closes it
    /// (with why, when it was not the client's own close).
    func step() -> Step {
        do {
            switch service {
            case .chargen: return try chargen()
            case .echo: return try echo()
            case .discard, .daytime, .time: return try discard()
            }
        } catch {
            // The client reset or went away: its own doing.
            return error.errno == ECONNRESET || error.errno == EPIPE ? .done(nil) : .done(error.reason)
        }
    }

    /// Up to 64 KiB of the pattern from where this connection is, as one
    /// contiguous write out of the repeated pattern.
    private func chargen() throws(SysError) -> Step {
        let pattern = Self.chargenRing
        let period = InternalService.chargenPattern.count
        let n = try fd.write(pattern, offset..<(offset + Self.chargenChunk))
        bytesOut += UInt64(n)
        offset = (offset + n) % period
        return .again
    }

    private func echo() throws(SysError) -> Step {
        if !pending.isEmpty {
            let n = try fd.write(pending, 0..<pending.count)
            bytesOut += UInt64(n)
            pending.removeFirst(n)
            if pending.isEmpty && clientDone { return .done(nil) }
            return .again
        }
        guard let n = try fd.read(into: &Self.scratch) else { return .again }
        if n == 0 { return .done(nil) }
        bytesIn += UInt64(n)
        let w = try fd.write(Self.scratch, 0..<n)
        bytesOut += UInt64(w)
        if w < n { pending = Array(Self.scratch[w..<n]) }
        return .again
    }

    private func discard() throws(SysError) -> Step {
        guard let n = try fd.read(into: &Self.scratch) else { return .again }
        if n == 0 { return .done(nil) }
        bytesIn += UInt64(n)
        return .again
    }

    /// One read at a time for every built-in connection: 16 KiB bounds what
    /// an echo client that does not read can leave with porter.
    nonisolated(unsafe) static var scratch = [UInt8](repeating: 0, count: 16 * 1024)
    static let chargenChunk = 64 * 1024
    /// The pattern repeated so that any offset has a chunk after it.
    static let chargenRing: [UInt8] = {
        let p = InternalService.chargenPattern
        var out: [UInt8] = []
        while out.count < p.count + chargenChunk { out += p }
        return out
    }()
}
