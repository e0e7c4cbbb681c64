/// One `porter reload UNIT` of a running service, as systemd.service(5)
/// describes it. Type=notify-reload: porter sends ReloadSignal= to the main
/// process and waits for RELOADING=1, stamped with a MONOTONIC_USEC= no
/// earlier than the signal (so a message from an older reload cannot end
/// this one), and then READY=1. ExecReload= commands, when there are any,
/// run beside that wait (a service that reloads through its own command,
/// with a harmless ReloadSignal= such as SIGCONT, says RELOADING=1 while
/// the command runs). The reload is over when every part is, and has failed
/// as soon as one part fails.
///
/// A value: the supervisor feeds it events and reads `outcome`, so the
/// protocol is tested without processes.
public struct ServiceReload: Sendable, Equatable {
    /// Where the notification part stands.
    public enum Notify: Equatable, Sendable {
        /// Not Type=notify-reload: nothing to wait for.
        case none
        /// ReloadSignal= sent; RELOADING=1 not yet heard.
        case signalled
        /// RELOADING=1 heard; READY=1 not yet.
        case reloading
        /// READY=1 after RELOADING=1: the service says it is done.
        case ready
    }

    public enum Outcome: Equatable, Sendable {
        case success
        case failed(String)
    }

    public enum Event: Equatable, Sendable {
        /// RELOADING=1, with the MONOTONIC_USEC= of the same message.
        case reloading(monotonicMicroseconds: Int64?)
        case ready
        /// The ExecReload= commands ended.
        case commandsEnded(Outcome)
        case timer(Instant)
        /// The run ended or a stop began: nothing left to reload.
        case abandoned(String)
    }

    public let began: Instant
    /// TimeoutStartSec=, as systemd uses for reloads; nil for infinity.
    public let deadline: Instant?
    public private(set) var notify: Notify
    /// nil while ExecReload= commands run.
    public private(set) var commands: Outcome?
    private var failure: String?

    public init(began: Instant, signalled: Bool, commands: Bool, timeout: Duration?) {
        self.began = began
        self.deadline = timeout.map { began + $0 }
        self.notify = signalled ? .signalled : .none
        self.commands = commands ? nil : .success
    }

    /// Success once every part is done, a failure as soon as one failed,
    /// nil while the reload goes on.
    public var outcome: Outcome? {
        if let failure { return .failed(failure) }
        if case .failed(let why)? = commands { return .failed(why) }
        guard commands == .success, notify == .none || notify == .ready else { return nil }
        return .success
    }

    /// When the wait for the service's notifications runs out.
    public var waitDeadline: Instant? {
        guard outcome == nil, notify == .signalled || notify == .reloading else { return nil }
        return deadline
    }

    /// Handles `event`; the answer is a line for the log when the event
    /// was not taken as asked (nil otherwise).
    public mutating func handle(_ event: Event) -> String? {
        guard outcome == nil else { return nil }
        switch event {
        case .reloading(let stamp):
            guard notify == .signalled else { return nil }
            guard let stamp else {
                return "RELOADING=1 without MONOTONIC_USEC= ignored: Type=notify-reload needs the time the reload began"
            }
            guard stamp >= began.nanoseconds / 1000 else {
                return "RELOADING=1 with MONOTONIC_USEC=\(stamp), from before the reload signal, ignored"
            }
            notify = .reloading
        case .ready:
            if notify == .reloading { notify = .ready }
        case .commandsEnded(let o):
            commands = o
        case .timer(let now):
            guard let d = waitDeadline, now >= d else { return nil }
            failure = notify == .signalled ? "no RELOADING=1 in time (TimeoutStartSec=)" : "no READY=1 after RELOADING=1 in time (TimeoutStartSec=)"
        case .abandoned(let why):
            failure = why
        }
        return nil
    }
}
