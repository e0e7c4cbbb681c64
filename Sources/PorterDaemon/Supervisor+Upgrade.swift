import Glibc
import PorterCore
import PorterSys

/// `porter upgrade` (or SIGUSR2): porter re-executes the binary on disk
/// in place. The pid stays, so every child stays porter's; the listening
/// sockets, the control and notify sockets, journal pipes and everything
/// else porter holds stay open across execve(2) (close-on-exec cleared on
/// exactly those), and a memfd carries what they are and the state of
/// every unit and child. No socket closes, so no connection is refused:
/// clients that arrive meanwhile wait in the backlog.
///
/// Before porter lets go of its image, the new binary must run: it is
/// started once with `--version` (as a child of the loop, reaped like any
/// other), and only when that exits 0 does porter exec it. If execve(2)
/// fails, porter goes on as it was and says why.
struct PendingUpgrade {
    var pid: Int32
    var path: String
    /// The `porter upgrade` exchange waiting for the outcome (nil: SIGUSR2).
    var requester: UInt64?
    var output: FileDescriptor
    var deadline: Instant
}

extension Supervisor {
    static let upgradeCheckLimit = Duration.seconds(10)

    func upgradeRequested(by e: Exchange?) -> ControlReply? {
        guard !stopping else { return ControlReply(error: "porter is stopping; not upgrading") }
        guard pendingUpgrade == nil else { return ControlReply(error: "an upgrade is under way already") }
        guard let path = Commands.executable else { return ControlReply(error: "cannot tell which file porter was started from") }
        guard access(path, X_OK) == 0 else {
            return ControlReply(error: "\(path): \(SysError.describe(SysError.current)); not upgrading")
        }
        let pipe: (read: FileDescriptor, write: FileDescriptor)
        do { pipe = try makePipe(nonBlocking: false) } catch { return ControlReply(error: "upgrade: \(error)") }
        defer { pipe.write.close() }
        let plan = SpawnPlan(path: path, arguments: [path, "--version"], environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                             fds: [devNull.rawValue, pipe.write.rawValue, pipe.write.rawValue])
        switch spawner.spawn(plan) {
        case .success(let pid):
            pendingUpgrade = PendingUpgrade(pid: pid, path: path, requester: e?.id, output: pipe.read,
                                            deadline: MonotonicClock.now() + Self.upgradeCheckLimit)
            if let e { park(e) }
            Log.info("upgrade: checking \(path) (pid \(pid) runs it with --version)")
            return nil
        case .failure(let error):
            pipe.read.close()
            if let pid = error.pid { failedSpawns.insert(pid) }
            Log.error("upgrade: \(path) cannot be started: \(error); not upgrading")
            return ControlReply(error: "\(path) cannot be started: \(error); not upgrading")
        }
    }

    /// The check of the new binary exited (or ran out of time).
    func upgradeCheckEnded(_ status: ExitStatus?) {
        guard let pending = pendingUpgrade else { return }
        pendingUpgrade = nil
        var buffer = [UInt8](repeating: 0, count: 512)
        try? pending.output.setNonBlocking(true)
        let n = buffer.withUnsafeMutableBytes { (try? pending.output.read(into: $0)) ?? nil } ?? 0
        pending.output.close()
        let said = String(decoding: buffer[0..<max(0, n)], as: UTF8.self).trimmingWhitespace()
        let requester = pending.requester.flatMap { exchanges[$0] }
        guard let status, status.isSuccess, said.hasPrefix("porter ") else {
            let why = status.map { "exited with \($0)" } ?? "did not exit within \(Self.upgradeCheckLimit.porterDescription)"
            Log.error("upgrade: \(pending.path) --version \(why)\(said.isEmpty ? "" : ", saying \(Quote.value(said))"); not upgrading, still porter \(Commands.version)")
            if let requester { answer(requester, ControlReply(error: "\(pending.path) --version \(why); not upgrading")) }
            return
        }
        execUpgrade(path: pending.path, to: said, requester: requester)
    }

    /// A check that hangs is killed at its deadline.
    func upgradeCheckDue(now: Instant) {
        guard let pending = pendingUpgrade, pending.deadline <= now else { return }
        Signals.send(SIGKILL, to: pending.pid, group: false)
        strayControls.insert(pending.pid)
        upgradeCheckEnded(nil)
    }

    /// Hands everything over and replaces the image. Returns only when
    /// execve(2) failed; then everything is as it was.
    private func execUpgrade(path: String, to newVersion: String, requester: Exchange?) {
        for j in journals { j.flush() }
        // Callers waiting for something else hear that porter moves on.
        for e in exchanges.values where e.id != requester?.id && e.waiting {
            answer(e, ControlReply(error: "porter upgraded while this was under way; see the log for how it ended"))
        }
        var handed: [UpgradeHandover.Handed] = []
        let state = captureState(requester: requester, handed: &handed)
        let memfd: FileDescriptor
        // A test (and an admin curious what a downgrade does) can make the
        // state look like another version's: the new image then keeps the
        // sockets only.
        let version = porterEnvironment["PORTER_UPGRADE_STATE_VERSION"].flatMap { Int($0) } ?? UpgradeHandover.stateVersion
        do {
            let json = JSON.object([
                "header": try JSONCoding.encode(UpgradeHandover.Header(format: UpgradeHandover.format, version: version,
                                                                       porter: Commands.version, fds: handed)),
                "state": try JSONCoding.encode(state),
            ])
            memfd = try Processes.memoryFile("porter-upgrade")
            try memfd.write(json.text)
        } catch {
            Log.error("upgrade: cannot write the state to hand over: \(error); not upgrading")
            if let requester { answer(requester, ControlReply(error: "cannot write the state to hand over: \(error)")) }
            return
        }
        let fds = handed.map { FileDescriptor($0.fd) } + [memfd]
        for fd in fds { try? fd.setCloseOnExec(false) }
        var environment = Commands.environment().filter { $0.key != UpgradeHandover.variable }.map { "\($0.key)=\($0.value)" }
        environment.append("\(UpgradeHandover.variable)=\(memfd.rawValue)")
        Log.info("upgrade: porter \(Commands.version) -> \(newVersion.dropFirst(7)): handing over \(sockets.count) sockets, \(servicePIDs.count + instances.count) processes")
        let failure = Processes.replaceImage(path: path, arguments: CommandLine.arguments, environment: environment.sorted())
        // Still here: the old image goes on as before.
        for fd in fds { try? fd.setCloseOnExec(true) }
        memfd.close()
        Log.error("upgrade: \(failure); still porter \(Commands.version)")
        if let requester { answer(requester, ControlReply(error: "\(failure); still porter \(Commands.version)")) }
    }

    /// What the next image needs, and the fds it needs open, with their roles.
    func captureState(requester: Exchange?, handed: inout [UpgradeHandover.Handed]) -> UpgradeState {
        func hand(_ fd: FileDescriptor, _ role: String, _ name: String? = nil) {
            handed.append(UpgradeHandover.Handed(fd: fd.rawValue, role: role, name: name))
        }
        for s in sockets { for fd in s.fds { hand(fd, "listen", s.name) } }
        if let fd = own.control { hand(fd, "control", own.controlPath) }
        if let m = own.metrics { hand(m.fd, "metrics", m.address.description) }
        if let p = own.pidFile { hand(p.fd, "pidfile", p.path) }
        if let n = notify { hand(n.fd, "notify") }
        if let requester { hand(requester.fd, "exchange") }
        let journalStates = journals.map { j -> UpgradeState.Journal in
            hand(j.read, "journal-read", j.name)
            hand(j.write, "journal-write", j.name)
            return UpgradeState.Journal(name: j.name, read: j.read.rawValue, write: j.write.rawValue, pending: j.pendingLine)
        }
        let socketStates = sockets.map { s in
            UpgradeState.SocketState(name: s.name, accept: s.acceptMachine, accepted: s.accepted)
        }
        var serviceStates: [UpgradeState.ServiceState] = []
        for s in services {
            for st in s.stored { hand(st.fd, "stored", s.name) }
            let control = s.control.map { c in
                UpgradeState.ServiceState.Control(purpose: c.purpose.rawValue, sequence: c.sequence, pid: c.pid, deadline: c.deadline,
                                                  timedOut: c.timedOut, deferred: c.deferred, then: c.then)
            }
            serviceStates.append(UpgradeState.ServiceState(
                name: s.name, machine: s.machine.snapshot, kill: s.prepared.kill, retired: s.retired,
                mainPIDs: servicePIDs.filter { $0.value == s.id }.map(\.key), controlPIDs: controlPIDs.filter { $0.value == s.id }.map(\.key),
                group: s.group, mainWatchPID: s.mainWatch?.pid, forkParentStart: s.forkParentStart,
                mainSearch: s.mainSearch.map { .init(since: $0.since, began: $0.began, next: $0.next, ambiguousSince: $0.ambiguousSince) },
                stored: s.stored.map { .init(fd: $0.fd.rawValue, name: $0.name) }, status: s.status, queuedAtStart: s.queuedAtStart,
                control: control, proxyReady: s.proxy?.readyThisRun, mainSequence: s.mainSequence, runStartedOK: s.runStartedOK, skipCommands: s.skipCommands,
                startPostRan: s.startPostRan, lastExit: s.lastExit, lastOutcome: s.lastOutcome))
        }
        var instanceStates: [UpgradeState.InstanceState] = []
        for (pid, inst) in instances {
            var socket: String?, path: String?, file: String?
            switch inst.owner {
            case .socket(let id): socket = sockets[id]?.name
            case .path(let id, let f):
                path = paths[id]?.name
                file = f
            }
            if let w = inst.watch { hand(w.connection, "connection") }
            if let fd = inst.held?.fd { hand(fd, "connection") }
            instanceStates.append(UpgradeState.InstanceState(
                pid: pid, socket: socket, path: path, file: file, ignoreFailure: inst.ignoreFailure, executable: inst.executable,
                journal: inst.journal?.name, machine: inst.machine, watchFD: inst.watch?.connection.rawValue,
                watchUnix: inst.watch?.token != nil, sequence: inst.sequence,
                held: inst.held.map { .init(fd: $0.fd?.rawValue, info: $0.info, tcp: $0.tcp, counted: $0.counted, since: $0.since) },
                peer: inst.peer, started: inst.started, template: inst.template, source: inst.source))
        }
        let pathStates = paths.map { p in
            UpgradeState.PathState(name: p.name, jobs: p.queue?.jobs, counted: p.queue?.counted ?? 0, trigger: p.link?.trigger, fired: p.fired)
        }
        var counters = stats.porter
        counters.upgrades += 1
        var relayStates: [UpgradeState.RelayState] = []
        for r in relays.values {
            guard let socket = sockets[r.socket]?.name, let service = services[r.service]?.name else { continue }
            func direction(_ d: Relay.Direction) -> UpgradeState.RelayState.Direction {
                if let p = d.pipe {
                    hand(p.read, "relay")
                    hand(p.write, "relay")
                }
                return .init(read: d.pipe?.read.rawValue, write: d.pipe?.write.rawValue, capacity: d.capacity, inPipe: d.inPipe,
                             eof: d.eof, shutDown: d.shutDown, moved: d.moved, bulk: d.bulk)
            }
            hand(r.client, "relay")
            if let b = r.backend { hand(b, "relay") }
            relayStates.append(.init(id: r.id, socket: socket, service: service, client: r.client.rawValue, backend: r.backend?.rawValue,
                                     phase: r.phase, up: direction(r.up), down: direction(r.down), prefix: r.prefix, peer: r.peer,
                                     since: r.since, lastTraffic: r.lastTraffic, retryAt: r.retryAt, attempts: r.attempts, giveUpAt: r.giveUpAt,
                                     source: r.peerAddress.ipBytes))
        }
        var flowStates: [UpgradeState.FlowState] = []
        for f in flows.values {
            guard let socket = sockets[f.socket]?.name, let service = services[f.service]?.name else { continue }
            if let b = f.backend { hand(b, "relay") }
            let raw = withUnsafeBytes(of: f.client.storage) { Array($0) }
            flowStates.append(.init(id: f.id, socket: socket, listener: f.listener, service: service, client: raw,
                                    clientLength: UInt32(f.client.length), backend: f.backend?.rawValue, held: f.held,
                                    lastTraffic: f.lastTraffic, toBackend: f.toBackend, toClient: f.toClient))
        }
        var builtinStates: [UpgradeState.BuiltinState] = []
        for c in builtins.values {
            guard let socket = sockets[c.socket], socket.builtin === c.link else { continue }
            hand(c.fd, "builtin")
            builtinStates.append(.init(id: c.id, socket: socket.name, service: c.service.rawValue, fd: c.fd.rawValue, peer: c.peer,
                                       source: c.source, since: c.started, pending: c.pending, clientDone: c.clientDone,
                                       offset: c.offset, bytesIn: c.bytesIn, bytesOut: c.bytesOut))
        }
        return UpgradeState(
            porterVersion: Commands.version, started: stats.started, units: stats.units, counters: counters,
            paused: paused.map(\.description).sorted(), childFileLimit: childFileLimit.map { [$0.soft, $0.hard] },
            controlPath: own.controlPath, metricsAddress: own.metrics?.address.description, pidFilePath: own.pidFile?.path,
            journals: journalStates, sockets: socketStates, services: serviceStates, instances: instanceStates, paths: pathStates,
            leftovers: leftovers.map { .init(group: $0.key, unit: $0.value.unit, kill: $0.value.kill, killAt: $0.value.killAt, killed: $0.value.killed) },
            strays: Array(strayControls) + Array(failedSpawns),
            orphans: orphans.map { .init(pid: $0.key, unit: $0.value.unit, kill: $0.value.kill, group: $0.value.group) },
            relays: relayStates, flows: flowStates, nextRelay: own.nextRelay, builtins: builtinStates)
    }
}
