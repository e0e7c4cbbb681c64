import PorterCore
import Glibc
import Testing

/// `porter reload UNIT` as a value: Type=notify-reload's handshake and
/// ExecReload= commands, without processes.
@Suite("service reload")
struct ServiceReloadTests {
    let t0 = Instant(nanoseconds: 5_000_000_000)
    var stampAfter: Int64 { t0.nanoseconds / 1000 + 10 }

    @Test func signalThenReloadingThenReady() {
        var r = ServiceReload(began: t0, signalled: true, commands: false, timeout: .seconds(90))
        #expect(r.outcome == nil && r.waitDeadline == t0 + .seconds(90))
        #expect(r.handle(.ready) == nil)
        #expect(r.outcome == nil, "READY=1 before RELOADING=1 does not end it")
        #expect(r.handle(.reloading(monotonicMicroseconds: stampAfter)) == nil)
        #expect(r.notify == .reloading && r.outcome == nil)
        _ = r.handle(.ready)
        #expect(r.outcome == .success && r.waitDeadline == nil)
    }

    @Test func aStampFromBeforeTheSignalOrNoneIsIgnored() {
        var r = ServiceReload(began: t0, signalled: true, commands: false, timeout: .seconds(1))
        #expect(r.handle(.reloading(monotonicMicroseconds: 1))?.contains("from before the reload signal, ignored") == true)
        #expect(r.handle(.reloading(monotonicMicroseconds: nil))?.contains("without MONOTONIC_USEC=") == true)
        _ = r.handle(.ready)
        #expect(r.notify == .signalled && r.outcome == nil)
        // The stamp exactly at the signal counts (systemd: >=).
        var exact = ServiceReload(began: t0, signalled: true, commands: false, timeout: nil)
        _ = exact.handle(.reloading(monotonicMicroseconds: t0.nanoseconds / 1000))
        #expect(exact.notify == .reloading && exact.waitDeadline == nil)
    }

    @Test func theWaitTimesOutAtItsDeadlineOnly() {
        var r = ServiceReload(began: t0, signalled: true, commands: false, timeout: .seconds(2))
        _ = r.handle(.timer(t0 + .seconds(1)))
        #expect(r.outcome == nil)
        _ = r.handle(.timer(t0 + .seconds(2)))
        #expect(r.outcome == .failed("no RELOADING=1 in time (TimeoutStartSec=)"))
        var s = ServiceReload(began: t0, signalled: true, commands: false, timeout: .seconds(2))
        _ = s.handle(.reloading(monotonicMicroseconds: stampAfter))
        _ = s.handle(.timer(t0 + .seconds(3)))
        #expect(s.outcome == .failed("no READY=1 after RELOADING=1 in time (TimeoutStartSec=)"))
        // Over is over: later events change nothing.
        _ = s.handle(.ready)
        #expect(s.outcome == .failed("no READY=1 after RELOADING=1 in time (TimeoutStartSec=)"))
    }

    @Test func commandsAndSignalBothHaveToSucceed() {
        var r = ServiceReload(began: t0, signalled: true, commands: true, timeout: .seconds(90))
        _ = r.handle(.reloading(monotonicMicroseconds: stampAfter))
        _ = r.handle(.ready)
        #expect(r.outcome == nil, "ExecReload= still runs")
        _ = r.handle(.commandsEnded(.success))
        #expect(r.outcome == .success)

        var c = ServiceReload(began: t0, signalled: true, commands: true, timeout: .seconds(90))
        _ = c.handle(.commandsEnded(.failed("ExecReload= exited with status 1")))
        #expect(c.outcome == .failed("ExecReload= exited with status 1"), "a failed command ends the wait at once")
        #expect(c.waitDeadline == nil)

        var plain = ServiceReload(began: t0, signalled: false, commands: true, timeout: .seconds(90))
        #expect(plain.waitDeadline == nil && plain.outcome == nil)
        _ = plain.handle(.reloading(monotonicMicroseconds: stampAfter))
        _ = plain.handle(.commandsEnded(.success))
        #expect(plain.outcome == .success && plain.notify == .none)
    }

    @Test func aStopAbandonsIt() {
        var r = ServiceReload(began: t0, signalled: true, commands: false, timeout: .seconds(90))
        _ = r.handle(.abandoned("the service is stopping"))
        #expect(r.outcome == .failed("the service is stopping"))
    }

    @Test func typeAndSignalAreRead() throws {
        let c = Configuration.load(files: [
            (name: "r.service", text: "[Service]\nType=notify-reload\nReloadSignal=SIGUSR1\nExecStart=/bin/true\n"),
            (name: "r.socket", text: "[Socket]\nListenStream=7\n"),
        ], host: HostFacts())
        #expect(!c.hasErrors, "\(c.diagnostics)")
        #expect(c.diagnostics.isEmpty, "no warning either: \(c.diagnostics)")
        let s = try #require(c.services[UnitName.parse("r.service")!])
        #expect(s.type == .notifyReload && s.type.isNotify)
        #expect(s.reloadSignal == SIGUSR1)
        #expect(s.effectiveNotifyAccess == .main, "notify-reload listens to the main process, as notify does")
    }
}
