import Glibc
import PorterCore
import PorterSys

/// Accept=no services: performing what their machines decide.
extension Supervisor {
    func perform(_ actions: [ServiceMachine.Action], service s: ServiceRuntime, now: Instant) {
        noticeMachine(s, now: now)
        for action in actions {
            if let c = s.control, c.holds(action) {
                c.deferred.append(action)
                continue
            }
            switch action {
            case .watch:
                // A proxied service's sockets are porter's own to accept on:
                // what waits on them starts the service again instead.
                for t in s.triggers { if let t = sockets[t], t.proxy == nil { watch(socket: t) } }
                for p in s.paths { if let p = paths[p] { pathServiceListening(p, now: now) } }
                if s.proxy != nil { proxyWork(s, now: now) }
            case .unwatch, .unwatchActivity:
                for t in s.triggers { if let t = sockets[t], t.proxy == nil { unwatch(socket: t) } }
            case .watchActivity:
                for t in s.triggers { if let t = sockets[t], t.proxy == nil { watch(socket: t, activityOf: s.id) } }
            case .measureIdle:
                let busy = busy(s)
                Log.debug("\(s.name): idle check: \(busy ? "busy" : "idle"), measured in \((MonotonicClock.now() - now).nanoseconds / 1000)us")
                perform(s.machine.handle(.measured(busy: busy), now: now), service: s, now: now)
            case .freeze(let pid):
                // The run's group: a forking daemon's main pid need not lead it.
                Signals.send(SIGSTOP, to: s.group ?? pid, group: true)
            case .checkFrozen(let pid):
                let event: ServiceMachine.Event = Processes.isStopped(pid) ? .measured(busy: busy(s)) : .notFrozenYet
                perform(s.machine.handle(event, now: now), service: s, now: now)
            case .start:
                if let event = start(service: s, since: now) {
                    perform(s.machine.handle(event, now: now), service: s, now: now)
                }
            case .signal(let sig):
                // The group is the first pid's, also after MAINPID= moved the main process.
                if sig.group, let g = s.group { Signals.send(sig.signal, to: g, group: true) }
                else { Signals.send(sig.signal, to: sig.pid, group: sig.group) }
            case .findMain:
                findMain(s, now: now)
            case .log(let level, let message):
                Log.write(level, message)
            }
        }
    }

    /// Spawns the service with its listening sockets; the machine learns
    /// the outcome from the returned event. `since` is when the event that
    /// caused the start arrived: the log line says how long porter took from
    /// there to the child's exec (porter's own share of a cold start).
    /// The machine asked for a start: ExecCondition= and ExecStartPre=
    /// first if there are any (the machine learns the outcome when they
    /// are done), the main process otherwise.
    private func start(service s: ServiceRuntime, since: Instant) -> ServiceMachine.Event? {
        // A reload changed the unit: this start is the first under the new definition.
        if let next = s.next {
            s.prepared = next
            s.next = nil
            s.machine.adopt(next.config.policy)
        }
        let c = s.prepared.config
        s.lastExit = nil
        s.lastOutcome = .success
        if let verdict = conditionCheck.verdict(c.unitConditions) {
            // Nothing runs, ExecStopPost= neither: the unit was never started.
            s.skipCommands = true
            switch verdict {
            case .skip(let why): Log.info("\(s.name): start skipped: \(why); the work that activated it stays queued")
            case .fail(let why): Log.warning("\(s.name): start failed: \(why)")
            }
            return .startFailed
        }
        let pre = CommandSequence(c.commands, phases: [.condition, .startPre])
        if !pre.isEmpty {
            beginControl(s, .start, pre, now: since)
            return nil
        }
        return startMain(service: s, since: since)
    }

    /// Spawns the main process (for Type=oneshot: the first ExecStart=).
    func startMain(service s: ServiceRuntime, since: Instant) -> ServiceMachine.Event {
        let p = s.prepared
        var step: CommandSequence.Step? = nil
        if p.config.type == .oneshot {
            var seq = CommandSequence(p.config.commands, phases: [.start], success: p.config.successExitStatus)
            step = seq.start()
            s.mainSequence = seq
        }
        return spawnMain(service: s, step: step, since: since)
    }

    private func spawnMain(service s: ServiceRuntime, step: CommandSequence.Step?, since: Instant) -> ServiceMachine.Event {
        let p = s.prepared
        let launch: Launch
        do {
            let instance = try p.instance(nil)
            var activation: [(String, String)] = []
            if p.config.effectiveNotifyAccess != .none, let notify { activation.append(("NOTIFY_SOCKET", notify.address)) }
            if s.restarted && p.config.restartMode == .debug { activation.append(("DEBUG_INVOCATION", "1")) }
            if let firing = s.paths.lazy.compactMap({ self.paths[$0] }).first(where: { $0.fired != nil }) {
                // systemd.path(5)'s variables, with the path that actually fired.
                activation.append(("TRIGGER_UNIT", firing.name))
                activation.append(("TRIGGER_PATH", firing.fired!))
            }
            launch = try Launch.make(p, instance: instance, socket: s.passed.first?.fd, listen: s.passed, stored: s.stored,
                                     activation: activation, devNull: devNull, fileLimit: childFileLimit, step: step,
                                     journal: { () throws(SysError) in try journal(for: p) })
        } catch let error as ValueError {
            stats.count(s.name) { $0.spawnFailures += 1 }
            Log.error("\(s.name): \(error.message)")
            return .startFailed
        } catch let error as Launch.Failure {
            stats.count(s.name) { $0.spawnFailures += 1 }
            Log.error("\(s.name): \(error.message)")
            return .startFailed
        } catch {
            stats.count(s.name) { $0.spawnFailures += 1 }
            Log.error("\(s.name): \(error)")
            return .startFailed
        }
        defer {
            launch.close()
            if launch.isLarge { trimPending = true }
        }
        s.queuedAtStart = queued(s)
        switch spawner.spawn(launch.plan) {
        case .success(let pid):
            servicePIDs[pid] = s.id
            s.group = pid
            s.status = nil
            s.mainSearch = nil
            notedForkParent(s, pid: pid)
            let names = launch.plan.environment.first { $0.hasPrefix("LISTEN_FDNAMES=") }.map { " (\($0))" } ?? ""
            let count = launch.plan.fds.count - 3
            let elapsed = MonotonicClock.now() - since
            let took = elapsed.porterDescription
            if step.map({ $0.index == 0 }) ?? true {
                stats.count(s.name) {
                    $0.activations += 1
                    $0.latency.observe(nanoseconds: elapsed.nanoseconds)
                }
            }
            let with = count > 0 ? " with \(count) fd\(count == 1 ? "" : "s")\(names)" : s.passed.isEmpty ? "" : " with the socket on stdin/stdout"
            let which = step.map { $0.index > 0 ? " (\($0.label))" : "" } ?? ""
            Log.info("\(s.name): started pid \(pid)\(which)\(with) in \(took)")
            s.runStartedOK = p.config.type != .oneshot
            return .started(pid: pid)
        case .failure(let error):
            if let pid = error.pid { failedSpawns.insert(pid) }
            if error.isExecFailure { p.forgetExecutable(launch.plan.path) }
            stats.count(s.name) { $0.spawnFailures += 1 }
            Log.error("\(s.name): \(error)")
            return .startFailed
        }
    }

    /// Reaps every child that has exited and tells its owner.
    func reapChildren() {
        defer { spawner.reclaim() }
        while let (pid, status) = Processes.reap() {
            if failedSpawns.remove(pid) != nil { continue }
            if pid == pendingUpgrade?.pid {
                upgradeCheckEnded(status)
                continue
            }
            if let o = orphans.removeValue(forKey: pid) {
                orphanExited(pid, o, status)
                continue
            }
            if let inst = instances.removeValue(forKey: pid) {
                instanceExited(pid, inst, status)
            } else if let id = controlPIDs.removeValue(forKey: pid) {
                if let s = services[id] { controlExited(s, pid: pid, status) }
            } else if strayControls.remove(pid) != nil {
                continue
            } else if let id = servicePIDs.removeValue(forKey: pid), let s = services[id] {
                s.lastExit = ProcessExit(status)
                if oneshotGoesOn(s, pid: pid, status) { continue }
                if guessedMainMovedOn(s, pid: pid, status) { continue }
                let ignore = s.prepared.config.exec?.ignoreFailure ?? false
                let stoppedByPorter = s.machine.state.isStopping && Self.isStopSignal(status, s.prepared.kill)
                var result = Self.result(status, ignoreFailure: ignore)
                if s.prepared.config.successExitStatus.contains(ProcessExit(status)) { result = .success }
                if let seq = s.mainSequence {
                    // Type=oneshot: the last ExecStart= decides, or the one that failed.
                    if case .failed(let r, _) = seq.outcome { result = r } else { result = .success }
                    s.runStartedOK = result == .success
                }
                // Dying of porter's own stop signal is a clean end ($SERVICE_RESULT=success).
                let clean = result == .success || (s.machine.state.isStopping && Self.isStopSignal(status, s.prepared.kill))
                s.lastOutcome = clean ? .success : .failed(result, "main process \(status)")
                // Still queued and no less than at the start: the run took nothing.
                // A forking service's first process is expected to leave the work to the daemon.
                let forkParent = s.prepared.config.type == .forking && !s.machine.state.isReady
                let left = stopping || stoppedByPorter || forkParent ? nil : queued(s)
                let progress = left == nil || s.queuedAtStart == nil || left! == 0 || left! < s.queuedAtStart!
                let note = progress ? "" : ", leaving the work that started it queued (queue: \(left!))"
                let fine = (result == .success && progress) || stoppedByPorter
                stats.exited(s.name, instance: s.name, pid: pid, status, success: clean, now: MonotonicClock.now())
                Log.write(fine ? .info : .warning, "\(s.name): pid \(pid) exited, \(status)\(note)")
                let exit = ProcessExit(status)
                if s.prepared.config.restartPreventExitStatus.contains(exit) { s.machine.restartOverride = .prevent }
                else if s.prepared.config.restartForceExitStatus.contains(exit) { s.machine.restartOverride = .force }
                mainExited(s, pid: pid, result: result, progress: progress)
            } else {
                // Not started by porter: an orphan adopted by porter as PID 1.
                Log.debug("reaped pid \(pid) (\(status)), not a service of porter's")
            }
        }
    }

    /// Type=oneshot: the main process was one of several ExecStart= lines;
    /// true when the next one now runs as the main process.
    private func oneshotGoesOn(_ s: ServiceRuntime, pid: Int32, _ status: ExitStatus) -> Bool {
        guard var seq = s.mainSequence else { return false }
        let label = seq.current?.label ?? "ExecStart="
        let next = seq.exited(ProcessExit(status))
        s.mainSequence = seq
        guard let next, s.machine.state.isRunningOrFrozen, !stopping else { return false }
        Log.info("\(s.name): \(label) pid \(pid) exited, \(status)")
        let now = MonotonicClock.now()
        let group = s.group
        switch spawnMain(service: s, step: next, since: now) {
        case .started(let newPID):
            if let group { trackLeftovers(group: group, unit: s.name, kill: s.prepared.kill, now: now) }
            perform(s.machine.handle(.mainPID(newPID), now: now), service: s, now: now)
            return true
        default:
            // Could not start the next one: the run ends as failed.
            s.mainSequence?.fail(.startFailure, "\(next.label)\(next.command.path) could not be started")
            return false
        }
    }

    /// The main process of service `i` exited: its machine decides, and
    /// what is left of the run's group is followed (F7) unless the run goes
    /// on (MAINPID= moved the main process).
    func mainExited(_ s: ServiceRuntime, pid: Int32, result: RunResult, progress: Bool) {
        let now = MonotonicClock.now()
        let group = s.group
        perform(s.machine.handle(.exited(pid: pid, result: result, progress: progress), now: now), service: s, now: now)
        if let group, !s.machine.state.isRunningOrStarting || s.group != group {
            trackLeftovers(group: group, unit: s.name, kill: s.prepared.kill, now: now)
        }
        if s.retired { removeIfDone(s) }
    }

    /// How a run ended, in systemd's terms.
    static func result(_ status: ExitStatus, ignoreFailure: Bool) -> RunResult {
        switch status {
        case .exited(0): return .success
        case .exited: return ignoreFailure ? .success : .exitCode
        case .signaled(_, let core): return core ? .coreDump : .signal
        }
    }

    /// Whether the service still has work: connections accepted from its
    /// listeners that are still open, connections or datagrams queued.
    /// Unmeasurable counts as busy: never stop what cannot be seen to be idle.
    func busy(_ s: ServiceRuntime) -> Bool {
        // porter holds every proxied connection: it knows exactly.
        if let px = s.proxy { return px.busy }
        for t in s.triggers {
            for fd in sockets[t]?.fds ?? [] {
                guard let queued = queuedWork.measure(fd), queued == 0 else { return true }
                if Socket.type(fd) != SOCK_DGRAM.rawValue {
                    guard let open = queuedWork.connections(of: fd), open == 0 else { return true }
                }
            }
        }
        return false
    }

    /// The work waiting on the listeners that start the service; nil when
    /// any of them cannot be measured.
    func queued(_ s: ServiceRuntime) -> Int? {
        // A proxied service takes nothing from the listeners itself.
        if s.proxy != nil { return nil }
        var total = 0
        for t in s.triggers {
            for fd in sockets[t]?.fds ?? [] {
                guard let n = queuedWork.measure(fd) else { return nil }
                total += n
            }
        }
        return total
    }

    /// Dying of the signal porter sent to stop it is a clean stop.
    static func isStopSignal(_ status: ExitStatus, _ kill: KillPolicy) -> Bool {
        if case .signaled(let sig, _) = status {
            return sig == kill.killSignal || sig == kill.finalKillSignal || sig == SIGHUP
        }
        return false
    }
}

extension ServiceMachine.State {
    var isRunningOrFrozen: Bool {
        switch self {
        case .running, .freezing: return true
        default: return false
        }
    }

    /// Running and ready (at once for simple and exec, READY=1 for notify).
    var isReady: Bool {
        if case .running(let run) = self { return run.ready }
        return false
    }

    var isStopping: Bool {
        if case .stopping = self { return true }
        return false
    }

    /// Whether a run is still going on (MAINPID= moved the main process,
    /// so the exit of the first pid is not the end of the group).
    var isRunningOrStarting: Bool {
        switch self {
        case .running, .freezing, .starting: return true
        case .listening, .stopping, .waitingRestart, .holdingOff, .stopped, .remaining: return false
        }
    }
}
