import PorterCore
import Testing

@Suite("pairing sockets with services")
struct ConfigurationTests {
    func load(_ files: [(String, String)]) -> Configuration {
        Configuration.load(files: files.map { (name: $0.0, text: $0.1) }, host: HostFacts())
    }

    @Test func acceptYesUsesTheTemplate() {
        let c = load([("echo.socket", "[Socket]\nListenStream=7\nAccept=yes\n"), okService])
        #expect(!c.hasErrors)
        #expect(c.sockets.map(\.name.description) == ["echo.socket"])
        #expect(c.sockets[0].activates.description == "echo@.service")
        #expect(c.pairings == ["echo.socket -> echo@.service (Accept=yes, one instance per connection, at most 64): ListenStream=7"])
    }

    @Test func acceptNoUsesServiceOrTheSameName() {
        let c = load([
            ("a.socket", "[Socket]\nListenStream=7\n"),
            ("b.socket", "[Socket]\nListenStream=8\nService=a.service\nFileDescriptorName=bee\n"),
            ("a.service", "[Service]\nExecStart=/bin/cat\n"),
        ])
        #expect(!c.hasErrors)
        #expect(c.passedSockets[UnitName.parse("a.service")!]?.map(\.description) == ["a.socket", "b.socket"])
        #expect(c.socket(UnitName.parse("a.socket")!)?.fileDescriptorName == "a.socket")
        #expect(c.socket(UnitName.parse("b.socket")!)?.fileDescriptorName == "bee")
    }

    @Test func missingServicesAreNamed() {
        let c = load([("echo.socket", "[Socket]\nListenStream=7\nAccept=yes\n"), okPlainService])
        #expect(c.diagnostics.map(\.description) == [
            "echo.socket: Accept=yes starts instances of echo@.service, which does not exist (echo.service is for Accept=no)",
        ])
        let d = load([("echo.socket", "[Socket]\nListenStream=7\n"), okService])
        #expect(d.diagnostics.map(\.description) == [
            "echo.socket: activates echo.service, which does not exist (echo@.service is a template, for Accept=yes)",
        ])
        #expect(d.sockets.isEmpty)
    }

    @Test func serviceWithoutSocketWarns() {
        let c = load([okPlainService])
        #expect(c.diagnostics.map(\.description) == ["echo.service: not activated by any socket or path unit, so porter will not start it"])
    }

    @Test func acceptYesRefusesServiceKey() {
        let c = load([("echo.socket", "[Socket]\nListenStream=7\nAccept=yes\nService=x.service\n"), okService])
        #expect(c.diagnostics.map(\.description).contains("echo.socket: Service: not allowed with Accept=yes: each connection starts an instance of echo@.service"))
    }

    @Test func socketStdioNeedsExactlyOneListener() {
        let c = load([
            ("tftp.socket", "[Socket]\nListenDatagram=69\nListenDatagram=[::1]:70\n"),
            ("tftp.service", "[Service]\nExecStart=/usr/sbin/in.tftpd\nStandardInput=socket\n"),
        ])
        #expect(c.diagnostics.map(\.description) == ["tftp.service: StandardInput: socket needs exactly one listening socket with Accept=no, but tftp.service receives 2"])
        #expect(c.sockets.isEmpty)
    }

    @Test func oneBadUnitLeavesTheOthers() {
        let c = load([
            ("good.socket", "[Socket]\nListenStream=7\n"), ("good.service", "[Service]\nExecStart=/bin/cat\n"),
            ("bad.socket", "[Socket]\nListenStream=99999\n"), ("bad.service", "[Service]\nExecStart=/bin/cat\n"),
        ])
        #expect(c.sockets.map(\.name.description) == ["good.socket"])
        #expect(c.refused.contains(UnitName.parse("bad.socket")!))
    }

    @Test func stdioDefaultsFollowSystemd() {
        let c = load([("e.socket", "[Socket]\nListenStream=7\nAccept=yes\n"), ("e@.service", "[Service]\nExecStart=/bin/cat\nStandardInput=socket\n"),
                      ("f.socket", "[Socket]\nListenStream=8\n"), ("f.service", "[Service]\nExecStart=/bin/cat\nStandardOutput=inherit\n")])
        let e = c.services[UnitName.parse("e@.service")!]!
        #expect(e.standardOutput == .inherit && e.standardError == .inherit)
        let f = c.services[UnitName.parse("f.service")!]!
        // stdin is /dev/null, so inherit is overridden by the default (systemd's service_fix_stdio).
        #expect(f.standardOutput == .journal && f.standardError == .inherit)
    }

    @Test func templatesResolvePerInstance() throws {
        let c = load([("e.socket", "[Socket]\nListenStream=7\nAccept=yes\n"),
                      ("e@.service", "[Service]\nExecStart=/bin/echo %i %n\nEnvironment=WHO=%I\nStandardInput=socket\n")])
        let t = c.services[UnitName.parse("e@.service")!]!
        #expect(t.dependsOnInstance)
        let i = try t.instantiate("0-1-a", host: HostFacts())
        #expect(i.arguments == ["/bin/echo", "0-1-a", "e@0-1-a.service"])
        #expect(i.environment["WHO"] == "0/1/a")
    }
}

@Suite("service machine")
struct ServiceMachineTests {
    let t0 = Instant(nanoseconds: 1_000_000_000)
    func at(_ s: Double) -> Instant { t0 + .milliseconds(Int(s * 1000)) }

    func machine(burst: Int = 5, timeout: Timeout = .after(.seconds(5)), _ tweak: (inout ServicePolicy) -> Void = { _ in }) -> ServiceMachine {
        var p = ServicePolicy()
        p.kill.timeout = timeout
        p.startLimitBurst = burst
        tweak(&p)
        return ServiceMachine(name: "echo.service", policy: p)
    }

    func running(_ m: inout ServiceMachine, pid: Int32 = 42, at t: Double = 0) {
        _ = m.handle(.readable, now: at(t))
        _ = m.handle(.started(pid: pid), now: at(t))
    }

    @Test func startsOnReadableAndListensAgainAfterExit() {
        var m = machine()
        #expect(m.handle(.readable, now: at(0)) == [.unwatch, .start])
        #expect(m.state == .starting)
        #expect(m.handle(.started(pid: 42), now: at(0)) == [])
        #expect(m.pid == 42)
        #expect(m.handle(.readable, now: at(1)).first.map { if case .log(.debug, _) = $0 { return true } else { return false } } == true)
        let exit = m.handle(.exited(pid: 42, result: .success, progress: true), now: at(2))
        #expect(exit == [.signal(.init(pid: 42, signal: 15, group: true)), .watch])
        #expect(m.state == .listening)
    }

    @Test func failuresHitTheStartLimitAndBackOffExponentially() {
        var m = machine(burst: 3)
        for i in 0..<2 {
            _ = m.handle(.readable, now: at(Double(i)))
            _ = m.handle(.startFailed, now: at(Double(i)))
            #expect(m.state == .listening)
        }
        running(&m, pid: 7, at: 2)
        let actions = m.handle(.exited(pid: 7, result: .success, progress: false), now: at(2.5))
        #expect(m.state == .holdingOff(until: at(3.5)))
        #expect(!actions.contains(.watch))
        #expect(m.handle(.timer, now: at(3)) == [])
        #expect(m.handle(.timer, now: at(3.5)) == [.log(.info, "echo.service: back-off over, listening again"), .watch])
        // Still failing: one failure is enough for the next, doubled back-off.
        _ = m.handle(.readable, now: at(4))
        _ = m.handle(.startFailed, now: at(4))
        #expect(m.state == .holdingOff(until: at(6)))
        _ = m.handle(.timer, now: at(6))
        _ = m.handle(.readable, now: at(6))
        _ = m.handle(.startFailed, now: at(6))
        #expect(m.state == .holdingOff(until: at(10)))
        // A clean run ends the failed state.
        _ = m.handle(.timer, now: at(10))
        running(&m, pid: 8, at: 10)
        _ = m.handle(.exited(pid: 8, result: .success, progress: true), now: at(11))
        _ = m.handle(.readable, now: at(12))
        _ = m.handle(.startFailed, now: at(12))
        #expect(m.state == .listening)
    }

    @Test func backOffIsCapped() {
        var p = ServicePolicy()
        #expect(p.backoff(0) == .seconds(1))
        #expect(p.backoff(3) == .seconds(8))
        #expect(p.backoff(20) == .seconds(60))
        p.backoffCap = .seconds(5)
        #expect(p.backoff(3) == .seconds(5))
    }

    @Test func cleanRunsNeverHitTheLimit() {
        var m = machine(burst: 2)
        for i in 0..<100 {
            running(&m, pid: Int32(i + 10), at: Double(i) / 100)
            _ = m.handle(.exited(pid: Int32(i + 10), result: .success, progress: true), now: at(Double(i) / 100))
        }
        #expect(m.state == .listening)
    }

    @Test func restartPolicies() {
        #expect(RestartPolicy.onFailure.restarts(after: .exitCode))
        #expect(!RestartPolicy.onFailure.restarts(after: .success))
        #expect(RestartPolicy.onAbnormal.restarts(after: .signal) && !RestartPolicy.onAbnormal.restarts(after: .exitCode))
        #expect(RestartPolicy.always.restarts(after: .success))
        var m = machine { $0.restart = .onFailure; $0.restartDelay = .milliseconds(200) }
        running(&m)
        #expect(m.handle(.exited(pid: 42, result: .exitCode, progress: true), now: at(1)).last == .signal(.init(pid: 42, signal: 15, group: true)))
        #expect(m.state == .waitingRestart(until: at(1.2)))
        #expect(m.handle(.timer, now: at(1.2)) == [.log(.info, "echo.service: restarting"), .start])
        _ = m.handle(.started(pid: 43), now: at(1.2))
        _ = m.handle(.exited(pid: 43, result: .success, progress: true), now: at(2))
        #expect(m.state == .listening)
    }

    @Test func idleStopFreezesMeasuresThenStops() {
        var m = machine { $0.idleTimeout = .seconds(2) }
        #expect(m.handle(.readable, now: at(0)) == [.unwatch, .start])
        #expect(m.handle(.started(pid: 42), now: at(0)) == [.watchActivity])
        #expect(m.deadline == at(2))
        _ = m.handle(.activity, now: at(1.5))
        #expect(m.deadline == at(3.5))
        #expect(m.handle(.timer, now: at(3.5)) == [.measureIdle])
        // Busy: keep running, measured again one timeout later.
        #expect(m.handle(.measured(busy: true), now: at(3.5)) == [])
        #expect(m.deadline == at(5.5))
        _ = m.handle(.timer, now: at(5.5))
        #expect(m.handle(.measured(busy: false), now: at(5.5)) == [.freeze(pid: 42)])
        #expect(m.handle(.timer, now: at(5.501)) == [.checkFrozen(pid: 42)])
        #expect(m.handle(.notFrozenYet, now: at(5.501)) == [])
        // Frozen and still idle: stop it for good.
        let stop = m.handle(.measured(busy: false), now: at(5.502))
        #expect(stop.contains(.signal(.init(pid: 42, signal: 15, group: true))))
        #expect(stop.contains(.signal(.init(pid: 42, signal: 18, group: true))))
        let exit = m.handle(.exited(pid: 42, result: .signal, progress: true), now: at(5.6))
        #expect(exit.contains(.unwatchActivity) && exit.last == .watch)
        #expect(m.state == .listening)
    }

    @Test func idleStopIsCalledOffWhenTheFrozenServiceHadAcceptedWork() {
        var m = machine { $0.idleTimeout = .seconds(1) }
        running(&m)
        _ = m.handle(.timer, now: at(1))
        _ = m.handle(.measured(busy: false), now: at(1))
        #expect(m.handle(.measured(busy: true), now: at(1.001)) == [.signal(.init(pid: 42, signal: 18, group: true))])
        #expect(m.pid == 42)
        if case .running = m.state {} else { Issue.record("not running: \(m.state)") }
        // Activity while freezing also calls it off.
        _ = m.handle(.timer, now: at(2.001))
        _ = m.handle(.measured(busy: false), now: at(2.001))
        #expect(m.handle(.activity, now: at(2.002)) == [.signal(.init(pid: 42, signal: 18, group: true))])
    }

    @Test func notifyReadinessTimeoutAndWatchdog() {
        var m = machine { $0.notify = true; $0.startTimeout = .seconds(5); $0.watchdog = .seconds(2) }
        running(&m)
        #expect(m.deadline == at(5))
        _ = m.handle(.extendTimeout(.seconds(10)), now: at(1))
        #expect(m.deadline == at(11))
        #expect(m.handle(.ready, now: at(2)) == [.log(.info, "echo.service: ready after 2s")])
        #expect(m.deadline == at(4))
        _ = m.handle(.watchdogPing, now: at(3))
        #expect(m.deadline == at(5))
        let abort = m.handle(.timer, now: at(5))
        #expect(abort.contains(.signal(.init(pid: 42, signal: 6, group: true))))
        // A missed watchdog restarts, whatever Restart= says.
        _ = m.handle(.exited(pid: 42, result: .coreDump, progress: true), now: at(5.1))
        #expect(m.state == .waitingRestart(until: at(5.2)))
    }

    @Test func notReadyInTimeIsStopped() {
        var m = machine { $0.notify = true; $0.startTimeout = .seconds(5) }
        running(&m)
        let stop = m.handle(.timer, now: at(5))
        #expect(stop.first == .log(.info, "echo.service: not ready after 5s (TimeoutStartSec=), stopping pid 42"))
        _ = m.handle(.exited(pid: 42, result: .signal, progress: true), now: at(5.1))
        #expect(m.state == .listening)
    }

    @Test func runtimeMaxStops() {
        var m = machine { $0.runtimeMax = .seconds(3) }
        running(&m)
        #expect(m.deadline == at(3))
        #expect(m.handle(.timer, now: at(3)).first == .log(.info, "echo.service: RuntimeMaxSec=3s reached, stopping pid 42"))
    }

    @Test func stopSignalsThenEscalates() {
        var m = machine()
        running(&m, pid: 9)
        let stop = m.handle(.stop, now: at(1))
        #expect(stop == [.signal(.init(pid: 9, signal: 15, group: true)), .signal(.init(pid: 9, signal: 18, group: true))])
        #expect(m.state == .stopping(pid: 9, killAt: at(6), reason: .shutdown))
        #expect(m.handle(.timer, now: at(5)) == [])
        let kill = m.handle(.timer, now: at(6))
        #expect(kill.last == .signal(.init(pid: 9, signal: 9, group: true)))
        #expect(m.deadline == nil)
        _ = m.handle(.exited(pid: 9, result: .signal, progress: true), now: at(7))
        #expect(m.state == .stopped)
    }

    @Test func stopWhileListeningIsImmediate() {
        var m = machine()
        #expect(m.handle(.stop, now: at(0)) == [.unwatch])
        #expect(m.state == .stopped)
        #expect(m.handle(.readable, now: at(1)) == [])
    }

    @Test func killModes() {
        var k = KillPolicy()
        k.mode = .process
        #expect(k.begin(5, now: t0).signals.allSatisfy { !$0.group })
        #expect(k.leftovers(5).isEmpty)
        k.mode = .mixed
        #expect(k.begin(5, now: t0).signals.allSatisfy { !$0.group })
        #expect(k.escalate(5) == [.init(pid: 5, signal: 9, group: true)])
        k.mode = .none
        #expect(k.begin(5, now: t0).signals.isEmpty)
        k.mode = .controlGroup
        k.sendSIGKILL = false
        #expect(k.begin(5, now: t0).killAt == nil)
    }
}

@Suite("accept machine")
struct AcceptMachineTests {
    @Test func pausesAtMaxConnectionsAndResumes() {
        var m = AcceptMachine(name: "echo.socket", maxConnections: 2)
        #expect(m.canAccept)
        #expect(m.handle(.instanceStarted) == [])
        let paused = m.handle(.instanceStarted)
        #expect(paused.first == .unwatch)
        #expect(m.state == .paused && !m.canAccept)
        #expect(m.handle(.instanceExited) == [.watch])
        #expect(m.state == .listening && m.running == 1)
        #expect(m.handle(.stop) == [.unwatch])
        #expect(m.handle(.instanceExited) == [])
        #expect(m.running == 0 && !m.canAccept)
    }
}

/// Every (state, event) pair of the accept machine as a row:
/// (state, running, event) → (actions, state, running).
@Suite("accept machine table")
struct AcceptMachineTableTests {
    typealias A = AcceptMachine
    static let limit = 2
    static let rows: [(A.State, Int, A.Event, [A.Action], A.State, Int)] = [
        (.listening, 0, .instanceStarted, [], .listening, 1),
        (.listening, 1, .instanceStarted, [.unwatch, .log(.info, "s.socket: 2 instances running (MaxConnections=2); new clients wait in the backlog")], .paused, 2),
        (.listening, 1, .instanceExited, [], .listening, 0),
        (.listening, 0, .instanceExited, [], .listening, 0),
        (.listening, 1, .stop, [.unwatch], .closed, 1),
        (.paused, 2, .instanceStarted, [.log(.debug, "s.socket: instance started while paused")], .paused, 3),
        (.paused, 3, .instanceExited, [], .paused, 2),
        (.paused, 2, .instanceExited, [.watch], .listening, 1),
        (.paused, 2, .stop, [.unwatch], .closed, 2),
        (.closed, 2, .instanceStarted, [], .closed, 2),
        (.closed, 2, .instanceExited, [], .closed, 1),
        (.closed, 1, .stop, [], .closed, 1),
        (.listening, 1, .limit(1), [.unwatch], .paused, 1),
        (.listening, 1, .limit(5), [], .listening, 1),
        (.paused, 2, .limit(3), [.watch], .listening, 2),
        (.paused, 2, .limit(1), [], .paused, 2),
        (.closed, 1, .limit(9), [], .closed, 1),
        (.listening, 1, .acceptFailed(until: t(5)), [.unwatch], .backingOff(until: t(5)), 1),
        (.paused, 2, .acceptFailed(until: t(5)), [], .backingOff(until: t(5)), 2),
        (.closed, 1, .acceptFailed(until: t(5)), [], .closed, 1),
        (.listening, 1, .timer(now: t(9)), [], .listening, 1),
        (.paused, 2, .timer(now: t(9)), [], .paused, 2),
        (.closed, 1, .timer(now: t(9)), [], .closed, 1),
        (.backingOff(until: t(5)), 1, .instanceStarted, [], .backingOff(until: t(5)), 2),
        (.backingOff(until: t(5)), 1, .instanceExited, [], .backingOff(until: t(5)), 0),
        (.backingOff(until: t(5)), 1, .stop, [], .closed, 1),
        (.backingOff(until: t(5)), 1, .limit(1), [], .backingOff(until: t(5)), 1),
        (.backingOff(until: t(5)), 1, .acceptFailed(until: t(7)), [], .backingOff(until: t(7)), 1),
        (.backingOff(until: t(5)), 1, .acceptFailed(until: t(3)), [], .backingOff(until: t(5)), 1),
        (.backingOff(until: t(5)), 1, .timer(now: t(4)), [], .backingOff(until: t(5)), 1),
        (.backingOff(until: t(5)), 1, .timer(now: t(5)), [.watch], .listening, 1),
        (.backingOff(until: t(5)), 2, .timer(now: t(5)), [], .paused, 2),
    ]
    static func t(_ s: Int64) -> Instant { Instant(nanoseconds: s * 1_000_000_000) }

    /// Drives a machine into `state` with `running` instances.
    static func machine(_ state: A.State, _ running: Int) -> A {
        var m = A(name: "s.socket", maxConnections: limit)
        var reached = 0
        while reached < min(running, limit) { _ = m.handle(.instanceStarted); reached += 1 }
        if state == .listening { while m.state == .paused { _ = m.handle(.instanceExited) } }
        while m.running < running { _ = m.handle(.instanceStarted) }
        if state == .closed { _ = m.handle(.stop) }
        if case .backingOff(let until) = state {
            while m.state == .paused { _ = m.handle(.instanceExited) }
            while m.running < running { _ = m.handle(.instanceStarted) }
            _ = m.handle(.acceptFailed(until: until))
        }
        return m
    }

    @Test(arguments: 0..<rows.count)
    func row(_ i: Int) {
        let (state, running, event, actions, after, runningAfter) = Self.rows[i]
        var m = Self.machine(state, running)
        #expect(m.state == state && m.running == running, "setup of row \(i)")
        #expect(m.handle(event) == actions, "row \(i)")
        #expect(m.state == after && m.running == runningAfter, "row \(i)")
    }
}

@Suite("unit table")
struct UnitTableTests {
    @Test func removedIdsAreNeverReused() {
        var t = UnitTable<String>()
        let a = t.insert { _ in "a" }
        let b = t.insert { _ in "b" }
        #expect(t[a] == "a" && t[b] == "b" && t.count == 2)
        #expect(t.remove(a) == "a")
        #expect(t[a] == nil && !t.contains(a) && t.count == 1)
        let c = t.insert { _ in "c" }
        // The slot comes back, the id does not: a stale event for `a` finds nothing.
        #expect(c.slot == a.slot && c != a)
        #expect(t[a] == nil && t[c] == "c")
        #expect(t.remove(a) == nil)
        #expect(t.ids == [c, b] && t.values == ["c", "b"])
        t[c] = "c2"
        t[a] = "stale"
        #expect(t[c] == "c2" && t.count == 2)
    }

    @Test func manyInsertionsAndRemovalsKeepEveryIdUnique() {
        var t = UnitTable<Int>()
        var seen: Set<UnitID> = []
        var live: [UnitID] = []
        for i in 0..<2000 {
            let id = t.insert { _ in i }
            #expect(seen.insert(id).inserted)
            live.append(id)
            if i % 3 == 0 { t.remove(live.removeFirst()) }
        }
        #expect(t.count == live.count)
        #expect(live.allSatisfy { t.contains($0) })
    }
}

@Suite("configuration diff")
struct ConfigurationDiffTests {
    @Test func classifiesEveryUnit() {
        let n = { (s: String) in UnitName.parse(s)! }
        let d = ConfigurationDiff(old: [n("a.socket"): 1, n("b.socket"): 2, n("c.service"): 3],
                                  new: [n("a.socket"): 1, n("b.socket"): 9, n("d.path"): 4])
        #expect(d.unchanged == [n("a.socket")])
        #expect(d.changed == [n("b.socket")])
        #expect(d.added == [n("d.path")])
        #expect(d.removed == [n("c.service")])
        #expect(d.summary == "1 added, 1 removed, 1 changed, 1 unchanged; added: d.path; removed: c.service; changed: b.socket")
    }

    @Test func fingerprintsFollowTheBytes() {
        let c1 = Configuration.load(files: [("e.socket", "[Socket]\nListenStream=1\n")], host: HostFacts())
        let c2 = Configuration.load(files: [("e.socket", "[Socket]\nListenStream=1\n")], host: HostFacts())
        let c3 = Configuration.load(files: [("e.socket", "[Socket]\nListenStream=2\n")], host: HostFacts())
        let f = { (c: Configuration) in c.socketsRead.values.first!.fingerprint }
        #expect(f(c1) == f(c2) && f(c1) != f(c3))
    }
}

/// Every (state, event) pair of the service machine as a row: the state
/// each event leads to from each state, at a time when every deadline of
/// the state is due (t = 10 s). Actions are covered by the tests above.
@Suite("service machine table")
struct ServiceMachineTableTests {
    typealias M = ServiceMachine
    static let t0 = Instant(nanoseconds: 1_000_000_000)
    static func at(_ s: Double) -> Instant { t0 + .milliseconds(Int(s * 1000)) }

    /// A machine in each state, driven there by events (pid 42).
    static func machine(_ state: String) -> M {
        var p = ServicePolicy()
        p.kill.timeout = .after(.seconds(5))
        p.idleTimeout = .seconds(2)
        if state == "waiting-restart" { p.restart = .onFailure; p.restartDelay = .milliseconds(200) }
        if state == "holding-off" { p.startLimitBurst = 1 }
        var m = M(name: "t.service", policy: p)
        func go(_ e: M.Event, _ t: Double) { _ = m.handle(e, now: at(t)) }
        switch state {
        case "listening": break
        case "starting": go(.readable, 0)
        case "running": go(.readable, 0); go(.started(pid: 42), 0)
        case "freezing": go(.readable, 0); go(.started(pid: 42), 0); go(.timer, 2); go(.measured(busy: false), 2)
        case "stopping": go(.readable, 0); go(.started(pid: 42), 0); go(.stop, 0)
        case "waiting-restart": go(.readable, 0); go(.started(pid: 42), 0); go(.exited(pid: 42, result: .exitCode, progress: true), 0)
        case "holding-off": go(.readable, 0); go(.startFailed, 0)
        case "stopped": go(.stop, 0)
        default: break
        }
        return m
    }

    static let events: [(String, M.Event)] = [
        ("readable", .readable), ("started", .started(pid: 43)), ("startFailed", .startFailed),
        ("exited", .exited(pid: 42, result: .success, progress: true)), ("timer", .timer), ("stop", .stop),
        ("activity", .activity), ("measured", .measured(busy: true)), ("notFrozenYet", .notFrozenYet), ("ready", .ready),
        ("watchdogPing", .watchdogPing), ("extendTimeout", .extendTimeout(.seconds(1))), ("mainPID", .mainPID(44)),
        ("resume", .resume),
    ]

    /// state → the state after each event, in the order of `events`.
    static let table: [(String, [String])] = [
        ("listening", ["starting", "listening", "listening", "listening", "listening", "stopped", "listening", "listening", "listening", "listening", "listening", "listening", "listening", "listening"]),
        ("starting", ["starting", "running", "listening", "starting", "starting", "starting", "starting", "starting", "starting", "starting", "starting", "starting", "starting", "starting"]),
        ("running", ["running", "running", "running", "listening", "running", "stopping", "running", "running", "running", "running", "running", "running", "running", "running"]),
        ("freezing", ["freezing", "freezing", "freezing", "listening", "running", "stopping", "running", "running", "freezing", "freezing", "freezing", "freezing", "freezing", "freezing"]),
        ("stopping", ["stopping", "stopping", "stopping", "stopped", "stopping", "stopping", "stopping", "stopping", "stopping", "stopping", "stopping", "stopping", "stopping", "stopping"]),
        ("waiting-restart", ["waiting-restart", "waiting-restart", "waiting-restart", "waiting-restart", "starting", "stopped", "waiting-restart", "waiting-restart", "waiting-restart", "waiting-restart", "waiting-restart", "waiting-restart", "waiting-restart", "waiting-restart"]),
        ("holding-off", ["holding-off", "holding-off", "holding-off", "holding-off", "listening", "stopped", "holding-off", "holding-off", "holding-off", "holding-off", "holding-off", "holding-off", "holding-off", "holding-off"]),
        ("stopped", Array(repeating: "stopped", count: 13) + ["listening"]),
    ]

    @Test(arguments: 0..<8)
    func everyEventFromState(_ row: Int) {
        let (state, after) = Self.table[row]
        #expect(Self.machine(state).stateName == state, "setup of \(state)")
        for (i, (name, event)) in Self.events.enumerated() {
            var m = Self.machine(state)
            _ = m.handle(event, now: Self.at(10))
            #expect(m.stateName == after[i], "\(state) + \(name)")
        }
    }

    /// `porter stop` then `porter start`: a stop still under way ends in
    /// listening, not stopped; a stopped machine listens again.
    @Test func resumeAfterStop() {
        var m = Self.machine("running")
        _ = m.handle(.stop, now: Self.at(1))
        #expect(m.handle(.resume, now: Self.at(1)) == [])
        let after = m.handle(.exited(pid: 42, result: .signal, progress: true), now: Self.at(2))
        #expect(m.stateName == "listening" && after.contains(.watch))
        var s = Self.machine("stopped")
        #expect(s.handle(.resume, now: Self.at(3)) == [.watch])
        #expect(s.stateName == "listening")
        var starting = Self.machine("starting")
        _ = starting.handle(.stop, now: Self.at(1))
        _ = starting.handle(.resume, now: Self.at(1))
        _ = starting.handle(.started(pid: 9), now: Self.at(1))
        #expect(starting.stateName == "running")
    }

    /// A reload's new policy decides from then on.
    @Test func adoptedPolicyDecides() {
        var m = M(name: "t.service", policy: ServicePolicy())
        var p = ServicePolicy()
        p.idleTimeout = .seconds(1)
        m.adopt(p)
        _ = m.handle(.readable, now: Self.at(0))
        #expect(m.handle(.started(pid: 42), now: Self.at(0)) == [.watchActivity])
        #expect(m.deadline == Self.at(1))
    }
}

@Suite("unit name order")
struct UnitNameOrderTests {
    @Test func isTotal() {
        let names = ["e@.service", "e.socket", "e@x.service", "d.path", "e.service"].map { UnitName.parse($0)! }
        for a in names {
            for b in names where a != b { #expect((a < b) != (b < a), "\(a) vs \(b)") }
        }
        #expect(names.sorted().map(\.description) == ["d.path", "e.service", "e.socket", "e@.service", "e@x.service"])
    }
}

/// Every (state, event) pair of an instance's machine as a row, at t = 10 s
/// after a start at 0 with RuntimeMaxSec=20s, IdleTimeoutSec=5s and
/// TimeoutStopSec=3s.
@Suite("instance machine table")
struct InstanceMachineTableTests {
    typealias I = InstanceMachine
    static let t0 = Instant(nanoseconds: 1_000_000_000)
    static func at(_ s: Double) -> Instant { t0 + .milliseconds(Int(s * 1000)) }
    static func kill(_ mode: KillMode = .controlGroup) -> KillPolicy {
        var k = KillPolicy()
        k.timeout = .after(.seconds(3))
        k.mode = mode
        return k
    }
    static let term = [I.Action.signal(.init(pid: 7, signal: 15, group: true)), .signal(.init(pid: 7, signal: 18, group: true))]

    static func machine(_ state: I.State, measured: Bool = false, mode: KillMode = .controlGroup) -> I {
        var m = I(pid: 7, unit: "i@1.service", kill: kill(mode), started: at(0), runtimeMax: .seconds(20),
                  idleTimeout: .seconds(5), measured: measured)
        switch state {
        case .running: break
        case .stopping: _ = m.handle(.stop, now: at(9))
        case .abandoned:
            m = I(pid: 7, unit: "i@1.service", kill: kill(.none), started: at(0), runtimeMax: nil, idleTimeout: nil, measured: false)
            _ = m.handle(.stop, now: at(9))
        }
        return m
    }

    static let rows: [(I.State, Bool, I.Event, [I.Action], I.State)] = [
        // Idle for 10 s > 5 s: stopped.
        (.running, false, .timer, [.log(.info, "i@1.service: no traffic for 5s, stopping pid 7")] + term, .stopping(killAt: at(13))),
        (.running, true, .timer, [.measureQuiet], .running),
        (.running, false, .activity, [], .running),
        (.running, true, .quiet(.seconds(2)), [], .running),
        (.running, true, .quiet(.seconds(6)), [.log(.info, "i@1.service: no traffic for 5s, stopping pid 7")] + term, .stopping(killAt: at(13))),
        (.running, false, .stop, term, .stopping(killAt: at(13))),
        (.stopping(killAt: at(12)), false, .timer, [.log(.warning, "i@1.service: pid 7 still running after the stop timeout, sending SIGKILL"),
                                                    .signal(.init(pid: 7, signal: 9, group: true))], .stopping(killAt: nil)),
        (.stopping(killAt: at(12)), false, .activity, [], .stopping(killAt: at(12))),
        (.stopping(killAt: at(12)), false, .quiet(nil), [], .stopping(killAt: at(12))),
        (.stopping(killAt: at(12)), false, .stop, [], .stopping(killAt: at(12))),
        (.abandoned, false, .timer, [], .abandoned),
        (.abandoned, false, .activity, [], .abandoned),
        (.abandoned, false, .quiet(nil), [], .abandoned),
        (.abandoned, false, .stop, [], .abandoned),
    ]

    @Test(arguments: 0..<rows.count)
    func row(_ i: Int) {
        let (state, measured, event, actions, after) = Self.rows[i]
        var m = Self.machine(state, measured: measured)
        #expect(m.state == state, "setup of row \(i)")
        let now = state == .stopping(killAt: Self.at(12)) ? Self.at(12) : Self.at(10)
        #expect(m.handle(event, now: now) == actions, "row \(i)")
        // Stopped rows: the kill deadline counts from the event.
        let expected: I.State = after == .stopping(killAt: Self.at(13)) ? .stopping(killAt: now + .seconds(3)) : after
        #expect(m.state == expected, "row \(i)")
    }

    @Test func deadlinesAndRuntimeMax() {
        var m = Self.machine(.running)
        #expect(m.deadline == Self.at(5))
        _ = m.handle(.activity, now: Self.at(4))
        // Checked at 5: active at 4, so looked at again at 9.
        #expect(m.handle(.timer, now: Self.at(5)) == [])
        #expect(m.deadline == Self.at(9))
        var r = I(pid: 7, unit: "i@1.service", kill: Self.kill(), started: Self.at(0), runtimeMax: .seconds(20), idleTimeout: nil, measured: false)
        #expect(r.deadline == Self.at(20))
        #expect(r.handle(.timer, now: Self.at(19)) == [])
        #expect(r.handle(.timer, now: Self.at(20)).first == .log(.info, "i@1.service: RuntimeMaxSec= reached, stopping pid 7"))
        #expect(r.deadline == Self.at(23))
        // KillMode=none: a stop lets go of it.
        var n = I(pid: 7, unit: "i@1.service", kill: Self.kill(.none), started: Self.at(0), runtimeMax: nil, idleTimeout: nil, measured: false)
        #expect(n.handle(.stop, now: Self.at(1)) == [] && n.state == .abandoned && n.deadline == nil)
    }
}
