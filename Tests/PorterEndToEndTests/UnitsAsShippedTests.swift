import Glibc
import PorterCore
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
