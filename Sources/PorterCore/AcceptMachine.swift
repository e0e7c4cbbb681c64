/// The state machine of one Accept=yes socket: it accepts while fewer than
/// MaxConnections= instances run, and stops watching its listeners at the
/// limit, so further clients wait in the kernel's backlog instead of being
/// accepted and refused (s6-ipcserverd's way; systemd closes them instead).
///
///   state \ event | instanceStarted          | instanceExited              | stop             | limit(n) (reload)
///   --------------+--------------------------+-----------------------------+------------------+---------------------------
///   listening     | paused [unwatch] at limit| -                           | closed [unwatch] | paused [unwatch] at limit
///   paused        | -                        | listening [watch] below limit | closed         | listening [watch] below it
///   closed        | -                        | -                           | -                | -
public struct AcceptMachine: Sendable {
    public enum State: Equatable, Sendable { case listening, paused, closed }

    public enum Event: Equatable, Sendable {
        case instanceStarted, instanceExited, stop
        /// A reload changed MaxConnections=.
        case limit(Int)
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

    /// Every (state, event) pair is its own case, as the table above: the
    /// compiler names a pair that a new state or event leaves out.
    public mutating func handle(_ event: Event) -> [Action] {
        switch (state, event) {
        case (.listening, .instanceStarted):
            running += 1
            if running >= maxConnections {
                state = .paused
                return [.unwatch, .log(.info, "\(name): \(running) instances running (MaxConnections=\(maxConnections)); new clients wait in the backlog")]
            }
            return []
        case (.listening, .instanceExited):
            running = max(0, running - 1)
            return []
        case (.listening, .stop), (.paused, .stop):
            state = .closed
            return [.unwatch]
        case (.paused, .instanceStarted):
            // Not accepted while paused; an instance started by another path.
            running += 1
            return [.log(.debug, "\(name): instance started while paused")]
        case (.paused, .instanceExited):
            running = max(0, running - 1)
            if running < maxConnections {
                state = .listening
                return [.watch]
            }
            return []
        case (.closed, .instanceStarted):
            return []
        case (.closed, .instanceExited):
            running = max(0, running - 1)
            return []
        case (.closed, .stop):
            return []
        case (.listening, .limit(let n)):
            maxConnections = n
            if running >= n {
                state = .paused
                return [.unwatch]
            }
            return []
        case (.paused, .limit(let n)):
            maxConnections = n
            if running < n {
                state = .listening
                return [.watch]
            }
            return []
        case (.closed, .limit(let n)):
            maxConnections = n
            return []
        }
    }
}
