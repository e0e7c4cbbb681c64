import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

extension EndToEnd {
    @Suite("idle stop and restarts", .timeLimit(.minutes(3)))
    struct Idle {
        /// Issue #4: a client loop runs across many idle stop/start cycles and
        /// not one connection is refused, reset or left unanswered.
        @Test(arguments: [false, true])
        func idleStopLosesNoConnection(unix: Bool) throws {
            let port = freePort()
            let dir = makeTempDirectory("race")
            defer { _ = system("rm -rf '\(dir)'") }
            let listen = unix ? "\(dir)/svc.sock" : "127.0.0.1:\(port)"
            let porter = try PorterRun("race", units: [
                "svc.socket": "[Socket]\nListenStream=\(listen)\n",
                "svc.service": "[Service]\nExecStart=\(handlerBinary) serve 0\nIdleTimeoutSec=40ms\n",
            ])
            var pids = Set<Int32>()
            var failures: [String] = []
            var seed: UInt64 = 12345
            let started = now()
            var i = 0
            while i < 200 && now() - started < .seconds(25) {
                i += 1
                do {
                    let c = unix ? try Client.unix(listen) : try Client.tcp(port)
                    let text = try c.readAll(seconds: 5)
                    c.close()
                    guard text.hasPrefix("accepted-on 3\n") else {
                        failures.append("connection \(i): '\(text.prefix(40))'")
                        continue
                    }
                    pids.insert(Report(text).pid)
                } catch {
                    failures.append("connection \(i): \(error)")
                }
                // Pauses around the idle timeout, so connections land before,
                // during and after stops.
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                usleep(UInt32(20_000 + (seed >> 33) % 60_000))
            }
            #expect(failures.isEmpty, "\(failures.count) of \(i) failed: \(failures.prefix(5))")
            let stops = porter.count("idle for 40ms, stopping pid")
            #expect(stops >= 20, "only \(stops) idle stops in \(i) connections")
            #expect(pids.count >= 20)
            #expect(try porter.stop() == 0)
        }

        /// Idle means idle: a service with an open connection is not stopped,
        /// over TCP and over Unix (where the count of accepted connections
        /// once matched nothing, so the service was stopped under a client).
        @Test(arguments: [false, true])
        func busyServiceIsNotStopped(unix: Bool) throws {
            let port = freePort()
            let dir = makeTempDirectory("busy")
            defer { _ = system("rm -rf '\(dir)'") }
            let listen = unix ? "\(dir)/echo.sock" : "127.0.0.1:\(port)"
            let porter = try PorterRun("busy", units: [
                "echo.socket": "[Socket]\nListenStream=\(listen)\n",
                // Accepts and keeps each connection open until the client closes it.
                "echo.service": "[Service]\nExecStart=\(handlerBinary) hold\nIdleTimeoutSec=100ms\n",
            ])
            let c = unix ? try Client.unix(listen) : try Client.tcp(port)
            try porter.waitForLog("echo.service: started pid")
            usleep(600_000)
            #expect(porter.count("idle for") == 0, "stopped while a connection waited")
            c.close()
            try porter.waitForLog("idle for 100ms, stopping pid")
            #expect(try porter.stop() == 0)
        }

        /// An idle porter wakes up for nothing: zero context switches in 10 s,
        /// after a service has come and gone.
        @Test func idlePorterNeverWakesUp() throws {
            let port = freePort()
            let porter = try PorterRun("quiet", units: [
                "q.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "q.service": "[Service]\nExecStart=\(handlerBinary) serve 0\nIdleTimeoutSec=100ms\nRuntimeMaxSec=1h\nWatchdogSec=0\n",
                "u.socket": "[Socket]\nListenDatagram=127.0.0.1:\(freePort())\n",
                "u.service": "[Service]\nExecStart=\(handlerBinary) udp\nStandardInput=socket\n",
            ])
            let c = try Client.tcp(port)
            _ = try c.readAll()
            c.close()
            try porter.waitForLog("q.service: pid")
            try waitUntil(5, "the service to exit") { porter.children.isEmpty }
            usleep(200_000)
            func switches() -> Int {
                readFile("/proc/\(porter.pid)/status").split(separator: "\n")
                    .filter { $0.contains("ctxt_switches") }
                    .compactMap { Int($0.split(separator: "\t").last ?? "") }.reduce(0, +)
            }
            let before = switches()
            usleep(10_000_000)
            #expect(switches() - before == 0)
            #expect(try porter.stop() == 0)
        }

        /// IdleTimeoutSec= on a per-connection instance ends it when its
        /// connection carries no traffic for that long, not before.
        @Test(arguments: [false, true])
        func instanceIdleTimeout(unix: Bool) throws {
            let port = freePort()
            let dir = makeTempDirectory("iidle")
            defer { _ = system("rm -rf '\(dir)'") }
            let listen = unix ? "\(dir)/e.sock" : "127.0.0.1:\(port)"
            let porter = try PorterRun("iidle", units: [
                "e.socket": "[Socket]\nListenStream=\(listen)\nAccept=yes\n",
                "e@.service": "[Service]\nExecStart=\(handlerBinary) echo\nStandardInput=socket\nIdleTimeoutSec=300ms\n",
            ])
            let c = unix ? try Client.unix(listen) : try Client.tcp(port)
            // Traffic every 100 ms for 1.2 s: four idle timeouts' worth, never idle.
            for i in 0..<12 {
                try c.send("ping \(i)\n")
                usleep(100_000)
            }
            #expect(porter.count("no traffic") == 0)
            let quietSince = now()
            let rest = try c.readAll(seconds: 5)  // EOF once porter ends the instance
            let took = now() - quietSince
            #expect(rest.contains("ping 11"))
            // The last ping went 100 ms before `quietSince`: ~200 ms to go at least.
            #expect(took >= .milliseconds(150) && took < .seconds(3))
            try porter.waitForLog("no traffic for 300ms, stopping pid")
            c.close()
            #expect(try porter.stop() == 0)
        }

        @Test func instanceRuntimeMax() throws {
            let port = freePort()
            let porter = try PorterRun("irt", units: [
                "e.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n",
                "e@.service": "[Service]\nExecStart=\(handlerBinary) echo\nStandardInput=socket\nRuntimeMaxSec=500ms\n",
            ])
            let c = try Client.tcp(port)
            let t = now()
            for _ in 0..<5 { try c.send("x\n"); usleep(50_000) }
            _ = try c.readAll(seconds: 5)
            #expect(now() - t >= .milliseconds(450))
            try porter.waitForLog("RuntimeMaxSec= reached, stopping pid")
            c.close()
            #expect(try porter.stop() == 0)
        }

        /// RuntimeRandomizedExtraSec=: the run's limit is RuntimeMaxSec= plus
        /// an even draw of the extra, said in the log line.
        @Test func runtimeRandomizedExtraStretchesTheLimit() throws {
            let port = freePort()
            let porter = try PorterRun("rt-extra", units: [
                "x.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "x.service": "[Service]\nExecStart=\(handlerBinary) serve 0\nRuntimeMaxSec=200ms\nRuntimeRandomizedExtraSec=400ms\n",
            ])
            let t = now()
            #expect(try Client.tcp(port).readAll().contains("accepted-on"))
            let log = try porter.waitForLog("x.service: RuntimeMaxSec= with RuntimeRandomizedExtraSec= (")
            #expect(now() - t >= .milliseconds(190))
            let drawn = log.components("RuntimeRandomizedExtraSec= (")[1].prefix { $0 != " " }
            let ms = drawn.hasSuffix("ms") ? Int(drawn.dropLast(2)) : nil
            #expect(ms.map { (200...600).contains($0) } == true, "drawn \(drawn)")
            #expect(try porter.stop() == 0)
        }

        @Test func restartOnFailure() throws {
            let port = freePort()
            let flag = makeTempDirectory("restart") + "/count"
            let porter = try PorterRun("restart", units: [
                "r.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                // Fails twice (counting in a file), then serves.
                "r.service": """
                    [Service]
                    ExecStart=/bin/sh -c 'echo x >> \(flag); test $$(wc -l < \(flag)) -ge 3 && exec \(handlerBinary) serve'
                    Restart=on-failure
                    RestartSec=50ms
                    """,
            ])
            let c = try Client.tcp(port)
            let text = try c.readAll(seconds: 10)
            c.close()
            #expect(text.hasPrefix("accepted-on 3"))
            #expect(porter.count("r.service: restarting") == 2)
            #expect(try porter.stop() == 0)
        }
    }
}
