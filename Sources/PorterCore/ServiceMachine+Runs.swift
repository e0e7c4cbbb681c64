/// How a run of a service ends: the outcomes the state table refers to
/// (afterRun, a stop begun or finished, a deadline of a running service).
extension ServiceMachine {
    /// The main process of a run exited while running or frozen.
    mutating func runEnded(_ run: Run, result: RunResult, progress: Bool, now: Instant) -> [Action] {
        var actions = kill.leftovers(run.pid).map { Action.signal($0) }
        if policy.idleTimeout != nil { actions.append(.unwatchActivity) }
        return actions + afterRun(result == .success && !progress ? .noProgress : result, now: now)
    }

    /// The main process exited after porter asked it to stop.
    mutating func stopped(_ pid: Int32, reason: StopReason, now: Instant) -> [Action] {
        var actions = kill.leftovers(pid).map { Action.signal($0) }
        if policy.idleTimeout != nil { actions.append(.unwatchActivity) }
        switch reason {
        case .shutdown:
            enter(.stopped)
            return actions
        case .idle:
            // Stopped by porter: a clean end whatever the signal did.
            backoffLevel = 0
            return actions + enterListening(log: nil)
        case .runtimeMax, .startTimeout:
            return actions + afterRun(.timeout, now: now)
        case .watchdog:
            return actions + afterRun(.watchdog, now: now)
        }
    }

    /// A deadline of a running service passed.
    mutating func runTimer(_ run: Run, now: Instant) -> [Action] {
        if policy.awaitsReadiness && !run.ready, let d = run.startDeadline, now >= d {
            if run.seekingMain {
                return (policy.idleTimeout != nil ? [.unwatchActivity] : [])
                    + [.log(.warning, "\(name): no main process found within \((now - run.since).porterDescription) (TimeoutStartSec=)")]
                    + afterRun(.timeout, now: now)
            }
            return beginStop(run.pid, reason: .startTimeout, now: now,
                             log: "\(name): not ready after \((now - run.since).porterDescription) (TimeoutStartSec=), stopping pid \(run.pid)")
        }
        if policy.forking && !run.ready { return [] }
        if let w = policy.watchdog, run.ready || !policy.awaitsReadiness, now >= run.lastWatchdog + w {
            // systemd's WatchdogSignal= default: SIGABRT, for a core dump of the hang.
            var k = kill
            k.killSignal = Sig.abort
            let (signals, killAt) = k.begin(run.pid, now: now)
            enter(.stopping(pid: run.pid, killAt: killAt, reason: .watchdog))
            return [.log(.warning, "\(name): watchdog timeout (no WATCHDOG=1 in \(w.porterDescription)), aborting pid \(run.pid)")]
                + signals.map { .signal($0) }
        }
        if let r = policy.runtimeLimit(since: run.since), now >= run.since + r {
            let what = policy.runtimeRandomizedExtra == nil ? "RuntimeMaxSec=\(r.porterDescription)" : "RuntimeMaxSec= with RuntimeRandomizedExtraSec= (\(r.porterDescription) for this run)"
            return beginStop(run.pid, reason: .runtimeMax, now: now, log: "\(name): \(what) reached, stopping pid \(run.pid)")
        }
        if let i = policy.idleTimeout, now >= run.lastActivity + i {
            return [.measureIdle]
        }
        return []
    }

    mutating func beginStop(_ pid: Int32, reason: StopReason, now: Instant, log: String?) -> [Action] {
        let (signals, killAt) = kill.begin(pid, now: now)
        var actions: [Action] = log.map { [.log(.info, $0)] } ?? []
        if signals.isEmpty && reason == .shutdown {
            // KillMode=none: the process is left running, as systemd does.
            enter(.stopped)
            return actions + [.log(.warning, "\(name): KillMode=none, leaving pid \(pid) running")]
        }
        enter(.stopping(pid: pid, killAt: killAt, reason: reason))
        actions += signals.map { .signal($0) }
        return actions
    }

    mutating func afterRun(_ result: RunResult, now: Instant) -> [Action] {
        let override = restartOverride
        restartOverride = nil
        if stopRequested {
            enter(.stopped)
            return []
        }
        if !result.isFailure {
            backoffLevel = 0
            failures.removeAll()
            if policy.remainAfterExit && override != .force {
                restarts = 0
                enter(.remaining)
                return [.log(.info, "\(name): stays active after its run (RemainAfterExit=yes); its triggers wait until it is stopped")]
            }
        } else if policy.startLimitBurst > 0 && policy.startLimitInterval > .zero {
            failures.append(now)
            failures.removeAll { now - $0 >= policy.startLimitInterval }
            // Once in back-off, one more failure is enough for the next one.
            if failures.count >= policy.startLimitBurst || backoffLevel > 0 {
                let wait = policy.backoff(backoffLevel)
                backoffLevel += 1
                failures.removeAll()
                enter(.holdingOff(until: now + wait))
                return [.log(.warning, "\(name): start limit hit (\(policy.startLimitBurst) runs in \(policy.startLimitInterval.porterDescription) failed or left their work queued), failed; holding off \(wait.porterDescription); clients wait in the backlog")]
            }
        }
        // RestartPreventExitStatus= wins over everything but a watchdog,
        // RestartForceExitStatus= over Restart=, as systemd.service(5) says.
        let restart = override == .force || ((result == .watchdog || policy.restart.restarts(after: result)) && override != .prevent)
        if restart {
            let delay = policy.restartDelay(after: restarts)
            restarts += 1
            if delay <= .zero {
                enter(.starting)
                return [.start]
            }
            enter(.waitingRestart(until: now + delay))
            return []
        }
        return enterListening(log: nil)
    }

    mutating func enterListening(log: String?) -> [Action] {
        restarts = 0
        restartOverride = nil
        enter(.listening)
        return (log.map { [.log(.info, $0)] } ?? []) + [.watch]
    }
}
