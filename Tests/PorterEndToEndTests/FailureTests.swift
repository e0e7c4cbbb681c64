import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

/// utime+stime of a process in clock ticks (/proc/PID/stat fields 14 and 15).
func cpuTicks(_ pid: Int32) -> Int {
    let stat = readFile("/proc/\(pid)/stat")
    guard let close = stat.lastIndex(of: ")") else { return 0 }
    let f = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
    return (Int(f[11]) ?? 0) + (Int(f[12]) ?? 0)
}

extension EndToEnd {
    @Suite("failures and limits", .timeLimit(.minutes(2)))
    struct Failures {
        /// A missing program is logged with the errno text, never as a bare
        /// exit 127, and the socket keeps serving.
        @Test func execFailureIsLoggedAndTheSocketKeepsServing() throws {
            let (bad, good, plain) = (freePort(), freePort(), freePort())
            let porter = try PorterRun("exec", units: [
                "plain.socket": "[Socket]\nListenStream=127.0.0.1:\(plain)\nAccept=yes\n",
                "plain@.service": "[Service]\nExecStart=nope-plain-name-here\nStandardInput=socket\n",
                "nope.socket": "[Socket]\nListenStream=127.0.0.1:\(bad)\nAccept=yes\n",
                "nope@.service": "[Service]\nExecStart=/usr/bin/nope-not-here\nStandardInput=socket\n",
                "good.socket": "[Socket]\nListenStream=127.0.0.1:\(good)\nAccept=yes\n",
                "good@.service": "[Service]\nExecStart=\(handlerBinary) say hello\nStandardInput=socket\n",
            ])
            for _ in 0..<3 {
                let c = try Client.tcp(bad)
                #expect(try c.readAll() == "", "the connection is closed, not left hanging")
                c.close()
            }
            #expect(porter.log.contains("porter: warning: nope@.service:2: ExecStart: /usr/bin/nope-not-here is not an executable file (yet); starts will fail until it is"))
            let log = try porter.waitForLog("exec /usr/bin/nope-not-here: No such file or directory")
            #expect(log.contains(".service: exec /usr/bin/nope-not-here: No such file or directory"))
            #expect(!log.contains("status 127"))
            let c = try Client.tcp(good)
            #expect(try c.readAll().hasPrefix("hello\n"))
            c.close()
            // A plain name that is not in the search path: warned about at
            // start-up, and each start fails with where porter looked.
            #expect(porter.log.contains("porter: warning: plain@.service:2: ExecStart: nope-plain-name-here is not an executable file (yet); starts will fail until it is"))
            let p = try Client.tcp(plain)
            #expect(try p.readAll() == "", "the connection is closed, not left hanging")
            p.close()
            try porter.waitForLog("exec nope-plain-name-here: not found in /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            #expect(try porter.stop() == 0)
        }

        @Test func crashingServiceIsLoggedAndServedAgain() throws {
            let port = freePort()
            let porter = try PorterRun("crash", units: [
                "crash.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n",
                "crash@.service": "[Service]\nExecStart=\(handlerBinary) crash\nStandardInput=socket\n",
            ])
            for _ in 0..<2 {
                let c = try Client.tcp(port)
                _ = try c.readAll()
                c.close()
            }
            try porter.waitForLog("exited, signal SIGSEGV")
            try waitUntil(10, "two crashes logged") { porter.count("exited, signal SIGSEGV") == 2 }
            #expect(try porter.stop() == 0)
        }

        /// An Accept=no service that keeps failing: porter holds off instead
        /// of spinning, keeps the socket bound (clients wait, are not
        /// refused), and serves once the back-off ends.
        @Test func crashLoopHoldsOffWithoutSpinning() throws {
            let port = freePort()
            let flag = makeTempDirectory("flag") + "/fixed"
            let porter = try PorterRun("loop", units: [
                "loop.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                // Fails until the flag file exists, then serves.
                "loop.service": "[Unit]\nStartLimitIntervalSec=3s\nStartLimitBurst=3\n[Service]\nExecStart=/bin/sh -c 'test -e \(flag) && exec \(handlerBinary) serve'\n",
            ])
            let ticksBefore = cpuTicks(porter.pid)
            let c = try Client.tcp(port)  // queued in the backlog: connect succeeds
            try porter.waitForLog("start limit hit (3 runs in 3s failed or left their work queued)")
            let starts = porter.count("loop.service: started pid")
            usleep(500_000)  // the first back-off is 1 s
            #expect(porter.count("loop.service: started pid") == starts, "no starts while holding off")
            writeFile(flag, "")
            let text = try c.readAll(seconds: 10)
            c.close()
            #expect(Report(text).value("accepted-on") == "3")
            #expect(porter.log.contains("loop.service: back-off over, listening again"))
            // Well under a second of CPU for the whole episode.
            #expect(cpuTicks(porter.pid) - ticksBefore < 50)
            #expect(try porter.stop() == 0)
        }

        /// A service that exits cleanly without taking its connection would
        /// be started again at once, forever; porter notices the queue did
        /// not shrink and holds off.
        /// RestartMode=debug: an automatic restart's run gets
        /// DEBUG_INVOCATION=1; the first run, started by a connection, not.
        @Test func restartModeDebugMarksRestartedRuns() throws {
            let port = freePort()
            let porter = try PorterRun("restart-debug", units: [
                "d.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "d.service": "[Service]\nExecStart=\(handlerBinary) serve 1\nRestart=always\nRestartSec=100ms\nRestartMode=debug\n",
            ])
            let first = Report(try Client.tcp(port).readAll())
            #expect(first.environment["DEBUG_INVOCATION"] == nil)
            let second = Report(try Client.tcp(port).readAll())
            #expect(second.pid != first.pid)
            #expect(second.environment["DEBUG_INVOCATION"] == "1", "\(second.environment)")
            #expect(try porter.stop() == 0)
        }

        @Test func serviceThatLeavesItsWorkQueuedDoesNotSpin() throws {
            let port = freePort()
            let porter = try PorterRun("idle", units: [
                "lazy.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "lazy.service": "[Service]\nExecStart=/bin/true\n",
            ])
            let c = try Client.tcp(port)
            let log = try porter.waitForLog("holding off")
            #expect(log.contains("lazy.service: pid"))
            #expect(log.contains("exited, status 0, leaving the work that started it queued (queue: 1)"))
            #expect(porter.count("lazy.service: started pid") == 5)
            c.close()
            #expect(try porter.stop() == 0)
        }

        /// At MaxConnections= porter stops accepting: the next client waits in
        /// the kernel backlog, is not refused, and is served when a slot frees.
        @Test func maxConnectionsKeepsClientsInTheBacklog() throws {
            let port = freePort()
            let porter = try PorterRun("max", units: [
                "slow.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\nMaxConnections=2\n",
                "slow@.service": "[Service]\nExecStart=/bin/sh -c 'read line; echo got $line'\nStandardInput=socket\n",
            ])
            let a = try Client.tcp(port), b = try Client.tcp(port)
            try porter.waitForLog("MaxConnections=2")
            try waitUntil(5, "two instances") { porter.children.count == 2 }
            let third = try Client.tcp(port)  // accepted by the kernel, not by porter
            try third.send("3\n")
            usleep(300_000)
            #expect(porter.children.count == 2)
            try a.send("1\n")
            #expect(try a.readAll() == "got 1\n")
            #expect(try third.readAll() == "got 3\n")
            try b.send("2\n")
            #expect(try b.readAll() == "got 2\n")
            for c in [a, b, third] { c.close() }
            #expect(try porter.stop() == 0)
        }

        /// 1000 connections one after another: no zombie left, and porter's
        /// own fd count does not grow.
        @Test func thousandConnectionsLeaveNoZombieAndNoFD() throws {
            let port = freePort()
            let porter = try PorterRun("many", units: [
                "hello.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n",
                "hello@.service": "[Service]\nExecStart=\(handlerBinary) say hi\nStandardInput=socket\nStandardError=null\n",
            ])
            // Warm up (the first start creates nothing lasting, but be fair).
            let w = try Client.tcp(port)
            _ = try w.readAll()
            w.close()
            try waitUntil(5, "warm-up instance reaped") { porter.children.isEmpty }
            let fdsBefore = porter.fdCount
            for i in 0..<1000 {
                let c = try Client.tcp(port)
                let text = try c.readAll()
                c.close()
                if text != "hi\n" { throw TestFailure("connection \(i) got '\(text)'") }
            }
            try waitUntil(10, "every instance reaped") { porter.children.isEmpty && porter.zombies.isEmpty }
            #expect(porter.fdCount == fdsBefore)
            #expect(try porter.stop() == 0)
        }
    }
}
