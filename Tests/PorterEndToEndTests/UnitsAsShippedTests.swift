import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

/// Units as distributions ship them: a vendor directory below the admin's,
/// drop-ins that override, masks, symlinked units.
@Suite("units as shipped", .serialized)
struct UnitsAsShippedTests {
    @Test func dropInsMasksAndLinksAcrossDirectories() throws {
        let vendor = makeTempDirectory("vendor")
        let elsewhere = makeTempDirectory("elsewhere")
        defer { _ = system("rm -rf '\(vendor)' '\(elsewhere)'") }
        let (shipped, moved, moved2, maskedPort, linkedPort) = (freePort(), freePort(), freePort(), freePort(), freePort())
        writeFile(vendor + "/echo.socket", "[Socket]\nListenStream=127.0.0.1:\(shipped)\nAccept=yes\n")
        writeFile(vendor + "/echo@.service", "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n")
        writeFile(vendor + "/other.socket", "[Socket]\nListenStream=127.0.0.1:\(maskedPort)\nAccept=yes\n")
        writeFile(vendor + "/other@.service", "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n")
        writeFile(elsewhere + "/linked.socket", "[Socket]\nListenStream=127.0.0.1:\(linkedPort)\nAccept=yes\n")
        writeFile(elsewhere + "/linked@.service", "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n")

        let porter = try PorterRun("dropins", units: [
            // The admin's directory comes first: it moves the socket and
            // sets a variable for every service, without touching the unit.
            "echo.socket.d/port.conf": "[Socket]\nListenStream=\nListenStream=127.0.0.1:\(moved)\n",
            "service.d/env.conf": "[Service]\nEnvironment=FROM_DROPIN=yes\n",
        ], waitReady: false, arguments: ["--config-dir", vendor])
        symlink("/dev/null", porter.units + "/other.socket")
        symlink(elsewhere + "/linked.socket", porter.units + "/linked.socket")
        symlink(elsewhere + "/linked@.service", porter.units + "/linked@.service")
        // The links were made after porter started: read them on a reload.
        try porter.waitForLog("ready:")
        kill(porter.pid, SIGHUP)
        try porter.waitForLog("configuration reloaded")
        #expect(porter.log.contains("other.socket: masked by \(porter.units)/other.socket, not loaded"))

        let report = Report(try Client.tcp(moved).readAll())
        #expect(report.values("env").contains("FROM_DROPIN=yes"))
        #expect(throws: (any Error).self) { try Client.tcp(shipped) }
        #expect(throws: (any Error).self) { try Client.tcp(maskedPort) }
        #expect(Report(try Client.tcp(linkedPort).readAll()).values("env").contains("FROM_DROPIN=yes"))

        // A changed drop-in is a changed unit: the socket moves on reload.
        writeFile(porter.units + "/echo.socket.d/port.conf", "[Socket]\nListenStream=\nListenStream=127.0.0.1:\(moved2)\n")
        kill(porter.pid, SIGHUP)
        try porter.waitForLog("echo.socket", seconds: 10)
        #expect(try waitUntil(10, "the socket to move to \(moved2)") { (try? Client.tcp(moved2))?.close() != nil })
        #expect(Report(try Client.tcp(moved2).readAll()).value("pid") != nil)
        #expect(throws: (any Error).self) { try Client.tcp(moved) }
        #expect(try porter.stop() == 0)
    }

    @Test func checkShowsWhereUnitsComeFrom() throws {
        let dir = makeTempDirectory("check-show")
        defer { _ = system("rm -rf '\(dir)'") }
        writeFile(dir + "/a/echo.socket.d/port.conf", "[Socket]\nListenStream=\nListenStream=127.0.0.1:9\n")
        writeFile(dir + "/b/echo.socket", "[Socket]\nListenStream=7\nAccept=yes\n")
        writeFile(dir + "/b/echo@.service", "[Service]\nExecStart=/bin/cat\nStandardInput=socket\n")
        let out = dir + "/out"
        let pid = spawnProgram([porterBinary, "check", "--config-dir", dir + "/a", "--config-dir", dir + "/b"], stdout: out, stderr: out)
        #expect(try waitExit(pid) == 0)
        let text = readFile(out)
        #expect(text.contains("echo.socket: \(dir)/b/echo.socket + \(dir)/a/echo.socket.d/port.conf"))
        #expect(text.contains("ListenStream=127.0.0.1:9"))

        let shown = dir + "/shown"
        let p2 = spawnProgram([porterBinary, "check", "-c", dir + "/a", "-c", dir + "/b", "--show", "echo.socket"], stdout: shown, stderr: shown)
        #expect(try waitExit(p2) == 0)
        #expect(readFile(shown) == "# \(dir)/b/echo.socket\n[Socket]\nListenStream=7\nAccept=yes\n\n"
                + "# \(dir)/a/echo.socket.d/port.conf\n[Socket]\nListenStream=\nListenStream=127.0.0.1:9\n\n")
        let p3 = spawnProgram([porterBinary, "check", "-c", dir + "/a", "--show", "nope.socket"], stdout: shown, stderr: shown)
        #expect(try waitExit(p3) == 1)
        #expect(readFile(shown).contains("nope.socket: no such unit"))
    }

    /// OpenFile=: porter opens the file (one only root may read, a file
    /// to append to, a Unix socket to connect to) and passes it after the
    /// other fds, named; graceful leaves out what is missing, and without
    /// it the start fails while the socket keeps serving.
    @Test(.enabled(if: getuid() == 0, "needs root: the service runs as nobody and gets a file only root may open"))
    func openFileHandsOverWhatTheServiceCannotOpen() throws {
        let dir = makeTempDirectory("openfile")
        defer { _ = system("rm -rf '\(dir)'") }
        writeFile(dir + "/secret", "root-only\n")
        chmod(dir + "/secret", 0o600)
        writeFile(dir + "/log", "")
        chmod(dir + "/log", 0o600)
        // A Unix socket the test listens on.
        let listener = try Socket.open(family: AF_UNIX, type: Int32(SOCK_STREAM.rawValue), nonBlocking: false)
        defer { listener.close() }
        try Socket.bind(listener, try SocketAddress(.unixPath(dir + "/peer.sock")))
        try Socket.listen(listener, backlog: 4)
        let (read, append, missing) = (freePort(), freePort(), freePort())
        let porter = try PorterRun("openfile", units: [
            "r.socket": "[Socket]\nListenStream=127.0.0.1:\(read)\nAccept=yes\n",
            "r@.service": "[Service]\nUser=nobody\nStandardInput=socket\nOpenFile=\(dir)/secret:key:read-only\nOpenFile=\(dir)/nothing-here::graceful\n"
                + "ExecStart=/bin/sh -c 'echo \"$LISTEN_FDS $LISTEN_FDNAMES\"; cat <&3; cat \(dir)/secret 2>/dev/null || echo denied'\n",
            "a.socket": "[Socket]\nListenStream=127.0.0.1:\(append)\nAccept=yes\n",
            "a@.service": "[Service]\nUser=nobody\nStandardInput=socket\nOpenFile=\(dir)/log::append\nOpenFile=\(dir)/peer.sock:peer\n"
                + "ExecStart=/bin/sh -c 'echo appended >&3; echo to-peer >&4; echo \"$LISTEN_FDNAMES\"'\n",
            "m.socket": "[Socket]\nListenStream=127.0.0.1:\(missing)\nAccept=yes\n",
            "m@.service": "[Service]\nStandardInput=socket\nOpenFile=\(dir)/nothing-here\nExecStart=/bin/echo never\n",
        ])
        #expect(try Client.tcp(read).readAll() == "1 key\nroot-only\ndenied\n", "the fd, named; the path itself stays closed to nobody")
        #expect(try Client.tcp(append).readAll() == "log:peer\n")
        #expect(readFile(dir + "/log") == "appended\n")
        var p = pollfd(fd: listener.rawValue, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 5000) == 1, "the service's fd 4 is connected to the test's socket")
        var peer = SocketAddress()
        let conn = try #require(try Socket.accept(listener, peer: &peer))
        #expect(try Client(fd: conn).readAll() == "to-peer\n")
        #expect(try Client.tcp(missing).readAll() == "", "the start failed: closed unanswered")
        try porter.waitForLog("OpenFile=\(dir)/nothing-here: no such file")
        #expect(try Client.tcp(read).readAll().hasPrefix("1 key\n"), "the other sockets keep serving")
        #expect(try porter.stop() == 0)
    }

    @Test func limitsAndPrioritiesReachTheChild() throws {
        let (port, plain, refused, said) = (freePort(), freePort(), freePort(), freePort())
        let porter = try PorterRun("limits", units: [
            "lim.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n",
            "lim@.service": """
                [Service]
                ExecStart=\(handlerBinary) report
                StandardInput=socket
                LimitNOFILE=200:300
                LimitCORE=0:infinity
                Nice=7
                OOMScoreAdjust=300
                TimerSlackNSec=70us
                IgnoreSIGPIPE=no
                """,
            "plain.socket": "[Socket]\nListenStream=127.0.0.1:\(plain)\nAccept=yes\n",
            "plain@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
            "said.socket": "[Socket]\nListenStream=127.0.0.1:\(said)\nAccept=yes\n",
            "said@.service": "[Service]\nExecStart=\(handlerBinary) say hello\nSyslogIdentifier=greeter\n",
            // The kernel refuses an fd limit above fs.nr_open.
            "bad.socket": "[Socket]\nListenStream=127.0.0.1:\(refused)\nAccept=yes\n",
            "bad@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\nLimitNOFILE=infinity\n",
        ])
        let r = Report(try Client.tcp(port).readAll())
        #expect(r.value("nofile") == "200 300")
        #expect(r.value("core") == "0 \(UInt64.max)")
        #expect(r.value("nice") == "7")
        #expect(r.value("oom_score_adj") == "300")
        #expect(r.value("timerslack") == "70000")
        #expect(r.value("sigpipe") == "default")
        // systemd's defaults: SIGPIPE ignored, porter's own nice and oom score.
        let p = Report(try Client.tcp(plain).readAll())
        #expect(p.value("sigpipe") == "ignored")
        #expect(p.value("nice") == "0")

        // SyslogIdentifier= names the service's output in porter's log.
        try Client.tcp(said).close()
        try porter.waitForLog("greeter: hello (stderr)")

        #expect(try Client.tcp(refused).readAll() == "")
        try porter.waitForLog("LimitNOFILE=: setrlimit: ")
        #expect(porter.log.contains("Operation not permitted"))
        // The socket keeps serving the others.
        #expect(Report(try Client.tcp(plain).readAll()).value("pid") != nil)
        #expect(try porter.stop() == 0)
    }
}

/// Condition*= evaluated on this machine: each kind with a value that must
/// hold here and one that must not.
@Suite("conditions on this host")
struct HostConditionTests {
    let check = ConditionCheck(environment: ["PATH": "/bin", "LANG": "C"], host: ConfigLoader.hostFacts(environment: [:]))

    func holds(_ key: String, _ value: String) throws -> Bool {
        try check.holds(#require(try UnitCondition.parse(key: "Condition" + key, value: value, line: 1)))
    }

    @Test func eachKindTrueAndFalse() throws {
        let dir = makeTempDirectory("conditions")
        defer { _ = system("rm -rf '\(dir)'") }
        writeFile(dir + "/full", "x")
        writeFile(dir + "/empty", "")
        mkdir(dir + "/emptydir", 0o755)
        symlink(dir + "/full", dir + "/link")
        let host = ConfigLoader.hostFacts(environment: [:])
        let cmdline = readFile("/proc/cmdline").split(separator: " ").first.map(String.init) ?? "x"
        let osID = readFile("/etc/os-release").split(separator: "\n").first { $0.hasPrefix("ID=") }.map { String($0.dropFirst(3)).replacing("\"", with: "") } ?? "linux"
        let cases: [(String, String, Bool)] = [
            ("PathExists", dir + "/full", true), ("PathExists", dir + "/none", false),
            ("PathExistsGlob", dir + "/fu*", true), ("PathExistsGlob", dir + "/zz*", false),
            ("PathIsDirectory", dir, true), ("PathIsDirectory", dir + "/full", false),
            ("PathIsSymbolicLink", dir + "/link", true), ("PathIsSymbolicLink", dir + "/full", false),
            ("PathIsMountPoint", "/proc", true), ("PathIsMountPoint", dir, false),
            ("PathIsReadWrite", dir, true),
            ("DirectoryNotEmpty", dir, true), ("DirectoryNotEmpty", dir + "/emptydir", false),
            ("FileNotEmpty", dir + "/full", true), ("FileNotEmpty", dir + "/empty", false),
            ("FileIsExecutable", "/bin/sh", true), ("FileIsExecutable", dir + "/full", false),
            ("User", host.userName, true), ("User", String(host.uid), true), ("User", "nobody-here", false),
            ("Group", String(host.gid), true), ("Group", "4294967", false),
            ("Host", host.hostname, true), ("Host", "not-" + host.hostname, false),
            ("KernelCommandLine", cmdline, true), ("KernelCommandLine", "porter.nonsense", false),
            ("KernelVersion", ">=2.6", true), ("KernelVersion", "<2.6", false), ("KernelVersion", host.kernelRelease, true),
            ("Architecture", "native", true), ("Architecture", "s390x", false),
            ("Environment", "LANG=C", true), ("Environment", "LANG=de", false),
            ("CPUs", ">=1", true), ("CPUs", ">=100000", false),
            ("Memory", ">=1M", true), ("Memory", "<1K", false),
            ("OSRelease", "ID=\(osID)", true), ("OSRelease", "ID=not-\(osID)", false),
            ("KernelModuleLoaded", "no_such_module_here", false),
            ("Security", "no-such-framework", false),
        ]
        for (key, value, expected) in cases {
            #expect(try holds(key, value) == expected, "Condition\(key)=\(value)")
        }
        // Those whose answer depends on the machine: a value and its opposite disagree.
        for (key, a, b) in [("Virtualization", "yes", "no"), ("ACPower", "yes", "no"), ("FirstBoot", "yes", "no")] {
            #expect(try holds(key, a) != holds(key, b), "Condition\(key)=")
        }
        if host.uid == 0 {
            #expect(try holds("User", "@system"))
            #expect(try holds("Capability", "CAP_CHOWN"))
        }
        #expect(try !holds("Capability", "CAP_NOT_A_THING"))
    }

    @Test func verdicts() throws {
        func c(_ s: String) throws -> UnitCondition {
            let eq = s.firstIndex(of: "=")!
            return try #require(try UnitCondition.parse(key: String(s[..<eq]), value: String(s[s.index(after: eq)...]), line: 1))
        }
        #expect(check.verdict([try c("ConditionPathExists=/")]) == nil)
        #expect(check.verdict([try c("ConditionPathExists=/nonexistent")]) == .skip("ConditionPathExists=/nonexistent not met"))
        #expect(check.verdict([try c("ConditionPathExists=!/nonexistent")]) == nil)
        #expect(check.verdict([try c("ConditionPathExists=|/nonexistent"), try c("ConditionPathExists=|/")]) == nil)
        #expect(check.verdict([try c("AssertPathExists=/nonexistent")]) == .fail("AssertPathExists=/nonexistent failed"))
    }
}

extension UnitsAsShippedTests {
    /// A socket whose condition fails does not listen (logged once); a
    /// template whose condition fails closes each connection.
    @Test func conditionsSkipSocketsAndInstances() throws {
        let (skipped, listening, closed) = (freePort(), freePort(), freePort())
        let porter = try PorterRun("conditions", units: [
            "off.socket": "[Unit]\nConditionPathExists=/nonexistent/porter\n[Socket]\nListenStream=127.0.0.1:\(skipped)\nAccept=yes\n",
            "off@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
            "on.socket": "[Unit]\nConditionPathExists=|/nonexistent/porter\nConditionPathExists=|/\n[Socket]\nListenStream=127.0.0.1:\(listening)\nAccept=yes\n",
            "on@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
            "shut.socket": "[Socket]\nListenStream=127.0.0.1:\(closed)\nAccept=yes\n",
            "shut@.service": "[Unit]\nConditionFileNotEmpty=/nonexistent/porter\n[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
        ])
        #expect(porter.log.contains("off.socket: ConditionPathExists=/nonexistent/porter not met; not listening"))
        #expect(!porter.log.contains("off@.service: not activated"))
        #expect(throws: (any Error).self) { try Client.tcp(skipped) }
        #expect(Report(try Client.tcp(listening).readAll()).value("pid") != nil)
        #expect(try Client.tcp(closed).readAll() == "")
        try porter.waitForLog("skipped: ConditionFileNotEmpty=/nonexistent/porter not met; connection closed")
        #expect(try porter.stop() == 0)
    }
}

extension UnitsAsShippedTests {
    /// RuntimeDirectory= and StateDirectory= made for the run with the
    /// unit's owner and mode, named in the environment; the runtime one is
    /// gone after the run, the state one stays.
    @Test(.enabled(if: getuid() == 0, "the directories go under /run and /var/lib, and User= needs root"))
    func serviceDirectoriesAreMadeAndRemoved() throws {
        let tag = "porter-test-\(getpid())-\(freePort())"
        defer { _ = system("rm -rf /run/\(tag) /var/lib/\(tag)") }
        let port = freePort()
        let nobody = try #require(getpwnam("nobody")).pointee
        let out = makeTempDirectory("dirs-out") + "/stat"
        // A copy of the handler that nobody can reach (the build tree may be in a 0700 directory).
        let handler = makeTempDirectory("dirs-handler") + "/handler"
        #expect(system("cp '\(handlerBinary)' '\(handler)' && chmod 755 '\(handler)'") == 0)
        let porter = try PorterRun("directories", units: [
            "dirs.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
            "dirs.service": """
                [Service]
                ExecStart=\(handler) serve 1
                User=nobody
                RuntimeDirectory=\(tag)/run
                RuntimeDirectoryMode=0750
                StateDirectory=\(tag)
                ExecStartPre=+/bin/sh -c 'stat -c "%%a %%u" "$${RUNTIME_DIRECTORY}" > \(out)'
                """,
        ])
        let r = Report(try Client.tcp(port).readAll())
        #expect(r.values("env").contains("RUNTIME_DIRECTORY=/run/\(tag)/run"))
        #expect(r.values("env").contains("STATE_DIRECTORY=/var/lib/\(tag)"))
        var st = stat()
        #expect(stat("/var/lib/\(tag)", &st) == 0 && st.st_uid == nobody.pw_uid && st.st_mode & 0o7777 == 0o755)
        // The run served its one connection and exited: the runtime directory goes.
        try waitUntil(10, "the runtime directory removed") { access("/run/\(tag)/run", F_OK) != 0 }
        #expect(access("/run/\(tag)", F_OK) == 0)  // the parent porter made stays, as in systemd
        #expect(access("/var/lib/\(tag)", F_OK) == 0)

        // ExecStartPre= (with `+`, as root) saw it made with the mode asked for, owned by User=.
        #expect(readFile(out).trimmingWhitespace() == "750 \(nobody.pw_uid)")
        #expect(try porter.stop() == 0)
    }

    /// A symlink planted where a directory will be made is not followed.
    @Test(.enabled(if: getuid() == 0, "the directories go under /run"))
    func aPlantedSymlinkIsNotFollowed() throws {
        let tag = "porter-test-link-\(getpid())-\(freePort())"
        let victim = makeTempDirectory("victim")
        defer { _ = system("rm -rf /run/\(tag) '\(victim)'") }
        mkdir("/run/\(tag)", 0o755)
        chown("/run/\(tag)", 65534, 65534)  // a directory a service user owns
        symlink(victim, "/run/\(tag)/d")
        let port = freePort()
        let porter = try PorterRun("planted", units: [
            "p.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
            "p.service": "[Service]\nExecStart=\(handlerBinary) serve 1\nRuntimeDirectory=\(tag)/d/inner\n",
        ])
        let c = try Client.tcp(port)
        try porter.waitForLog("RuntimeDirectory=/run/\(tag)/d/inner")
        c.close()
        #expect(access(victim + "/inner", F_OK) != 0)
        #expect(try porter.stop() == 0)
    }
}

extension UnitsAsShippedTests {
    /// Symlinks= point at the socket (and go with RemoveOnStop=);
    /// FlushPending= drops what queued while the service ran.
    @Test func symlinksAndFlushPending() throws {
        let dir = makeTempDirectory("symlinks")
        defer { _ = system("rm -rf '\(dir)'") }
        let port = freePort()
        let porter = try PorterRun("symlinks", units: [
            "s.socket": "[Socket]\nListenStream=\(dir)/real.sock\nSymlinks=\(dir)/links/alias.sock\nRemoveOnStop=yes\n",
            "s.service": "[Service]\nExecStart=\(handlerBinary) serve 1\n",
            "f.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nFlushPending=yes\n",
            "f.service": "[Service]\nExecStart=\(handlerBinary) serve 1\n",
        ])
        var buf = [CChar](repeating: 0, count: 512)
        let n = readlink(dir + "/links/alias.sock", &buf, buf.count)
        #expect(n > 0 && String(decoding: buf[..<Int(n)].map { UInt8(bitPattern: $0) }, as: UTF8.self) == dir + "/real.sock")
        #expect(Report(try Client.unix(dir + "/links/alias.sock").readAll()).value("pid") != nil)

        // Two clients at once: the run serves one, the other is dropped when it exits.
        let a = try Client.tcp(port), b = try Client.tcp(port)
        let answers = [try a.readAll(), try b.readAll()]
        #expect(answers.filter { !$0.isEmpty }.count == 1)
        try porter.waitForLog("f.socket: FlushPending=yes dropped 1 waiting connection")
        #expect(try porter.stop() == 0)
        #expect(access(dir + "/links/alias.sock", F_OK) != 0 && readlink(dir + "/links/alias.sock", &buf, buf.count) < 0)
    }
}

extension UnitsAsShippedTests {
    /// TriggerLimit*=: a burst past the limit pauses the socket, and porter
    /// listens again by itself when the window closes; no client is lost.
    @Test func triggerLimitPausesAndRecovers() throws {
        let yes = freePort(), no = freePort()
        let porter = try PorterRun("trigger-limit", units: [
            "y.socket": "[Socket]\nListenStream=127.0.0.1:\(yes)\nAccept=yes\nTriggerLimitBurst=3\nTriggerLimitIntervalSec=1s\n",
            "y@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
            "n.socket": "[Socket]\nListenStream=127.0.0.1:\(no)\nTriggerLimitBurst=2\nTriggerLimitIntervalSec=1s\n",
            "n.service": "[Service]\nExecStart=\(handlerBinary) serve 1\n",
        ])
        let started = now()
        let clients = try (0..<6).map { _ in try Client.tcp(yes) }
        for c in clients { #expect(Report(try c.readAll()).value("pid") != nil); c.close() }
        try porter.waitForLog("y.socket: trigger limit (TriggerLimitBurst=3 connections in 1s) hit; paused")
        // Served after the pause: the window is 1 s from the first connection.
        #expect(now() - started >= .milliseconds(900))

        // Accept=no: one connection per run; the third start waits for the window.
        let serial = try (0..<4).map { _ in try Client.tcp(no) }
        for c in serial { #expect(Report(try c.readAll()).value("pid") != nil); c.close() }
        try porter.waitForLog("n.socket: trigger limit (TriggerLimitBurst=2 starts in 1s) hit; paused")
        try porter.waitForLog("n.socket: limit window over, listening again")
        #expect(try porter.stop() == 0)
    }
}

extension UnitsAsShippedTests {
    /// Instances as systemd makes them: `foo@a.socket -> foo@.socket`
    /// links listen with `%i` resolved and start `foo@a.service` from the
    /// template `foo@.service`, which an instance drop-in changes for one
    /// instance only; a link `foo@c.service -> foo@.service` is an instance
    /// too.
    @Test func instancesOfTemplates() throws {
        let dir = makeTempDirectory("instances")
        defer { _ = system("rm -rf '\(dir)'") }
        let porter = try PorterRun("instances", units: [
            "foo@.socket": "[Socket]\nListenStream=\(dir)/%i.sock\n",
            "foo@.service": "[Service]\nExecStart=\(handlerBinary) serve 1\nEnvironment=WHO=%i UNIT=%n\n",
            "foo@b.service.d/extra.conf": "[Service]\nEnvironment=EXTRA=only-b\n",
        ])
        // Linked in after porter started (PorterRun writes files): read on a reload.
        for i in ["a", "b"] { symlink(porter.units + "/foo@.socket", porter.units + "/foo@\(i).socket") }
        kill(porter.pid, SIGHUP)
        try porter.waitForLog("configuration reloaded")
        let a = Report(try Client.unix(dir + "/a.sock").readAll())
        #expect(a.environment["WHO"] == "a" && a.environment["UNIT"] == "foo@a.service" && a.environment["EXTRA"] == nil)
        let b = Report(try Client.unix(dir + "/b.sock").readAll())
        #expect(b.environment["WHO"] == "b" && b.environment["EXTRA"] == "only-b")
        #expect(access(dir + "/.sock", F_OK) != 0)  // the template itself does not listen
        // Alone at start-up the template was unused; with instances it is not warned about.
        #expect(porter.count("foo@.service: not activated") == 1)
        #expect(try porter.stop() == 0)

        let (code, out, _) = try runPorter(["check", "--config-dir", porter.units])
        #expect(code == 0, "\(out)")
        #expect(out.contains("  foo@a.socket                 runs\n") && out.contains("  foo@b.service                runs\n"), "\(out)")
    }
}
