import Glibc
import PorterCore
import PorterSys

/// What the control socket's requests do (the wire format is
/// ControlRequest's): status, pausing and resuming a unit, reloads, the
/// upgrade. Each answer is prepared here; the exchange carries it.
extension Supervisor {
    /// The answer, or nil when it comes later (ExecReload= running, an upgrade).
    func handle(_ request: ControlRequest, from cred: PeerCredentials, exchange e: Exchange) -> ControlReply? {
        let now = MonotonicClock.now()
        Log.debug("control socket: \(request.verb.rawValue) \(request.units.joined(separator: " ")) from pid \(cred.pid) uid \(cred.uid)")
        switch request.verb {
        case .version:
            return ControlReply(result: .object(["version": .string(Commands.version), "protocol": .int(ControlRequest.version),
                                                 "pid": .int(getpid())]))
        case .status:
            var report = statusReport(now: now)
            if !request.units.isEmpty {
                let wanted = Set(request.units)
                report.units = report.units.filter { wanted.contains($0.name) }
                let missing = wanted.subtracting(report.units.map(\.name))
                if !missing.isEmpty {
                    return ControlReply(error: "no such unit: \(missing.sorted().joined(separator: ", "))",
                                        result: try? JSONCoding.encode(report))
                }
            }
            do { return ControlReply(result: try JSONCoding.encode(report)) } catch {
                return ControlReply(error: "cannot encode the status: \(error)")
            }
        case .start, .stop:
            guard !stopping else { return ControlReply(error: "porter is stopping") }
            let name = UnitName.parse(request.units[0])!
            guard knows(name) else { return ControlReply(error: "no such unit: \(name)") }
            let message = request.verb == .stop ? pause(name, now: now) : resume(name, now: now)
            Log.info("\(name): \(message) (porter \(request.verb.rawValue), pid \(cred.pid) uid \(cred.uid))")
            return ControlReply(result: .object(["unit": .string(name.description), "message": .string(message)]))
        case .reload:
            if let unit = request.units.first {
                return reloadService(UnitName.parse(unit)!, exchange: e, now: now)
            }
            let outcome = reload("porter reload")
            let result = JSON.object(["summary": .string(outcome.summary), "problems": .array(outcome.problems.map { .string($0) })])
            return outcome.ok ? ControlReply(result: result) : ControlReply(error: outcome.summary, result: result)
        case .upgrade:
            return upgradeRequested(by: e)
        }
    }

    // MARK: Pausing

    /// Whether activation through `s` is paused: the socket itself, or
    /// what it activates.
    func activationPaused(_ s: SocketRuntime) -> Bool {
        !paused.isEmpty && (paused.contains(s.config.name) || paused.contains(s.config.activates))
    }

    func activationPaused(_ p: PathRuntime) -> Bool {
        !paused.isEmpty && (paused.contains(p.config.name) || paused.contains(p.config.activates))
    }

    /// `porter stop UNIT`: nothing new is started through the unit until
    /// `porter start UNIT`. Sockets stay bound and clients wait in the
    /// backlog; files wait in their directory. An Accept=no service is
    /// also stopped now (KillSignal=, TimeoutStopSec=, as at shutdown);
    /// per-connection instances and jobs already running finish.
    func pause(_ name: UnitName, now: Instant) -> String {
        guard paused.insert(name).inserted else { return "already paused" }
        refreshActivation(now: now)
        if let id = serviceIndex[name], let s = services[id] {
            let running = s.machine.pid
            perform(s.machine.handle(.stop, now: now), service: s, now: now)
            return running.map { "stopping pid \($0); not started again until porter start \(name)" }
                ?? "paused; not started until porter start \(name)"
        }
        switch name.type {
        case .path: return "paused; files wait until porter start \(name)"
        default: return "paused; clients wait in the backlog until porter start \(name)"
        }
    }

    /// `porter start UNIT`: activation resumes; what waited meanwhile is
    /// served now. An Accept=no service starts at its next work, as always.
    func resume(_ name: UnitName, now: Instant) -> String {
        guard paused.remove(name) != nil else { return "not paused; nothing to do" }
        if let id = serviceIndex[name], let s = services[id] {
            perform(s.machine.handle(.resume, now: now), service: s, now: now)
        }
        refreshActivation(now: now)
        return "activation resumed"
    }

    /// Brings every socket's watch and every path unit's hold in line with
    /// the pauses: idempotent, so it is the one place that decides.
    func refreshActivation(now: Instant) {
        for s in sockets where s.fds.count > 0 {
            let stop = activationPaused(s)
            switch s.handler {
            case .instances, .proxy, .internal:
                if stop && s.watched { unwatch(socket: s) }
                if !stop { watchAccepting(s) }
            case .service(let link):
                guard let service = link.id.flatMap({ services[$0] }), case .listening = service.machine.state else { continue }
                if stop && s.watched { unwatch(socket: s) }
                if !stop && !s.watched { watch(socket: s) }
            }
        }
        for p in paths {
            let stop = activationPaused(p)
            if let q = p.queue {
                if q.jobs.held != stop { performJobs(p, q, q.jobs.handle(.hold(stop), now: now)) }
            } else if !stop, p.link?.trigger.isFailed == false {
                checkStates(p, now: now)
            }
        }
    }

    // MARK: porter reload UNIT

    /// `porter reload UNIT`: Type=notify-reload gets ReloadSignal= and is
    /// waited for (RELOADING=1, then READY=1); ExecReload= commands run one
    /// after another with $MAINPID. The caller hears how it all ended.
    func reloadService(_ name: UnitName, exchange e: Exchange, now: Instant) -> ControlReply? {
        guard let id = serviceIndex[name], let s = services[id] else {
            return ControlReply(error: "\(name): only Accept=no services can be reloaded; \(knows(name) ? "this is not one" : "no such unit")")
        }
        let c = s.prepared.config
        let commands = c.reloadCommands
        let signal = c.type == .notifyReload
        guard signal || !commands.isEmpty else { return ControlReply(error: "\(name) has no ExecReload= and is not Type=notify-reload") }
        guard s.machine.state.isReady, let pid = s.machine.pid else {
            return ControlReply(error: "\(name) is not running (\(s.machine.stateName)); nothing to reload")
        }
        if s.reload != nil {
            // Already reloading: this caller hears the same outcome.
            s.reload!.waiters.append(e.id)
            park(e)
            return nil
        }
        guard s.control == nil else { return ControlReply(error: "\(name) is busy with \(s.control!.sequence.current?.label ?? "a command"); try again") }
        s.reload = ReloadJob(machine: ServiceReload(began: now, signalled: signal, commands: !commands.isEmpty, timeout: c.startTimeout),
                             waiters: [e.id])
        park(e)
        if signal {
            // systemd signals the main process alone (kill_and_sigcont).
            Log.info("\(name): reloading: \(Values.signalName(c.reloadSignal)) to pid \(pid), waiting for RELOADING=1 and READY=1")
            Signals.send(c.reloadSignal, to: pid, group: false)
        }
        if !commands.isEmpty {
            var seq = CommandSequence([.reload: commands], phases: [.reload])
            seq.setResult(.success, mainExit: nil)
            beginControl(s, .reload, seq, now: now)
        }
        reloadEvent(s, nil)
        return nil
    }

    /// Feeds `event` to the service's reload; once it is over, its callers
    /// hear the outcome.
    func reloadEvent(_ s: ServiceRuntime, _ event: ServiceReload.Event?) {
        guard var job = s.reload else { return }
        if let event, let note = job.machine.handle(event) { Log.warning("\(s.name): \(note)") }
        guard let outcome = job.machine.outcome else {
            s.reload = job  // moves the deadline
            return
        }
        s.reload = nil
        let how = s.prepared.config.type == .notifyReload ? "" : " (ExecReload=)"
        let reply: ControlReply
        switch outcome {
        case .success:
            Log.info("\(s.name): reloaded\(how)")
            reply = ControlReply(result: .object(["unit": .string(s.name), "message": .string("reloaded")]))
        case .failed(let why):
            Log.warning("\(s.name): reload failed: \(why)")
            reply = ControlReply(error: "\(s.name): reload failed: \(why)")
            // A failed reload leaves its commands nothing to do.
            if let run = s.control, run.purpose == .reload, let pid = run.pid {
                Signals.send(SIGKILL, to: pid, group: true)
                controlPIDs[pid] = nil
                strayControls.insert(pid)
                s.control = nil
            }
        }
        for id in job.waiters { if let e = exchanges[id] { answer(e, reply) } }
    }
}

extension CommandSequence.Outcome {
    /// How ExecReload= commands ended, for the reload they belong to.
    var reloadOutcome: ServiceReload.Outcome {
        switch self {
        case .success: return .success
        case .skipped(let why), .failed(_, let why): return .failed(why)
        }
    }
}
