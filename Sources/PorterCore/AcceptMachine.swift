/// The state machine of one Accept=yes socket: it accepts while fewer than
/// MaxConnections= instances run, and stops watching its listeners at the
/// limit, so further clients wait in the kernel's backlog instead of being
/// accepted and refused (s6-ipcserverd's way; systemd closes them instead).
/// An accept that fails for want of resources (EMFILE, ENOBUFS...) pauses
/// the socket for a while instead of spinning on a listener that stays
/// readable; the clients wait in the backlog meanwhile.
///
///   state \ event     | instanceStarted    | instanceExited                | stop             | limit(n) (reload)          | acceptFailed(until) | timer(now)
///   ------------------+--------------------+-------------------------------+------------------+----------------------------+---------------------+------------------------------
///   listening         | paused [unwatch]   | -                             | closed [unwatch] | paused [unwatch] at limit  | backingOff [unwatch]| -
///                     | at limit           |                               |                  |                            |                     |
///   paused            | -                  | listening [watch] below limit | closed           | listening [watch] below it | backingOff          | -
///   backingOff(until) | -                  | -                             | closed           | -                          | later until         | due: listening [watch] below
///                     |                    |                               |                  |                            |                     | the limit, else paused
///   closed            | -                  | -                             | -                | -                          | -                   | -
public struct AcceptMachine: Sendable, Codable {
    public enum State: Equatable, Sendable, Codable {
        case listening, paused
        /// After a failed accept: not watched until then.
        case backingOff(until: Instant)
        case closed
    }

    public enum Event: Equatable, Sendable {
        case instanceStarted, instanceExited, stop
        /// A reload changed MaxConnections=.
        case limit(Int)
        /// accept(2) failed for want of resources, or an instance could
        /// not be watched: pause until then.
        case acceptFailed(until: Instant)
        case timer(now: Instant)
    }

    public enum Action: Equatable, Sendable {
        case watch, unwatch
        case log(LogLevel, String)
    }

    public let name: String
    public private(set) var maxConnections: Int
    public private(set) var state = State.listening
    public private(set) var running = 0

    public init(name: String, maxConnections: Int) {
        self.name = name
        self.maxConnections = maxConnections
    }

    /// Whether another connection may be accepted now.
    public var canAccept: Bool { state == .listening && running < maxConnections }

    /// When the machine next needs a `.timer`.
    public var deadline: Instant? {
        if case .backingOff(let until) = state { return until }
        return nil
    }

    /// Every (state, event) pair is its own case, as the table above: the
    /// compiler names a pair that a new state or event leaves out.
    public mutating func handle(_ event: Event) -> [Action] {
        switch state {
        case .listening:
            switch event {
            case .instanceStarted:
                running += 1
                if running >= maxConnections {
                    state = .paused
                    return [.unwatch, .log(.info, "\(name): \(running) instances running (MaxConnections=\(maxConnections)); new clients wait in the backlog")]
                }
                return []
            case .instanceExited:
                running = max(0, running - 1)
                return []
            case .stop:
                state = .closed
                return [.unwatch]
            case .limit(let n):
                maxConnections = n
                if running >= n {
                    state = .paused
                    return [.unwatch]
                }
                return []
            case .acceptFailed(let until):
                state = .backingOff(until: until)
                return [.unwatch]
            case .timer:
                return []
            }
        case .paused:
            switch event {
            case .instanceStarted:
                // Not accepted while paused; an instance started by another path.
                running += 1
                return [.log(.debug, "\(name): instance started while paused")]
            case .instanceExited:
                running = max(0, running - 1)
                if running < maxConnections {
                    state = .listening
                    return [.watch]
                }
                return []
            case .stop:
                state = .closed
                return [.unwatch]
            case .limit(let n):
                maxConnections = n
                if running < n {
                    state = .listening
                    return [.watch]
                }
                return []
            case .acceptFailed(let until):
                state = .backingOff(until: until)
                return []
            case .timer:
                return []
            }
        case .backingOff(let until):
            switch event {
            case .instanceStarted:
                running += 1
                return []
            case .instanceExited:
                running = max(0, running - 1)
                return []
            case .stop:
                state = .closed
                return []
            case .limit(let n):
                maxConnections = n
                return []
            case .acceptFailed(let later):
                state = .backingOff(until: max(until, later))
                return []
            case .timer(let now):
                guard now >= until else { return [] }
                if running < maxConnections {
                    state = .listening
                    return [.watch]
                }
                state = .paused
                return []
            }
        case .closed:
            switch event {
            case .instanceExited:
                running = max(0, running - 1)
                return []
            case .limit(let n):
                maxConnections = n
                return []
            case .instanceStarted, .stop, .acceptFailed, .timer:
                return []
            }
        }
    }
}
