import Glibc
import PorterCore
import PorterSys

/// Accept=yes sockets: one instance per connection.
extension Supervisor {
    /// Connections taken per readable event, so one busy socket cannot
    /// starve the others (and SIGCHLD) for long.
    static let acceptBatch = 64

    func acceptConnections(_ s: SocketRuntime, _ index: Int) {
        let listener = s.fds[index]
        for _ in 0..<Self.acceptBatch {
            // Also false once the machine backs off (an instance could not be watched).
            guard s.instances?.machine.canAccept ?? false else { return }
            var peer = SocketAddress()
            let connection: FileDescriptor
            do {
                guard let c = try Socket.accept(listener, peer: &peer) else { return }
                connection = c
            } catch {
                acceptFailed(s, error)
                return
            }
            stats.count(s.name) { $0.accepted += 1 }
            let now = MonotonicClock.now()
            guard admit(s, peer: peer, connection: connection, now: now) else {
                connection.close()
                continue
            }
            let before = s.instances?.machine.running
            startInstance(s, connection: connection, peer: peer, since: now)
            // No instance took it (a failed condition, a spawn that failed):
            // it is over for the per-source count too.
            if s.instances?.machine.running == before { connectionEnded(s, source: peer.ipBytes) }
            // The child has its own copy by now; porter's is not needed.
            connection.close()
            if triggerLimitHit(s, now: MonotonicClock.now()) { return }
        }
    }

    /// EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays queued and the
    /// listener stays readable, so retrying at once would spin. Pause the
    /// socket for a second instead; clients wait in the backlog.
    private func acceptFailed(_ s: SocketRuntime, _ error: SysError) {
        failure(s, "\(s.name): accept: \(error.reason); pausing this socket for 1s")
        backOff(s)
    }

    /// One second without accepting; clients wait in the backlog.
    private func backOff(_ s: SocketRuntime) {
        guard let i = s.instances else { return }
        perform(i.machine.handle(.acceptFailed(until: MonotonicClock.now() + .seconds(1))), socket: s)
    }

    private func connectionInfo(_ s: SocketRuntime, _ fd: FileDescriptor, _ peer: SocketAddress) -> Connection {
        let number = s.accepted
        s.accepted &+= 1
        let cookie = Socket.cookie(fd)
        if let remote = peer.ipString, let remotePort = peer.port,
           let local = try? Socket.localAddress(fd), let localIP = local.ipString, let localPort = local.port {
            return Connection(number: number, cookie: cookie,
                              peer: .ip(local: localIP, localPort: localPort, remote: remote, remotePort: remotePort, ipv6: peer.isIPv6),
                              source: peer.ipBytes)
        }
        if peer.family == AF_UNIX, let cred = Socket.peerCredentials(fd), cred.pid > 0 {
            return Connection(number: number, cookie: cookie,
                              peer: .unix(pid: cred.pid, uid: cred.uid, gid: cred.gid, pidfdID: Socket.peerPidfdID(fd)))
        }
        return Connection(number: number, cookie: cookie, peer: .unknown)
    }

    private func startInstance(_ s: SocketRuntime, connection fd: FileDescriptor, peer: SocketAddress, since: Instant) {
        guard let p = s.template else { return }
        let info = connectionInfo(s, fd, peer)
        let unitName = p.config.name.withInstance(info.instanceName).description
        if let verdict = conditionCheck.verdict(p.config.unitConditions) {
            // Checked for every connection, as systemd checks each instance.
            stats.count(s.name) { $0.refused["condition", default: 0] += 1 }
            switch verdict {
            case .skip(let why): failure(s, "\(unitName): skipped: \(why); connection closed", level: .info)
            case .fail(let why): failure(s, "\(unitName): failed: \(why); connection closed", level: .warning)
            }
            return
        }
        let tcp = peer.ipString != nil
        if p.config.nonBlocking { try? fd.setNonBlocking(true) }
        if p.config.hasExtraCommands {
            // ExecCondition= ... ExecStopPost= one after another, as for a
            // per-file job; porter holds the connection until ExecStart= has it.
            var seq = CommandSequence(p.config.commands, phases: CommandSequence.Phase.run, success: p.config.successExitStatus)
            if seq.start() != nil {
                guard let copy = try? fd.duplicate() else {
                    stats.count(s.name) { $0.refused["fd-limit", default: 0] += 1 }
                    failure(s, "\(unitName): cannot hold the connection for its commands (the fd limit); connection closed, pausing this socket for 1s")
                    backOff(s)
                    return
                }
                let held = Instance.HeldConnection(fd: copy, info: info, tcp: tcp, since: since)
                startStep(s, p, unitName, held, seq)
                return
            }
        }
        _ = spawnInstance(s, p, unitName, connection: fd, info: info, tcp: tcp, step: nil, sequence: nil, held: nil, since: since)
    }

    /// Starts the current step of a per-connection sequence; one that
    /// cannot start moves on (ExecStopPost= still runs) or ends the instance.
    private func startStep(_ s: SocketRuntime, _ p: PreparedService, _ unit: String, _ held: Instance.HeldConnection,
                           _ sequence: CommandSequence) {
        var seq = sequence
        var held = held
        while let step = seq.current {
            // Every ExecStart= line gets the connection; past them porter lets go of it.
            if [.startPost, .stop, .stopPost].contains(step.phase), let fd = held.fd {
                fd.close()
                held.fd = nil
            }
            let connection = step.phase == .start ? held.fd : nil
            if spawnInstance(s, p, unit, connection: connection, info: held.info, tcp: held.tcp, step: step,
                             sequence: seq, held: held, since: held.since) {
                return
            }
            guard seq.couldNotStart("\(step.label) could not be started") != nil else { break }
        }
        held.fd?.close()
        if case .failed(_, let why) = seq.outcome { failure(s, "\(unit): failed: \(why); connection closed", level: .warning) }
        if held.counted, let actions = s.instances?.machine.handle(.instanceExited) {
            perform(actions, socket: s)
            connectionEnded(s, source: held.info.source)
        }
    }

    /// Spawns one process of an instance: the main one with the connection
    /// (stdin/stdout or fd 3), or one of its commands without it. False
    /// (after saying why) when it could not be started.
    private func spawnInstance(_ s: SocketRuntime, _ p: PreparedService, _ unitName: String, connection fd: FileDescriptor?,
                               info: Connection, tcp: Bool, step: CommandSequence.Step?, sequence: CommandSequence?,
                               held: Instance.HeldConnection?, since: Instant) -> Bool {
        let template = p.config.name.description
        let launch: Launch
        do {
            let instance = try p.instance(info.instanceName)
            var activation = info.environment
            if let seq = sequence, let step, step.phase == .stop || step.phase == .stopPost {
                activation += Self.stopVariables(seq, mainPID: nil)
            }
            launch = try Launch.make(p, instance: instance, socket: fd, listen: fd.map { [($0, "connection")] } ?? [],
                                     activation: activation, devNull: devNull, fileLimit: childFileLimit, step: step,
                                     journal: { () throws(SysError) in try journal(for: p) })
        } catch let error as ValueError {
            stats.count(template) { $0.spawnFailures += 1 }
            failure(s, "\(unitName): \(error.message)")
            return false
        } catch let error as Launch.Failure {
            stats.count(template) { $0.spawnFailures += 1 }
            failure(s, "\(unitName): \(error.message)")
            return false
        } catch {
            stats.count(template) { $0.spawnFailures += 1 }
            failure(s, "\(unitName): \(error)")
            return false
        }
        defer {
            launch.close()
            if launch.isLarge { trimPending = true }
        }
        // IdleTimeoutSec= needs porter's own copy of the connection, made
        // before the spawn: when it cannot be made (the fd limit), the
        // connection is closed with the reason rather than served by an
        // instance nobody would stop (report F8).
        var watcher: Instance.IdleWatch? = nil
        if let fd, p.config.idleTimeout != nil {
            do throws(SysError) {
                watcher = try watchIdle(fd, tcp: tcp)
            } catch {
                stats.count(s.name) { $0.refused["fd-limit", default: 0] += 1 }
                failure(s, "\(unitName): cannot watch IdleTimeoutSec= (\(error)); connection closed, pausing this socket for 1s")
                backOff(s)
                return false
            }
        }
        // Detached: porter goes back to accepting while the child execs; an
        // exec failure is reported when the child is reaped.
        switch spawner.spawnDetached(launch.plan) {
        case .success(let pid):
            let limit = Self.timeLimit(of: step, p.config)
            let machine = InstanceMachine(pid: pid, unit: unitName, kill: p.kill, started: MonotonicClock.now(),
                                          runtimeMax: limit, idleTimeout: fd != nil ? p.config.idleTimeout : nil, measured: tcp)
            if let token = watcher?.token { loop.assign(token, .instanceActivity(pid: pid)) }
            var inst = Instance(owner: .socket(s.id), ignoreFailure: p.config.exec?.ignoreFailure ?? false,
                                executable: launch.plan.path, journal: p.journal, machine: machine, watch: watcher)
            inst.peer = info.remote
            inst.source = info.source
            inst.started = held?.since ?? since
            inst.template = template
            inst.sequence = sequence
            inst.held = held
            // Counted once per connection, at its first process.
            let count = !(held?.counted ?? false)
            inst.held?.counted = true
            instances[pid] = inst
            Log.debug("\(unitName): started pid \(pid)\(step.map { " (\($0.label))" } ?? "")")
            if count {
                stats.count(template) {
                    $0.activations += 1
                    $0.latency.observe(nanoseconds: (MonotonicClock.now() - since).nanoseconds)
                }
                if let actions = s.instances?.machine.handle(.instanceStarted) { perform(actions, socket: s) }
            }
            return true
        case .failure(let error):
            stats.count(template) { $0.spawnFailures += 1 }
            if let watcher { dropIdleWatch(watcher) }
            if let pid = error.pid { failedSpawns.insert(pid) }
            if error.isExecFailure { p.forgetExecutable(launch.plan.path) }
            failure(s, "\(unitName): \(error)")
            return false
        }
    }

    /// One step of a per-connection instance exited: the next one, or the
    /// instance's end. True when the instance goes on.
    private func connectionStepExited(_ s: SocketRuntime, _ inst: Instance, _ status: ExitStatus) -> Bool {
        guard var seq = inst.sequence, let held = inst.held, let p = s.template else {
            inst.held?.fd?.close()
            return false
        }
        // At shutdown nothing new starts, as for per-file jobs.
        if seq.exited(ProcessExit(status)) != nil, !stopping {
            startStep(s, p, inst.unit, held, seq)
            return true
        }
        held.fd?.close()
        switch seq.outcome {
        case .success: break
        case .skipped(let why): Log.info("\(inst.unit): skipped: \(why); connection closed")
        case .failed(_, let why): failure(s, "\(inst.unit): failed: \(why)", level: .warning)
        }
        if case .failed = seq.outcome {
            stats.exited(inst.template, instance: inst.unit, pid: inst.machine.pid, status, success: false, now: MonotonicClock.now())
        } else {
            stats.exited(inst.template, instance: inst.unit, pid: inst.machine.pid, status, success: true, now: MonotonicClock.now())
        }
        return false
    }

    /// Keeps a copy of the connection to see its traffic: TCP_INFO says when
    /// data last went either way; for Unix sockets, the copy is watched
    /// edge-triggered, so each arrival (and each drain of what the service
    /// sent) is one event.
    private func watchIdle(_ fd: FileDescriptor, tcp: Bool) throws(SysError) -> Instance.IdleWatch {
        let copy = try fd.duplicate()
        var watch = Instance.IdleWatch(connection: copy, token: nil)
        if !tcp {
            do { watch.token = try loop.reserve(copy, events: [.readable, .writable, .edgeTriggered]) } catch {
                copy.close()
                throw error
            }
        }
        return watch
    }

    func dropIdleWatch(_ idle: Instance.IdleWatch) {
        if let token = idle.token { unregister(idle.connection, token: token) }
        idle.connection.close()
    }

    /// Runs one event through an instance's machine and performs what it
    /// decides; the kernel is asked about a TCP connection's traffic only
    /// when the machine wants to know.
    func handle(instance pid: Int32, _ event: InstanceMachine.Event, now: Instant) {
        guard var inst = instances[pid] else { return }
        let wasIdle = inst.machine.stoppedIdle
        var work = inst.machine.handle(event, now: now)
        var next = 0
        while next < work.count {
            let action = work[next]
            next += 1
            switch action {
            case .signal(let s): Signals.send(s.signal, to: s.pid, group: s.group)
            case .log(let level, let message): Log.write(level, message)
            case .measureQuiet:
                let quiet = inst.watch.flatMap { Socket.quietFor($0.connection) }.map { Duration.milliseconds(Int64($0)) }
                work += inst.machine.handle(.quiet(quiet), now: now)
            }
        }
        if inst.machine.stoppedIdle && !wasIdle { stats.count(inst.template) { $0.idleStops += 1 } }
        if inst.machine.state == .abandoned {
            // KillMode=none at shutdown: left running, but nothing of porter's stays with it.
            if let w = inst.watch { dropIdleWatch(w) }
            instances[pid] = nil
        } else {
            instances[pid] = inst
        }
    }

    func instanceExited(_ pid: Int32, _ inst: Instance, _ status: ExitStatus) {
        if let w = inst.watch { dropIdleWatch(w) }
        let now = MonotonicClock.now()
        if status == .exited(127), let failed = spawner.failure(of: pid) {
            // It never ran: say why, not "status 127".
            if failed.isExecFailure { template(of: inst.owner)?.forgetExecutable(inst.executable) }
            stats.count(inst.template) { $0.spawnFailures += 1 }
            stats.exited(inst.template, instance: inst.unit, pid: pid, status, success: false, now: now)
            failure(inst.owner, "\(inst.unit): \(failed)")
        } else if let step = inst.sequence?.current {
            // One command of several: the sequence's last line says how the job went.
            let ignored = !status.isSuccess && step.command.ignoreFailure ? " (ignored: '-')" : ""
            Log.info("\(inst.unit): \(step.label) pid \(pid) exited, \(status)\(ignored)")
        } else {
            let ok = status.isSuccess || inst.ignoreFailure || (inst.machine.isStopping && Self.isStopSignal(status, inst.kill))
            stats.exited(inst.template, instance: inst.unit, pid: pid, status, success: ok, now: now)
            // xinetd's log_on_success / log_on_failure: who, which pid, how, how long.
            let line = "\(inst.unit): pid \(pid)\(inst.peer.map { " from \($0)" } ?? "") exited, \(status), after \((now - inst.started).porterDescription)"
            var mode = SocketConfig.LogConnections.yes
            if case .socket(let id) = inst.owner, let s = sockets[id] { mode = s.config.logConnections }
            if ok {
                Log.write(mode == .yes ? .info : .debug, line)
            } else if mode == .no {
                Log.debug(line)
            } else {
                failure(inst.owner, line, level: .warning)
            }
        }
        for sig in inst.kill.leftovers(pid) { Signals.send(sig.signal, to: sig.pid, group: sig.group) }
        // The instance is its group's leader: the group id is its pid.
        trackLeftovers(group: pid, unit: inst.unit, kill: inst.kill, now: MonotonicClock.now())
        switch inst.owner {
        case .socket(let id):
            // Its socket may have been removed by a reload meanwhile.
            guard let s = sockets[id] else { inst.held?.fd?.close(); break }
            if connectionStepExited(s, inst, status) { break }
            if inst.held?.counted ?? true, let actions = s.instances?.machine.handle(.instanceExited) {
                perform(actions, socket: s)
                connectionEnded(s, source: inst.source)
            }
        case .path(let id, let file):
            if let p = paths[id], !jobStepExited(p, inst, file: file, status) {
                jobExited(p, file: file, success: status.isSuccess || inst.ignoreFailure)
            }
        }
        if template(of: inst.owner) == nil { closeUnusedJournals() }
    }

    func template(of owner: InstanceOwner) -> PreparedService? {
        switch owner {
        case .socket(let id): return sockets[id]?.template
        case .path(let id, _): return paths[id]?.template
        }
    }

    /// An event for the socket's accept machine, whichever handler has it
    /// (none for Accept=no), and its actions performed.
    func accept(_ s: SocketRuntime, _ event: AcceptMachine.Event) {
        guard var m = s.acceptMachine else { return }
        let actions = m.handle(event)
        s.acceptMachine = m
        perform(actions, socket: s)
    }

    func perform(_ actions: [AcceptMachine.Action], socket s: SocketRuntime) {
        for action in actions {
            switch action {
            case .watch: watch(socket: s, only: s.limitedByMachine)
            case .unwatch: unwatch(socket: s, only: s.limitedByMachine)
            case .log(let level, let message):
                // At most once a minute: under load a socket reaches its
                // limit thousands of times (2 855 lines in 20 000 connections).
                if level >= .info, let note = s.limitLog.admit(now: MonotonicClock.now()) {
                    Log.write(level, message + note)
                } else if level < .info {
                    Log.write(level, message)
                }
            }
        }
    }

    /// A line a remote client (or a writer of a watched directory) can
    /// cause, through the unit's rate limit.
    func failure(_ s: SocketRuntime, _ message: String, level: LogLevel = .error) {
        if let note = s.failureLog.admit(now: MonotonicClock.now()) { Log.write(level, message + note) }
    }

    func failure(_ p: PathRuntime, _ message: String, level: LogLevel = .error) {
        if let note = p.failureLog.admit(now: MonotonicClock.now()) { Log.write(level, message + note) }
    }

    /// Through the owner's rate limit; an owner a reload removed has none left.
    func failure(_ owner: InstanceOwner, _ message: String, level: LogLevel = .error) {
        switch owner {
        case .socket(let id):
            if let s = sockets[id] { failure(s, message, level: level) } else { Log.write(level, message) }
        case .path(let id, _):
            if let p = paths[id] { failure(p, message, level: level) } else { Log.write(level, message) }
        }
    }
}
