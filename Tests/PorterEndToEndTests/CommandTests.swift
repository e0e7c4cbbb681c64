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
}
