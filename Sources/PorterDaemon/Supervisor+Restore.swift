import Glibc
import PorterCore
import PorterSys

/// The new image's side of an upgrade: it starts as porter always does
/// (reads porter.conf and the units, sets every unit up) but takes what the
/// old image handed over instead of making it anew — each listening socket
/// by its address (AdoptionPool), the control, metrics and notify sockets,
/// the pid file and its lock, journal pipes by name — and then puts every
/// unit and child back in the state it was in, by unit name. A unit whose
/// file changed on disk since comes back under its new definition, as
/// after a reload; processes of units that are gone are stopped and
/// reaped. When the state cannot be read (a porter that does not know its
/// version), only the fds are taken: no socket is lost, the counts are.
final class Restoration {
    let handover: UpgradeHandover
    let state: UpgradeState?
    /// Handed fds that found a taker; the rest are closed at the end.
    var used: Set<Int32> = []
    /// Services whose MAINPID= process ended while porter was exec'ing.
    var mainGone: [UnitID] = []

    init(_ handover: UpgradeHandover) {
        self.handover = handover
        var decoded: UpgradeState? = nil
        if let json = handover.state {
            do { decoded = try JSONCoding.decode(UpgradeState.self, from: json) } catch {
                Log.error("upgrade: the state of porter \(handover.header.porter) cannot be read (\(error)); keeping its sockets, starting its units afresh")
            }
        } else if let why = handover.stateProblem {
            Log.error("upgrade: \(why); keeping its sockets, starting its units afresh")
        }
        state = decoded
    }

    func take(_ role: String, name: String? = nil) -> FileDescriptor? {
        guard let h = handover.header.fds.first(where: { $0.role == role && (name == nil || $0.name == name) && !used.contains($0.fd) }) else { return nil }
        used.insert(h.fd)
        return FileDescriptor(h.fd)
    }

    func take(_ fd: Int32?) -> FileDescriptor? {
        guard let fd, handover.header.fds.contains(where: { $0.fd == fd }), used.insert(fd).inserted else { return nil }
        return FileDescriptor(fd)
    }
}

extension Supervisor {
    /// Before any unit is set up: what comes straight from the handover.
    func beginRestore(_ r: Restoration) {
        restoration = r
        adoption = AdoptionPool(r.handover.fds("listen").map { r.used.insert($0.rawValue); return $0 }, origin: "upgrade")
        if let fd = r.take("notify") {
            let n = NotifySocket(adopting: fd, address: "@porter-notify-\(Processes.currentPID)")
            if let token = try? register(n.fd, .notify) {
                notify = n
                _ = token
            }
        }
        for h in r.handover.header.fds where h.role == "journal-read" {
            guard let name = h.name, let read = r.take(h.fd), let write = r.take("journal-write", name: name) else { continue }
            let pending = r.state?.journals.first { $0.name == name }?.pending ?? []
            let j = JournalPipe(adopting: read, write: write, name: name, pending: pending)
            do { j.token = try register(j.read, .journal(j)) } catch { j.close(); continue }
            journals.append(j)
        }
        guard let s = r.state else { return }
        stats.units = s.units
        stats.porter = s.counters
        stats.started = s.started
        paused = Set(s.paused.compactMap(UnitName.parse))
        if let l = s.childFileLimit, l.count == 2 { childFileLimit = (l[0], l[1]) }
        strayControls.formUnion(s.strays)
        let now = MonotonicClock.now()
        for l in s.leftovers {
            var g = LeftoverGroup(unit: l.unit, kill: l.kill)
            g.killAt = l.killAt
            g.killed = l.killed
            adoptMembers(of: l.group, into: &g)
            if !g.members.isEmpty { leftovers[l.group] = g }
        }
        for o in s.orphans { orphans[o.pid] = o }
        _ = now
    }

    /// The control socket, metrics listener or pid file the old image
    /// had, when this one has the same (`name`: its path or address);
    /// otherwise it is closed.
    func restoredOwn(_ role: String, _ name: String) -> FileDescriptor? {
        guard let r = restoration, let h = r.handover.header.fds.first(where: { $0.role == role }), let fd = r.take(h.fd) else { return nil }
        if h.name == name { return fd }
        fd.close()
        return nil
    }

    /// Between adding the units and watching anything: every unit's and
    /// child's state back as it was.
    func restoreUnits() {
        guard let r = restoration, let s = r.state else { return }
        let now = MonotonicClock.now()
        for st in s.sockets {
            guard let id = socketIndex[UnitName.parse(st.name) ?? UnitName.parse("x.socket")!], let rt = sockets[id] else { continue }
            rt.accepted = st.accepted
            // The connections open at the upgrade still count against MaxConnections=.
            if var machine = st.accept, let limit = rt.acceptMachine?.maxConnections {
                if machine.maxConnections != limit { _ = machine.handle(.limit(limit)) }
                rt.acceptMachine = machine
            }
        }
        for st in s.services { restoreService(st, r, now: now) }
        for st in s.instances { restoreInstance(st, r) }
        own.nextRelay = max(own.nextRelay, s.nextRelay)
        for st in s.relays { restoreRelay(st, r, now: now) }
        for st in s.flows { restoreFlow(st, r, now: now) }
        for st in s.builtins ?? [] { restoreBuiltin(st, r, now: now) }
        for st in s.paths {
            guard let name = UnitName.parse(st.name), let id = pathIndex[name], let p = paths[id] else { continue }
            if let jobs = st.jobs, let q = p.queue {
                q.jobs = jobs
                q.counted = st.counted
            }
            if let trigger = st.trigger, let link = p.link { link.trigger = trigger }
            p.fired = st.fired
        }
        // The pipes go to the units that log through them.
        for p in currentPrepared().values where p.journal == nil {
            p.journal = journals.first { $0.name == (p.config.syslogIdentifier ?? p.config.name.description) }
        }
    }

    private func restoreService(_ st: UpgradeState.ServiceState, _ r: Restoration, now: Instant) {
        guard !st.retired, let name = UnitName.parse(st.name), let id = serviceIndex[name], let s = services[id] else {
            // Its unit is gone: what still runs of it is stopped, reaped and counted.
            for pid in st.mainPIDs { orphans[pid] = .init(pid: pid, unit: st.name, kill: st.kill, group: st.group) }
            strayControls.formUnion(st.controlPIDs)
            for stored in st.stored { r.take(stored.fd)?.close() }
            if let group = st.group, !st.mainPIDs.isEmpty {
                if case .stopping = st.machine.state {} else { Signals.send(st.kill.killSignal, to: group, group: true) }
                trackLeftovers(group: group, unit: st.name, kill: st.kill, now: now)
            }
            return
        }
        s.machine = ServiceMachine(name: s.name, policy: s.prepared.config.policy, restoring: st.machine)
        // What the assignment noticed is history: nothing runs twice.
        s.stopBegan = false
        s.becameReady = false
        s.runEnded = false
        s.idleStopBegan = false
        for pid in st.mainPIDs { servicePIDs[pid] = id }
        for pid in st.controlPIDs { controlPIDs[pid] = id }
        s.group = st.group
        s.forkParentStart = st.forkParentStart
        s.mainSearch = st.mainSearch.map { MainSearch(since: $0.since, began: $0.began, next: $0.next, ambiguousSince: $0.ambiguousSince) }
        s.stored = st.stored.compactMap { x in r.take(x.fd).map { ($0, x.name) } }
        s.status = st.status
        s.queuedAtStart = st.queuedAtStart
        s.mainSequence = st.mainSequence
        s.runStartedOK = st.runStartedOK
        s.skipCommands = st.skipCommands
        s.startPostRan = st.startPostRan
        s.lastExit = st.lastExit
        s.lastOutcome = st.lastOutcome
        if let ready = st.proxyReady { s.proxy?.readyThisRun = ready }
        if let c = st.control, let purpose = ControlRun.Purpose(rawValue: c.purpose) {
            let run = ControlRun(purpose, c.sequence)
            run.pid = c.pid
            run.deadline = c.deadline
            run.timedOut = c.timedOut
            run.deferred = c.deferred
            run.then = c.then
            s.control = run
        }
        if let pid = st.mainWatchPID {
            if let fd = Processes.pidfd(pid), let token = try? register(fd, .mainExit(service: id)) {
                s.mainWatch = (pid, fd, token)
            } else {
                s.mainWatch = nil
                r.mainGone.append(id)
                servicePIDs[pid] = nil
                s.mainWatchPendingPID = pid
            }
        }
    }

    private func restoreInstance(_ st: UpgradeState.InstanceState, _ r: Restoration) {
        let owner: InstanceOwner
        if let name = st.socket.flatMap(UnitName.parse), let id = socketIndex[name] {
            owner = .socket(id)
        } else if let name = st.path.flatMap(UnitName.parse), let id = pathIndex[name], let file = st.file {
            owner = .path(id, file: file)
        } else {
            // Its unit is gone: reaped and logged all the same.
            owner = .socket(UnitID.nowhere)
        }
        var watch: Instance.IdleWatch? = nil
        if let fd = r.take(st.watchFD) {
            watch = Instance.IdleWatch(connection: fd, token: nil)
            if st.watchUnix {
                watch?.token = try? loop.register(fd, .instanceActivity(pid: st.pid), events: [.readable, .writable, .edgeTriggered])
            }
        }
        var inst = Instance(owner: owner, ignoreFailure: st.ignoreFailure, executable: st.executable,
                            journal: st.journal.flatMap { n in journals.first { $0.name == n } }, machine: st.machine, watch: watch)
        inst.sequence = st.sequence
        inst.held = st.held.map { h in
            Instance.HeldConnection(fd: r.take(h.fd), info: h.info, tcp: h.tcp, since: h.since, counted: h.counted)
        }
        inst.peer = st.peer
        inst.started = st.started
        inst.template = st.template
        inst.source = st.source
        if case .socket(let id) = owner { recount(id, st.source, now: MonotonicClock.now()) }
        instances[st.pid] = inst
    }

    /// A connection open before the upgrade counts again for its source,
    /// so MaxConnectionsPerSource= holds across it (and its end releases
    /// what it took).
    private func recount(_ socket: UnitID, _ source: [UInt8]?, now: Instant) {
        guard let source, let s = sockets[socket], s.sources != nil else { return }
        _ = s.sources!.admit(source, now: now)
    }

    /// A relayed connection, with its pipes and what is in them; watched
    /// again (edge-triggered: the kernel reports at once what is ready, so
    /// nothing that came during the exec waits).
    private func restoreRelay(_ st: UpgradeState.RelayState, _ r: Restoration, now: Instant) {
        guard let client = r.take(st.client) else { return }
        let backend = r.take(st.backend)
        func pipe(_ d: UpgradeState.RelayState.Direction) -> (FileDescriptor, FileDescriptor)? {
            guard let a = r.take(d.read), let b = r.take(d.write) else { return nil }
            return (a, b)
        }
        let up = pipe(st.up), down = pipe(st.down)
        guard let socket = UnitName.parse(st.socket).flatMap({ socketIndex[$0] }), let service = UnitName.parse(st.service).flatMap({ serviceIndex[$0] }),
              let svc = services[service], let px = svc.proxy else {
            // Its units are gone: the connection goes too.
            for fd in [client, backend, up?.0, up?.1, down?.0, down?.1].compactMap({ $0 }) { fd.close() }
            return
        }
        // Only the address's bytes matter now (the per-source count); the
        // port is in the saved text.
        let peer = st.source.map { $0.count == 4 ? SocketAddress(ipv4: $0, port: 0) : SocketAddress(ipv6: $0, port: 0, scope: 0) } ?? SocketAddress()
        let relay = Relay(id: st.id, client: client, socket: socket, service: service, peer: peer, now: st.since)
        relay.peerText = st.peer
        recount(socket, st.source, now: now)
        relay.backend = backend
        relay.phase = st.phase
        relay.prefix = st.prefix
        relay.lastTraffic = st.lastTraffic
        relay.retryAt = st.retryAt
        relay.attempts = st.attempts
        relay.giveUpAt = st.giveUpAt
        func direction(_ d: UpgradeState.RelayState.Direction, _ p: (FileDescriptor, FileDescriptor)?) -> Relay.Direction {
            Relay.Direction(pipe: p.map { ($0.0, $0.1) }, capacity: d.capacity, inPipe: d.inPipe, eof: d.eof,
                            shutDown: d.shutDown, moved: d.moved, bulk: d.bulk ?? false)
        }
        relay.up = direction(st.up, up)
        relay.down = direction(st.down, down)
        let events: Epoll.Events = [.readable, .writable, .readHangup, .edgeTriggered]
        guard let token = try? loop.register(client, .relay(relay.id), events: events) else {
            relay.close(reset: true, pipes: nil)
            return
        }
        relay.clientToken = token
        if let backend { relay.backendToken = try? loop.register(backend, .relayBackend(relay.id), events: events) }
        relays[relay.id] = relay
        px.relays.insert(relay.id)
        if relay.phase == .waiting { px.waiting.append(relay.id) }
        timers.touch(.relay(relay.id))
        _ = now
    }

    /// A connection to a built-in service, where it was in its exchange.
    private func restoreBuiltin(_ st: UpgradeState.BuiltinState, _ r: Restoration, now: Instant) {
        guard let fd = r.take(st.fd) else { return }
        guard let id = UnitName.parse(st.socket).flatMap({ socketIndex[$0] }), let s = sockets[id], let link = s.builtin,
              link.service.rawValue == st.service else {
            fd.close()  // its unit is gone, or serves something else now
            return
        }
        let c = BuiltinConnection(id: st.id, fd: fd, socket: id, link: link, peer: st.peer, source: st.source, now: st.since)
        c.pending = st.pending
        c.clientDone = st.clientDone
        c.offset = st.offset
        c.bytesIn = st.bytesIn
        c.bytesOut = st.bytesOut
        c.interest = c.wanted
        guard let token = try? loop.register(fd, .builtin(c.id), events: c.interest) else {
            fd.close()
            return
        }
        c.token = token
        builtins[c.id] = c
        recount(id, st.source, now: now)
    }

    private func restoreFlow(_ st: UpgradeState.FlowState, _ r: Restoration, now: Instant) {
        let backend = r.take(st.backend)
        guard let socket = UnitName.parse(st.socket).flatMap({ socketIndex[$0] }), let s = sockets[socket], let link = s.proxy,
              let service = UnitName.parse(st.service).flatMap({ serviceIndex[$0] }), let svc = services[service], let px = svc.proxy,
              st.client.count == MemoryLayout<sockaddr_storage>.size else {
            backend?.close()
            return
        }
        var client = SocketAddress()
        withUnsafeMutableBytes(of: &client.storage) { $0.copyBytes(from: st.client) }
        client.length = socklen_t(st.clientLength)
        let f = Flow(id: st.id, socket: socket, listener: st.listener, service: service, client: client, now: st.lastTraffic)
        f.held = st.held
        f.toBackend = st.toBackend
        f.toClient = st.toClient
        if let backend {
            f.backend = backend
            f.token = try? loop.register(backend, .flow(f.id))
        }
        flows[f.id] = f
        link.flows[f.key] = f.id
        px.flows.insert(f.id)
        _ = now
    }

    /// After every unit is set up: the sockets watched as the restored
    /// machines say, unused fds closed, the caller of `porter upgrade` told.
    func finishRestore() {
        guard let r = restoration else { return }
        restoration = nil
        let now = MonotonicClock.now()
        if r.state != nil {
            for s in services where !s.retired {
                for t in s.triggers {
                    // A proxied service's sockets are porter's to accept on, whatever the service does.
                    guard let sock = sockets[t], sock.proxy == nil else { continue }
                    switch s.machine.state {
                    case .listening: if !sock.watched { watch(socket: sock) }
                    case .running, .freezing:
                        unwatch(socket: sock)
                        if s.machine.policy.idleTimeout != nil { watch(socket: sock, activityOf: s.id) }
                    case .starting, .stopping, .waitingRestart, .holdingOff, .stopped, .remaining:
                        unwatch(socket: sock)
                    }
                }
            }
            for s in sockets where !(s.acceptMachine?.canAccept ?? true) { watchAccepting(s) }
            refreshActivation(now: now)
        }
        var upgrader: Exchange? = nil
        if let fd = r.take("exchange") {
            try? fd.setNonBlocking(true)
            let cred = Socket.peerCredentials(fd) ?? PeerCredentials(pid: 0, uid: 0, gid: 0)
            let e = Exchange(id: own.nextExchange, fd: fd, kind: .control(peer: cred), now: now)
            own.nextExchange += 1
            if let token = try? register(fd, .exchange(e.id)) {
                e.token = token
                exchanges[e.id] = e
                upgrader = e
            } else {
                fd.close()
            }
        }
        for h in r.handover.header.fds where !r.used.contains(h.fd) { FileDescriptor(h.fd).close() }
        FileDescriptor(r.handover.memfd).close()
        let from = r.handover.header.porter
        let kept = servicePIDs.count + instances.count + orphans.count
        let message: String
        if r.state != nil {
            message = "upgraded from porter \(from) to \(Commands.version) (pid \(Processes.currentPID)): \(sockets.count) sockets, \(kept) processes and every count kept"
        } else {
            message = "upgraded from porter \(from) to \(Commands.version) (pid \(Processes.currentPID)): its state could not be read; \(sockets.count) sockets kept, counts and processes' state lost"
        }
        Log.info("upgrade: " + message)
        if let upgrader {
            answer(upgrader, r.state != nil ? ControlReply(result: .object(["message": .string(message), "from": .string(from),
                                                                            "version": .string(Commands.version)]))
                                            : ControlReply(error: message))
        }
        // A MAINPID= process that ended while porter was being replaced.
        for id in r.mainGone {
            guard let s = services[id], let pid = s.mainWatchPendingPID else { continue }
            s.mainWatchPendingPID = nil
            Log.info("\(s.name): main pid \(pid) exited during the upgrade")
            mainExited(s, pid: pid, result: .success, progress: true)
        }
    }

    /// A process of a unit the configuration no longer has ended.
    func orphanExited(_ pid: Int32, _ o: UpgradeState.OrphanState, _ status: ExitStatus) {
        Log.info("\(o.unit): pid \(pid) (its unit is gone) exited, \(status)")
        stats.exited(o.unit, instance: o.unit, pid: pid, status, success: status.isSuccess, now: MonotonicClock.now())
    }
}
