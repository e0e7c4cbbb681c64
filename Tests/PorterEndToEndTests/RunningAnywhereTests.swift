import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

let repositoryRoot = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
let unshareBinary: String? = ["/usr/bin/unshare", "/bin/unshare"].first { (p: String) in access(p, X_OK) == 0 }
let python3Binary: String? = ["/usr/bin/python3", "/usr/local/bin/python3"].first { (p: String) in access(p, X_OK) == 0 }

/// Issue 11: `--daemon --pidfile` for SysV init, PID 1 in a container, the
/// init scripts and the container example in tools/.
extension EndToEnd {
    @Suite("running anywhere", .timeLimit(.minutes(3)))
    struct RunningAnywhere {
        static func pidOf(_ file: String) -> Int32? { Int32(readFile(file).trimmingWhitespace()) }

        static func procStat(_ pid: Int32) -> [Substring] {
            let s = readFile("/proc/\(pid)/stat")
            guard let close = s.lastIndex(of: ")") else { return [] }
            return s[s.index(close, offsetBy: 2)...].split(separator: " ")
        }

        @Test func daemonizesOnceEverySocketIsBound() throws {
            let dir = makeTempDirectory("daemon")
            defer { _ = system("rm -rf '\(dir)'") }
            let port = freePort()
            writeFile(dir + "/units/e.socket", "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n")
            writeFile(dir + "/units/e@.service", "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n")
            let pidfile = dir + "/run/porter.pid"
            let args = ["run", "--daemon", "--pidfile", pidfile, "--config-dir", dir + "/units", "--control", dir + "/control"]
            let started = now()
            let (code, out, err) = try runPorter(args)
            #expect(code == 0, "\(out)\(err)")
            // Exit 0 means listening: the first client is served at once.
            let report = Report(try Client.tcp(port).readAll())
            #expect(report.pid > 0)
            let pid = try #require(Self.pidOf(pidfile))
            defer { kill(pid, SIGKILL) }
            #expect(now() - started < .seconds(10))
            var st = stat()
            #expect(stat(pidfile, &st) == 0 && st.st_mode & 0o777 == 0o644)
            // Detached: not a session leader, no terminal, stdin/stdout on /dev/null, cwd /.
            let f = Self.procStat(pid)
            #expect(f.count > 5 && f[3] != Substring(String(pid)), "session \(f.count > 3 ? String(f[3]) : "?")")
            #expect(f.count > 5 && f[4] == "0", "tty_nr")
            var cwd = [CChar](repeating: 0, count: 256)
            let n = readlink("/proc/\(pid)/cwd", &cwd, cwd.count - 1)
            #expect(String(decoding: cwd[0..<max(0, n)].map { UInt8(bitPattern: $0) }, as: UTF8.self) == "/")
            #expect(fdTargets(pid).filter { $0 == "/dev/null" }.count >= 2)
            // SIGTSTP, SIGTTIN, SIGTTOU ignored (bits 20-22 of SigIgn).
            let ignored = readFile("/proc/\(pid)/status").split(separator: "\n").first { $0.hasPrefix("SigIgn:") }
                .flatMap { UInt64($0.dropFirst(7).trimmingWhitespace(), radix: 16) } ?? 0
            #expect(ignored & 0x380000 == 0x380000, "SigIgn \(String(ignored, radix: 16))")
            // A second porter on the same pid file refuses, and says who holds it.
            let (again, _, why) = try runPorter(["run", "--daemon", "--pidfile", pidfile, "--config-dir", dir + "/units",
                                                 "--control", dir + "/control2"])
            #expect(again == 1 && why.contains("locked by pid \(pid)"), "\(why)")
            #expect(Self.pidOf(pidfile) == pid)
            // Stopped: the pid file goes with it.
            kill(pid, SIGTERM)
            try waitUntil(10, "the daemon to exit") { !processExists(pid) }
            #expect(access(pidfile, F_OK) != 0)
            // A configuration that cannot start: non-zero, and nothing left running.
            let (bad, _, badErr) = try runPorter(["run", "--daemon", "--pidfile", pidfile, "--config-dir", dir + "/nonexistent",
                                                  "--control", dir + "/control"])
            #expect(bad == 1 && badErr.contains("not a directory"), "\(badErr)")
            #expect(access(pidfile, F_OK) != 0)
        }

        @Test func daemonPidFileSurvivesAnUpgrade() throws {
            let dir = makeTempDirectory("daemon-up")
            defer { _ = system("rm -rf '\(dir)'") }
            writeFile(dir + "/units/e.socket", "[Socket]\nListenStream=127.0.0.1:\(freePort())\n")
            writeFile(dir + "/units/e.service", "[Service]\nExecStart=/bin/true\n")
            let pidfile = dir + "/porter.pid"
            let (code, _, err) = try runPorter(["run", "--daemon", "--pidfile", pidfile, "--config-dir", dir + "/units", "--control", dir + "/control"])
            #expect(code == 0, "\(err)")
            let pid = try #require(Self.pidOf(pidfile))
            defer { kill(pid, SIGKILL) }
            let (up, said, upErr) = try runPorter(["upgrade", "--control", dir + "/control"])
            #expect(up == 0 && said.contains("pid \(pid)"), "\(said)\(upErr)")
            #expect(Self.pidOf(pidfile) == pid)
            let (again, _, why) = try runPorter(["run", "--daemon", "--pidfile", pidfile, "--config-dir", dir + "/units", "--control", dir + "/c2"])
            #expect(again == 1 && why.contains("locked by pid \(pid)"))
            kill(pid, SIGTERM)
            try waitUntil(10, "the daemon to exit") { !processExists(pid) }
            #expect(access(pidfile, F_OK) != 0)
        }

        /// porter as PID 1 of a PID namespace: an orphaned grandchild (one
        /// that left its service's session) is reaped, SIGTERM stops the
        /// services, and porter exits 0 once they are gone.
        @Test(.enabled(if: isRoot && unshareBinary != nil, "needs root and unshare(1) for a PID namespace"))
        func pidOneReapsOrphansAndStops() throws {
            let dir = makeTempDirectory("pid1")
            defer { _ = system("rm -rf '\(dir)'") }
            let port = freePort()
            writeFile(dir + "/units/e.socket", "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n")
            // The grandchild leaves the instance's session and group, so only PID 1 can reap it.
            writeFile(dir + "/units/e@.service", "[Service]\nExecStart=/bin/sh -c 'setsid sh -c \"sleep 0.3; echo orphan \\\\$$$$ > \(dir)/orphan\" & sleep 0.1; echo spawned'\nStandardInput=socket\n")
            let dport = freePort()
            writeFile(dir + "/units/d.socket", "[Socket]\nListenStream=127.0.0.1:\(dport)\n")
            writeFile(dir + "/units/d.service", "[Service]\nExecStart=\(handlerBinary) serve 0\n")
            let pid = spawnProgram([unshareBinary!, "--pid", "--fork", "--mount-proc", porterBinary, "run", "--config-dir", dir + "/units",
                                    "--control", "none", "--log-level", "debug"], stdout: dir + "/log", stderr: dir + "/log")
            try waitUntil(10, "ready in \(readFile(dir + "/log"))") { readFile(dir + "/log").contains("ready:") }
            #expect(try Client.tcp(port).readAll().contains("spawned"))
            _ = try Client.tcp(dport).readAll()  // d.service runs from now on
            try waitUntil(10, "the orphan to finish") { !readFile(dir + "/orphan").isEmpty }
            let inner = readFile(dir + "/orphan").split(separator: " ").last.map { String($0).trimmingWhitespace() } ?? "?"
            try waitUntil(10, "porter (PID 1) to reap it: \(readFile(dir + "/log"))") {
                readFile(dir + "/log").contains("reaped pid \(inner) (status 0), not a service of porter's")
            }
            #expect(readFile(dir + "/log").contains("porter: info: ready: 2 sockets"))
            // porter is the namespace's init: the child of unshare.
            let porterPID = try #require(((try? Files.list("/proc")) ?? []).compactMap { Int32($0) }.first {
                Self.procStat($0).count > 1 && Int32(Self.procStat($0)[1]) == pid
            })
            #expect(readFile("/proc/\(porterPID)/status").split(separator: "\n").contains { $0.hasPrefix("NSpid:") && $0.hasSuffix("\t1") })
            kill(porterPID, SIGTERM)
            #expect(try waitExit(pid) == 0)
            #expect(readFile(dir + "/log").contains("SIGTERM: stopping (1 services"))
        }

        /// The SysV init script, run for real against the built binary.
        @Test func sysvInitScript() throws {
            let script = repositoryRoot + "/tools/init/porter.sysv"
            #expect(system("sh -n '\(script)'") == 0)
            #expect(system("sh -n '\(repositoryRoot)/tools/init/porter.openrc'") == 0)
            let dir = makeTempDirectory("sysv")
            defer { _ = system("rm -rf '\(dir)'") }
            let port = freePort()
            writeFile(dir + "/units/e.socket", "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n")
            writeFile(dir + "/units/e@.service", "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n")
            let env = ["/usr/bin/env", "PORTER=\(porterBinary)", "CONFIG_DIR=\(dir)/units", "PIDFILE=\(dir)/porter.pid",
                       "CONTROL=\(dir)/control", "LOGFILE=\(dir)/porter.log", "STOP_TIMEOUT=20", "/bin/sh", script]
            func run(_ verb: String) throws -> (Int32, String) {
                let pid = spawnProgram(env + [verb], stdout: dir + "/out-\(verb)", stderr: dir + "/out-\(verb)")
                return (try waitExit(pid, seconds: 30), readFile(dir + "/out-\(verb)"))
            }
            var (code, out) = try run("status")
            #expect(code == 3 && out.contains("not running"))
            (code, out) = try run("start")
            #expect(code == 0 && out.contains("done (pid"), "\(out)")
            let pid = try #require(Self.pidOf(dir + "/porter.pid"))
            defer { kill(pid, SIGKILL) }
            #expect(Report(try Client.tcp(port).readAll()).pid > 0)
            (code, out) = try run("status")
            #expect(code == 0 && out.contains("running (pid \(pid))") && out.contains("e.socket"), "\(out)")
            (code, out) = try run("reload")
            #expect(code == 0 && out.contains("configuration reloaded"), "\(out)")
            (code, out) = try run("upgrade")
            #expect(code == 0 && out.contains("upgraded from porter"), "\(out)")
            (code, out) = try run("start")
            #expect(code == 0 && out.contains("already running"))
            (code, out) = try run("stop")
            #expect(code == 0 && out.contains("done"), "\(out)")
            #expect(!processExists(pid))
            #expect(readFile(dir + "/porter.log").contains("porter: info: ready: 1 socket"))
        }

        /// tools/container: porter as PID 1 in front of an app it starts on
        /// the first request (the app takes its socket from fd 3).
        @Test(.enabled(if: isRoot && unshareBinary != nil && python3Binary != nil, "needs root, unshare(1) and python3"))
        func containerExample() throws {
            let dir = makeTempDirectory("container")
            defer { _ = system("rm -rf '\(dir)'") }
            let (port, metrics) = (freePort(), freePort())
            let app = dir + "/app.py"
            #expect(system("cp '\(repositoryRoot)/tools/container/app.py' '\(app)'") == 0)
            // The example as shipped, with a free port and the app where this machine has it.
            writeFile(dir + "/over/app.socket.d/port.conf", "[Socket]\nListenStream=\nListenStream=127.0.0.1:\(port)\n")
            writeFile(dir + "/over/app.service.d/path.conf", "[Service]\nExecStart=\nExecStart=\(python3Binary!) \(app)\n")
            writeFile(dir + "/over/porter.conf", "[Porter]\nMetricsListen=127.0.0.1:\(metrics)\n")
            let pid = spawnProgram([unshareBinary!, "--pid", "--fork", "--mount-proc", porterBinary, "run", "--config-dir", dir + "/over",
                                    "--config-dir", repositoryRoot + "/tools/container/conf.d", "--control", dir + "/control"],
                                   stdout: dir + "/log", stderr: dir + "/log")
            try waitUntil(10, "ready in \(readFile(dir + "/log"))") { readFile(dir + "/log").contains("ready:") }
            let first = try http(port, "GET / HTTP/1.0\r\n\r\n")
            #expect(first.status == 200 && first.body.contains("hello from the lazily started app"), "\(first)\n\(readFile(dir + "/log"))")
            #expect(try http(metrics, "GET /metrics HTTP/1.0\r\n\r\n").body.contains("porter_activations_total{unit=\"app.service\"} 1"))
            let (code, out, _) = try runPorter(["status", "--control", dir + "/control"])
            #expect(code == 0 && out.contains("app.service") && out.contains("running"))
            let porterPID = try #require(((try? Files.list("/proc")) ?? []).compactMap { Int32($0) }.first {
                Self.procStat($0).count > 1 && Int32(Self.procStat($0)[1]) == pid
            })
            kill(porterPID, SIGTERM)
            #expect(try waitExit(pid) == 0)
        }
    }
}
