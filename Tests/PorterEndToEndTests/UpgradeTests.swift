import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

/// Issue 11: `porter upgrade` re-executes the binary in place and loses no
/// connection and no child; porter socket-activated by another porter.
extension EndToEnd {
    @Suite("upgrade in place", .timeLimit(.minutes(5)))
    struct Upgrade {
        static func cli(_ porter: PorterRun, _ args: [String]) throws -> (Int32, String, String) {
            try runPorter(args + ["--control", porter.dir + "/control"])
        }

        static func status(_ porter: PorterRun) throws -> StatusReport {
            let (code, out, err) = try cli(porter, ["status", "--json"])
            #expect(code == 0, "\(err)")
            return try JSONCoding.decode(StatusReport.self, from: Array(out.utf8))
        }

        /// The load client's progress line: connections done so far.
        static func progress(_ file: String) -> (done: Int, failures: Int, finished: Bool) {
            guard let last = readFile(file).split(separator: "\n").last else { return (0, 0, false) }
            let w = last.split(separator: " ")
            guard w.count >= 4 else { return (0, 0, false) }
            return (Int(w[1]) ?? 0, Int(w[3]) ?? 0, w[0] == "done")
        }

        /// 5 000 connections while porter upgrades five times and reloads
        /// between: not one fails, porter keeps its pid and every child, a
        /// child started before an upgrade is reaped (and counted) after it,
        /// and porter holds as many fds at the end as at the start.
        @Test func upgradesUnderLoadLoseNothing() throws {
            let (p1, p2, p3) = (freePort(), freePort(), freePort())
            let porter = try PorterRun("upgrade-load", units: [
                "e.socket": "[Socket]\nListenStream=127.0.0.1:\(p1)\nAccept=yes\nMaxConnections=32\n",
                "e@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
                "h.socket": "[Socket]\nListenStream=127.0.0.1:\(p2)\n",
                "h.service": "[Service]\nExecStart=\(handlerBinary) serve 0\n",
                "slow.socket": "[Socket]\nListenStream=127.0.0.1:\(p3)\nAccept=yes\n",
                "slow@.service": "[Service]\nExecStart=\(handlerBinary) hold-conn 3000\nStandardInput=socket\n",
            ])
            _ = try Client.tcp(p2).readAll()  // h.service runs from here on
            try waitUntil(10, "idle") { porter.children.count == 1 }
            let baseFDs = porter.fdCount
            let slow = try Client.tcp(p3)
            var first = ""
            try waitUntil(10, "the slow instance") {
                var b = [UInt8](repeating: 0, count: 64)
                let n = read(slow.fd.rawValue, &b, b.count)
                if n > 0 { first += String(decoding: b[0..<n], as: UTF8.self) }
                return first.contains("\n")
            }
            let slowPID = Int32(first.split(separator: " ")[1].prefix { $0 != "\n" })!
            let out = porter.dir + "/load"
            let load = spawnProgram([handlerBinary, "load", out, "5000", String(p1), String(p2)], stdout: out + ".log", stderr: out + ".log")
            for round in 1...5 {
                // The first right away, while the slow instance runs; the others spread over the load.
                let mark = round == 1 ? 100 : (round - 1) * 1000
                try waitUntil(120, "load past \(mark)") { Self.progress(out).done >= mark || Self.progress(out).finished }
                let (code, said, err) = try Self.cli(porter, ["upgrade"])
                #expect(code == 0 && said.contains("upgraded from porter \(Commands.version)"), "\(said)\(err)")
                if round == 1 {
                    // Started before the upgrade, still running after it.
                    #expect(processExists(slowPID))
                }
                let (rc, summary, _) = try Self.cli(porter, ["reload"])
                #expect(rc == 0 && summary.contains("configuration reloaded"))
            }
            #expect(try waitExit(load, seconds: 200) == 0)
            let result = Self.progress(out)
            #expect(result.finished && result.done == 5000 && result.failures == 0, "\(readFile(out).split(separator: "\n").last ?? "")")
            #expect(try slow.readAll().contains("released"))
            let log = try porter.waitForLog("pid \(slowPID) from 127.0.0.1:")
            let upgradedAt = log.firstRange(of: "upgrade: upgraded from")!.lowerBound
            let reapedAt = log.firstRange(of: "pid \(slowPID) from 127.0.0.1:")!.lowerBound
            #expect(upgradedAt < reapedAt, "reaped before the first upgrade?")
            try waitUntil(20, "every instance reaped") { porter.children.count == 1 }
            let r = try Self.status(porter)
            #expect(r.porter.pid == porter.pid && r.porter.counters.upgrades == 5 && r.porter.counters.reloadsOK == 5)
            let slowUnit = r.units.first { $0.name == "slow@.service" }
            #expect(slowUnit?.lastExit?.pid == slowPID && slowUnit?.activations == 1)
            let e = r.units.first { $0.name == "e@.service" }
            #expect(e?.activations == 2500 && e?.failures == 0)
            let h = r.units.first { $0.name == "h.service" }
            #expect(h?.state == "running" && h?.activations == 1)
            try waitUntil(10, "porter's fds back to \(baseFDs): \(fdTargets(porter.pid))") { porter.fdCount == baseFDs }
            #expect(porter.zombies.isEmpty)
            #expect(try porter.stop() == 0)
        }

        /// A state this porter cannot read (another version's): every socket
        /// is adopted by address and keeps serving; the counts start again.
        @Test func anUnreadableStateKeepsTheSockets() throws {
            let (p1, p2) = (freePort(), freePort())
            let porter = try PorterRun("upgrade-fallback", units: [
                "e.socket": "[Socket]\nListenStream=127.0.0.1:\(p1)\nAccept=yes\n",
                "e@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
                "u.socket": "[Socket]\nListenStream=%t/porter-fallback-\(getpid()).sock\nAccept=yes\nRemoveOnStop=yes\n",
                "u@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
                "porter.conf": "[Porter]\nMetricsListen=127.0.0.1:\(p2)\n",
            ], environment: ["PORTER_UPGRADE_STATE_VERSION=99"])
            _ = try Client.tcp(p1).readAll()
            let before = Self.sockets(porter.pid)
            let waiting = try Client.tcp(p1)  // in the backlog across the upgrade
            let (code, _, err) = try Self.cli(porter, ["upgrade"])
            #expect(code == 1 && err.contains("its state could not be read"), "\(err)")
            try porter.waitForLog("state version 99 from porter \(Commands.version); this porter reads version 1")
            #expect(Report(try waiting.readAll()).pid > 0)
            _ = try Client.unix(NSTemporary.runtime + "/porter-fallback-\(getpid()).sock").readAll()
            #expect(try http(p2, "GET /metrics HTTP/1.1\r\n\r\n").status == 200)
            #expect(Self.sockets(porter.pid) == before, "the same socket inodes, none bound anew")
            #expect(try Self.status(porter).porter.counters.upgrades == 0)
            #expect(try porter.stop() == 0)
        }

        static func sockets(_ pid: Int32) -> Set<String> { Set(fdTargets(pid).filter { $0.hasPrefix("socket:") }) }

        /// A new binary that does not run is not executed: porter goes on as
        /// it was; a good one afterwards is.
        @Test func aBrokenBinaryIsRefused() throws {
            let dir = makeTempDirectory("upgrade-bin")
            defer { _ = system("rm -rf '\(dir)'") }
            let copy = dir + "/porter"
            #expect(system("cp '\(porterBinary)' '\(copy)'") == 0)
            let port = freePort()
            let porter = try PorterRun("upgrade-broken", units: [
                "e.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n",
                "e@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
            ], binary: copy)
            // As a package manager replaces a file: a new one renamed over it.
            writeFile(dir + "/broken", "#!/bin/sh\necho 'not porter' >&2\nexit 3\n", mode: 0o755)
            #expect(rename(dir + "/broken", copy) == 0)
            var (code, _, err) = try Self.cli(porter, ["upgrade"])
            #expect(code == 1 && err.contains("--version exited with status 3"), "\(err)")
            #expect(Report(try Client.tcp(port).readAll()).pid > 0)
            #expect(system("cp '\(porterBinary)' '\(dir)/good' && mv '\(dir)/good' '\(copy)'") == 0)
            let signalled = porter.count("upgrade: upgraded from")
            kill(porter.pid, SIGUSR2)
            try waitUntil(20, "the SIGUSR2 upgrade") { porter.count("upgrade: upgraded from") == signalled + 1 }
            (code, _, err) = try Self.cli(porter, ["upgrade"])
            #expect(code == 0, "\(err)")
            #expect(Report(try Client.tcp(port).readAll()).pid > 0)
            #expect(try Self.status(porter).porter.counters.upgrades == 2)
            #expect(try porter.stop() == 0)
        }

        /// porter socket-activated by porter: the outer one starts the inner
        /// one (Type=notify) on the first connection and hands it the
        /// listening socket, which the inner one adopts instead of binding.
        @Test func porterUnderPorter() throws {
            let port = freePort()
            let inner = makeTempDirectory("inner")
            defer { _ = system("rm -rf '\(inner)'") }
            writeFile(inner + "/e.socket", "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n")
            writeFile(inner + "/e@.service", "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n")
            let outer = try PorterRun("outer", units: [
                "inner.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "inner.service": "[Service]\nType=notify\nExecStart=\(porterBinary) run --config-dir \(inner) --control none\n",
            ])
            let report = Report(try Client.tcp(port).readAll())
            #expect(report.environment["REMOTE_ADDR"] == "127.0.0.1")
            let log = try outer.waitForLog("inner.service: ready after")
            #expect(log.contains("inner.service: porter: info: ready: 1 socket listening"), "\(log)")
            #expect(log.contains("adopted") || !log.contains("Address already in use"), "\(log)")
            let innerPID = try #require(outer.children.first)
            // The inner porter listens on the outer one's socket: the same inode.
            let outerSockets = Set(fdTargets(outer.pid).filter { $0.hasPrefix("socket:") })
            #expect(!outerSockets.isDisjoint(with: fdTargets(innerPID).filter { $0.hasPrefix("socket:") }))
            #expect(try outer.stop() == 0)
            #expect(!processExists(innerPID) || readFile("/proc/\(innerPID)/stat").contains(") Z"))
        }
    }
}
