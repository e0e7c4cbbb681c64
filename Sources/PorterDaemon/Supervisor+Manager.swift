import Glibc
import PorterCore
import PorterSys

/// porter as a service of another manager (systemd with Type=notify or
/// Type=notify-reload, or a porter above it): READY=1 once every socket is
/// bound, RELOADING=1 with MONOTONIC_USEC= and READY=1 around a reload,
/// STOPPING=1, a one-line STATUS=, and WATCHDOG=1 at half the interval
/// WATCHDOG_USEC= asks for. Without NOTIFY_SOCKET none of this exists and
/// porter sets no timer for it.
struct ManagerLink {
    let notify: ManagerNotify
    /// Half of WATCHDOG_USEC=, when it is meant for porter (WATCHDOG_PID=
    /// unset or porter's pid).
    let ping: Duration?
    var failed = false

    init?(environment env: [String: String]) {
        guard let n = ManagerNotify(env["NOTIFY_SOCKET"]) else { return nil }
        notify = n
        if let usec = env["WATCHDOG_USEC"].flatMap({ Int64($0) }), usec > 0,
           env["WATCHDOG_PID"].map({ Int32($0) == getpid() }) ?? true {
            ping = .microseconds(usec / 2)
        } else {
            ping = nil
        }
    }
}

extension Supervisor {
    /// One message to the manager; a failure is logged once.
    func tellManager(_ text: String) {
        guard var m = manager else { return }
        if !m.notify.send(text), !m.failed {
            m.failed = true
            Log.warning("NOTIFY_SOCKET: cannot reach the service manager; it will not hear from porter")
        }
        manager = m
    }

    /// What `systemctl status porter` shows.
    var managerStatus: String {
        let running = servicePIDs.count + instances.count
        return "\(sockets.count) socket\(sockets.count == 1 ? "" : "s") listening, \(paths.count) path unit\(paths.count == 1 ? "" : "s") watching, \(running) process\(running == 1 ? "" : "es") running"
    }

    /// Start-up is over: every socket is bound.
    public func managerReady() {
        guard manager != nil else { return }
        tellManager("READY=1\nSTATUS=\(managerStatus)")
        if let ping = manager?.ping { nextManagerPing = MonotonicClock.now() + ping }
    }

    func managerReloading() {
        guard manager != nil else { return }
        // systemd.service(5), Type=notify-reload: the time the reload began.
        tellManager("RELOADING=1\nMONOTONIC_USEC=\(MonotonicClock.now().nanoseconds / 1000)\nSTATUS=reloading")
    }

    func managerReloaded(_ outcome: String) {
        guard manager != nil else { return }
        tellManager("READY=1\nSTATUS=\(outcome); \(managerStatus)")
    }

    func managerStopping() {
        guard manager != nil else { return }
        tellManager("STOPPING=1\nSTATUS=stopping")
        nextManagerPing = nil
    }

    /// WATCHDOG_USEC=: the ping came due.
    func managerPingDue(now: Instant) {
        guard let ping = manager?.ping, let due = nextManagerPing, now >= due else { return }
        tellManager("WATCHDOG=1")
        nextManagerPing = now + ping
    }
}
