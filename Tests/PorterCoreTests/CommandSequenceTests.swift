import PorterCore
import Testing

/// The order and exit rules of ExecCondition= ... ExecStopPost=.
@Suite("command sequence")
struct CommandSequenceTests {
    func cmd(_ path: String, ignore: Bool = false) -> ExecCommand {
        var c = ExecCommand(path: path, arguments: [path])
        c.ignoreFailure = ignore
        return c
    }

    var all: [CommandSequence.Phase: [ExecCommand]] {
        [.condition: [cmd("cond")], .startPre: [cmd("pre1", ignore: true), cmd("pre2")], .start: [cmd("s1"), cmd("s2")],
         .startPost: [cmd("post")], .stop: [cmd("stop")], .stopPost: [cmd("sp1"), cmd("sp2")]]
    }

    /// Runs the sequence, answering each step with `exits[label]` (default 0).
    func run(_ exits: [String: ProcessExit], success: ExitStatusSet = ExitStatusSet()) -> (ran: [String], outcome: CommandSequence.Outcome, result: String) {
        var seq = CommandSequence(all, phases: CommandSequence.Phase.allCases, success: success)
        var ran: [String] = []
        var step = seq.start()
        while let s = step {
            ran.append(s.command.path)
            step = seq.exited(exits[s.command.path] ?? .exited(0))
        }
        return (ran, seq.outcome, seq.outcome.serviceResult)
    }

    @Test func everythingInOrder() {
        let r = run([:])
        #expect(r.ran == ["cond", "pre1", "pre2", "s1", "s2", "post", "stop", "sp1", "sp2"])
        #expect(r.outcome == .success)
    }

    @Test(arguments: [
        // which step fails, how, what still runs after it, $SERVICE_RESULT
        ("cond", ProcessExit.exited(1), ["sp1", "sp2"], "exec-condition"),
        ("cond", .exited(254), ["sp1", "sp2"], "exec-condition"),
        ("cond", .exited(255), ["sp1", "sp2"], "exit-code"),
        ("cond", .signaled(9, core: false), ["sp1", "sp2"], "signal"),
        ("pre1", .exited(3), ["pre2", "s1", "s2", "post", "stop", "sp1", "sp2"], "success"),  // `-`
        ("pre2", .exited(3), ["sp1", "sp2"], "exit-code"),
        ("s1", .signaled(6, core: true), ["sp1", "sp2"], "core-dump"),
        ("s2", .exited(1), ["sp1", "sp2"], "exit-code"),
        ("post", .exited(1), ["sp1", "sp2"], "exit-code"),
        ("stop", .exited(1), ["sp1", "sp2"], "exit-code"),  // the stop phases go on
        ("sp1", .exited(1), ["sp2"], "exit-code"),
    ])
    func failures(step: String, exit: ProcessExit, after: [String], result: String) {
        let r = run([step: exit])
        let i = r.ran.firstIndex(of: step)!
        #expect(Array(r.ran[(i + 1)...]) == after)
        #expect(r.result == result)
    }

    @Test func successExitStatusCountsForExecStartOnly() {
        var set = ExitStatusSet()
        try? set.add("3 SIGUSR1")
        #expect(run(["s1": .exited(3)], success: set).outcome == .success)
        #expect(run(["s1": .signaled(10, core: false)], success: set).outcome == .success)
        #expect(run(["pre2": .exited(3)], success: set).result == "exit-code")
    }

    @Test func exitVariables() {
        var seq = CommandSequence([.start: [cmd("s")]], phases: [.start])
        _ = seq.start()
        _ = seq.exited(.signaled(15, core: false))
        #expect(seq.mainExit?.exitCode == "killed" && seq.mainExit?.exitStatus == "TERM")
        #expect(ProcessExit.exited(7).exitCode == "exited" && ProcessExit.exited(7).exitStatus == "7")
        #expect(ProcessExit.signaled(11, core: true).exitCode == "dumped")
    }

    @Test func aTimeoutOrAStepThatCannotStart() {
        var seq = CommandSequence(all, phases: CommandSequence.Phase.allCases)
        _ = seq.start()
        #expect(seq.timedOut()?.command.path == "sp1")
        #expect(seq.outcome.serviceResult == "timeout")
        var s2 = CommandSequence(all, phases: CommandSequence.Phase.allCases)
        _ = s2.start()
        _ = s2.exited(.exited(0))  // cond
        #expect(s2.couldNotStart("ENOENT")?.command.path == "pre2")  // pre1 has `-`
        #expect(s2.couldNotStart("ENOENT")?.command.path == "sp1")
        #expect(s2.outcome.serviceResult == "resources")
    }

    @Test(arguments: [
        ("0 1 2", [0, 1, 2], []),
        ("SIGTERM HUP", [], [15, 1]),
        ("", [], []),
    ] as [(String, [Int32], [Int32])])
    func exitStatusSets(text: String, codes: [Int32], signals: [Int32]) throws {
        var set = ExitStatusSet()
        try set.add("9")
        try set.add(text)
        #expect(set.codes == Set(text.isEmpty ? [] : codes + [9]))
        #expect(set.signals == Set(signals))
    }

    @Test func invalidExitStatuses() {
        var set = ExitStatusSet()
        #expect(throws: ValueError("exit status 256 out of range 0-255")) { try set.add("256") }
        #expect(throws: ValueError("invalid exit status 'TERMINATE', expected a number 0-255 or a signal name such as SIGTERM")) { try set.add("TERMINATE") }
    }

    @Test func parsedFromTheUnit() {
        var units = UnitSet()
        units.add(fileName: "a.service", bytes: Array("""
            [Service]
            Type=oneshot
            ExecStartPre=-/bin/true
            ExecStart=/bin/one
            ExecStart=/bin/two ; /bin/three
            ExecStop=!/bin/stop
            ExecStopPost=!!/bin/post
            SuccessExitStatus=2 SIGHUP
            ExecReload=/bin/kill -HUP $MAINPID
            """.utf8), host: HostFacts())
        let s = units.services.values.first!
        #expect(s.commands[.start]?.map(\.path) == ["/bin/one", "/bin/two", "/bin/three"])
        #expect(s.commands[.startPre]?.first?.ignoreFailure == true)
        #expect(s.commands[.stop]?.first?.fullPrivileges == true)
        #expect(s.commands[.stopPost]?.first?.fullPrivileges == false)
        #expect(s.successExitStatus.codes == [2] && s.successExitStatus.signals == [1])
        #expect(units.diagnostics.isEmpty)
        #expect(s.reloadCommands.map(\.arguments) == [["/bin/kill", "-HUP", "$MAINPID"]])
        #expect(!s.hasExtraCommands || s.commands[.start]!.count > 1)

        var bad = UnitSet()
        bad.add(fileName: "b.service", bytes: Array("[Service]\nExecStart=/bin/one\nExecStart=/bin/two\n".utf8), host: HostFacts())
        #expect(bad.services.isEmpty)
        #expect(bad.diagnostics.map(\.description) == ["b.service:3: ExecStart: more than one command, which only Type=oneshot may have (systemd's rule); expected one ExecStart= or Type=oneshot"])
    }
}
