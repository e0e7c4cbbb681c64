import Glibc
import PorterCore
import PorterSys
import Testing

func lines(_ path: String) -> [String] { readFile(path).split(separator: "\n").map(String.init) }

/// ExecCondition=, ExecStartPre=, several ExecStart= (Type=oneshot),
/// ExecStartPost=, ExecStop=, ExecStopPost=, in systemd's order.
@Suite("service commands", .serialized, .timeLimit(.minutes(2)))
struct CommandTests {
    /// Per-file jobs: the whole sequence runs for each file; a failed
    /// ExecCondition= skips, a failing ExecStart= fails and ExecStopPost=
    /// still runs with the result.
    @Test func oneshotPerFileJobRunsEveryCommandInOrder() throws {
        let dir = makeTempDirectory("oneshot-jobs")
        defer { if getenv("KEEP") == nil { _ = system("rm -rf '\(dir)'") } }
        mkdir(dir + "/in", 0o755)
        let out = dir + "/out"
        let porter = try PorterRun("oneshot-jobs", units: [
            "job.path": "[Path]\nDirectoryNotEmpty=\(dir)/in\nAccept=yes\nMaxConnections=1\n",
            "job@.service": """
                [Service]
                Type=oneshot
                ExecCondition=/bin/sh -c 'test %i != skip'
                ExecStartPre=-/bin/false
                ExecStartPre=/bin/sh -c 'echo pre %i >> \(out)'
                ExecStart=/bin/sh -c 'test %i != bad && echo one %i >> \(out)'
                ExecStart=/bin/sh -c 'echo two %i >> \(out)'
                ExecStartPost=/bin/sh -c 'echo startpost %i >> \(out)'
                ExecStop=/bin/sh -c 'echo stop %i >> \(out)'
                ExecStopPost=/bin/sh -c 'echo post %i $${SERVICE_RESULT} $${EXIT_CODE} $${EXIT_STATUS} >> \(out); rm -f \(dir)/in/%i'
                ExecStopPost=/bin/sh -c 'echo post2 %i ${SERVICE_RESULT} >> \(out)'
                """,
        ])
        writeFile(dir + "/in/a", "")
        try waitUntil(10, "job a done: \(lines(out))") { lines(out).contains("post2 a success") }
        #expect(lines(out) == ["pre a", "one a", "two a", "startpost a", "stop a", "post a success exited 0", "post2 a success"])

        writeFile(dir + "/in/skip", "")
        try waitUntil(10, "job skip done: \(lines(out))") { lines(out).contains { $0.hasPrefix("post2 skip") } }
        #expect(Array(lines(out).dropFirst(7)) == ["post skip exec-condition", "post2 skip exec-condition"])
        try porter.waitForLog("job@skip.service: skipped: ExecCondition=/bin/sh exited 1")

        writeFile(dir + "/in/bad", "")
        try waitUntil(10, "job bad done: \(lines(out))") { lines(out).contains { $0.hasPrefix("post2 bad") } }
        #expect(Array(lines(out).dropFirst(9)) == ["pre bad", "post bad exit-code exited 1", "post2 bad exit-code"])
        try porter.waitForLog("job@bad.service: failed: ExecStart=/bin/sh exited 1")
        #expect(try porter.stop() == 0)
        #expect(porter.zombies.isEmpty)
    }

    /// An Accept=no service: ExecStartPre= before it, ExecStartPost= with
    /// $MAINPID after it, ExecStop= with $MAINPID instead of the signal at
    /// the idle stop, ExecStopPost= with the result; the next connection
    /// runs it all again.
    @Test func socketServiceRunsItsCommandsAroundEachRun() throws {
        let dir = makeTempDirectory("socket-commands")
        defer { if getenv("KEEP") == nil { _ = system("rm -rf '\(dir)'") } }
        let out = dir + "/out"
        let port = freePort()
        let porter = try PorterRun("socket-commands", units: [
            "cmd.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
            "cmd.service": """
                [Service]
                ExecStartPre=/bin/sh -c 'echo pre >> \(out)'
                ExecStartPre=-/bin/false
                ExecStart=\(handlerBinary) serve 0
                ExecStartPost=/bin/sh -c 'echo startpost $MAINPID >> \(out)'
                ExecStop=/bin/sh -c 'echo stop $MAINPID >> \(out); kill $MAINPID'
                ExecStopPost=/bin/sh -c 'echo stoppost ${SERVICE_RESULT} ${EXIT_CODE} ${EXIT_STATUS} >> \(out)'
                IdleTimeoutSec=1
                """,
        ])
        let first = Report(try Client.tcp(port).readAll())
        let pid = try #require(first.value("pid"))
        try waitUntil(15, "the idle stop and ExecStopPost=: \(lines(out))") { lines(out).contains { $0.hasPrefix("stoppost") } }
        #expect(lines(out) == ["pre", "startpost \(pid)", "stop \(pid)", "stoppost success killed TERM"])
        try porter.waitForLog("cmd.service: ExecStop= pid")

        // Started again by the next connection, commands and all.
        let second = Report(try Client.tcp(port).readAll())
        #expect(second.value("pid") != pid)
        try waitUntil(10, "the second ExecStartPost=") { lines(out).count >= 6 }
        #expect(Array(lines(out)[4...5]) == ["pre", "startpost \(second.value("pid") ?? "?")"])
        #expect(try porter.stop() == 0)
        // At shutdown ExecStop= and ExecStopPost= run too.
        #expect(lines(out).suffix(2) == ["stop \(second.value("pid") ?? "?")", "stoppost success killed TERM"])
        #expect(porter.zombies.isEmpty)
    }

    /// A failing ExecStartPre= (without `-`) fails the start: the main
    /// process never runs, ExecStopPost= sees the result, and the client
    /// waits in the backlog rather than being refused.
    @Test func aFailingStartPreFailsTheStart() throws {
        let dir = makeTempDirectory("startpre-fails")
        defer { if getenv("KEEP") == nil { _ = system("rm -rf '\(dir)'") } }
        let out = dir + "/out"
        let port = freePort()
        let porter = try PorterRun("startpre-fails", units: [
            "pre.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
            "pre.service": """
                [Service]
                ExecStartPre=/bin/sh -c 'test -e \(dir)/ok'
                ExecStart=\(handlerBinary) serve 1
                ExecStopPost=/bin/sh -c 'echo stoppost ${SERVICE_RESULT} >> \(out)'
                """,
        ])
        let client = try Client.tcp(port)
        try porter.waitForLog("pre.service: start failed: ExecStartPre=/bin/sh exited 1")
        try waitUntil(10, "ExecStopPost=") { lines(out).first == "stoppost exit-code" }
        #expect(!porter.log.contains("pre.service: started pid"))
        // Once the condition of the pre command holds, the waiting client is served.
        writeFile(dir + "/ok", "")
        #expect(Report(try client.readAll(seconds: 20)).value("pid") != nil)
        #expect(try porter.stop() == 0)
    }

    /// Type=oneshot started by a path unit: both ExecStart= lines in order,
    /// then ExecStopPost=.
    @Test func oneshotPathServiceRunsBothStartLines() throws {
        let dir = makeTempDirectory("oneshot-path")
        defer { if getenv("KEEP") == nil { _ = system("rm -rf '\(dir)'") } }
        let out = dir + "/out"
        let porter = try PorterRun("oneshot-path", units: [
            "flag.path": "[Path]\nPathExists=\(dir)/flag\n",
            "flag.service": """
                [Service]
                Type=oneshot
                ExecStart=/bin/sh -c 'echo one >> \(out)'
                ExecStart=/bin/sh -c 'echo two >> \(out); rm \(dir)/flag'
                ExecStopPost=/bin/sh -c 'echo post ${SERVICE_RESULT} ${EXIT_STATUS} >> \(out)'
                """,
        ])
        writeFile(dir + "/flag", "")
        try waitUntil(10, "the run: \(lines(out))") { lines(out).count == 3 }
        #expect(lines(out) == ["one", "two", "post success 0"])
        writeFile(dir + "/flag", "")
        try waitUntil(10, "the second run: \(lines(out))") { lines(out).count == 6 }
        #expect(try porter.stop() == 0)
        #expect(porter.zombies.isEmpty)
    }
}

extension CommandTests {
    /// cups.socket + cups.path -> cups.service: either starts it, and a start
    /// from the path unit hands over the sockets too.
    @Test func aServiceStartedByASocketAndAPathUnit() throws {
        let dir = makeTempDirectory("socket-and-path")
        defer { if getenv("KEEP") == nil { _ = system("rm -rf '\(dir)'") } }
        let port = freePort()
        let porter = try PorterRun("socket-and-path", units: [
            "cups.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
            "cups.path": "[Path]\nPathExists=\(dir)/spool\n",
            "cups.service": "[Service]\nExecStart=\(handlerBinary) serve 1\n",
        ])
        // From the socket.
        #expect(Report(try Client.tcp(port).readAll()).value("pid") != nil)
        try waitUntil(10, "the first run's exit") { porter.count("exited, status 0") == 1 }
        // From the path: it gets the listening socket as fd 3 and serves a
        // client that connects afterwards.
        writeFile(dir + "/spool", "")
        try porter.waitForLog("cups.path: \(dir)/spool triggered cups.service")
        // porter writes "triggered" and "started" one line at a time.
        try waitUntil(5, "the second start") { porter.count("cups.service: started pid") >= 2 }
        #expect(porter.count("cups.service: started pid") == 2)
        #expect(porter.log.contains("with 1 fd (LISTEN_FDNAMES=cups.socket)"))
        unlink(dir + "/spool")
        #expect(Report(try Client.tcp(port).readAll()).values("env").contains("LISTEN_FDS=1"))
        #expect(try porter.stop() == 0)
    }
}

extension CommandTests {
    /// Per-connection instances run their commands too: ExecStartPre= sees
    /// the client's REMOTE_ADDR but not the connection, ExecStart= answers
    /// on it, ExecStopPost= gets the result; a failing ExecCondition= closes
    /// the connection unanswered, and MaxConnections= counts each
    /// connection once however many commands it runs.
    @Test func perConnectionInstancesRunTheirCommands() throws {
        let dir = makeTempDirectory("conn-commands")
        defer { _ = system("rm -rf '\(dir)'") }
        let port = freePort()
        let out = dir + "/out"
        let porter = try PorterRun("conn-commands", units: [
            "c.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\nMaxConnections=1\n",
            "c@.service": """
                [Service]
                StandardInput=socket
                ExecCondition=/bin/sh -c 'test ! -e \(dir)/closed'
                ExecStartPre=/bin/sh -c 'echo pre $${REMOTE_ADDR} $$(test -t 0 || cat | wc -c) >> \(out)'
                ExecStart=/bin/sh -c 'echo hello; echo main >> \(out)'
                ExecStopPost=/bin/sh -c 'echo post $${SERVICE_RESULT} >> \(out)'
                """,
        ])
        for round in 1...2 {
            let c = try Client.tcp(port)
            #expect(try c.readAll() == "hello\n")
            c.close()
            try waitUntil(10, "round \(round) done: \(lines(out))") { lines(out).count == 3 * round }
        }
        #expect(lines(out) == ["pre 127.0.0.1 0", "main", "post success", "pre 127.0.0.1 0", "main", "post success"])
        writeFile(dir + "/closed", "")
        let refused = try Client.tcp(port)
        #expect(try refused.readAll() == "")
        refused.close()
        try porter.waitForLog("skipped: ExecCondition=")
        // The skipped connection left the limit free: the next is served.
        unlink(dir + "/closed")
        let again = try Client.tcp(port)
        #expect(try again.readAll() == "hello\n")
        again.close()
        #expect(try porter.stop() == 0)
    }
}
