import Glibc
import PorterCore
import PorterSys

/// A process group that outlived its main process: what systemd's
/// KillMode=control-group stops with the rest of the cgroup. Porter's
/// stand-in for the cgroup is the service's process group; each member is
/// followed through a pidfd (readable when it exits, and signalled without
/// the risk of a reused pid), so porter learns at once when the group is
/// gone.
struct LeftoverGroup {
    var unit: String
    var kill: KillPolicy
    var members: [Int32: (fd: FileDescriptor, token: UInt64)] = [:]
    /// When to send FinalKillSignal= (nil: SendSIGKILL=no or no timeout).
    var killAt: Instant?
    /// Set once FinalKillSignal= went out: then `killAt` is when to give up.
    var killed = false
}

extension Supervisor {
    /// How long porter waits for a group after FinalKillSignal= (a process
    /// in uninterruptible sleep) before it stops waiting.
    static let giveUpAfterKill = Duration.seconds(5)

    /// The main process of `unit` exited and KillSignal= went to its group
    /// (KillPolicy.leftovers): follow what is left and escalate after
    /// TimeoutStopSec= (report F7: leftovers ignoring SIGTERM held the
    /// client's connection open forever).
    func trackLeftovers(group: Int32, unit: String, kill: KillPolicy, now: Instant) {
        guard kill.mode == .controlGroup || kill.mode == .mixed, Processes.groupHasMembers(group) else { return }
        var g = leftovers[group] ?? LeftoverGroup(unit: unit, kill: kill)
        adoptMembers(of: group, into: &g)
        guard !g.members.isEmpty else { return }
        g.killAt = kill.sendSIGKILL ? kill.timeout.duration.map { now + $0 } : nil
        let n = g.members.count
        let then = g.killAt.map { _ in "; \(Values.signalName(kill.finalKillSignal)) in \(kill.timeout.duration!.porterDescription) unless \(n == 1 ? "it exits" : "they exit")" } ?? ""
        Log.info("\(unit): \(n) process\(n == 1 ? "" : "es") of group \(group) still running after the main process exited\(then)")
        leftovers[group] = g
    }

    func adoptMembers(of group: Int32, into g: inout LeftoverGroup) {
        for pid in Processes.members(ofGroup: group) where g.members[pid] == nil {
            guard let fd = Processes.pidfd(pid) else { continue }
            do {
                let token = try register(fd, .leftover(group: group, pid: pid))
                g.members[pid] = (fd, token)
            } catch {
                fd.close()
            }
        }
    }

    /// A member's pidfd became readable: it exited.
    func leftoverExited(group: Int32, pid: Int32) {
        guard var g = leftovers[group], let m = g.members.removeValue(forKey: pid) else { return }
        unregister(m.fd, token: m.token)
        m.fd.close()
        if g.members.isEmpty, Processes.groupHasMembers(group) {
            // The group forked meanwhile: follow the new members too.
            adoptMembers(of: group, into: &g)
        }
        if g.members.isEmpty {
            leftovers[group] = nil
            Log.debug("\(g.unit): group \(group) is gone")
        } else {
            leftovers[group] = g
        }
    }

    /// FinalKillSignal= for groups whose stop timeout passed; giving up on
    /// those that a kill did not end either.
    func leftoversDue(now: Instant) {
        for (group, g) in leftovers where (g.killAt.map { $0 <= now } ?? false) {
            if g.killed {
                Log.error("\(g.unit): \(g.members.count) process(es) of group \(group) still there \(Self.giveUpAfterKill.porterDescription) after \(Values.signalName(g.kill.finalKillSignal)); no longer waiting for them")
                dropLeftovers(group)
                continue
            }
            Log.warning("\(g.unit): \(g.members.count) process(es) of group \(group) still running after TimeoutStopSec=, sending \(Values.signalName(g.kill.finalKillSignal))")
            for m in g.members.values { Processes.signal(m.fd, g.kill.finalKillSignal) }
            // A live member pins the group id, so the group signal cannot
            // reach a stranger; it also reaches members forked since.
            Signals.send(g.kill.finalKillSignal, to: group, group: true)
            leftovers[group]?.killed = true
            leftovers[group]?.killAt = now + Self.giveUpAfterKill
        }
    }

    /// At shutdown: porter waits for every group with a stop timeout; one
    /// it would never kill (SendSIGKILL=no) is left running, as said.
    func stopLeftovers() {
        for (group, g) in leftovers where g.killAt == nil {
            Log.info("\(g.unit): leaving \(g.members.count) process(es) of group \(group) running (SendSIGKILL=no or no stop timeout)")
            dropLeftovers(group)
        }
    }

    private func dropLeftovers(_ group: Int32) {
        guard let g = leftovers.removeValue(forKey: group) else { return }
        for m in g.members.values {
            unregister(m.fd, token: m.token)
            m.fd.close()
        }
    }
}
