import Glibc
import PorterCore
import PorterSys

/// porter's own sockets: the control socket and the metrics endpoint,
/// served on the loop like everything else. A connection is an Exchange:
/// one bounded request, one answer, then it closes; nothing a client does
/// (send slowly, send too much, never read) blocks the loop or grows it.
extension Supervisor {
    /// Opens the control socket (unless disabled) and the metrics endpoint
    /// (if configured). A control socket another porter holds is fatal:
    /// two porters would fight over the same units.
    func openOwnSockets(controlOverride: String?) throws(OwnSockets.Refusal) {
        let path = OwnSockets.controlPath(settings, override: controlOverride, environment: porterEnvironment)
        // An upgrade hands over the socket clients already know.
        let inherited = restoredOwn("control", path ?? "")
        if own.control == nil, let path {
            let fd: FileDescriptor
            if let inherited { fd = inherited } else { fd = try OwnSockets.openControl(path) }
            do {
                own.controlToken = try register(fd, .controlListener)
            } catch {
                fd.close()
                throw OwnSockets.Refusal(description: "\(path): cannot watch it: \(error)")
            }
            own.control = fd
            own.controlPath = path
        }
        applyMetricsListen()
    }

    /// MetricsListen= as the settings say now: bound, moved or closed. A
    /// failure is logged; porter runs on without the endpoint.
    func applyMetricsListen() {
        let inherited = restoredOwn("metrics", settings.metricsListen?.description ?? "")
        if let m = own.metrics, m.address != settings.metricsListen {
            unregister(m.fd, token: own.metricsToken)
            m.fd.close()
            own.metrics = nil
            Log.info("metrics: no longer listening on \(m.address)")
        }
        guard own.metrics == nil, let address = settings.metricsListen else {
            inherited?.close()
            return
        }
        do {
            let fd = try inherited ?? OwnSockets.openMetrics(address)
            do { own.metricsToken = try register(fd, .metricsListener) } catch {
                fd.close()
                throw ListenError(step: "epoll_ctl", errno: error.errno)
            }
            own.metrics = (fd, address)
            Log.info("metrics: serving GET /metrics on \(address)")
        } catch {
            Log.error("\(settings.at("MetricsListen")): \(address): \(error); no metrics endpoint")
        }
    }

    func closeOwnSockets() {
        if let fd = own.control {
            unregister(fd, token: own.controlToken)
            fd.close()
            own.control = nil
            if let path = own.controlPath { UnixSocketFile.removeSocketFile(path) }
        }
        if let m = own.metrics {
            unregister(m.fd, token: own.metricsToken)
            m.fd.close()
            own.metrics = nil
        }
    }

    /// Accepts what waits, up to the limit of open exchanges.
    func acceptExchanges(control: Bool) {
        guard let listener = control ? own.control : own.metrics?.fd else { return }
        let now = MonotonicClock.now()
        while exchanges.count < Exchange.maxOpen {
            var peer = SocketAddress()
            let accepted: FileDescriptor?
            do { accepted = try Socket.accept(listener, peer: &peer) } catch {
                Log.warning("\(control ? "control socket" : "metrics"): accept: \(error.reason)")
                return
            }
            guard let fd = accepted else { return }
            try? fd.setNonBlocking(true)
            let kind: Exchange.Kind
            if control {
                guard let cred = Socket.peerCredentials(fd) else { fd.close(); continue }
                kind = .control(peer: cred)
            } else {
                kind = .metrics
            }
            let e = Exchange(id: own.nextExchange, fd: fd, kind: kind, now: now)
            own.nextExchange += 1
            do { e.token = try register(fd, .exchange(e.id)) } catch {
                fd.close()
                continue
            }
            exchanges[e.id] = e
        }
        if exchanges.count >= Exchange.maxOpen { pauseOwnListeners(true) }
    }

    /// Root and porter's own user may use the control socket (its mode
    /// already keeps others out; this holds when someone loosened it).
    func mayControl(_ cred: PeerCredentials) -> Bool {
        cred.uid == 0 || cred.uid == geteuid()
    }

    private func refuse(_ e: Exchange, _ cred: PeerCredentials) {
        stats.porter.controlRefused += 1
        if let note = own.refusalLog.admit(now: MonotonicClock.now()) {
            Log.warning("control socket: refused a request from pid \(cred.pid) uid \(cred.uid): only root and uid \(geteuid()) may use it\(note)")
        }
        answer(e, ControlReply(error: "permission denied: uid \(cred.uid) may not use porter's control socket (root and uid \(geteuid()) only)"))
    }

    private func pauseOwnListeners(_ pause: Bool) {
        guard own.acceptPaused != pause else { return }
        own.acceptPaused = pause
        for (fd, token, source) in [(own.control, own.controlToken, Source.controlListener),
                                    (own.metrics?.fd, own.metricsToken, Source.metricsListener)] {
            guard let fd else { continue }
            if pause {
                unregister(fd, token: token)
            } else if let t = try? register(fd, source) {
                if case .controlListener = source { own.controlToken = t } else { own.metricsToken = t }
            }
        }
    }

    /// The request is in and its answer comes later: the exchange is
    /// watched for nothing but a hang-up (epoll always reports one), so a
    /// client that has shut down its writing side does not keep the
    /// level-triggered loop spinning on its end of file.
    func park(_ e: Exchange) {
        e.waiting = true
        timers.touch(.exchanges)
        unregister(e.fd, token: e.token)
        if let t = try? register(e.fd, .exchange(e.id), events: []) { e.token = t } else { end(e) }
    }

    /// Something arrived on an exchange, or its peer can take more.
    func exchangeReady(_ e: Exchange, _ flags: Epoll.Events) {
        if e.output != nil {
            if e.flush() { end(e) }
            return
        }
        guard !e.waiting else {
            // Parked: only a hang-up comes here; nobody is left to answer.
            if flags.contains(.hangup) || flags.contains(.error) { end(e) }
            return
        }
        let result = e.readAvailable()
        if case .closed = result { return end(e) }
        switch e.kind {
        case .control(let cred):
            guard mayControl(cred) else {
                // Answered once its request is in (or it hung up): closing
                // on unread data would reset the connection before the
                // client could read why.
                let requestIn: Bool
                do { requestIn = try ControlRequest.lineEnd(e.input) != nil } catch { requestIn = true }
                if requestIn || result == .complete { refuse(e, cred) }
                return
            }
            do {
                var line: ArraySlice<UInt8>? = nil
                if let n = try ControlRequest.lineEnd(e.input) {
                    line = e.input[..<n]
                } else if case .complete = result {
                    // EOF without a newline: what came is the request.
                    if e.input.isEmpty { return end(e) }
                    line = e.input[...]
                }
                guard let line else { return }
                let request = try ControlRequest.parse(line)
                stats.porter.controlRequests += 1
                if let reply = handle(request, from: cred, exchange: e) { answer(e, reply) }
            } catch {
                stats.porter.controlRefused += 1
                answer(e, ControlReply(error: error.description))
            }
        case .metrics:
            do {
                if let n = try HTTPRequest.headEnd(e.input) {
                    metricsRequest(e, try HTTPRequest.parse(e.input[..<n]))
                } else if case .complete = result {
                    return end(e)
                }
            } catch {
                answer(e, HTTPRequest.response(status: error.status, reason: error.reason, contentType: "text/plain; charset=utf-8",
                                               body: "\(error.status) \(error.reason)\n"))
            }
        }
    }

    func answer(_ e: Exchange, _ reply: ControlReply) {
        answer(e, Array((reply.json.text + "\n").utf8))
    }

    /// Starts sending `bytes`; what the peer cannot take yet goes out as
    /// it drains (EPOLLOUT), within the exchange's time.
    func answer(_ e: Exchange, _ bytes: [UInt8]) {
        guard exchanges[e.id] != nil, e.output == nil else { return }
        e.waiting = false
        e.output = bytes
        timers.touch(.exchanges)
        if e.flush() { return end(e) }
        unregister(e.fd, token: e.token)
        if let t = try? register(e.fd, .exchange(e.id), events: .writable) { e.token = t } else { end(e) }
    }

    /// Closes an exchange; the listeners are watched again below the limit.
    func end(_ e: Exchange) {
        guard exchanges.removeValue(forKey: e.id) != nil else { return }
        unregister(e.fd, token: e.token)
        e.fd.close()
        if exchanges.count < Exchange.maxOpen { pauseOwnListeners(false) }
    }

    /// Exchanges past their time are closed, answered or not.
    func exchangesDue(now: Instant) {
        for e in exchanges.values where !e.waiting && e.deadline <= now { end(e) }
    }

    func register(_ fd: FileDescriptor, _ source: Source, events: Epoll.Events) throws(SysError) -> UInt64 {
        try loop.register(fd, source, events: events)
    }
}
