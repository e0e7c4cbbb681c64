import PorterCore
import PorterSys

/// TriggerLimitIntervalSec=/TriggerLimitBurst= and PollLimit*= of socket
/// units. systemd fails a socket that hits its trigger limit and leaves it
/// failed until someone restarts it; porter pauses it until the window
/// closes and then listens again, so a burst never needs an admin. While
/// paused the socket is not watched: clients wait in the backlog.
extension Supervisor {
    /// A wake-up of a listener: counted against PollLimit*=. True when the
    /// socket is paused now.
    func pollLimitHit(_ s: SocketRuntime, now: Instant) -> Bool {
        guard s.pollWindow != nil, let until = s.pollWindow!.hit(now) else { return false }
        limitHit(s, until: until, now: now, what: "poll limit (PollLimitBurst=\(s.pollWindow!.burst) wake-ups in \(s.pollWindow!.interval.porterDescription))")
        return true
    }

    /// A start (Accept=no) or an accepted connection (Accept=yes): counted
    /// against TriggerLimit*=. True when the socket is paused now.
    func triggerLimitHit(_ s: SocketRuntime, now: Instant) -> Bool {
        guard s.triggerWindow != nil, let windowEnd = s.triggerWindow!.hit(now) else { return false }
        // TriggerLimitPauseSec= (xinetd's cps, inetd's ten minutes): a
        // pause of its own length instead of the rest of the window.
        let until = s.config.triggerLimitPause.map { now + $0 } ?? windowEnd
        let what = s.config.porterAccepts || s.proxy != nil ? "connections" : "starts"
        limitHit(s, until: until, now: now, what: "trigger limit (TriggerLimitBurst=\(s.triggerWindow!.burst) \(what) in \(s.triggerWindow!.interval.porterDescription))")
        return true
    }

    private func limitHit(_ s: SocketRuntime, until: Instant, now: Instant, what: String) {
        if let note = s.limitLog.admit(now: now) {
            Log.warning("\(s.name): \(what) hit; paused for \((until - now).porterDescription), clients wait in the backlog (systemd would fail the socket; porter listens again by itself)\(note)")
        }
        if s.acceptMachine != nil {
            // The accept machine's own back-off: it watches again when due.
            accept(s, .acceptFailed(until: until))
            return
        }
        unwatch(socket: s)
        s.pausedUntil = until
        pausedSockets.insert(s.id)
    }

    /// Paused Accept=no sockets whose window has closed watch again if
    /// their service waits for work.
    func resumePausedSockets(now: Instant) {
        for id in pausedSockets {
            guard let s = sockets[id] else { pausedSockets.remove(id); continue }
            guard let until = s.pausedUntil, until <= now else { continue }
            s.pausedUntil = nil
            pausedSockets.remove(id)
            Log.info("\(s.name): limit window over, listening again")
            if let sid = s.service, let svc = services[sid], case .listening = svc.machine.state { watch(socket: s) }
        }
    }

    var pausedUntilTimes: [Instant] { pausedSockets.compactMap { sockets[$0]?.pausedUntil } }
}
