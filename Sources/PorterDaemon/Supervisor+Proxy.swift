import Glibc
import PorterCore
import PorterSys

/// ProxyTo= services: porter keeps the socket unit's listeners and accepts
/// every connection itself (at most MaxConnections= at once: past that the
/// listener is not watched and clients wait in the backlog). A connection
/// that comes while the backend is not running starts it and waits, held;
/// once the backend is ready — READY=1 for Type=notify, otherwise its
/// address accepting a connection, tried with back-off — porter connects
/// and relays both ways (Relay). porter sees every connection, so idle is
/// exact: IdleTimeoutSec= counts from the end of the last one.
extension Supervisor {
    /// Connect attempts while the backend refuses: 5 ms, doubling, at most 250 ms apart.
    static let proxyRetryFirst = Duration.milliseconds(5)
    static let proxyRetryCap = Duration.milliseconds(250)
    /// Once the backend has been ready, a connection it refuses is given up after this long.
    static let proxyGiveUp = Duration.seconds(5)

    // MARK: Accepting

    func acceptProxied(_ s: SocketRuntime, _ index: Int, _ link: SocketRuntime.ProxyLink) {
        guard let sid = link.service, let svc = services[sid], svc.proxy != nil else { return }
        if s.config.listens[index].kind == .datagram { return datagramsArrived(s, index, link, svc) }
        let listener = s.fds[index]
        let now = MonotonicClock.now()
        var took = 0
        for _ in 0..<Self.acceptBatch {
            guard link.machine.canAccept else { break }
            var peer = SocketAddress()
            let client: FileDescriptor
            do {
                guard let c = try Socket.accept(listener, peer: &peer, nonBlocking: true) else { break }
                client = c
            } catch {
                failure(s, "\(s.name): accept: \(error.reason); pausing this socket for 1s")
                perform(link.machine.handle(.acceptFailed(until: now + .seconds(1))), socket: s)
                break
            }
            stats.count(s.name) { $0.accepted += 1 }
            guard admit(s, peer: peer, connection: client, now: now) else {
                client.close()
                continue
            }
            let r = Relay(id: own.nextRelay, client: client, socket: s.id, service: sid, peer: peer, now: now)
            own.nextRelay += 1
            if let version = svc.prepared.config.proxyProtocol {
                r.prefix = Self.proxyHeader(version, peer: peer, client: client)
            }
            do {
                r.clientToken = try loop.register(client, .relay(r.id), events: [.readable, .writable, .readHangup, .edgeTriggered])
            } catch {
                client.close()
                connectionEnded(s, source: peer.ipBytes)
                failure(s, "\(s.name): cannot watch a connection: \(error.reason); closed")
                continue
            }
            relays[r.id] = r
            svc.proxy!.relays.insert(r.id)
            svc.proxy!.waiting.append(r.id)
            perform(link.machine.handle(.instanceStarted), socket: s)
            took += 1
            if triggerLimitHit(s, now: now) { break }
        }
        guard took > 0 else { return }
        // Work came: a running backend gets it now; a stopped one starts.
        if svc.prepared.config.exec != nil { perform(svc.machine.handle(.activity, now: now), service: svc, now: now) }
        proxyWork(svc, now: now)
    }

    /// The PROXY header for a connection from `peer` to porter's `client` end.
    static func proxyHeader(_ version: ProxyProtocolVersion, peer: SocketAddress, client: FileDescriptor) -> [UInt8] {
        let local = try? Socket.localAddress(client)
        func endpoint(_ a: SocketAddress?) -> ProxyHeader.Endpoint? {
            guard let a, let bytes = a.ipBytes, let port = a.port else { return nil }
            return ProxyHeader.Endpoint(address: bytes, port: port)
        }
        var source = endpoint(peer), destination = endpoint(local)
        // One IPv4 side and one IPv6 side (a mapped address): both as IPv6.
        if let s = source, let d = destination, s.address.count != d.address.count {
            func six(_ e: ProxyHeader.Endpoint) -> ProxyHeader.Endpoint {
                e.address.count == 16 ? e : .init(address: Array(repeating: 0, count: 10) + [0xFF, 0xFF] + e.address, port: e.port)
            }
            source = six(s)
            destination = six(d)
        }
        return ProxyHeader.make(version, source: source, destination: destination)
    }

    /// There is work for a proxied service: start it when it waits for
    /// some, or connect what waits when its backend can be reached.
    func proxyWork(_ svc: ServiceRuntime, now: Instant) {
        guard let px = svc.proxy, !stopping else { return }
        if svc.prepared.config.exec == nil {
            // ProxyTo= without ExecStart= (xinetd's `redirect`): nothing to
            // start; the address is served by someone else, so every
            // connection goes to it at once, as to a backend that is ready.
            px.readyThisRun = true
            for id in px.waiting {
                guard let r = relays[id], r.phase == .waiting, (r.retryAt.map { $0 <= now } ?? true) else { continue }
                connectBackend(r, svc, now: now)
            }
            flowsMayGo(svc, now: now)
            return
        }
        switch svc.machine.state {
        case .listening:
            if !px.waiting.isEmpty || !px.flows.isEmpty {
                perform(svc.machine.handle(.readable, now: now), service: svc, now: now)
            }
        case .running(let run):
            // Type=notify: not before READY=1. Otherwise porter probes the
            // address with the oldest connection until it is accepted.
            if svc.prepared.config.type.isNotify && !run.ready { return }
            let candidates = px.readyThisRun ? px.waiting : Array(px.waiting.prefix(1))
            for id in candidates {
                guard let r = relays[id], r.phase == .waiting, (r.retryAt.map { $0 <= now } ?? true) else { continue }
                connectBackend(r, svc, now: now)
            }
            flowsMayGo(svc, now: now)
        case .starting, .freezing, .stopping, .remaining, .waitingRestart, .holdingOff, .stopped:
            break  // they wait: the service is on its way, or held off
        }
    }

    // MARK: The backend

    private func connectBackend(_ r: Relay, _ svc: ServiceRuntime, now: Instant) {
        let address: SocketAddress
        switch svc.prepared.proxyAddress {
        case .success(let a)?: address = a
        case .failure(let why)?: return endRelay(r, failed: "ProxyTo=\(svc.prepared.config.proxyTo!): \(why)", now: now)
        case nil: return endRelay(r, failed: "no ProxyTo=", now: now)
        }
        let fd: FileDescriptor
        do { fd = try Socket.open(family: address.family, type: Int32(SOCK_STREAM.rawValue), nonBlocking: true) } catch {
            return retryOrFail(r, svc, error.errno, now: now)
        }
        r.retryAt = nil
        switch Socket.startConnect(fd, address) {
        case .connected:
            r.backend = fd
            backendConnected(r, svc, now: now)
        case .inProgress:
            r.backend = fd
            r.phase = .connecting
            px(svc).waiting.removeAll { $0 == r.id }
            do { r.backendToken = try loop.register(fd, .relayBackend(r.id), events: [.readable, .writable, .readHangup, .edgeTriggered]) } catch {
                endRelay(r, failed: "cannot watch the backend connection: \(error.reason)", now: now)
            }
        case .failed(let e):
            fd.close()
            retryOrFail(r, svc, e, now: now)
        }
        timers.touch(.relay(r.id))
    }

    private func px(_ svc: ServiceRuntime) -> ServiceProxy { svc.proxy! }

    /// The backend took the connection: relaying starts, and the first one
    /// of a run makes the backend ready.
    private func backendConnected(_ r: Relay, _ svc: ServiceRuntime, now: Instant) {
        r.phase = .relaying
        r.giveUpAt = nil
        r.retryAt = nil
        r.lastTraffic = now
        svc.proxy?.waiting.removeAll { $0 == r.id }
        if r.backendToken == nil, let fd = r.backend {
            do { r.backendToken = try loop.register(fd, .relayBackend(r.id), events: [.readable, .writable, .readHangup, .edgeTriggered]) } catch {
                return endRelay(r, failed: "cannot watch the backend connection: \(error.reason)", now: now)
            }
        }
        stats.count(svc.name) { $0.proxied += 1 }
        if let px = svc.proxy, !px.readyThisRun {
            px.readyThisRun = true
            if !svc.prepared.config.type.isNotify {
                perform(svc.machine.handle(.ready, now: now), service: svc, now: now)
            }
            proxyWork(svc, now: now)  // the others, now that the backend answers
        }
        timers.touch(.relay(r.id))
        relayMoves(r, now: now)
    }

    /// Refused (not listening yet, or no more): try again soon, unless the
    /// backend was ready and has refused for too long; other errors fail.
    private func retryOrFail(_ r: Relay, _ svc: ServiceRuntime, _ e: Int32, now: Instant) {
        r.backend?.close()
        r.backend = nil
        r.backendToken = nil
        let transient = e == ECONNREFUSED || e == ENOENT || e == EAGAIN || e == ECONNRESET || e == ETIMEDOUT
        guard transient else {
            return endRelay(r, failed: "connecting to \(svc.prepared.config.proxyTo!): \(SysError.describe(e))", now: now)
        }
        if svc.proxy?.readyThisRun == true, r.giveUpAt == nil { r.giveUpAt = now + Self.proxyGiveUp }
        if let give = r.giveUpAt, now >= give {
            return endRelay(r, failed: "\(svc.prepared.config.proxyTo!) refused it for \(Self.proxyGiveUp.porterDescription): \(SysError.describe(e))", now: now)
        }
        r.phase = .waiting
        if !(svc.proxy?.waiting.contains(r.id) ?? true) { svc.proxy?.waiting.insert(r.id, at: 0) }
        var delay = Self.proxyRetryFirst
        for _ in 0..<min(r.attempts, 10) { delay = min(delay * 2, Self.proxyRetryCap) }
        r.attempts += 1
        r.retryAt = now + delay
        timers.touch(.relay(r.id))
    }

    // MARK: Events

    /// One of a relay's sockets is ready (`backend`: the one to the backend).
    func relayEvent(_ id: UInt64, _ flags: Epoll.Events, backend: Bool) {
        guard let r = relays[id], let svc = services[r.service] else { return }
        let now = MonotonicClock.now()
        switch r.phase {
        case .waiting:
            // Only the client is watched: a hang-up is a client that gave up.
            if !backend, flags.contains(.hangup) || flags.contains(.error) { endRelay(r, failed: nil, now: now) }
        case .connecting:
            // The client's events wait: the outcome is the backend socket's.
            guard backend else {
                if flags.contains(.hangup) || flags.contains(.error) { endRelay(r, failed: nil, now: now) }
                return
            }
            guard flags.contains(.writable) || flags.contains(.error) || flags.contains(.hangup), let fd = r.backend else { return }
            // Writable without an error: connected (SO_ERROR is asked only when
            // epoll says something went wrong; a syscall less per connection).
            let failed = flags.contains(.error) || flags.contains(.hangup)
            let e = failed ? Socket.pendingError(fd) : 0
            if e == 0 && !failed {
                backendConnected(r, svc, now: now)
            } else {
                if let t = r.backendToken { unregister(fd, token: t) }
                retryOrFail(r, svc, e == 0 ? ECONNREFUSED : e, now: now)
            }
        case .relaying:
            relayMoves(r, now: now)
        }
    }

    private func relayMoves(_ r: Relay, now: Instant) {
        switch r.pump(now: now, pipes: pipePool) {
        case .goOn: break
        case .finished: endRelay(r, failed: nil, now: now)
        case .failed(let why): endRelay(r, failed: why, now: now, reset: true)
        }
    }

    /// A relay's deadline: its next connect attempt, giving up, or its
    /// ProxyIdleTimeoutSec= check.
    func relayDeadline(_ id: UInt64) -> Instant? {
        guard let r = relays[id] else { return nil }
        let idle = services[r.service]?.prepared.config.proxyIdleTimeout.map { r.lastTraffic + $0 }
        return [r.retryAt, r.giveUpAt, idle].compactMap { $0 }.min()
    }

    func relayDue(_ id: UInt64, now: Instant) {
        guard let r = relays[id], let svc = services[r.service] else { return }
        if let idle = svc.prepared.config.proxyIdleTimeout, now >= r.lastTraffic + idle {
            // Half-open or forgotten: closed, as systemd-socket-proxyd users ask.
            return endRelay(r, failed: "no traffic for \(idle.porterDescription) (ProxyIdleTimeoutSec=)", now: now, quietly: true)
        }
        if let give = r.giveUpAt, now >= give, r.phase != .relaying {
            return endRelay(r, failed: "the backend did not take it within \(Self.proxyGiveUp.porterDescription)", now: now)
        }
        if r.phase == .waiting, let at = r.retryAt, now >= at {
            r.retryAt = nil
            proxyWork(svc, now: now)
        }
    }

    // MARK: The end

    /// Closes a relay; `failed` says why it was not served to its end.
    func endRelay(_ r: Relay, failed why: String?, now: Instant, reset: Bool = false, quietly: Bool = false) {
        guard relays.removeValue(forKey: r.id) != nil else { return }
        // Closing takes the fds out of epoll: only porter holds them.
        loop.forget(token: r.clientToken)
        if let t = r.backendToken { loop.forget(token: t) }
        let up = r.up.moved, down = r.down.moved
        r.close(reset: reset, pipes: reset ? nil : pipePool)
        timers.touch(.relay(r.id))
        let svc = services[r.service]
        let unit = svc?.name ?? "?"
        svc?.proxy?.relays.remove(r.id)
        svc?.proxy?.waiting.removeAll { $0 == r.id }
        stats.count(unit) {
            $0.bytesToBackend &+= up
            $0.bytesToClient &+= down
            if why != nil && !quietly { $0.failures += 1 }
        }
        if let s = sockets[r.socket] {
            // Built only when it is written: a relay is a hot path.
            func line() -> String {
                "\(unit): connection from \(r.peer) \(why.map { "closed: \($0)" } ?? "relayed"), \(up) bytes in, \(down) out, after \((now - r.since).porterDescription)"
            }
            switch (why == nil || quietly, s.config.logConnections) {
            case (true, .yes): Log.info(line())
            case (true, _), (false, .no): Log.debug(line())
            case (false, _): failure(s, line(), level: .warning)
            }
            if why != nil && !quietly { stats.count(s.name) { $0.refused["backend", default: 0] += 1 } }
            if let link = s.proxy { perform(link.machine.handle(.instanceExited), socket: s) }
            connectionEnded(s, source: r.peerAddress.ipBytes)
        }
        // The idle time of the backend counts from the end of the last connection.
        if let svc, case .running = svc.machine.state {
            perform(svc.machine.handle(.activity, now: now), service: svc, now: now)
        }
    }

    /// A run of a proxied service ended. If its backend never became
    /// ready, the connections waiting for it fail, with why; otherwise
    /// they wait for the next run, which they start.
    func proxyRunEnded(_ svc: ServiceRuntime, now: Instant) {
        guard let px = svc.proxy else { return }
        defer { px.readyThisRun = false }
        guard !px.readyThisRun else { return }
        let why = "\(svc.name) ended before \(svc.prepared.config.proxyTo!) was ready"
        for id in px.waiting + px.relays.filter({ relays[$0]?.phase == .connecting }) {
            if let r = relays[id] { endRelay(r, failed: why, now: now) }
        }
        failFlows(svc, why, now: now)
    }

    /// At shutdown: every relay closes (the services stop anyway).
    func closeRelays(now: Instant) {
        for r in Array(relays.values) { endRelay(r, failed: nil, now: now, quietly: true) }
    }
}
