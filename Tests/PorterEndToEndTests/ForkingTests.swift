import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

extension EndToEnd {
    /// Type=forking daemons (the test handler's `forking` mode backgrounds
    /// itself into a new session and serves fd 3), and RemainAfterExit=.
    @Suite("forking and remaining services", .timeLimit(.minutes(2)))
    struct Forking {
        func answer(_ port: UInt16) throws -> (pid: Int32, parent: Int32) {
            let c = try Client.tcp(port)
            defer { c.close() }
            let words = try c.readAll().split(separator: " ")
            guard words.count == 4, let pid = Int32(words[1]), let parent = Int32(words[3].dropLast(words[3].hasSuffix("\n") ? 1 : 0)) else {
                throw TestFailure("unexpected answer \(words)")
            }
            return (pid, parent)
        }

        /// The proof the issue asks for: started, idle-stopped and started
        /// again, its PID file read and removed, and stopped with porter.
        @Test func pidFileDaemonIdleStopsAndStartsAgain() throws {
            let port = freePort()
            let dir = makeTempDirectory("forking")
            defer { _ = system("rm -rf '\(dir)'") }
            let porter = try PorterRun("forking", units: [
                "d.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "d.service": "[Service]\nType=forking\nPIDFile=\(dir)/daemon.pid\nExecStart=\(handlerBinary) forking \(dir)\nIdleTimeoutSec=300ms\n",
            ])
            let first = try answer(port)
            try porter.waitForLog("main process pid \(first.pid) (from PIDFile=\(dir)/daemon.pid)")
            // Its parent has exited: porter, a subreaper, is the daemon's parent now.
            #expect(Processes.facts(first.pid)?.parent == porter.pid)
            try porter.waitForLog("idle for 300ms, stopping pid \(first.pid)")
            try porter.waitForLog("pid \(first.pid) exited")
            try waitUntil(5, "the PID file removed after the run") { access("\(dir)/daemon.pid", F_OK) != 0 }
            let second = try answer(port)
            #expect(second.pid != first.pid)
            try porter.waitForLog("main process pid \(second.pid)")
            #expect(try porter.stop() == 0)
            #expect(!processExists(second.pid))
            #expect(porter.log.contains("pid \(second.pid) exited, signal SIGTERM"))
        }

        /// No PIDFile=: the one process the first left is guessed, and a
        /// double fork hands the role on to the daemon; ExecStop= gets it as
        /// $MAINPID.
        @Test func doubleForkIsGuessed() throws {
            let port = freePort()
            let dir = makeTempDirectory("forking-guess")
            defer { _ = system("rm -rf '\(dir)'") }
            let porter = try PorterRun("forking-guess", units: [
                "d.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "d.service": "[Service]\nType=forking\nExecStart=\(handlerBinary) forking \(dir) --double --no-pidfile\nExecStop=/bin/sh -c 'echo $MAINPID > \(dir)/stopped'\n",
            ])
            let d = try answer(port)
            try porter.waitForLog("pid \(d.pid), which it left, carries on as the main process (guessed)")
            #expect(try porter.stop() == 0)
            #expect(readFile("\(dir)/stopped") == "\(d.pid)\n")
            #expect(!processExists(d.pid))
        }

        /// A PID file naming a process the service did not start is refused
        /// (systemd's rule), and what the run left is stopped with it.
        @Test func foreignPIDFileIsRefused() throws {
            let port = freePort()
            let dir = makeTempDirectory("forking-lie")
            defer { _ = system("rm -rf '\(dir)'") }
            let porter = try PorterRun("forking-lie", units: [
                "d.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "d.service": "[Unit]\nStartLimitBurst=1000\n[Service]\nType=forking\nPIDFile=\(dir)/daemon.pid\nExecStart=\(handlerBinary) forking \(dir) --lie \(getpid())\n",
            ])
            let c = try Client.tcp(port)
            defer { c.close() }
            try porter.waitForLog("PIDFile=\(dir)/daemon.pid names pid \(getpid()), which porter did not start (not its descendant); refused")
            let started = readFile("\(dir)/starts").split(separator: "\n").compactMap { Int32($0) }
            #expect(!started.isEmpty)
            try waitUntil(5, "the daemons of refused runs stopped") { started.allSatisfy { !processExists($0) } }
            #expect(try porter.stop() == 0)
        }

        /// Type=oneshot with RemainAfterExit=yes on a path unit whose
        /// condition stays true: one run, then the service stays active (no
        /// retriggering), and its ExecStop= runs when porter stops it.
        @Test func remainAfterExitRunsOnceAndStopsAtShutdown() throws {
            let dir = makeTempDirectory("remain")
            defer { _ = system("rm -rf '\(dir)'") }
            writeFile("\(dir)/flag", "")
            let porter = try PorterRun("remain", units: [
                "r.path": "[Path]\nPathExists=\(dir)/flag\n",
                "r.service": "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=\(handlerBinary) job \(dir)/runs\nExecStop=/bin/sh -c 'echo stopped > \(dir)/stop'\n",
            ])
            try porter.waitForLog("r.service: stays active after its run (RemainAfterExit=yes)")
            #expect(!porter.log.contains("RemainAfterExit: not honoured"))
            // Another event on the watched path does not start it again.
            writeFile("\(dir)/flag", "again")
            #expect(try porter.stop() == 0)
            #expect(jobRuns("\(dir)/runs").count == 1)
            #expect(readFile("\(dir)/stop") == "stopped\n")
        }
    }
}
