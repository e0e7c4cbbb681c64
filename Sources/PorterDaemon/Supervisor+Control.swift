import Glibc
import PorterCore
import PorterSys

/// The commands of an Accept=no service besides its main process
/// (ExecCondition=, ExecStartPre=, ExecStartPost=, ExecStop=,
/// ExecStopPost=), and Type=oneshot's ExecStart= lines one after another.
/// Each is a child like the main process, reaped by the loop: none of them
/// ever blocks it. While they run, what the service machine decided and
/// must come after them (a start, watching the sockets again, the stop
/// signals) waits in the control run.
extension Supervisor {
    var conditionCheck: ConditionCheck { ConditionCheck(environment: porterEnvironment, host: host) }

    /// Called at the top of `perform`: what the machine's last move asks
    /// of the commands.
    func noticeMachine(_ s: ServiceRuntime, now: Instant) {
        if s.idleStopBegan {
            s.idleStopBegan = false
            stats.count(s.name) { $0.idleStops += 1 }
        }
        let c = s.prepared.config
        // A proxied backend that has started (or said READY=1) gets what waits.
        if s.proxy != nil, case .running = s.machine.state, s.becameReady || s.proxyStarted {
            s.proxyStarted = false
            proxyWork(s, now: now)
        }
        if s.becameReady {
            s.becameReady = false
            if c.type != .oneshot, !(c.commands[.startPost] ?? []).isEmpty {
                beginControl(s, .startPost, CommandSequence(c.commands, phases: [.startPost]), now: now)
            }
        }
        if s.stopBegan {
            s.stopBegan = false
            reloadEvent(s, .abandoned("the service is stopping"))
            if s.runStartedOK, !(c.commands[.stop] ?? []).isEmpty {
                // ExecStop= first, with $MAINPID; KillSignal= after it.
                s.runStartedOK = false  // it runs once per run
                var seq = CommandSequence(c.commands, phases: [.stop])
                seq.setResult(s.lastOutcome, mainExit: nil)
                beginControl(s, .stop, seq, now: now)
            }
        }
        if s.runEnded {
            s.runEnded = false
            reloadEvent(s, .abandoned("the service's run ended"))
            s.reloading = false
            releaseStore(s)
            proxyRunEnded(s, now: now)
            flushPending(s)
            removePIDFile(s)
            if s.skipCommands {
                s.skipCommands = false
                removeRuntimeDirectories(s)
                return
            }
            let startedOK = s.runStartedOK
            s.mainSequence = nil
            if case .remaining = s.machine.state {
                // RemainAfterExit=yes: the service stays active; a oneshot's
                // ExecStartPost= now, ExecStop= when it is stopped.
                if startedOK, c.type == .oneshot, !(c.commands[.startPost] ?? []).isEmpty {
                    beginControl(s, .startPost, CommandSequence(c.commands, phases: [.startPost]), now: now)
                }
                s.startPostRan = true
                return
            }
            s.runStartedOK = false
            var phases: [CommandSequence.Phase] = []
            if startedOK {
                if c.type == .oneshot && !s.startPostRan { phases.append(.startPost) }
                phases.append(.stop)
            }
            s.startPostRan = false
            phases.append(.stopPost)
            var seq = CommandSequence(c.commands, phases: phases)
            seq.setResult(s.lastOutcome, mainExit: s.lastExit)
            s.lastOutcome = .success
            if !seq.isEmpty { beginControl(s, .end, seq, now: now) } else { removeRuntimeDirectories(s) }
        }
    }

    /// Starts the commands of `purpose`; one already running is killed
    /// (a run that ends makes its ExecStartPost= moot).
    func beginControl(_ s: ServiceRuntime, _ purpose: ControlRun.Purpose, _ sequence: CommandSequence, now: Instant) {
        if let old = s.control, old.purpose == .stop, purpose == .end, old.pid != nil {
            old.then = sequence
            return
        }
        if let old = s.control {
            if old.purpose == .reload { reloadEvent(s, .abandoned("interrupted: the service is stopping or starting")) }
            if let pid = old.pid {
                Signals.send(SIGKILL, to: pid, group: true)
                controlPIDs[pid] = nil
                strayControls.insert(pid)
            }
            if purpose == .end { s.control = nil }
        }
        let run = ControlRun(purpose, sequence)
        s.control = run
        var seq = run.sequence
        advanceControl(s, run, seq.start(), &seq, now: now)
    }

    /// Spawns `step`, or, when there is none, finishes the run.
    private func advanceControl(_ s: ServiceRuntime, _ run: ControlRun, _ first: CommandSequence.Step?,
                                _ seq: inout CommandSequence, now: Instant) {
        var step = first
        while let st = step {
            switch spawnControl(s, st, seq, now: now) {
            case .success(let pid):
                run.sequence = seq
                run.pid = pid
                run.timedOut = false
                run.deadline = Self.controlLimit(st, s.prepared.config).map { now + $0 }
                s.control = run  // moves the deadline
                return
            case .failure(let why):
                Log.error("\(s.name): \(why.message)")
                step = seq.couldNotStart(why.message)
            }
        }
        run.sequence = seq
        run.pid = nil
        finishControl(s, run, now: now)
    }

    private func spawnControl(_ s: ServiceRuntime, _ step: CommandSequence.Step, _ seq: CommandSequence,
                              now: Instant) -> Result<Int32, Launch.Failure> {
        let p = s.prepared
        let launch: Launch
        do {
            let instance = try p.instance(nil)
            var activation: [(String, String)] = []
            if p.config.effectiveNotifyAccess == .all, let notify { activation.append(("NOTIFY_SOCKET", notify.address)) }
            if s.restarted && p.config.restartMode == .debug { activation.append(("DEBUG_INVOCATION", "1")) }
            switch step.phase {
            case .stop, .stopPost:
                let alive = s.machine.pid.flatMap { processExists($0) ? $0 : nil }
                activation += Self.stopVariables(seq, mainPID: step.phase == .stop ? alive : nil)
            case .startPost, .reload:
                if let pid = s.machine.pid { activation.append(("MAINPID", String(pid))) }
            case .condition, .startPre, .start:
                break
            }
            launch = try Launch.make(p, instance: instance, socket: nil, listen: [], activation: activation,
                                     devNull: devNull, fileLimit: childFileLimit, step: step,
                                     journal: { () throws(SysError) in try journal(for: p) })
        } catch let error as ValueError {
            return .failure(Launch.Failure("\(step.label): \(error.message)"))
        } catch let error as Launch.Failure {
            return .failure(error)
        } catch {
            return .failure(Launch.Failure("\(step.label): \(error)"))
        }
        defer { launch.close() }
        switch spawner.spawn(launch.plan) {
        case .success(let pid):
            controlPIDs[pid] = s.id
            Log.debug("\(s.name): \(step.label) started pid \(pid)")
            return .success(pid)
        case .failure(let error):
            if let pid = error.pid { failedSpawns.insert(pid) }
            return .failure(Launch.Failure("\(step.label) \(error)"))
        }
    }

    private func processExists(_ pid: Int32) -> Bool { Glibc.kill(pid, 0) == 0 }

    /// A control process exited.
    func controlExited(_ s: ServiceRuntime, pid: Int32, _ status: ExitStatus) {
        let now = MonotonicClock.now()
        guard let run = s.control, run.pid == pid else { return }
        var seq = run.sequence
        let label = seq.current?.label ?? "command"
        let ignored = !status.isSuccess && seq.current?.command.ignoreFailure == true ? " (ignored: '-')" : ""
        Log.write(status.isSuccess || !ignored.isEmpty ? .info : .warning, "\(s.name): \(label) pid \(pid) exited, \(status)\(ignored)")
        trackLeftovers(group: pid, unit: s.name, kill: s.prepared.kill, now: now)
        let next = run.timedOut ? seq.timedOut() : seq.exited(ProcessExit(status))
        run.pid = nil
        advanceControl(s, run, next, &seq, now: now)
    }

    /// The commands of `run` are done: what waited for them goes on.
    private func finishControl(_ s: ServiceRuntime, _ run: ControlRun, now: Instant) {
        guard s.control === run else { return }
        s.control = nil
        switch run.purpose {
        case .start:
            switch run.sequence.outcome {
            case .success where stopping:
                perform(s.machine.handle(.startFailed, now: now), service: s, now: now)
            case .success:
                let event = startMain(service: s, since: now)
                perform(s.machine.handle(event, now: now), service: s, now: now)
            case .skipped(let why):
                Log.info("\(s.name): start skipped: \(why); the work that activated it stays queued")
                s.lastOutcome = run.sequence.outcome
                perform(s.machine.handle(.startFailed, now: now), service: s, now: now)
            case .failed(_, let why):
                Log.warning("\(s.name): start failed: \(why)")
                s.lastOutcome = run.sequence.outcome
                perform(s.machine.handle(.startFailed, now: now), service: s, now: now)
            }
        case .startPost:
            if case .failed(_, let why) = run.sequence.outcome, s.machine.state.isRunningOrFrozen {
                // systemd stops a service whose ExecStartPost= failed.
                Log.warning("\(s.name): \(why); stopping the service")
                if let g = s.group { Signals.send(s.prepared.kill.killSignal, to: g, group: true) }
            }
        case .stop:
            if case .failed(_, let why) = run.sequence.outcome { Log.warning("\(s.name): \(why)") }
            let signals = run.deferred.filter { if case .signal = $0 { return true } else { return false } }
            let rest = run.deferred.filter { if case .signal = $0 { return false } else { return true } }
            perform(signals, service: s, now: now)
            if let then = run.then {
                // The run ended meanwhile: ExecStopPost= now, and what waits goes on after it.
                beginControl(s, .end, then, now: now)
                if let next = s.control, next.purpose == .end { next.deferred += rest; return }
            }
            perform(rest, service: s, now: now)
        case .reload:
            reloadEvent(s, .commandsEnded(run.sequence.outcome.reloadOutcome))
            perform(run.deferred, service: s, now: now)
        case .end:
            if case .failed(_, let why) = run.sequence.outcome, case .success = s.lastOutcome { Log.warning("\(s.name): \(why)") }
            removeRuntimeDirectories(s)
            perform(run.deferred, service: s, now: now)
            if s.retired { removeIfDone(s) }
        }
    }

    /// FlushPending=: after the service exited, what waits on its sockets
    /// is dropped, as systemd does.
    func flushPending(_ s: ServiceRuntime) {
        for t in s.triggers {
            guard let sock = sockets[t], sock.config.flushPending else { continue }
            for (fd, l) in zip(sock.fds, sock.config.listens) {
                let n = Listener.flush(fd, datagram: l.kind == .datagram)
                if n > 0 { Log.info("\(sock.name): FlushPending=yes dropped \(n) waiting \(l.kind == .datagram ? "datagram" : "connection")\(n == 1 ? "" : "s")") }
            }
        }
    }

    /// RuntimeDirectory= goes when the run is over, unless
    /// RuntimeDirectoryPreserve=yes, or =restart and it restarts.
    func removeRuntimeDirectories(_ s: ServiceRuntime) {
        let c = s.prepared.config
        guard c.directories[.runtime] != nil else { return }
        switch c.runtimeDirectoryPreserve {
        case .yes: return
        case .restart:
            switch s.machine.state {
            case .waitingRestart, .starting: return
            default: break
            }
        case .no: break
        }
        DirectoryMaker.removeRuntime(s.prepared, unit: c.name)
    }

    /// A control process ran past its time limit: killed, and its exit
    /// counts as a timeout.
    func controlTimedOut(_ s: ServiceRuntime, now: Instant) {
        guard let run = s.control, let pid = run.pid, let d = run.deadline, now >= d else { return }
        Log.warning("\(s.name): \(run.sequence.current?.label ?? "command") pid \(pid) ran out of time, killing it")
        run.timedOut = true
        run.deadline = nil
        s.control = run
        Signals.send(SIGKILL, to: pid, group: true)
    }

    /// TimeoutStartSec= for the commands of the start, TimeoutStopSec= for
    /// those of the stop.
    static func controlLimit(_ step: CommandSequence.Step, _ c: ServiceConfig) -> Duration? {
        switch step.phase {
        case .condition, .startPre, .startPost, .start, .reload: return c.startTimeout
        case .stop, .stopPost: return c.timeoutStop.duration
        }
    }
}
