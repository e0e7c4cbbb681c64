/// The state machine of one Accept=no service: the service is started on
/// the first readable event of its listeners, the listeners are left alone
/// while it runs, and watched again when it exits, so whatever queued
/// meanwhile starts it again.
///
///   state \ event | readable        | started    | startFailed  | exited             | timer          | stop
///   --------------+-----------------+------------+--------------+--------------------+----------------+------------------
///   listening     | starting [start]| -          | -            | -                  | -              | stopped
///   starting      | -               | running    | listening or | -                  | -              | (after started)
///                 |                 |            |  holdingOff  |                    |                |
///   running       | -               | -          | -            | listening or       | -              | stopping [signal]
///                 |                 |            |              |  holdingOff        |                |
///   holdingOff    | -               | -          | -            | -                  | listening      | stopped
///   stopping      | -               | -          | -            | stopped            | [SIGKILL]      | -
///   stopped       | -               | -          | -            | -                  | -              | -
///
/// Entering listening watches the listeners; leaving it unwatches them.
/// Failed runs (exec failure, non-zero status, killed by a signal) and runs
/// that made no progress (they exited with their work still queued, so the
/// listener would start them again at once) count against
/// StartLimitIntervalSec=/StartLimitBurst=; when the limit is hit the
/// machine holds off with the listeners bound but unwatched, so clients wait
/// in the backlog and the core is not spun. Clean runs do not count:
/// porter's services are meant to exit when idle and start again often.
public struct ServiceMachine: Sendable {
    public enum State: Equatable, Sendable {
        case listening
        case starting
        case running(pid: Int32, since: Instant)
        case holdingOff(until: Instant)
        case stopping(pid: Int32, killAt: Instant?)
        case stopped
    }

    public enum Event: Equatable, Sendable {
        case readable
        case started(pid: Int32)
        case startFailed
        /// `progress`: the queued work shrank while it ran (or cannot be measured).
        case exited(pid: Int32, success: Bool, progress: Bool)
        case timer
        case stop
    }

    public enum Action: Equatable, Sendable {
        case watch
        case unwatch
        case start
        case signal(KillPolicy.Signal)
        case log(LogLevel, String)
    }

    public let name: String
    public let kill: KillPolicy
    public let startLimitInterval: Duration
    public let startLimitBurst: Int
    public private(set) var state = State.listening
    /// When recent failed runs ended, oldest first (at most startLimitBurst).
    private var failures: [Instant] = []
    private var stopRequested = false

    public init(name: String, kill: KillPolicy, startLimitInterval: Duration = .seconds(10), startLimitBurst: Int = 5) {
        self.name = name
        self.kill = kill
        self.startLimitInterval = startLimitInterval
        self.startLimitBurst = startLimitBurst
    }

    /// When the machine next needs a `.timer` event.
    public var deadline: Instant? {
        switch state {
        case .holdingOff(let until): return until
        case .stopping(_, let killAt): return killAt
        default: return nil
        }
    }

    public var pid: Int32? {
        switch state {
        case .running(let pid, _), .stopping(let pid, _): return pid
        default: return nil
        }
    }

    public mutating func handle(_ event: Event, now: Instant) -> [Action] {
        switch (state, event) {
        case (.listening, .readable):
            state = .starting
            return [.unwatch, .start]

        case (.starting, .started(let pid)):
            state = .running(pid: pid, since: now)
            if stopRequested { return handle(.stop, now: now) }
            return []

        case (.starting, .startFailed):
            return afterRun(failed: true, now: now)

        case (.running(let pid, _), .exited(let exited, let success, let progress)) where exited == pid:
            var actions = kill.leftovers(pid).map { Action.signal($0) }
            actions += afterRun(failed: !success || !progress, now: now)
            return actions

        case (.holdingOff(let until), .timer) where now >= until:
            return enterListening(log: "\(name): start limit back-off over, listening again")

        case (.listening, .stop), (.holdingOff, .stop):
            state = .stopped
            return [.unwatch]

        case (.starting, .stop):
            stopRequested = true
            return []

        case (.running(let pid, _), .stop):
            let (signals, killAt) = kill.begin(pid, now: now)
            if signals.isEmpty {
                // KillMode=none: the process is left running, as systemd does.
                state = .stopped
                return [.log(.warning, "\(name): KillMode=none, leaving pid \(pid) running")]
            }
            state = .stopping(pid: pid, killAt: killAt)
            return signals.map { .signal($0) }

        case (.stopping(let pid, let killAt), .timer):
            guard let killAt, now >= killAt else { return [] }
            state = .stopping(pid: pid, killAt: nil)
            return [.log(.warning, "\(name): pid \(pid) still running after \(kill.timeout.duration?.porterDescription ?? "the stop timeout"), sending \(Values.signalName(kill.finalKillSignal))")]
                + kill.escalate(pid).map { .signal($0) }

        case (.stopping(let pid, _), .exited(let exited, _, _)) where exited == pid:
            state = .stopped
            return kill.leftovers(pid).map { .signal($0) }

        case (_, .timer), (.stopped, _), (.stopping, .stop):
            return []  // nothing due, or already on the way out

        default:
            return [.log(.debug, "\(name): ignoring \(event) in state \(state)")]
        }
    }

    private mutating func afterRun(failed: Bool, now: Instant) -> [Action] {
        if stopRequested {
            state = .stopped
            return []
        }
        if failed && startLimitBurst > 0 && startLimitInterval > .zero {
            failures.append(now)
            failures.removeAll { now - $0 >= startLimitInterval }
            if failures.count >= startLimitBurst {
                let until = failures[0] + startLimitInterval
                failures.removeAll()
                state = .holdingOff(until: until)
                let wait = (until - now).porterDescription
                return [.log(.warning, "\(name): start limit hit (\(startLimitBurst) runs in \(startLimitInterval.porterDescription) failed or left their work queued), holding off \(wait); clients wait in the backlog")]
            }
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
