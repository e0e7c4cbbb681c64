/// The state machine of one Accept=no service. The service starts on the
/// first readable event of its listeners; while it runs porter does not
/// watch them for starting (with IdleTimeoutSec= it watches them edge-
/// triggered, for activity only); when it exits they are watched again, so
/// whatever queued meanwhile starts it again.
///
///   state \ event  | readable  | started / startFailed | exited              | timer                       | measured(busy)        | stop
///   ---------------+-----------+-----------------------+---------------------+-----------------------------+-----------------------+-------------
///   listening      | starting  | -                     | -                   | -                           | -                     | stopped
///   starting       | -         | running / afterRun    | -                   | -                           | -                     | (after start)
///   running        | -         | -                     | afterRun            | start timeout, watchdog,    | idle: freezing        | stopping
///                  |           |                       |                     | RuntimeMaxSec: stopping;    | busy: running         |
///                  |           |                       |                     | idle due: [measure]         |                       |
///   freezing       | -         | -                     | afterRun            | [checkFrozen] / too long:   | busy: running [thaw]  | stopping
///                  |           |                       |                     | running [thaw]              | idle: stopping (idle) |
///   stopping       | -         | -                     | by reason           | [final kill signal]         | -                     | (shutdown)
///   remaining      | -         | -                     | -                   | -                           | -                     | stopped
///   waitingRestart | -         | -                     | -                   | starting                    | -                     | stopped
///   holdingOff     | -         | -                     | -                   | listening                   | -                     | stopped
///   stopped        | -         | -                     | -                   | -                           | -                     | -
///
/// resume (`porter start` after `porter stop`): stopped -> listening
/// [watch]; stopping -> once exited, listening instead of stopped;
/// starting: the pending stop is dropped; elsewhere nothing to do.
///
/// afterRun: a failed run counts against StartLimitBurst= in
/// StartLimitIntervalSec=; at the limit the machine holds off (1 s, then
/// doubling while it keeps failing, capped) with the listeners bound but
/// unwatched, so clients wait in the backlog and no core is spun. Otherwise
/// Restart= decides between waitingRestart and listening. A missed watchdog
/// always restarts. Clean runs neither count nor restart (unless
/// Restart=always or on-success): porter's services are meant to exit when
/// idle and start again often.
///
/// Type=forking: the run is not ready until the process porter started
/// exits; if it exits cleanly the machine asks for the main process
/// (`.findMain`: the PID file, or the one child left) and runs on with it
/// (`.mainFound`), or ends the run (`.mainNotFound`). RemainAfterExit=yes:
/// a run that ends cleanly leaves the service active (`remaining`) with its
/// listeners unwatched, as systemd keeps such a service "active (exited)",
/// until it is stopped.
///
/// Idle stop without losing a connection: when the service has had no
/// activity for IdleTimeoutSec=, the supervisor measures (established
/// connections of the listeners and their queues, through sock_diag); if idle,
/// the service's process group is stopped with SIGSTOP, measured again once
/// stopped — a connection it accepted in between shows up now — and only
/// then sent KillSignal= (with SIGCONT). Connections that arrive later wait
/// in the backlog and start the next run.
public struct ServiceMachine: Sendable {
    public struct Run: Equatable, Sendable, Codable {
        public var pid: Int32
        public var since: Instant
        public var ready: Bool
        public var lastActivity: Instant
        public var lastWatchdog: Instant
        /// TimeoutStartSec= for Type=notify and forking, moved by EXTEND_TIMEOUT_USEC=.
        public var startDeadline: Instant?
        /// Type=forking: the first process exited cleanly and porter is
        /// looking for the main one; `pid` is gone and must not be signalled.
        public var seekingMain = false
    }

    public enum StopReason: Equatable, Sendable, Codable {
        case idle, shutdown, runtimeMax, watchdog, startTimeout
    }

    public enum State: Equatable, Sendable, Codable {
        case listening
        case starting
        case running(Run)
        /// SIGSTOP sent at `since`; check again at `poll`.
        case freezing(Run, since: Instant, poll: Instant)
        case stopping(pid: Int32, killAt: Instant?, reason: StopReason)
        /// RemainAfterExit=yes: the run ended cleanly, the service stays active.
        case remaining
        case waitingRestart(until: Instant)
        case holdingOff(until: Instant)
        case stopped
    }

    /// Without payloads, for the `a -> b` lines.
    public var stateName: String {
        switch state {
        case .listening: return "listening"
        case .starting: return "starting"
        case .running: return "running"
        case .freezing: return "freezing"
        case .stopping: return "stopping"
        case .remaining: return "remaining"
        case .waitingRestart: return "waiting-restart"
        case .holdingOff: return "holding-off"
        case .stopped: return "stopped"
        }
    }

    public enum Event: Equatable, Sendable {
        case readable
        case started(pid: Int32)
        case startFailed
        /// `progress`: the queued work shrank while it ran (or cannot be measured).
        case exited(pid: Int32, result: RunResult, progress: Bool)
        case timer
        case stop
        /// New work arrived on a listener while the service runs.
        case activity
        /// Answer to `.measureIdle` or `.checkFrozen`: whether the listeners
        /// still have established connections or queued work.
        case measured(busy: Bool)
        /// The process has not stopped yet (answer to `.checkFrozen`).
        case notFrozenYet
        /// sd_notify: READY=1, WATCHDOG=1, EXTEND_TIMEOUT_USEC=, MAINPID=.
        case ready
        case watchdogPing
        case extendTimeout(Duration)
        case mainPID(Int32)
        /// Type=forking: the answers to `.findMain`.
        case mainFound(Int32, how: String)
        case mainNotFound(String, failed: Bool)
        /// `porter start` after `porter stop`: activation resumes.
        case resume
    }

    public enum Action: Equatable, Sendable, Codable {
        case watch, unwatch
        /// Edge-triggered watch for activity while running (IdleTimeoutSec=).
        case watchActivity, unwatchActivity
        case start
        case signal(KillPolicy.Signal)
        /// Measure the listeners now and answer with `.measured`.
        case measureIdle
        /// SIGSTOP the process group; answer `.checkFrozen` later.
        case freeze(pid: Int32)
        /// Whether the process has stopped: answer `.measured` or `.notFrozenYet`.
        case checkFrozen(pid: Int32)
        /// Type=forking: the process started exited cleanly; find the main
        /// process and answer `.mainFound` or `.mainNotFound`.
        case findMain(parent: Int32)
        case log(LogLevel, String)
    }

    public let name: String
    public private(set) var policy: ServicePolicy
    public private(set) var state = State.listening
    /// When recent failed runs ended, oldest first.
    var failures: [Instant] = []
    /// Back-offs in a row; a clean run resets it.
    var backoffLevel = 0
    var stopRequested = false
    /// Automatic restarts in a row, for RestartSteps=; a clean run or a
    /// new activation resets it.
    var restarts = 0
    /// RestartPreventExitStatus= / RestartForceExitStatus= matched the exit
    /// the next `.exited` reports (set by the supervisor, read once).
    public var restartOverride: RestartOverride? = nil
    public enum RestartOverride: Sendable, Codable { case prevent, force }
    /// How often a freeze is checked for having taken effect.
    static let freezePoll = Duration.milliseconds(1)

    public init(name: String, policy: ServicePolicy) {
        self.name = name
        self.policy = policy
    }

    /// What a machine is, without its policy (which comes from the unit):
    /// what an upgrade hands the next image of porter.
    public struct Snapshot: Codable, Equatable, Sendable {
        public var state: State
        var failures: [Instant]
        var backoffLevel: Int
        var stopRequested: Bool
        var restarts: Int
        var restartOverride: RestartOverride?
    }

    public var snapshot: Snapshot {
        Snapshot(state: state, failures: failures, backoffLevel: backoffLevel, stopRequested: stopRequested,
                 restarts: restarts, restartOverride: restartOverride)
    }

    /// The machine as the previous image left it, under `policy`.
    public init(name: String, policy: ServicePolicy, restoring s: Snapshot) {
        self.init(name: name, policy: policy)
        state = s.state
        failures = s.failures
        backoffLevel = s.backoffLevel
        stopRequested = s.stopRequested
        restarts = s.restarts
        restartOverride = s.restartOverride
    }

    public var kill: KillPolicy { policy.kill }

    /// A reload changed the unit: the new policy decides from here on (the
    /// supervisor adopts it when the next run starts).
    public mutating func adopt(_ policy: ServicePolicy) { self.policy = policy }

    /// When the machine next needs a `.timer` event.
    public var deadline: Instant? {
        switch state {
        case .holdingOff(let until), .waitingRestart(let until): return until
        case .stopping(_, let killAt, _): return killAt
        case .freezing(_, let since, let poll): return min(since + policy.freezeLimit, poll)
        case .running(let run): return runDeadline(run)
        default: return nil
        }
    }

    private func runDeadline(_ run: Run) -> Instant? {
        var d: Instant? = nil
        func consider(_ i: Instant?) { if let i, d == nil || i < d! { d = i } }
        if policy.awaitsReadiness && !run.ready { consider(run.startDeadline) }
        // A forking service's first process is not the daemon: no idle
        // check or watchdog until the main process is known.
        if policy.forking && !run.ready { return d }
        if let w = policy.watchdog, run.ready || !policy.notify { consider(run.lastWatchdog + w) }
        if let r = policy.runtimeLimit(since: run.since) { consider(run.since + r) }
        if let i = policy.idleTimeout { consider(run.lastActivity + i) }
        return d
    }

    public var pid: Int32? {
        switch state {
        case .running(let run) where run.seekingMain: return nil
        case .running(let run), .freezing(let run, _, _): return run.pid
        case .stopping(let pid, _, _): return pid
        default: return nil
        }
    }

    /// Every state × event pair is spelled out, state by state: a new
    /// state or event does not compile until each pair says what it does.
    /// An event that cannot happen in a state (a start result while
    /// listening) is logged at debug level and changes nothing; an event
    /// that can arrive late (a timer, a notification, activity) is dropped.
    public mutating func handle(_ event: Event, now: Instant) -> [Action] {
        switch state {
        case .listening:
            switch event {
            case .readable:
                enter(.starting)
                return [.unwatch, .start]
            case .stop:
                enter(.stopped)
                return [.unwatch]
            case .started, .startFailed, .exited:
                return ignored(event)
            case .timer, .activity, .measured, .notFrozenYet, .ready, .watchdogPing, .extendTimeout, .mainPID,
                 .mainFound, .mainNotFound, .resume:
                return []
            }

        case .starting:
            switch event {
            case .started(let pid):
                let start = policy.awaitsReadiness ? policy.startTimeout.map { now + $0 } : nil
                enter(.running(Run(pid: pid, since: now, ready: !policy.awaitsReadiness, lastActivity: now, lastWatchdog: now, startDeadline: start)))
                if stopRequested { return handle(.stop, now: now) }
                return policy.idleTimeout != nil ? [.watchActivity] : []
            case .startFailed:
                return afterRun(.startFailure, now: now)
            case .stop:
                stopRequested = true
                return []
            case .resume:
                stopRequested = false
                return []
            case .readable, .exited:
                return ignored(event)
            case .timer, .activity, .measured, .notFrozenYet, .ready, .watchdogPing, .extendTimeout, .mainPID,
                 .mainFound, .mainNotFound:
                return []
            }

        case .running(var run):
            switch event {
            case .exited(let pid, let result, let progress):
                guard pid == run.pid, !run.seekingMain else { return ignored(event) }
                if policy.forking && !run.ready && result == .success {
                    run.seekingMain = true
                    enter(.running(run))
                    return [.findMain(parent: pid)]
                }
                return runEnded(run, result: result, progress: progress, now: now)
            case .mainFound(let pid, let how):
                guard run.seekingMain else { return ignored(event) }
                run.seekingMain = false
                run.pid = pid
                run.ready = true
                run.lastWatchdog = now
                run.lastActivity = now
                enter(.running(run))
                return [.log(.info, "\(name): ready after \((now - run.since).porterDescription), main process pid \(pid) (\(how))")]
            case .mainNotFound(let why, let failed):
                guard run.seekingMain else { return ignored(event) }
                return (policy.idleTimeout != nil ? [.unwatchActivity] : []) + [.log(failed ? .warning : .info, "\(name): \(why)")]
                    + afterRun(failed ? .protocolError : .success, now: now)
            case .activity:
                run.lastActivity = now
                enter(.running(run))
                return []
            case .ready:
                guard !run.ready else { return [] }
                run.ready = true
                run.lastWatchdog = now
                enter(.running(run))
                return [.log(.info, "\(name): ready after \((now - run.since).porterDescription)")]
            case .watchdogPing:
                run.lastWatchdog = now
                enter(.running(run))
                return []
            case .extendTimeout(let d):
                if !run.ready { run.startDeadline = max(run.startDeadline ?? now, now + d) }
                enter(.running(run))
                return []
            case .mainPID(let pid):
                guard !run.seekingMain else { return [] }
                run.pid = pid
                enter(.running(run))
                return [.log(.info, "\(name): main process is now pid \(pid)")]
            case .timer:
                return runTimer(run, now: now)
            case .measured(let busy):
                // The answer to `.measureIdle`.
                if busy || run.seekingMain {
                    run.lastActivity = now
                    enter(.running(run))
                    return []
                }
                enter(.freezing(run, since: now, poll: now + Self.freezePoll))
                return [.freeze(pid: run.pid)]
            case .stop:
                if run.seekingMain {
                    // Nothing to signal: what the first process left is
                    // followed as the leftovers of its group.
                    enter(.stopped)
                    return policy.idleTimeout != nil ? [.unwatchActivity] : []
                }
                return beginStop(run.pid, reason: .shutdown, now: now, log: nil)
            case .readable, .started, .startFailed:
                return ignored(event)
            case .notFrozenYet, .resume:
                return []
            }

        case .freezing(var run, let since, _):
            switch event {
            case .exited(let pid, let result, let progress):
                guard pid == run.pid else { return ignored(event) }
                return runEnded(run, result: result, progress: progress, now: now)
            case .activity:
                // Work arrived while stopping it: keep it.
                run.lastActivity = now
                enter(.running(run))
                return [.signal(.init(pid: run.pid, signal: Sig.continue, group: true))]
            case .timer:
                if now - since >= policy.freezeLimit {
                    run.lastActivity = now
                    enter(.running(run))
                    return [.signal(.init(pid: run.pid, signal: Sig.continue, group: true)),
                            .log(.warning, "\(name): pid \(run.pid) did not stop within \(policy.freezeLimit.porterDescription); not stopping it for idleness now")]
                }
                enter(.freezing(run, since: since, poll: now + Self.freezePoll))
                return [.checkFrozen(pid: run.pid)]
            case .notFrozenYet:
                return []
            case .measured(let busy):
                if busy {
                    run.lastActivity = now
                    enter(.running(run))
                    return [.signal(.init(pid: run.pid, signal: Sig.continue, group: true))]
                }
                return beginStop(run.pid, reason: .idle, now: now,
                                 log: "\(name): idle for \(policy.idleTimeout?.porterDescription ?? "?"), stopping pid \(run.pid)")
            case .stop:
                return beginStop(run.pid, reason: .shutdown, now: now, log: nil)
            case .readable, .started, .startFailed:
                return ignored(event)
            case .ready, .watchdogPing, .extendTimeout, .mainPID, .mainFound, .mainNotFound, .resume:
                // Stopped for the idle check: it cannot have sent these since.
                return []
            }

        case .stopping(let pid, let killAt, let reason):
            switch event {
            case .timer:
                guard let killAt, now >= killAt else { return [] }
                enter(.stopping(pid: pid, killAt: nil, reason: reason))
                return [.log(.warning, "\(name): pid \(pid) still running after \(kill.timeout.duration?.porterDescription ?? "the stop timeout"), sending \(Values.signalName(kill.finalKillSignal))")]
                    + kill.escalate(pid).map { .signal($0) }
            case .exited(let exited, _, _):
                guard exited == pid else { return ignored(event) }
                return stopped(pid, reason: reason, now: now)
            case .stop:
                stopRequested = true
                return []
            case .resume:
                // Stopped on request and resumed before the end: once it
                // has exited, the service listens again (as after an idle stop).
                stopRequested = false
                if reason == .shutdown { enter(.stopping(pid: pid, killAt: killAt, reason: .idle)) }
                return []
            case .readable, .started, .startFailed:
                return ignored(event)
            case .activity, .measured, .notFrozenYet, .ready, .watchdogPing, .extendTimeout, .mainPID, .mainFound, .mainNotFound:
                return []  // already on the way out
            }

        case .remaining:
            switch event {
            case .stop:
                enter(.stopped)
                return []
            case .readable, .started, .startFailed, .exited:
                return ignored(event)
            case .timer, .activity, .measured, .notFrozenYet, .ready, .watchdogPing, .extendTimeout, .mainPID, .mainFound, .mainNotFound,
                 .resume:
                return []
            }

        case .waitingRestart(let until):
            switch event {
            case .timer:
                guard now >= until else { return [] }
                enter(.starting)
                return [.log(.info, "\(name): restarting"), .start]
            case .stop:
                enter(.stopped)
                return [.unwatch]
            case .readable, .started, .startFailed, .exited:
                return ignored(event)
            case .activity, .measured, .notFrozenYet, .ready, .watchdogPing, .extendTimeout, .mainPID, .mainFound, .mainNotFound,
                 .resume:
                return []
            }

        case .holdingOff(let until):
            switch event {
            case .timer:
                guard now >= until else { return [] }
                return enterListening(log: "\(name): back-off over, listening again")
            case .stop:
                enter(.stopped)
                return [.unwatch]
            case .readable, .started, .startFailed, .exited:
                return ignored(event)
            case .activity, .measured, .notFrozenYet, .ready, .watchdogPing, .extendTimeout, .mainPID, .mainFound, .mainNotFound,
                 .resume:
                return []
            }

        case .stopped:
            switch event {
            case .resume:
                stopRequested = false
                return enterListening(log: nil)
            case .readable, .started, .startFailed, .exited, .timer, .stop, .activity, .measured, .notFrozenYet,
                 .ready, .watchdogPing, .extendTimeout, .mainPID, .mainFound, .mainNotFound:
                return []  // nothing starts it again but `porter start`
            }
        }
    }

    /// The one place that changes the state (the supervisor logs each
    /// change of kind as `a -> b` at debug level).
    mutating func enter(_ next: State) { state = next }

    private func ignored(_ event: Event) -> [Action] {
        [.log(.debug, "\(name): ignoring \(event) in state \(state)")]
    }

}
