import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

extension EndToEnd {
    @Suite("sd_notify", .timeLimit(.minutes(2)))
    struct Notify {
        @Test func readinessAndStatus() throws {
            let port = freePort()
            let porter = try PorterRun("ready", units: [
                "n.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "n.service": "[Service]\nType=notify\nExecStart=\(handlerBinary) notify-serve\n",
            ])
            let c = try Client.tcp(port)
            let r = Report(try c.readAll())
            c.close()
            #expect(r.environment["NOTIFY_SOCKET"]?.hasPrefix("@porter-notify-") == true)
            try porter.waitForLog("n.service: status: serving")
            #expect(porter.log.contains("n.service: ready after"))
            #expect(try porter.stop() == 0)
        }

        /// A path unit whose condition already holds starts its service
        /// while porter sets up; its READY=1 must find the notify socket
        /// bound (cupsd started by cups.path was never "ready" before).
        @Test func readyFromAServiceStartedAtSetup() throws {
            let port = freePort()
            let dir = makeTempDirectory("notify-setup")
            defer { _ = system("rm -rf '\(dir)'") }
            writeFile(dir + "/keepalive", "1\n")
            let porter = try PorterRun("ready-setup", units: [
                "n.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "n.path": "[Path]\nPathExists=\(dir)/keepalive\n",
                "n.service": "[Service]\nType=notify\nExecStart=\(handlerBinary) notify-serve\n",
            ])
            try porter.waitForLog("n.service: ready after")
            #expect(porter.log.contains("n.path: \(dir)/keepalive triggered n.service"))
            #expect(try porter.stop() == 0)
        }

        @Test func notReadyInTimeIsStopped() throws {
            let port = freePort()
            let porter = try PorterRun("slow", units: [
                "n.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "n.service": "[Unit]\nStartLimitBurst=100\n[Service]\nType=notify\nExecStart=\(handlerBinary) notify-never\nTimeoutStartSec=300ms\n",
            ])
            let c = try Client.tcp(port)
            try porter.waitForLog("(TimeoutStartSec=), stopping pid")
            #expect(porter.log.contains("n.service: status: still starting"))
            c.close()
            #expect(try porter.stop() == 0)
        }

        /// A missed watchdog aborts the service and starts it again, and each
        /// run learns its deadline from WATCHDOG_USEC and WATCHDOG_PID.
        @Test func missedWatchdogRestarts() throws {
            let port = freePort()
            let dir = makeTempDirectory("wd")
            defer { _ = system("rm -rf '\(dir)'") }
            let porter = try PorterRun("watchdog", units: [
                "w.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "w.service": "[Service]\nType=notify\nExecStart=\(handlerBinary) watchdog \(dir)/runs 2\nWatchdogSec=300ms\n",
            ])
            let c = try Client.tcp(port)
            try waitUntil(10, "two runs") { readFile(dir + "/runs").split(separator: "\n").count >= 2 }
            let runs = readFile(dir + "/runs").split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
            for r in runs { #expect(r[1] == "300000" && r[2] == r[0], "\(r)") }
            #expect(porter.log.contains("w.service: watchdog timeout (no WATCHDOG=1 in 300ms), aborting pid \(runs[0][0])"))
            #expect(porter.log.contains("w.service: pid \(runs[0][0]) exited, signal SIGABRT"))
            #expect(porter.log.contains("w.service: restarting"))
            c.close()
            #expect(try porter.stop() == 0)
        }

        /// FDSTORE=1: a run parks a pipe with porter and exits; the next run
        /// receives it after the listening socket, named by FDNAME=.
        @Test func fdStoreRoundTrip() throws {
            let port = freePort()
            let porter = try PorterRun("fdstore", units: [
                "s.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "s.service": "[Service]\nExecStart=\(handlerBinary) fdstore\nFileDescriptorStoreMax=2\n",
            ])
            var c = try Client.tcp(port)
            let first = try c.readAll()
            c.close()
            #expect(first.hasPrefix("stored state-"))
            let state = first.dropFirst("stored ".count).trimmingWhitespace()
            try porter.waitForLog("s.service: stored 1 fd named state (1 of 2)")
            try waitUntil(5, "the first run to exit") { porter.children.isEmpty }
            c = try Client.tcp(port)
            let second = try c.readAll()
            c.close()
            #expect(second == "restored \(state)\n")
            #expect(porter.log.contains("with 2 fds (LISTEN_FDNAMES=s.socket:state)"))
            #expect(try porter.stop() == 0)
        }

        /// MAINPID=: the main process moves to a process porter did not start;
        /// porter follows it (pidfd) and takes its exit as the end of the run.
        @Test func mainPIDMoves() throws {
            let port = freePort()
            let porter = try PorterRun("mainpid", units: [
                "m.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "m.service": "[Service]\nType=notify\nExecStart=\(handlerBinary) mainpid\n",
            ])
            let c = try Client.tcp(port)
            let r = Report(try c.readAll())
            c.close()
            try porter.waitForLog("m.service: main pid \(r.pid) exited")
            #expect(porter.log.contains("m.service: main process is now pid \(r.pid)"))
            // The run is over: the next connection starts another.
            let again = try Client.tcp(port)
            #expect(Report(try again.readAll()).pid != r.pid)
            again.close()
            #expect(try porter.stop() == 0)
        }

        /// Without room in the store, parked fds are refused and closed.
        @Test func fdStoreNeedsRoom() throws {
            let port = freePort()
            let porter = try PorterRun("nostore", units: [
                "s.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "s.service": "[Service]\nExecStart=\(handlerBinary) fdstore\nNotifyAccess=main\n",
            ])
            let c = try Client.tcp(port)
            _ = try c.readAll()
            c.close()
            try porter.waitForLog("FDSTORE=1 with 1 fd refused: FileDescriptorStoreMax=0 is full")
            #expect(try porter.stop() == 0)
        }
    }
}
