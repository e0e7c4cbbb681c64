/// When an Accept=no path unit starts its service (systemd.path(5)). A
/// change (PathChanged=, PathModified=, a path that appears) starts the
/// service when it is idle; while it runs the change is remembered and
/// starts it again once it is idle (systemd would lose it). A state
/// (PathExists=, PathExistsGlob=, DirectoryNotEmpty=) that holds starts it
/// when idle and is looked at again each time it becomes idle.
/// TriggerLimitBurst= starts within TriggerLimitIntervalSec= are allowed;
/// one more fails the unit: it stops watching, as in systemd.
///
///   state \ event | changed(p)                         | holds(p)                 | serviceIdle      | stop
///   --------------+------------------------------------+--------------------------+------------------+--------
///   watching      | idle: [start p] / busy: pending(p) | idle: [start p] / busy: -| [checkStates]    | stopped
///   pending(p)    | idle: [start q] / busy: pending(q) | idle: [start q] / busy: -| [start p]        | stopped
///   failed        | -                                  | -                        | -                | stopped
///   stopped       | -                                  | -                        | -                | -
///
/// Every [start] passes the trigger limit first; over it: failed [unwatch].
public struct PathTrigger: Sendable, Codable {
    public enum State: Equatable, Sendable, Codable {
        case watching
        /// A change fired while the service ran: this path starts it next.
        case pending(String)
        case failed
        case stopped
    }

    public enum Event: Equatable, Sendable {
        /// A change condition fired for this path.
        case changed(String, serviceIdle: Bool)
        /// A state condition holds, for this path.
        case holds(String, serviceIdle: Bool)
        /// The service is waiting for work again.
        case serviceIdle
        case stop
    }

    public enum Action: Equatable, Sendable {
        /// Start the service with TRIGGER_PATH set to this path.
        case start(String)
        /// Look at the state conditions and report `holds`.
        case checkStates
        /// Failed: drop every watch.
        case unwatch
        case log(LogLevel, String)
    }

    public let name: String
    public let limitInterval: Duration
    public let limitBurst: Int
    public private(set) var state = State.watching
    /// Recent starts, for the trigger limit.
    private var starts: [Instant] = []

    public init(name: String, limitInterval: Duration, limitBurst: Int) {
        self.name = name
        self.limitInterval = limitInterval
        self.limitBurst = limitBurst
    }

    public var isFailed: Bool { state == .failed }

    public mutating func handle(_ event: Event, now: Instant) -> [Action] {
        switch state {
        case .watching, .pending:
            // A change or a state behaves the same whether one is pending
            // (the latest change is the one kept); only idleness differs.
            switch event {
            case .changed(let path, let idle):
                if idle { return start(path, now: now) }
                state = .pending(path)
                return []
            case .holds(let path, let idle):
                return idle ? start(path, now: now) : []
            case .serviceIdle:
                if case .pending(let waiting) = state { return start(waiting, now: now) }
                return [.checkStates]
            case .stop:
                state = .stopped
                return []
            }
        case .failed:
            switch event {
            case .changed, .holds, .serviceIdle: return []
            case .stop:
                state = .stopped
                return []
            }
        case .stopped:
            switch event {
            case .changed, .holds, .serviceIdle, .stop: return []
            }
        }
    }

    /// A start, through the trigger limit.
    private mutating func start(_ path: String, now: Instant) -> [Action] {
        if limitBurst > 0 && limitInterval > .zero {
            starts.removeAll { now - $0 >= limitInterval }
            if starts.count >= limitBurst {
                state = .failed
                return [.unwatch, .log(.error, "\(name): trigger limit hit (\(limitBurst) starts in \(limitInterval.porterDescription)), failed; no longer watching until porter restarts or a reload changes the unit (TriggerLimitBurst=)")]
            }
            starts.append(now)
        }
        state = .watching
        return [.start(path)]
    }
}
