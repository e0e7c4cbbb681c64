/// One running Accept=yes instance (per connection or per file): when it
/// is stopped (RuntimeMaxSec=, IdleTimeoutSec= without traffic, shutdown)
/// and when its stop escalates (FinalKillSignal= after TimeoutStopSec=).
///
///   state \ event | timer                                  | activity     | quiet(q)                      | stop
///   --------------+----------------------------------------+--------------+-------------------------------+---------------------------
///   running       | RuntimeMaxSec= due: stopping [signals]; | last = now   | last = max(last, now - q);    | stopping [signals];
///                 | idle check due: TCP [measureQuiet],     |              | quiet ≥ IdleTimeoutSec=:      | KillMode=none: abandoned
///                 | else decide as quiet(nil)               |              | stopping, else check later    |
///   stopping      | kill due: [final signal]                | -            | -                             | -
///   abandoned     | -                                       | -            | -                             | -
///
/// Traffic on TCP is read from the kernel (TCP_INFO: how long the
/// connection has been quiet) only when a check is due; on Unix sockets
/// the supervisor reports each arrival as `activity`.
public struct InstanceMachine: Sendable, Codable {
    public enum State: Equatable, Sendable, Codable {
        case running
        case stopping(killAt: Instant?)
        /// KillMode=none at shutdown: left running, porter lets go of it.
        case abandoned
    }

    public enum Event: Equatable, Sendable {
        case timer
        /// Traffic on porter's copy of the connection.
        case activity
        /// The answer to `.measureQuiet`: how long the connection has
        /// carried nothing (nil: cannot tell).
        case quiet(Duration?)
        case stop
    }

    public enum Action: Equatable, Sendable {
        case signal(KillPolicy.Signal)
        /// Ask the kernel how long the connection has been quiet.
        case measureQuiet
        case log(LogLevel, String)
    }

    public struct Idle: Equatable, Sendable, Codable {
        public var timeout: Duration
        /// TCP: traffic is measured, not reported.
        public var measured: Bool
        public var lastActivity: Instant
        public var checkAt: Instant
    }

    public let pid: Int32
    public let unit: String
    public let kill: KillPolicy
    public let runtimeEnd: Instant?
    public private(set) var idle: Idle?
    public private(set) var state = State.running
    /// Stopped for IdleTimeoutSec= (for the count of idle stops).
    public private(set) var stoppedIdle = false

    public init(pid: Int32, unit: String, kill: KillPolicy, started now: Instant, runtimeMax: Duration?,
                idleTimeout: Duration?, measured: Bool) {
        self.pid = pid
        self.unit = unit
        self.kill = kill
        runtimeEnd = runtimeMax.map { now + $0 }
        idle = idleTimeout.map { Idle(timeout: $0, measured: measured, lastActivity: now, checkAt: now + $0) }
    }

    public var isStopping: Bool {
        if case .stopping = state { return true }
        return false
    }

    /// When the instance next needs a `.timer`.
    public var deadline: Instant? {
        switch state {
        case .running: return [runtimeEnd, idle?.checkAt].compactMap { $0 }.min()
        case .stopping(let killAt): return killAt
        case .abandoned: return nil
        }
    }

    public mutating func handle(_ event: Event, now: Instant) -> [Action] {
        switch state {
        case .running:
            switch event {
            case .timer:
                if let end = runtimeEnd, now >= end { return stop(now: now, why: "RuntimeMaxSec= reached") }
                guard let i = idle, now >= i.checkAt else { return [] }
                return i.measured ? [.measureQuiet] : decide(now: now)
            case .activity:
                idle?.lastActivity = now
                return []
            case .quiet(let q):
                if let q, let last = idle?.lastActivity { idle?.lastActivity = max(last, now + (Duration.zero - q)) }
                return decide(now: now)
            case .stop:
                let (signals, killAt) = kill.begin(pid, now: now)
                if signals.isEmpty {
                    state = .abandoned
                    return []
                }
                state = .stopping(killAt: killAt)
                return signals.map { .signal($0) }
            }
        case .stopping(let killAt):
            switch event {
            case .timer:
                guard let killAt, now >= killAt else { return [] }
                state = .stopping(killAt: nil)
                return [.log(.warning, "\(unit): pid \(pid) still running after the stop timeout, sending \(Values.signalName(kill.finalKillSignal))")]
                    + kill.escalate(pid).map { .signal($0) }
            case .activity, .quiet, .stop:
                return []
            }
        case .abandoned:
            switch event {
            case .timer, .activity, .quiet, .stop: return []
            }
        }
    }

    /// An idle check: stop after IdleTimeoutSec= without traffic, or look
    /// again when it would be reached.
    private mutating func decide(now: Instant) -> [Action] {
        guard var i = idle else { return [] }
        if now - i.lastActivity >= i.timeout {
            stoppedIdle = true
            return stop(now: now, why: "no traffic for \(i.timeout.porterDescription)")
        }
        i.checkAt = i.lastActivity + i.timeout
        idle = i
        return []
    }

    private mutating func stop(now: Instant, why: String) -> [Action] {
        let (signals, killAt) = kill.begin(pid, now: now)
        state = .stopping(killAt: killAt)
        return [.log(.info, "\(unit): \(why), stopping pid \(pid)")] + signals.map { .signal($0) }
    }
}
