import Testing
@testable import PorterCore

/// Type=forking, RemainAfterExit=, RestartPreventExitStatus= /
/// RestartForceExitStatus= and RestartSteps= in the Accept=no machine.
@Suite("service machine: forking, remain, restart rules")
struct ForkingMachineTests {
    let t0 = Instant(nanoseconds: 1_000_000_000)
    func at(_ s: Double) -> Instant { t0 + .milliseconds(Int(s * 1000)) }

    func machine(_ tweak: (inout ServicePolicy) -> Void = { _ in }) -> ServiceMachine {
        var p = ServicePolicy()
        p.kill.timeout = .after(.seconds(5))
        tweak(&p)
        return ServiceMachine(name: "d.service", policy: p)
    }

    func isLog(_ a: ServiceMachine.Action?, containing text: String) -> Bool {
        if case .log(_, let m) = a { return m.contains(text) }
        return false
    }

    @Test func forkingIsReadyOnlyWithItsMainProcess() {
        var m = machine { $0.forking = true; $0.idleTimeout = .seconds(10) }
        _ = m.handle(.readable, now: at(0))
        _ = m.handle(.started(pid: 10), now: at(0))
        #expect(!m.state.isReadyForTest)
        #expect(m.deadline == at(90))  // TimeoutStartSec= default
        // The first process exits cleanly: find the main one; nothing is signalled.
        #expect(m.handle(.exited(pid: 10, result: .success, progress: false), now: at(0.1)) == [.findMain(parent: 10)])
        #expect(m.pid == nil)
        // While searching: no idle check can freeze a pid that is gone.
        #expect(m.handle(.measured(busy: false), now: at(0.1)) == [])
        #expect(m.handle(.exited(pid: 10, result: .success, progress: false), now: at(0.1)).count == 1)  // ignored (debug)
        let found = m.handle(.mainFound(11, how: "from PIDFile=/run/d.pid"), now: at(0.2))
        #expect(isLog(found.first, containing: "main process pid 11 (from PIDFile=/run/d.pid)"))
        #expect(m.pid == 11 && m.state.isReadyForTest)
        // From here on it is any running service: its exit ends the run.
        let end = m.handle(.exited(pid: 11, result: .success, progress: true), now: at(1))
        #expect(end.contains(.watch))
        #expect(m.state == .listening)
    }

    @Test func aFailingFirstProcessFailsTheRun() {
        var m = machine { $0.forking = true; $0.restart = .onFailure; $0.restartDelay = .seconds(1) }
        _ = m.handle(.readable, now: at(0))
        _ = m.handle(.started(pid: 10), now: at(0))
        _ = m.handle(.exited(pid: 10, result: .exitCode, progress: true), now: at(0.1))
        #expect(m.state == .waitingRestart(until: at(1.1)))
    }

    @Test func noMainProcessEndsTheRunCleanOrFailed() {
        var m = machine { $0.forking = true; $0.restart = .onFailure; $0.restartDelay = .zero }
        _ = m.handle(.readable, now: at(0))
        _ = m.handle(.started(pid: 10), now: at(0))
        _ = m.handle(.exited(pid: 10, result: .success, progress: false), now: at(0.1))
        // Nothing left: a clean end, listening again.
        #expect(m.handle(.mainNotFound("left nothing", failed: false), now: at(0.2)).last == .watch)
        _ = m.handle(.readable, now: at(1))
        _ = m.handle(.started(pid: 20), now: at(1))
        _ = m.handle(.exited(pid: 20, result: .success, progress: false), now: at(1.1))
        // A foreign PID file: systemd's "protocol" result, which Restart=on-failure restarts.
        #expect(m.handle(.mainNotFound("PIDFile= names pid 1", failed: true), now: at(1.2)).last == .start)
        #expect(m.state == .starting)
    }

    @Test func searchingOutlastingTheStartTimeoutFails() {
        var m = machine { $0.forking = true; $0.startTimeout = .seconds(2) }
        _ = m.handle(.readable, now: at(0))
        _ = m.handle(.started(pid: 10), now: at(0))
        _ = m.handle(.exited(pid: 10, result: .success, progress: false), now: at(0.1))
        #expect(m.deadline == at(2))
        let out = m.handle(.timer, now: at(2))
        #expect(out.contains { isLog($0, containing: "no main process found") })
        #expect(!out.contains { if case .signal = $0 { return true } else { return false } })
        #expect(m.state == .listening)
    }

    @Test func aStopWhileSearchingSignalsNothing() {
        var m = machine { $0.forking = true }
        _ = m.handle(.readable, now: at(0))
        _ = m.handle(.started(pid: 10), now: at(0))
        _ = m.handle(.exited(pid: 10, result: .success, progress: false), now: at(0.1))
        #expect(m.handle(.stop, now: at(0.2)) == [])
        #expect(m.state == .stopped)
    }

    @Test func remainAfterExitStaysActiveUntilStopped() {
        var m = machine { $0.remainAfterExit = true }
        _ = m.handle(.readable, now: at(0))
        _ = m.handle(.started(pid: 10), now: at(0))
        let end = m.handle(.exited(pid: 10, result: .success, progress: true), now: at(1))
        #expect(!end.contains(.watch))
        #expect(m.state == .remaining)
        #expect(m.handle(.readable, now: at(2)).count == 1)  // ignored: the triggers are not watched
        #expect(m.handle(.stop, now: at(3)) == [])
        #expect(m.state == .stopped)
        // A failed run does not remain.
        var f = machine { $0.remainAfterExit = true }
        _ = f.handle(.readable, now: at(0))
        _ = f.handle(.started(pid: 10), now: at(0))
        _ = f.handle(.exited(pid: 10, result: .exitCode, progress: true), now: at(1))
        #expect(f.state == .listening)
    }

    @Test func restartPreventAndForceExitStatus() {
        var m = machine { $0.restart = .always; $0.restartDelay = .zero }
        _ = m.handle(.readable, now: at(0))
        _ = m.handle(.started(pid: 10), now: at(0))
        m.restartOverride = .prevent
        #expect(m.handle(.exited(pid: 10, result: .exitCode, progress: true), now: at(1)).last == .watch)
        #expect(m.state == .listening)
        var n = machine { $0.restart = .no; $0.restartDelay = .zero }
        _ = n.handle(.readable, now: at(0))
        _ = n.handle(.started(pid: 10), now: at(0))
        n.restartOverride = .force
        #expect(n.handle(.exited(pid: 10, result: .success, progress: true), now: at(1)).last == .start)
        // Read once: the next run is back to Restart=no.
        _ = n.handle(.started(pid: 11), now: at(1))
        #expect(n.handle(.exited(pid: 11, result: .success, progress: true), now: at(2)).last == .watch)
    }

    @Test func restartStepsGrowTheDelayToTheMaximum() {
        var p = ServicePolicy()
        p.restartDelay = .seconds(1)
        #expect(p.restartDelay(after: 5) == .seconds(1))  // no RestartSteps=: constant
        p.restartSteps = 2
        p.restartMaxDelay = .seconds(100)
        #expect(p.restartDelay(after: 0) == .seconds(1))
        // 1 s × 100^(1/2) = 10 s, within rounding of the square roots.
        let mid = p.restartDelay(after: 1)
        #expect(mid > .milliseconds(9_999) && mid < .milliseconds(10_001))
        #expect(p.restartDelay(after: 2) == .seconds(100))
        #expect(p.restartDelay(after: 9) == .seconds(100))
        var m = machine { $0.restart = .always; $0.restartDelay = .seconds(1); $0.restartSteps = 2; $0.restartMaxDelay = .seconds(100) }
        _ = m.handle(.readable, now: at(0))
        _ = m.handle(.started(pid: 10), now: at(0))
        _ = m.handle(.exited(pid: 10, result: .exitCode, progress: true), now: at(0))
        #expect(m.state == .waitingRestart(until: at(1)))
        _ = m.handle(.timer, now: at(1))
        _ = m.handle(.started(pid: 11), now: at(1))
        _ = m.handle(.exited(pid: 11, result: .exitCode, progress: true), now: at(1))
        if case .waitingRestart(let until) = m.state { #expect(until - at(1) > .milliseconds(9_990)) } else { Issue.record("not waiting: \(m.state)") }
    }
}

extension ServiceMachine.State {
    var isReadyForTest: Bool {
        if case .running(let r) = self { return r.ready }
        return false
    }
}

@Suite("rate windows")
struct RateWindowTests {
    let t0 = Instant(nanoseconds: 5_000_000_000)

    @Test func burstThenPauseUntilTheWindowCloses() {
        var w = RateWindow(interval: .seconds(2), burst: 3)!
        #expect(w.hit(t0) == nil)
        #expect(w.hit(t0 + .milliseconds(100)) == nil)
        #expect(w.hit(t0 + .milliseconds(200)) == nil)
        #expect(w.hit(t0 + .milliseconds(300)) == t0 + .seconds(2))
        // A new window opens with the first event after the old one closed.
        #expect(w.hit(t0 + .seconds(2)) == nil)
        #expect(RateWindow(interval: .zero, burst: 3) == nil)
        #expect(RateWindow(interval: .seconds(1), burst: 0) == nil)
    }

    @Test func socketKeysAndDefaults() {
        let c = Configuration.load(files: [(name: "a.socket", text: "[Socket]\nListenStream=80\nAccept=yes\nTriggerLimitBurst=7\nPollLimitIntervalSec=5s\n"),
                                           (name: "a@.service", text: "[Service]\nExecStart=/bin/cat\nStandardInput=socket\n")], host: HostFacts())
        #expect(!c.hasErrors, "\(c.diagnostics)")
        #expect(c.sockets.first?.triggerLimit == RateWindow(interval: .seconds(2), burst: 7))
        #expect(c.sockets.first?.pollLimit == RateWindow(interval: .seconds(5), burst: 150))
        let plain = Configuration.load(files: [(name: "b.socket", text: "[Socket]\nListenStream=80\n"),
                                               (name: "b.service", text: "[Service]\nExecStart=/bin/cat\n")], host: HostFacts())
        #expect(plain.sockets.first?.triggerLimit == nil)  // off unless asked for
    }
}
