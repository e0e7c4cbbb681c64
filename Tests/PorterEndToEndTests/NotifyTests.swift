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
                "s.service": "[Service]\nExecStart=\(handlerBinary) fdstore\nFileDescriptorStoreMax=2\nFileDescriptorStorePreserve=yes\n",
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
            try porter.waitForLog("with 2 fds (LISTEN_FDNAMES=s.socket:state)")
            #expect(try porter.stop() == 0)
        }

        /// FileDescriptorStorePreserve=restart (the default): the store
        /// outlives a run that is restarted, not one that just ends.
        @Test func fdStorePreserveDecidesWhatOutlivesARun() throws {
            let (plain, restarted) = (freePort(), freePort())
            let porter = try PorterRun("fdstore-preserve", units: [
                "p.socket": "[Socket]\nListenStream=127.0.0.1:\(plain)\n",
                "p.service": "[Service]\nExecStart=\(handlerBinary) fdstore\nFileDescriptorStoreMax=1\n",
                "r.socket": "[Socket]\nListenStream=127.0.0.1:\(restarted)\n",
                "r.service": "[Service]\nExecStart=\(handlerBinary) fdstore\nFileDescriptorStoreMax=1\nRestart=always\nRestartSec=100ms\n",
            ])
            #expect(try Client.tcp(plain).readAll().hasPrefix("stored state-"))
            try porter.waitForLog("p.service: released 1 stored fd (FileDescriptorStorePreserve=restart)")
            #expect(try Client.tcp(plain).readAll().hasPrefix("stored state-"), "a new run starts with an empty store")
            let first = try Client.tcp(restarted).readAll()
            #expect(first.hasPrefix("stored state-"))
            #expect(try Client.tcp(restarted).readAll() == "restored \(first.dropFirst("stored ".count).trimmingWhitespace())\n",
                    "kept across the restart")
            #expect(!porter.log.contains("r.service: released"))
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

extension EndToEnd.Notify {
    /// porter under a service manager (systemd's Type=notify-reload):
    /// READY=1 once its sockets are bound, RELOADING=1 with MONOTONIC_USEC=
    /// and READY=1 around a reload, WATCHDOG=1 at half WATCHDOG_USEC=,
    /// STOPPING=1 at the end.
    @Test func porterTellsItsOwnManager() throws {
        let dir = makeTempDirectory("manager")
        defer { _ = system("rm -rf '\(dir)'") }
        let path = dir + "/notify"
        let manager = try Socket.open(family: AF_UNIX, type: Int32(SOCK_DGRAM.rawValue), nonBlocking: true)
        defer { manager.close() }
        try Socket.bind(manager, SocketAddress(unix: Array(path.utf8), abstract: false))
        var got: [String] = []
        func receive(until needle: String) throws {
            try waitUntil(10, "'\(needle)' from porter; got \(got)") {
                var buf = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = recv(manager.rawValue, &buf, buf.count, 0)
                    if n <= 0 { break }
                    got.append(String(decoding: buf[..<n], as: UTF8.self))
                }
                return got.contains { $0.contains(needle) }
            }
        }
        let port = freePort()
        mkdir(dir + "/units", 0o755)
        writeFile(dir + "/units/e.socket", "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n")
        writeFile(dir + "/units/e@.service", "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n")
        let pid = spawnProgram(["/usr/bin/env", "NOTIFY_SOCKET=\(path)", "WATCHDOG_USEC=200000", porterBinary, "run", "--config-dir", dir + "/units", "--control", "none"],
                               stdout: dir + "/log", stderr: dir + "/log")
        try receive(until: "READY=1")
        #expect(got[0] == "READY=1\nSTATUS=1 socket listening, 0 path units watching, 0 processes running")
        // Ready means bound: a client is served at once.
        #expect(Report(try Client.tcp(port).readAll()).value("pid") != nil)
        try receive(until: "WATCHDOG=1")
        got.removeAll()
        kill(pid, SIGHUP)
        try receive(until: "STATUS=reloaded")
        let reloading = try #require(got.first { $0.hasPrefix("RELOADING=1\n") })
        let usec = reloading.split(separator: "\n").first { $0.hasPrefix("MONOTONIC_USEC=") }.flatMap { Int64($0.dropFirst(15)) }
        #expect(usec != nil && abs(usec! - now().nanoseconds / 1000) < 10_000_000)
        #expect(got.last?.hasPrefix("READY=1\nSTATUS=reloaded; ") == true)
        kill(pid, SIGTERM)
        try receive(until: "STOPPING=1")
        #expect(try waitExit(pid) == 0)
    }
}

extension EndToEnd.Notify {
    /// JOURNAL_STREAM naming porter's stderr: every line starts with its
    /// syslog priority for journald; a service's own `<3>` prefix sets the
    /// level of its line (also without journald).
    @Test func journaldPrioritiesAndServicePrefixes() throws {
        let dir = makeTempDirectory("journald")
        defer { _ = system("rm -rf '\(dir)'") }
        mkdir(dir + "/units", 0o755)
        let port = freePort()
        writeFile(dir + "/units/j.socket", "[Socket]\nListenStream=127.0.0.1:\(port)\n")
        writeFile(dir + "/units/j.service", "[Service]\nExecStart=/bin/sh -c 'echo \"<3>disk on fire\"; echo \"<7>detail\"; echo plain; exec \(handlerBinary) serve 1'\n")
        for journald in [true, false] {
            let log = dir + "/log-\(journald)"
            writeFile(log, "")
            var st = stat()
            #expect(stat(log, &st) == 0)
            let stream = journald ? "\(st.st_dev):\(st.st_ino)" : "\(st.st_dev):\(st.st_ino &+ 1)"
            let pid = spawnProgram(["/usr/bin/env", "JOURNAL_STREAM=\(stream)", porterBinary, "run", "--config-dir", dir + "/units", "--log-level", "debug", "--control", "none"],
                                   stdout: log, stderr: log)
            try waitUntil(10, "ready in \(readFile(log))") { readFile(log).contains("ready: ") }
            _ = try Client.tcp(port).readAll()
            try waitUntil(10, "the service's lines in \(readFile(log))") { readFile(log).contains("j.service: plain") }
            kill(pid, SIGTERM)
            #expect(try waitExit(pid) == 0)
            let lines = readFile(log).split(separator: "\n").map(String.init)
            if journald {
                #expect(lines.contains { $0.hasPrefix("<6>ready: 1 socket listening") })
                #expect(lines.contains("<3>j.service: disk on fire"))
                #expect(lines.contains("<7>j.service: detail"))
                #expect(lines.contains("<6>j.service: plain"))
                #expect(!lines.contains { $0.hasPrefix("porter: ") })
            } else {
                #expect(lines.contains { $0.hasPrefix("porter: info: ready: 1 socket listening") })
                #expect(lines.contains("porter: error: j.service: disk on fire"))
                #expect(lines.contains("porter: debug: j.service: detail"))
                #expect(!lines.contains { $0.hasPrefix("<") })
            }
        }
    }
}

extension EndToEnd.Notify {
    static let analyze = access("/usr/bin/systemd-analyze", X_OK) == 0

    /// tools/init/porter.service is a unit systemd accepts, pointing at the built binary.
    @Test(.enabled(if: analyze, "needs systemd-analyze (apt-get install systemd); PID 1 need not be systemd"))
    func systemdUnitForPorterVerifies() throws {
        let repo = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        let dir = makeTempDirectory("porter-unit")
        defer { _ = system("rm -rf '\(dir)'") }
        let text = readFile(repo + "/tools/init/porter.service").replacing("/usr/local/bin/porter", with: porterBinary)
        writeFile(dir + "/porter.service", text)
        let pid = spawnProgram(["/usr/bin/systemd-analyze", "verify", dir + "/porter.service"], stdout: dir + "/out", stderr: dir + "/out")
        #expect(try waitExit(pid, seconds: 30) == 0, "\(readFile(dir + "/out"))")
        #expect(readFile(dir + "/out").isEmpty, "\(readFile(dir + "/out"))")
    }
}
