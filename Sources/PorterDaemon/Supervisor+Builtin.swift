import Glibc
import PorterCore
import PorterSys

/// InternalService=: inetd's built-in services, answered in the loop
/// without a process. Stream sockets accept as Accept=yes does (at most
/// MaxConnections= at once, the rest wait in the backlog; IPAddressDeny=,
/// the per-source limits and TriggerLimit*= apply); daytime and time answer
/// and close at once, echo, discard and chargen are watched until the
/// client goes. Datagram sockets answer each datagram, never with more
/// bytes than it had, and never to a privileged source port.
extension Supervisor {
    /// Datagrams answered per readable event: a flood on one socket cannot
    /// hold the loop; the rest are read at the next turn.
    static let datagramBatch = 64

    func acceptBuiltin(_ s: SocketRuntime, _ index: Int, _ link: SocketRuntime.InternalLink) {
        let listener = s.fds[index]
        let now = MonotonicClock.now()
        for _ in 0..<Self.acceptBatch {
            guard link.machine.canAccept else { return }
            var peer = SocketAddress()
            let fd: FileDescriptor
            do {
                guard let c = try Socket.accept(listener, peer: &peer, nonBlocking: true) else { return }
                fd = c
            } catch {
                failure(s, "\(s.name): accept: \(error.reason); pausing this socket for 1s")
                perform(link.machine.handle(.acceptFailed(until: now + .seconds(1))), socket: s)
                return
            }
            stats.count(s.name) { $0.accepted += 1 }
            guard admit(s, peer: peer, connection: fd, now: now) else {
                fd.close()
                continue
            }
            serveBuiltin(s, link, fd, peer: peer, now: now)
            if triggerLimitHit(s, now: now) { return }
        }
    }

    /// Takes possession of `fd`.
    private func serveBuiltin(_ s: SocketRuntime, _ link: SocketRuntime.InternalLink, _ fd: FileDescriptor, peer: SocketAddress, now: Instant) {
        stats.count(s.name) { $0.activations += 1 }
        switch link.service {
        case .daytime, .time:
            // A fresh socket's send buffer takes these few bytes whole.
            let reply = Self.clockReply(link.service)
            _ = try? fd.write(reply, 0..<reply.count)
            fd.close()
            connectionEnded(s, source: peer.ipBytes)
            logBuiltin(s, "\(s.name): \(link.service.rawValue) to \(peer.description), \(reply.count) bytes")
            return
        case .echo, .discard, .chargen:
            break
        }
        let c = BuiltinConnection(id: own.nextRelay, fd: fd, socket: s.id, link: link, peer: peer.description, source: peer.ipBytes, now: now)
        own.nextRelay += 1
        c.interest = c.wanted
        do {
            c.token = try loop.register(fd, .builtin(c.id), events: c.interest)
        } catch {
            fd.close()
            connectionEnded(s, source: c.source)
            failure(s, "\(s.name): cannot watch a connection: \(error.reason); closed")
            return
        }
        builtins[c.id] = c
        perform(link.machine.handle(.instanceStarted), socket: s)
    }

    func builtinEvent(_ id: UInt64) {
        guard let c = builtins[id] else { return }
        switch c.step() {
        case .done(let why):
            closeBuiltin(c, why: why)
        case .again:
            let wanted = c.wanted
            guard wanted != c.interest else { return }
            do {
                try loop.modify(c.fd, token: c.token, events: wanted)
                c.interest = wanted
            } catch {
                closeBuiltin(c, why: "epoll: \(error.reason)")
            }
        }
    }

    /// Ends a connection: its fd, its count, its log line.
    func closeBuiltin(_ c: BuiltinConnection, why: String?) {
        loop.forget(token: c.token)
        c.fd.close()
        builtins[c.id] = nil
        guard let s = sockets[c.socket] else { return }
        connectionEnded(s, source: c.source)
        if s.builtin === c.link { perform(c.link.machine.handle(.instanceExited), socket: s) }
        let line = "\(s.name): \(c.service.rawValue) connection from \(c.peer) ended\(why.map { " (\($0))" } ?? ""), "
            + "\(c.bytesIn) bytes in, \(c.bytesOut) out, after \((MonotonicClock.now() - c.started).porterDescription)"
        if why != nil { failure(s, line, level: .warning) } else { logBuiltin(s, line) }
    }

    private func logBuiltin(_ s: SocketRuntime, _ line: String) {
        Log.write(s.config.logConnections == .yes ? .info : .debug, line)
    }

    /// Answers what waits on a datagram socket. Nothing is kept: a reply
    /// the socket cannot take now is dropped, as UDP may.
    func builtinDatagrams(_ s: SocketRuntime, _ index: Int, _ link: SocketRuntime.InternalLink) {
        let fd = s.fds[index]
        for _ in 0..<Self.datagramBatch {
            var peer = SocketAddress()
            // The proxy's datagram buffer: a whole datagram fits (the
            // largest UDP payload), so echo sends back exactly what came.
            let n: Int
            do {
                guard let got = try Socket.receive(fd, into: &Self.datagram, from: &peer) else { return }
                n = got
            } catch {
                failure(s, "\(s.name): \(error.description)")
                return
            }
            stats.count(s.name) { $0.accepted += 1 }
            guard let size = link.service.datagramReplySize(request: n) else { continue }
            if let source = peer.ipBytes, let port = peer.port, let why = InternalService.replyRefused(address: source, port: port) {
                stats.count(s.name) { $0.refused["reflection", default: 0] += 1 }
                if let note = s.accessLog.admit(now: MonotonicClock.now()) {
                    Log.warning("\(s.name): datagram from \(peer.description) not answered: \(why) (inetd's rule against reflection loops)\(note)")
                }
                continue
            }
            stats.count(s.name) { $0.activations += 1 }
            switch link.service {
            case .echo:
                Self.datagram.withUnsafeBytes { _ = Socket.send(fd, UnsafeRawBufferPointer(rebasing: $0[0..<size]), to: peer) }
            case .chargen:
                BuiltinConnection.chargenRing.withUnsafeBytes { _ = Socket.send(fd, UnsafeRawBufferPointer(rebasing: $0[0..<size]), to: peer) }
            case .daytime, .time:
                Self.clockReply(link.service).withUnsafeBytes { _ = Socket.send(fd, $0, to: peer) }
            case .discard:
                continue
            }
        }
    }

    /// daytime's or time's answer, now.
    static func clockReply(_ service: InternalService) -> [UInt8] {
        let now = Int64(time(nil))
        return service == .daytime ? InternalService.daytime(unixSeconds: now) : InternalService.time(unixSeconds: now)
    }

    /// At shutdown: every built-in connection ends with porter.
    func closeBuiltins() {
        for c in Array(builtins.values) { closeBuiltin(c, why: nil) }
    }
}
