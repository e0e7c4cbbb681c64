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
///   waitingRestart | -         | -                     | -                   | starting                    | -                     | stopped
///   holdingOff     | -         | -                     | -                   | listening                   | -                     | stopped
///   stopped        | -         | -                     | -                   | -                           | -                     | -
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
/// Idle stop without losing a connection: when the service has had no
/// activity for IdleTimeoutSec=, the supervisor measures (established
/// connections of the listeners and their queues, through sock_diag); if idle,
/// the service's process group is stopped with SIGSTOP, measured again once
/// stopped — a connection it accepted in between shows up now — and only
/// then sent KillSignal= (with SIGCONT). Connections that arrive later wait
/// in the backlog and start the next run.
public struct ServiceMachine: Sendable {
    public struct Run: Equatable, Sendable {
        public var pid: Int32
        public var since: Instant
        public var ready: Bool
        public var lastActivity: Instant
        public var lastWatchdog: Instant
        /// TimeoutStartSec= for Type=notify, moved by EXTEND_TIMEOUT_USEC=.
        public var startDeadline: Instant?
    }

    public enum StopReason: Equatable, Sendable {
        case idle, shutdown, runtimeMax, watchdog, startTimeout
    }

    public enum State: Equatable, Sendable {
        case listening
        case starting
        case running(Run)
        /// SIGSTOP sent at `since`; check again at `poll`.
        case freezing(Run, since: Instant, poll: Instant)
        case stopping(pid: Int32, killAt: Instant?, reason: StopReason)
        case waitingRestart(until: Instant)
        case holdingOff(until: Instant)
        case stopped
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
    }

    public enum Action: Equatable, Sendable {
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
        case log(LogLevel, String)
    }

    public let name: String
    public private(set) var policy: ServicePolicy
    public private(set) var state = State.listening
    /// When recent failed runs ended, oldest first.
    private var failures: [Instant] = []
    /// Back-offs in a row; a clean run resets it.
    private var backoffLevel = 0
    private var stopRequested = false
    /// How often a freeze is checked for having taken effect.
    static let freezePoll = Duration.milliseconds(1)

    public init(name: String, policy: ServicePolicy) {
        self.name = name
        self.policy = policy
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
        if policy.notify && !run.ready { consider(run.startDeadline) }
        if let w = policy.watchdog, run.ready || !policy.notify { consider(run.lastWatchdog + w) }
        if let r = policy.runtimeMax { consider(run.since + r) }
        if let i = policy.idleTimeout { consider(run.lastActivity + i) }
        return d
    }

    public var pid: Int32? {
        switch state {
        case .running(let run), .freezing(let run, _, _): return run.pid
        case .stopping(let pid, _, _): return pid
        default: return nil
        }
    }

    public mutating func handle(_ event: Event, now: Instant) -> [Action] {
        switch (state, event) {
        case (.listening, .readable):
            state = .starting
            return [.unwatch, .start]

        case (.starting, .started(let pid)):
            let start = policy.notify ? policy.startTimeout.map { now + $0 } : nil
            state = .running(Run(pid: pid, since: now, ready: !policy.notify, lastActivity: now, lastWatchdog: now, startDeadline: start))
            if stopRequested { return handle(.stop, now: now) }
            return policy.idleTimeout != nil ? [.watchActivity] : []

        case (.starting, .startFailed):
            return afterRun(.startFailure, now: now)

        case (.running(let run), .exited(let exited, let result, let progress)) where exited == run.pid,
             (.freezing(let run, _, _), .exited(let exited, let result, let progress)) where exited == run.pid:
            var actions = kill.leftovers(run.pid).map { Action.signal($0) }
            if policy.idleTimeout != nil { actions.append(.unwatchActivity) }
            return actions + afterRun(result == .success && !progress ? .noProgress : result, now: now)

        case (.running(var run), .activity):
            run.lastActivity = now
            state = .running(run)
            return []

        case (.running(var run), .ready):
            guard !run.ready else { return [] }
            run.ready = true
            run.lastWatchdog = now
            state = .running(run)
            return [.log(.info, "\(name): ready after \((now - run.since).porterDescription)")]

        case (.running(var run), .watchdogPing):
            run.lastWatchdog = now
            state = .running(run)
            return []

        case (.running(var run), .extendTimeout(let d)):
            if !run.ready { run.startDeadline = max(run.startDeadline ?? now, now + d) }
            state = .running(run)
            return []

        case (.running(var run), .mainPID(let pid)):
            run.pid = pid
            state = .running(run)
            return [.log(.info, "\(name): main process is now pid \(pid)")]

        case (.running(let run), .timer):
            return runTimer(run, now: now)

        case (.running(var run), .measured(let busy)):
            // The answer to `.measureIdle`.
            if busy {
                run.lastActivity = now
                state = .running(run)
                return []
            }
            state = .freezing(run, since: now, poll: now + Self.freezePoll)
            return [.freeze(pid: run.pid)]

        case (.freezing(var run, _, _), .activity):
            // Work arrived while stopping it: keep it.
            run.lastActivity = now
            state = .running(run)
            return [.signal(.init(pid: run.pid, signal: 18, group: true))]

        case (.freezing(var run, let since, _), .timer):
            if now - since >= policy.freezeLimit {
                run.lastActivity = now
                state = .running(run)
                return [.signal(.init(pid: run.pid, signal: 18, group: true)),
                        .log(.warning, "\(name): pid \(run.pid) did not stop within \(policy.freezeLimit.porterDescription); not stopping it for idleness now")]
            }
            state = .freezing(run, since: since, poll: now + Self.freezePoll)
            return [.checkFrozen(pid: run.pid)]

        case (.freezing, .notFrozenYet):
            return []

        case (.freezing(var run, _, _), .measured(let busy)):
            if busy {
                run.lastActivity = now
                state = .running(run)
                return [.signal(.init(pid: run.pid, signal: 18, group: true))]
            }
            return beginStop(run.pid, reason: .idle, now: now,
                             log: "\(name): idle for \(policy.idleTimeout?.porterDescription ?? "?"), stopping pid \(run.pid)")

        case (.holdingOff(let until), .timer) where now >= until:
            return enterListening(log: "\(name): back-off over, listening again")

        case (.waitingRestart(let until), .timer) where now >= until:
            state = .starting
            return [.log(.info, "\(name): restarting"), .start]

        case (.listening, .stop), (.holdingOff, .stop), (.waitingRestart, .stop):
            state = .stopped
            return [.unwatch]

        case (.starting, .stop):
            stopRequested = true
            return []

        case (.running(let run), .stop), (.freezing(let run, _, _), .stop):
            return beginStop(run.pid, reason: .shutdown, now: now, log: nil)

        case (.stopping(let pid, let killAt, let reason), .timer):
            guard let killAt, now >= killAt else { return [] }
            state = .stopping(pid: pid, killAt: nil, reason: reason)
            return [.log(.warning, "\(name): pid \(pid) still running after \(kill.timeout.duration?.porterDescription ?? "the stop timeout"), sending \(Values.signalName(kill.finalKillSignal))")]
                + kill.escalate(pid).map { .signal($0) }

        case (.stopping(let pid, _, let reason), .exited(let exited, _, _)) where exited == pid:
            var actions = kill.leftovers(pid).map { Action.signal($0) }
            if policy.idleTimeout != nil { actions.append(.unwatchActivity) }
            switch reason {
            case .shutdown:
                state = .stopped
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

        case (.stopping, .stop):
            stopRequested = true
            return []

        case (_, .timer), (.stopped, _), (_, .activity), (_, .measured), (_, .notFrozenYet),
             (_, .ready), (_, .watchdogPing), (_, .extendTimeout), (_, .mainPID):
            return []  // nothing due, stale, or already on the way out

        default:
            return [.log(.debug, "\(name): ignoring \(event) in state \(state)")]
        }
    }

    /// A deadline of a running service passed.
    private mutating func runTimer(_ run: Run, now: Instant) -> [Action] {
        if policy.notify && !run.ready, let d = run.startDeadline, now >= d {
            return beginStop(run.pid, reason: .startTimeout, now: now,
                             log: "\(name): not ready after \((now - run.since).porterDescription) (TimeoutStartSec=), stopping pid \(run.pid)")
        }
        if let w = policy.watchdog, run.ready || !policy.notify, now >= run.lastWatchdog + w {
            // systemd's WatchdogSignal= default: SIGABRT, for a core dump of the hang.
            var k = kill
            k.killSignal = 6
            let (signals, killAt) = k.begin(run.pid, now: now)
            state = .stopping(pid: run.pid, killAt: killAt, reason: .watchdog)
            return [.log(.warning, "\(name): watchdog timeout (no WATCHDOG=1 in \(w.porterDescription)), aborting pid \(run.pid)")]
                + signals.map { .signal($0) }
        }
        if let r = policy.runtimeMax, now >= run.since + r {
            return beginStop(run.pid, reason: .runtimeMax, now: now,
                             log: "\(name): RuntimeMaxSec=\(r.porterDescription) reached, stopping pid \(run.pid)")
        }
        if let i = policy.idleTimeout, now >= run.lastActivity + i {
            return [.measureIdle]
        }
        return []
    }

    private mutating func beginStop(_ pid: Int32, reason: StopReason, now: Instant, log: String?) -> [Action] {
        let (signals, killAt) = kill.begin(pid, now: now)
        var actions: [Action] = log.map { [.log(.info, $0)] } ?? []
        if signals.isEmpty && reason == .shutdown {
            // KillMode=none: the process is left running, as systemd does.
            state = .stopped
            return actions + [.log(.warning, "\(name): KillMode=none, leaving pid \(pid) running")]
        }
        state = .stopping(pid: pid, killAt: killAt, reason: reason)
        actions += signals.map { .signal($0) }
        return actions
    }

    private mutating func afterRun(_ result: RunResult, now: Instant) -> [Action] {
        if stopRequested {
            state = .stopped
            return []
        }
        if !result.isFailure {
            backoffLevel = 0
            failures.removeAll()
        } else if policy.startLimitBurst > 0 && policy.startLimitInterval > .zero {
            failures.append(now)
            failures.removeAll { now - $0 >= policy.startLimitInterval }
            // Once in back-off, one more failure is enough for the next one.
            if failures.count >= policy.startLimitBurst || backoffLevel > 0 {
                let wait = policy.backoff(backoffLevel)
                backoffLevel += 1
                failures.removeAll()
                state = .holdingOff(until: now + wait)
                return [.log(.warning, "\(name): start limit hit (\(policy.startLimitBurst) runs in \(policy.startLimitInterval.porterDescription) failed or left their work queued), failed; holding off \(wait.porterDescription); clients wait in the backlog")]
            }
        }
        if result == .watchdog || policy.restart.restarts(after: result) {
            if policy.restartDelay <= .zero {
                state = .starting
                return [.start]
            }
            state = .waitingRestart(until: now + policy.restartDelay)
            return []
        }
        return enterListening(log: nil)
    }

    private mutating func enterListening(log: String?) -> [Action] {
        state = .listening
        return (log.map { [.log(.info, $0)] } ?? []) + [.watch]
    }
}

public enum LogLevel: Int, Comparable, Sendable {
    case debug = 0, info, warning, error

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }

    public var name: String {
        switch self {
        case .debug: return "debug"
        case .info: return "info"
        case .warning: return "warning"
        case .error: return "error"
        }
    }
}
