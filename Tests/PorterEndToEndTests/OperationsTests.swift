import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

/// Issue 11: the control socket (status, start, stop, reload), metrics,
/// logs, tested against the real binary.
extension EndToEnd {
    @Suite("operating porter", .timeLimit(.minutes(3)))
    struct Operations {
        static func cli(_ porter: PorterRun, _ args: [String]) throws -> (Int32, String, String) {
            try runPorter(args + ["--control", porter.dir + "/control"])
        }

        static func status(_ porter: PorterRun, _ units: [String] = []) throws -> StatusReport {
            let (code, out, err) = try cli(porter, ["status", "--json"] + units)
            #expect(code == 0, "\(err)")
            return try JSONCoding.decode(StatusReport.self, from: Array(out.utf8))
        }

        static func unit(_ r: StatusReport, _ name: String) throws -> StatusReport.Unit {
            try #require(r.units.first { $0.name == name }, "\(name) in \(r.units.map(\.name))")
        }

        /// A client that connected but got nothing within `ms`: it waits in
        /// the backlog.
        static func waits(_ c: Client, ms: Int32 = 300) -> Bool {
            var p = pollfd(fd: c.fd.rawValue, events: Int16(POLLIN), revents: 0)
            return poll(&p, 1, ms) == 0
        }

        @Test func statusTableAndJSONAgainstKnownState() throws {
            let (p1, p2) = (freePort(), freePort())
            let porter = try PorterRun("status", units: [
                "e.socket": "[Socket]\nListenStream=127.0.0.1:\(p1)\nAccept=yes\nMaxConnections=7\n",
                "e@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
                "h.socket": "[Socket]\nListenStream=127.0.0.1:\(p2)\n",
                "h.service": "[Service]\nExecStart=\(handlerBinary) serve 0\nIdleTimeoutSec=1h\n",
                "f@.service": "[Service]\nExecStart=/bin/false\nStandardInput=socket\n",
                "f.socket": "[Socket]\nListenStream=%t/porter-status-\(getpid()).sock\nAccept=yes\nRemoveOnStop=yes\n",
            ])
            for _ in 0..<3 { _ = try Client.tcp(p1).readAll() }
            let served = Report(try Client.tcp(p2).readAll())
            try porter.waitForLog("exited, status 0", seconds: 10)
            try waitUntil(10, "three instances reaped") { porter.count("from 127.0.0.1:") == 3 }
            let r = try Self.status(porter)
            #expect(r.porter.pid == porter.pid && r.porter.version == Commands.version)
            #expect(r.porter.controlSocket == porter.dir + "/control")
            let e = try Self.unit(r, "e.socket")
            #expect(e.kind == "socket" && e.mode == "accept" && e.state == "listening")
            #expect(e.connectionsTotal == 3 && e.connectionsNow == 0 && e.maxConnections == 7 && e.refused == 0)
            #expect(e.listen == ["127.0.0.1:\(p1)"] && e.activates == "e@.service")
            let t = try Self.unit(r, "e@.service")
            #expect(t.kind == "template" && t.activations == 3 && t.failures == 0 && t.triggeredBy == ["e.socket"])
            #expect(t.lastExit?.status == "status 0" && t.lastExit?.success == true && (t.lastExit?.secondsAgo ?? 99) < 10)
            let h = try Self.unit(r, "h.service")
            #expect(h.kind == "service" && h.state == "running" && h.pids == [served.pid] && h.activations == 1)
            #expect(h.idleCheckIn.map { $0 > 3000 && $0 <= 3600 } == true)
            #expect(try Self.unit(r, "h.socket").state == "passed")
            // A failing template: its failure is counted and shown.
            _ = try Client.unix(NSTemporary.runtime + "/porter-status-\(getpid()).sock").readAll()
            try waitUntil(10, "the failed instance") { porter.log.contains("exited, status 1") }
            let r2 = try Self.status(porter, ["f@.service", "e.socket"])
            #expect(r2.units.map(\.name) == ["e.socket", "f@.service"])
            #expect(r2.units[1].failures == 1 && r2.units[1].lastExit?.success == false)
            // The table: a header and a row per unit, no colour off a terminal.
            let (code, table, _) = try Self.cli(porter, ["status"])
            #expect(code == 0)
            let lines = table.split(separator: "\n").map(String.init)
            #expect(lines[0].hasPrefix("porter \(Commands.version), pid \(porter.pid)"))
            #expect(lines[1].hasPrefix("UNIT") && lines[1].contains("STATE") && lines[1].contains("LAST EXIT"))
            #expect(lines.contains { $0.hasPrefix("e.socket ") && $0.contains("0/3 (max 7)") })
            #expect(lines.contains { $0.hasPrefix("h.service ") && $0.contains("running") && $0.contains(String(served.pid)) })
            #expect(!table.contains("\u{1B}["))
            // An unknown unit: exit 1 and its name.
            let (bad, _, err) = try Self.cli(porter, ["status", "nope.socket"])
            #expect(bad == 1 && err.contains("no such unit: nope.socket"))
            #expect(try porter.stop() == 0)
            // Gone with porter: the control socket file.
            #expect(access(porter.dir + "/control", F_OK) != 0)
            let (down, _, why) = try runPorter(["status", "--control", porter.dir + "/control"])
            #expect(down == 3 && why.contains("porter is not running here"))
        }

        @Test func stopPausesActivationAndStartResumesIt() throws {
            let (p1, p2) = (freePort(), freePort())
            let porter = try PorterRun("pause", units: [
                "e.socket": "[Socket]\nListenStream=127.0.0.1:\(p1)\nAccept=yes\n",
                "e@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
                "h.socket": "[Socket]\nListenStream=127.0.0.1:\(p2)\n",
                "h.service": "[Service]\nExecStart=\(handlerBinary) serve 0\n",
            ])
            var (code, out, _) = try Self.cli(porter, ["stop", "e.socket"])
            #expect(code == 0 && out.contains("paused"))
            // Paused: the client is accepted by the kernel and waits.
            let waiting = try Client.tcp(p1)
            #expect(Self.waits(waiting))
            #expect(try Self.unit(try Self.status(porter), "e.socket").state == "paused")
            (code, out, _) = try Self.cli(porter, ["start", "e.socket"])
            #expect(code == 0 && out.contains("resumed"))
            #expect(Report(try waiting.readAll()).pid > 0)

            // An Accept=no service: stopped now, not started again while paused.
            let first = Report(try Client.tcp(p2).readAll())
            (code, out, _) = try Self.cli(porter, ["stop", "h.service"])
            #expect(code == 0 && out.contains("stopping pid \(first.pid)"))
            try waitUntil(10, "h.service to stop") { !processExists(first.pid) || porter.zombies.contains(first.pid) }
            try porter.waitForLog("h.service: pid \(first.pid) exited")
            let queued = try Client.tcp(p2)
            #expect(Self.waits(queued))
            #expect(try Self.unit(try Self.status(porter), "h.service").state == "paused")
            (code, _, _) = try Self.cli(porter, ["start", "h.service"])
            #expect(code == 0)
            let second = Report(try queued.readAll())
            #expect(second.pid > 0 && second.pid != first.pid)
            // Unknown units and a pause that is already there.
            (code, _, out) = try Self.cli(porter, ["stop", "nope.socket"])
            #expect(code == 1 && out.contains("no such unit"))
            #expect(try porter.stop() == 0)
        }

        @Test func reloadReportsItsResultAndExecReloadRuns() throws {
            let port = freePort()
            let mark = makeTempDirectory("reloadmark") + "/reloaded"
            let porter = try PorterRun("reload", units: [
                "h.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "h.service": "[Service]\nExecStart=\(handlerBinary) serve 0\nExecReload=/bin/sh -c 'sleep 1; echo $MAINPID > \(mark)'\n",
                "n.socket": "[Socket]\nListenStream=127.0.0.1:\(freePort())\n",
                "n.service": "[Service]\nExecStart=\(handlerBinary) serve 0\n",
            ])
            var (code, out, err) = try Self.cli(porter, ["reload"])
            #expect(code == 0 && out.contains("configuration reloaded in"), "\(out)\(err)")
            writeFile(porter.units + "/bad.socket", "[Socket]\nListenStream=127.0.0.1:70000\n")
            (code, out, err) = try Self.cli(porter, ["reload"])
            #expect(code == 1)
            #expect(out.contains("bad.socket:2: ListenStream: port 70000 out of range 1-65535"), "\(out)")
            #expect(err.contains("reload refused: 1 error"))
            unlink(porter.units + "/bad.socket")
            // ExecReload= with $MAINPID, its outcome to the caller.
            (code, _, err) = try Self.cli(porter, ["reload", "h.service"])
            #expect(code == 1 && err.contains("not running"), "\(err)")
            let served = Report(try Client.tcp(port).readAll())
            func cpuTicks() -> Int {
                let f = readFile("/proc/\(porter.pid)/stat").split(separator: ")").last!.split(separator: " ")
                return (Int(f[11]) ?? 0) + (Int(f[12]) ?? 0)
            }
            let ticks = cpuTicks()
            (code, out, err) = try Self.cli(porter, ["reload", "h.service"])
            #expect(code == 0 && out.contains("reloaded"), "\(out)\(err)")
            // Waiting a second for ExecReload= costs porter nothing (no spin on the caller's end of file).
            #expect(cpuTicks() - ticks < 10, "porter used \(cpuTicks() - ticks) ticks waiting")
            #expect(readFile(mark).trimmingWhitespace() == String(served.pid))
            (code, _, err) = try Self.cli(porter, ["reload", "n.service"])
            #expect(code == 1 && err.contains("has no ExecReload="))
            let r = try Self.status(porter)
            #expect(r.porter.counters.reloadsOK == 1 && r.porter.counters.reloadsFailed == 1)
            #expect(try porter.stop() == 0)
        }

        /// Type=notify-reload: ReloadSignal= to the main process, then
        /// RELOADING=1 (stamped after the signal) and READY=1; ExecReload=
        /// beside it; a stale stamp is ignored and the wait times out; a
        /// reload the service begins by itself shows in the status.
        @Test func notifyReloadSignalsAndWaitsForTheService() throws {
            let dir = makeTempDirectory("notify-reload")
            let (good, cont, stale) = (freePort(), freePort(), freePort())
            let porter = try PorterRun("notify-reload", units: [
                "g.socket": "[Socket]\nListenStream=127.0.0.1:\(good)\n",
                "g.service": "[Service]\nType=notify-reload\nExecStart=\(handlerBinary) notify-reload \(dir)/g good\n",
                "c.socket": "[Socket]\nListenStream=127.0.0.1:\(cont)\n",
                "c.service": "[Service]\nType=notify-reload\nReloadSignal=SIGCONT\nExecStart=\(handlerBinary) notify-reload \(dir)/c good\n"
                    + "ExecReload=/bin/kill -HUP $MAINPID\n",
                "s.socket": "[Socket]\nListenStream=127.0.0.1:\(stale)\n",
                "s.service": "[Service]\nType=notify-reload\nTimeoutStartSec=1\nExecStart=\(handlerBinary) notify-reload \(dir)/s stale\n",
            ])
            #expect(try Client.tcp(good).readAll() == "generation 1\n")
            let pid = try #require(try Self.unit(Self.status(porter), "g.service").pids.first)
            var (code, out, err) = try Self.cli(porter, ["reload", "g.service"])
            #expect(code == 0 && out.contains("reloaded"), "\(out)\(err)")
            // The answer came after the service's READY=1, not at the signal.
            #expect(readFile("\(dir)/g") == "reloaded \(pid)\n")
            #expect(try Client.tcp(good).readAll() == "generation 2\n")
            try porter.waitForLog("g.service: reloading: SIGHUP to pid \(pid), waiting for RELOADING=1 and READY=1")
            try porter.waitForLog("g.service: reloaded")

            // ExecReload= runs beside the wait: it sends the real signal.
            #expect(try Client.tcp(cont).readAll() == "generation 1\n")
            (code, out, err) = try Self.cli(porter, ["reload", "c.service"])
            #expect(code == 0 && out.contains("reloaded"), "\(out)\(err)")
            #expect(readFile("\(dir)/c").hasPrefix("reloaded "))
            try porter.waitForLog("c.service: reloading: SIGCONT to pid")

            // A RELOADING=1 stamped before the signal does not end the wait.
            #expect(try Client.tcp(stale).readAll() == "generation 1\n")
            (code, _, err) = try Self.cli(porter, ["reload", "s.service"])
            #expect(code == 1 && err.contains("s.service: reload failed: no RELOADING=1 in time (TimeoutStartSec=)"), "\(err)")
            try porter.waitForLog("s.service: RELOADING=1 with MONOTONIC_USEC=1, from before the reload signal, ignored")
            #expect(try Client.tcp(stale).readAll() == "generation 1\n", "a failed reload leaves the service running")

            // RELOADING=1 by itself: "reloading" until its READY=1.
            kill(pid, SIGUSR1)
            try porter.waitForLog("g.service: reloading (by itself)")
            #expect(try Self.unit(Self.status(porter), "g.service").state == "reloading")
            kill(pid, SIGUSR2)
            try porter.waitForLog("g.service: reloaded (by itself)")
            #expect(try Self.unit(Self.status(porter), "g.service").state == "running")
            #expect(try porter.stop() == 0)
        }

        @Test func aSecondPorterOnALiveControlSocketIsRefusedAStaleOneReplaced() throws {
            let a = try PorterRun("control-a", units: ["x.socket": "[Socket]\nListenStream=127.0.0.1:\(freePort())\n",
                                                     "x.service": "[Service]\nExecStart=/bin/true\n"])
            let port = freePort()
            let b = try PorterRun("control-b", units: ["y.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                                                     "y.service": "[Service]\nExecStart=/bin/true\n"],
                                  waitReady: false, arguments: ["--control", a.dir + "/control"])
            #expect(try b.waitExited() == 1)
            #expect(b.log.contains("\(a.dir)/control: in use by pid \(a.pid)"), "\(b.log)")
            // It bound nothing of its own.
            #expect((try? Client.tcp(port)) == nil)
            // Killed without a chance to remove it: the next porter replaces the stale file.
            kill(a.pid, SIGKILL)
            _ = try a.waitExited()
            let c = try PorterRun("control-c", units: ["z.socket": "[Socket]\nListenStream=127.0.0.1:\(freePort())\n",
                                                     "z.service": "[Service]\nExecStart=/bin/true\n"],
                                  arguments: ["--control", a.dir + "/control"])
            let (code, out, _) = try runPorter(["status", "--json", "--control", a.dir + "/control"])
            #expect(code == 0 && out.contains("\"pid\":\(c.pid)"))
            var st = stat()
            #expect(stat(a.dir + "/control", &st) == 0 && st.st_mode & 0o777 == 0o600)
            #expect(try c.stop() == 0)
        }

        @Test(.enabled(if: isRoot, "needs root to act as another user"))
        func aRequestFromAnotherUserIsRefused() throws {
            let porter = try PorterRun("peer", units: ["x.socket": "[Socket]\nListenStream=127.0.0.1:\(freePort())\n",
                                                      "x.service": "[Service]\nExecStart=/bin/true\n"])
            // The mode keeps others out; loosened, porter's own check still does.
            chmod(porter.dir + "/control", 0o666)
            let dir = makeTempDirectory("peer-out")
            chmod(dir, 0o777)
            defer { _ = system("rm -rf '\(dir)'") }
            let pid = spawnProgram(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", porterBinary,
                                    "stop", "x.socket", "--control", porter.dir + "/control"], stdout: dir + "/out", stderr: dir + "/out")
            #expect(try waitExit(pid) == 1)
            #expect(readFile(dir + "/out").contains("permission denied: uid 65534 may not use porter's control socket"))
            try porter.waitForLog("control socket: refused a request from pid")
            #expect(try Self.unit(try Self.status(porter), "x.socket").paused == false)
            #expect(try porter.stop() == 0)
        }

        /// Garbage, oversized, unterminated and slow requests: each is
        /// answered or dropped, and the loop serves everyone else meanwhile.
        @Test func malformedAndSlowControlRequests() throws {
            let porter = try PorterRun("malformed", units: ["x.socket": "[Socket]\nListenStream=127.0.0.1:\(freePort())\n",
                                                           "x.service": "[Service]\nExecStart=/bin/true\n"])
            let path = porter.dir + "/control"
            func ask(_ bytes: [UInt8]) throws -> String {
                let c = try Client.unix(path)
                defer { c.close() }
                try bytes.withUnsafeBytes { _ = try c.fd.write($0) }
                c.shutdownWrite()
                return try c.readAll()
            }
            #expect(try ask(Array("hello\n".utf8)).contains("not a porter control request"))
            #expect(try ask([0xFF, 0xFE, 0x0A]).contains("not a line of text"))
            #expect(try ask(Array("porter/9 status\n".utf8)).contains("protocol version 9 is not spoken here"))
            #expect(try ask([UInt8](repeating: 0x61, count: 5000)).contains("longer than 4096"))
            #expect(try ask(Array("porter/1 version".utf8)).contains("\"ok\":true"))  // no newline, then EOF
            // Silent clients hold a slot, not the loop.
            let silent = try (0..<20).map { _ in try Client.unix(path) }
            #expect(try Self.status(porter).units.count == 2)
            // ...and are let go once their time for a request is over.
            try waitUntil(8, "silent clients closed") { silent.allSatisfy { !Self.waits($0, ms: 0) } }
            for c in silent { c.close() }
            #expect(try porter.stop() == 0)
        }
    }
}

/// Where %t is for the tests' porter (root: /run).
enum NSTemporary {
    static var runtime: String { geteuid() == 0 ? "/run" : (getenv("XDG_RUNTIME_DIR").map { String(cString: $0) } ?? "/tmp") }
}

