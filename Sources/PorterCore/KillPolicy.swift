/// How a running service is stopped, from systemd.kill(5): KillSignal= to
/// the processes KillMode= names (porter's stand-in for the control group
/// is the service's process group; every service is a session leader),
/// SIGHUP too with SendSIGHUP=, SIGCONT so a stopped process can act on the
/// signal, then FinalKillSignal= (SIGKILL) after TimeoutStopSec= unless
/// SendSIGKILL=no.
public struct KillPolicy: Equatable, Sendable, Codable {
    public var killSignal = Sig.terminate
    public var finalKillSignal = Sig.kill
    public var mode = KillMode.controlGroup
    public var sendSIGHUP = false
    public var sendSIGKILL = true
    public var timeout = Timeout.after(.seconds(90))

    public init() {}

    public init(_ c: ServiceConfig) {
        killSignal = c.killSignal
        finalKillSignal = c.finalKillSignal
        mode = c.killMode
        sendSIGHUP = c.sendSIGHUP
        sendSIGKILL = c.sendSIGKILL
        timeout = c.timeoutStop
    }

    /// A signal to send: to the process alone, or to its whole group.
    public struct Signal: Equatable, Sendable, Codable {
        public var pid: Int32
        public var signal: Int32
        public var group: Bool

        public init(pid: Int32, signal: Int32, group: Bool) {
            self.pid = pid
            self.signal = signal
            self.group = group
        }
    }

    /// The signals that start a stop, and when to escalate (nil: never).
    public func begin(_ pid: Int32, now: Instant) -> (signals: [Signal], killAt: Instant?) {
        if mode == .none { return ([], nil) }
        let group = mode == .controlGroup
        var signals = [Signal(pid: pid, signal: killSignal, group: group)]
        if sendSIGHUP && killSignal != Sig.hangup { signals.append(Signal(pid: pid, signal: Sig.hangup, group: group)) }
        if killSignal != Sig.kill && killSignal != Sig.continue { signals.append(Signal(pid: pid, signal: Sig.continue, group: group)) }
        let killAt: Instant? = sendSIGKILL ? timeout.duration.map { now + $0 } : nil
        return (signals, killAt)
    }

    /// The last resort once the stop timeout has passed.
    public func escalate(_ pid: Int32) -> [Signal] {
        [Signal(pid: pid, signal: finalKillSignal, group: mode == .controlGroup || mode == .mixed)]
    }

    /// What is left of the process group once the main process has exited:
    /// with KillMode=control-group or mixed, porter signals it so a finished
    /// service leaves nothing behind (systemd kills what remains in the cgroup).
    public func leftovers(_ pid: Int32) -> [Signal] {
        switch mode {
        case .controlGroup, .mixed: return [Signal(pid: pid, signal: killSignal, group: true)]
        case .process, .none: return []
        }
    }
}
