import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

/// Regression tests for the defects issue 9 lists ("found in the same reading").
extension EndToEnd {
    @Suite("defects of the house (issue 9)", .timeLimit(.minutes(2)))
    struct House {
        /// Sockets among a process's fds.
        static func sockets(of pid: Int32) -> [String] { fdTargets(pid).filter { $0.hasPrefix("socket:") } }

        /// Shutdown with KillMode=none leaves the instance running but must
        /// not keep porter's copy of its connection (the idle watch) while
        /// porter waits for the rest to stop.
        @Test func killModeNoneAtShutdownDropsTheIdleWatch() throws {
            let (keep, slow) = (freePort(), freePort())
            let dir = makeTempDirectory("house-none")
            defer { _ = system("rm -rf '\(dir)'") }
            let porter = try PorterRun("housenone", units: [
                "keep.socket": "[Socket]\nListenStream=127.0.0.1:\(keep)\nAccept=yes\n",
                "keep@.service": "[Service]\nExecStart=\(handlerBinary) sleep --pidfile \(dir)/keep.pid\nStandardInput=socket\nKillMode=none\nIdleTimeoutSec=60\n",
                "slow.socket": "[Socket]\nListenStream=127.0.0.1:\(slow)\n",
                "slow.service": "[Service]\nExecStart=\(handlerBinary) sleep --ignore-term --pidfile \(dir)/slow.pid\nTimeoutStopSec=3\n",
            ])
            let a = try Client.tcp(keep)
            defer { a.close() }
            let b = try Client.tcp(slow)
            defer { b.close() }
            try waitUntil(10, "both running") { access(dir + "/keep.pid", F_OK) == 0 && access(dir + "/slow.pid", F_OK) == 0 }
            let instance = Int32(readFile(dir + "/keep.pid").trimmingWhitespace()) ?? -1
            defer { kill(instance, SIGKILL) }
            kill(porter.pid, SIGTERM)
            try porter.waitForLog("stopping (1 services and 1 instances running)")
            usleep(300_000)
            #expect(processExists(porter.pid), "porter waits for slow.service")
            #expect(Self.sockets(of: porter.pid).isEmpty, "porter still holds sockets while stopping: \(Self.sockets(of: porter.pid))")
            #expect(try porter.stop(seconds: 10) == 0)
            #expect(processExists(instance), "KillMode=none leaves the instance running")
        }
    }
}

extension EndToEnd.House {
    /// A service fed by two sockets, one of which cannot be opened: the
    /// other is closed and the log says why, instead of staying in LISTEN
    /// with nobody reading its backlog.
    @Test func socketOfAServiceThatCannotStartIsClosed() throws {
        let port = freePort()
        let dir = makeTempDirectory("house-half")
        defer { _ = system("rm -rf '\(dir)'") }
        writeFile(dir + "/file", "")
        let porter = try PorterRun("househalf", units: [
            "both.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
            "other.socket": "[Socket]\nListenStream=\(dir)/file/other.sock\nService=both.service\n",
            "both.service": "[Service]\nExecStart=\(handlerBinary) serve\n",
        ])
        #expect(porter.log.contains("both.service: not started: other.socket could not be opened"), "\(porter.log)")
        #expect(porter.log.contains("both.socket: closed: both.service cannot start without other.socket"), "\(porter.log)")
        #expect(throws: (any Error).self, "nothing listens on the port any more") { try Client.tcp(port) }
        #expect(try porter.stop() == 0)
    }
}

extension EndToEnd.House {
    /// Nothing of a refused unit touches the file system: its socket's
    /// parent directories are not made, its socket file not bound.
    @Test func refusedUnitLeavesNoDirectoryBehind() throws {
        let dir = makeTempDirectory("house-refused")
        defer { _ = system("rm -rf '\(dir)'") }
        let porter = try PorterRun("houserefused", units: [
            "bad.socket": "[Socket]\nListenStream=\(dir)/new/sub/bad.sock\nDirectoryMode=0700\n",
            "bad.service": "[Service]\nExecStart=/bin/true\nKillMode=bogus\n",
            "good.socket": "[Socket]\nListenStream=\(dir)/run/good.sock\n",
            "good.service": "[Service]\nExecStart=\(handlerBinary) serve\n",
        ])
        #expect(porter.log.contains("bad.socket: refused because bad.service has errors"), "\(porter.log)")
        #expect(access(dir + "/new", F_OK) != 0, "a refused unit made its socket's parent directory")
        #expect(try Files.status(dir + "/run/good.sock", follow: false)?.isSocket == true)
        #expect(try porter.stop() == 0)
    }
}

extension EndToEnd.House {
    /// accept(2) failing for want of fds pauses the socket (AcceptMachine's
    /// back-off) instead of spinning; the client waits in the backlog and
    /// is served once fds are free again.
    @Test(.enabled(if: access("/usr/bin/prlimit", X_OK) == 0, "needs prlimit(1) from util-linux"))
    func acceptAtTheFdLimitPausesAndRecovers() throws {
        let port = freePort()
        let porter = try PorterRun("emfile", units: [
            "e.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n",
            "e@.service": "[Service]\nExecStart=\(handlerBinary) say served\nStandardInput=socket\n",
        ])
        let original = readFile("/proc/\(porter.pid)/limits").split(separator: "\n").first { $0.hasPrefix("Max open files") }?
            .split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).prefix(2).map(String.init) ?? []
        #expect(original.count == 2)
        // Every fd below the limit in use: the next accept cannot get one.
        let open = Set(((try? Files.list("/proc/\(porter.pid)/fd")) ?? []).compactMap { Int($0) })
        let lowestFree = (0...).first { !open.contains($0) }!
        #expect(system("prlimit --pid \(porter.pid) --nofile=\(lowestFree):\(original.last ?? "")") == 0)
        let client = try Client.tcp(port)
        defer { client.close() }
        try porter.waitForLog("e.socket: accept: Too many open files; pausing this socket for 1s")
        #expect(system("prlimit --pid \(porter.pid) --nofile=\(original.joined(separator: ":"))") == 0)
        #expect(try client.readAll(seconds: 10).contains("served"))
        #expect(porter.count("pausing this socket") <= 3, "a paused socket does not spin: \(porter.log)")
        #expect(try porter.stop() == 0)
    }
}
