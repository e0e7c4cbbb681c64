import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

/// The lines `porter-test-handler job LOG` appended: pid, instance,
/// TRIGGER_UNIT, TRIGGER_PATH, first line of stdin.
func jobRuns(_ log: String) -> [[String]] {
    ((try? Files.read(log, limit: 64 << 20)) ?? "").split(separator: "\n").map { $0.split(separator: " ", maxSplits: 4).map(String.init) }
}

/// The write-then-rename convention: readers never see a partial file.
func renameIn(_ dir: String, _ name: String, _ text: String) {
    writeFile("\(dir)/.\(name).tmp", text)
    rename("\(dir)/.\(name).tmp", "\(dir)/\(name)")
}

func residentKB(_ pid: Int32) -> Int {
    for line in readFile("/proc/\(pid)/status").split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
    return 0
}

extension EndToEnd {
    @Suite("path units", .timeLimit(.minutes(3)))
    struct Paths {
        /// PathExists=: true at start-up starts at once; later creation
        /// starts again; a run that removes the path ends the cycle.
        @Test func pathExistsAtStartAndOnCreation() throws {
            let dir = makeTempDirectory("exists")
            defer { _ = system("rm -rf '\(dir)'") }
            writeFile("\(dir)/flag", "")
            let porter = try PorterRun("exists", units: [
                "flag.path": "[Path]\nPathExists=\(dir)/flag\n",
                "flag.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/runs --remove\n",
            ])
            try waitUntil(10, "the start-up run") { jobRuns("\(dir)/runs").count == 1 }
            #expect(jobRuns("\(dir)/runs")[0][2...3] == ["flag.path", "\(dir)/flag"])
            try porter.waitForLog("flag.service: pid")
            writeFile("\(dir)/flag", "")
            try waitUntil(10, "the run after creation") { jobRuns("\(dir)/runs").count == 2 }
            try waitUntil(10, "the file removed") { access("\(dir)/flag", F_OK) != 0 }
            try waitUntil(10, "the second run's exit") { porter.count("exited, status 0") == 2 }
            #expect(jobRuns("\(dir)/runs").count == 2)
            #expect(try porter.stop() == 0)
        }

        /// systemd.path(5): when the service exits, the conditions are
        /// checked again and a state that still holds starts it again, up to
        /// TriggerLimitBurst= starts in TriggerLimitIntervalSec=; then the
        /// unit fails and stops watching.
        @Test func stillTrueAfterExitRunsAgainUntilTheTriggerLimit() throws {
            let dir = makeTempDirectory("limit")
            defer { _ = system("rm -rf '\(dir)'") }
            let porter = try PorterRun("limit", units: [
                "flag.path": "[Path]\nPathExists=\(dir)/flag\nTriggerLimitBurst=3\nTriggerLimitIntervalSec=1h\n",
                "flag.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/runs\n",
                // Watches the same file: its runs show porter saw the events.
                "probe.path": "[Path]\nPathChanged=\(dir)/flag\n",
                "probe.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/probe\n",
            ])
            writeFile("\(dir)/flag", "")
            try porter.waitForLog("flag.path: trigger limit hit (3 starts in 3600s), failed; no longer watching until porter restarts")
            try waitUntil(10, "the third run's exit") { porter.count("flag.service: pid") == 3 }
            #expect(jobRuns("\(dir)/runs").count == 3)
            let probes = jobRuns("\(dir)/probe").count
            unlink("\(dir)/flag")
            writeFile("\(dir)/flag", "")
            try waitUntil(10, "the probe's run") { jobRuns("\(dir)/probe").count > probes }
            #expect(porter.count("triggered flag.service") == 3)
            #expect(jobRuns("\(dir)/runs").count == 3)
            #expect(try porter.stop() == 0)
        }

        /// PathExistsGlob= fires for a matching name only, with that name
        /// in TRIGGER_PATH.
        @Test func pathExistsGlob() throws {
            let dir = makeTempDirectory("glob")
            defer { _ = system("rm -rf '\(dir)'") }
            let porter = try PorterRun("glob", units: [
                "ready.path": "[Path]\nPathExistsGlob=\(dir)/*.ready\n",
                "ready.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/runs --remove\n",
            ])
            writeFile("\(dir)/a.tmp", "")
            writeFile("\(dir)/b.ready", "")
            try waitUntil(10, "the run") { jobRuns("\(dir)/runs").count == 1 }
            #expect(jobRuns("\(dir)/runs")[0][3] == "\(dir)/b.ready")
            try porter.waitForLog("ready.service: pid")
            #expect(jobRuns("\(dir)/runs").count == 1)
            #expect(access("\(dir)/a.tmp", F_OK) == 0)
            _ = try porter.stop()
        }

        /// DirectoryNotEmpty= with MakeDirectory=: the directory is made
        /// with DirectoryMode=, and a file in it starts the service.
        @Test func directoryNotEmptyMakesTheDirectory() throws {
            let dir = makeTempDirectory("notempty")
            defer { _ = system("rm -rf '\(dir)'") }
            let porter = try PorterRun("notempty", units: [
                "in.path": "[Path]\nDirectoryNotEmpty=\(dir)/deep/inbox\nMakeDirectory=yes\nDirectoryMode=0750\n",
                "in.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/runs --remove\n",
            ])
            let st = try #require(try Files.status("\(dir)/deep/inbox"))
            #expect(st.isDirectory && st.mode & 0o777 == 0o750)
            renameIn("\(dir)/deep/inbox", "letter", "hello")
            try waitUntil(10, "the run; porter's log:\n\(porter.log)") { jobRuns("\(dir)/runs").count == 1 }
            #expect(jobRuns("\(dir)/runs")[0][3] == "\(dir)/deep/inbox/letter")
            try waitUntil(10, "the inbox emptied") { (try? Files.list("\(dir)/deep/inbox"))?.isEmpty ?? false }
            // As systemd, hidden and backup files do not count: a file
            // being written under a dot name is not work yet.
            writeFile("\(dir)/deep/inbox/.partial.tmp", "half")
            writeFile("\(dir)/deep/inbox/old~", "backup")
            renameIn("\(dir)/deep/inbox", "second", "two")
            try waitUntil(10, "the second run; porter's log:\n\(porter.log)") { jobRuns("\(dir)/runs").count >= 2 }
            try waitUntil(10, "the second letter removed") { (try? Files.list("\(dir)/deep/inbox"))?.sorted() == [".partial.tmp", "old~"] }
            #expect(jobRuns("\(dir)/runs").map { $0[3] } == ["\(dir)/deep/inbox/letter", "\(dir)/deep/inbox/second"])
            _ = try porter.stop()
        }

        /// PathChanged= on a path whose directories do not exist yet: watched
        /// from the nearest existing parent until it appears; a write made
        /// while the service runs starts it again after it exits.
        @Test func pathChangedFromAMissingParentAndDuringTheRun() throws {
            let dir = makeTempDirectory("changed")
            defer { _ = system("rm -rf '\(dir)'") }
            let porter = try PorterRun("changed", units: [
                "conf.path": "[Path]\nPathChanged=\(dir)/etc/app/app.conf\n",
                "conf.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/runs --sleep 400\n",
            ])
            mkdir("\(dir)/etc", 0o755)
            mkdir("\(dir)/etc/app", 0o755)
            renameIn("\(dir)/etc/app", "app.conf", "v1")
            try waitUntil(10, "the first run") { jobRuns("\(dir)/runs").count == 1 }
            // The service sleeps 400 ms; change the file meanwhile.
            let fd = open("\(dir)/etc/app/app.conf", O_WRONLY | O_APPEND)
            _ = write(fd, "v2", 2)
            close(fd)
            try waitUntil(10, "the run for the change made during the first") { jobRuns("\(dir)/runs").count == 2 }
            try waitUntil(10, "both exits") { porter.count("conf.service: pid") == 2 }
            #expect(jobRuns("\(dir)/runs").count == 2)
            #expect(jobRuns("\(dir)/runs").allSatisfy { $0[3] == "\(dir)/etc/app/app.conf" })
            // The parent replaced: watched again from the new one.
            _ = system("rm -rf '\(dir)/etc/app'")
            try waitUntil(10, "the run for the removal") { jobRuns("\(dir)/runs").count == 3 }
            try waitUntil(10, "its exit") { porter.count("conf.service: pid") == 3 }
            mkdir("\(dir)/etc/app", 0o755)
            renameIn("\(dir)/etc/app", "app.conf", "v3")
            try waitUntil(10, "the run in the new directory") { jobRuns("\(dir)/runs").count == 4 }
            _ = try porter.stop()
        }

        /// PathModified= also fires on a write before the file is closed;
        /// PathChanged= waits for the close.
        @Test func pathModifiedFiresBeforeTheClose() throws {
            let dir = makeTempDirectory("modified")
            defer { _ = system("rm -rf '\(dir)'") }
            writeFile("\(dir)/data", "")
            let porter = try PorterRun("modified", units: [
                "mod.path": "[Path]\nPathModified=\(dir)/data\n",
                "mod.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/mod\n",
                "chg.path": "[Path]\nPathChanged=\(dir)/data\n",
                "chg.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/chg\n",
            ])
            let fd = open("\(dir)/data", O_WRONLY | O_APPEND)
            _ = write(fd, "x", 1)
            try waitUntil(10, "PathModified= run") { jobRuns("\(dir)/mod").count == 1 }
            #expect(jobRuns("\(dir)/chg").isEmpty)
            close(fd)
            try waitUntil(10, "PathChanged= run") { jobRuns("\(dir)/chg").count == 1 }
            _ = try porter.stop()
        }

        /// One inotify instance serves every unit: 500 path units cost
        /// porter the same file descriptors as one.
        @Test func manyPathUnitsShareOneInotifyInstance() throws {
            let dir = makeTempDirectory("many")
            defer { _ = system("rm -rf '\(dir)'") }
            var units = ["w.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/runs --remove\n"]
            let one = try PorterRun("one", units: ["w0.path": "[Path]\nPathExists=\(dir)/d0/flag\nUnit=w.service\n"].merging(units) { a, _ in a })
            let fdsForOne = one.fdCount
            _ = try one.stop()
            for i in 0..<500 {
                mkdir("\(dir)/d\(i)", 0o755)
                units["w\(i).path"] = "[Path]\nPathExists=\(dir)/d\(i)/flag\nUnit=w.service\n"
            }
            let porter = try PorterRun("many", units: units)
            #expect(porter.fdCount == fdsForOne)
            writeFile("\(dir)/d499/flag", "")
            try waitUntil(10, "the last unit's run") { jobRuns("\(dir)/runs").count == 1 }
            #expect(jobRuns("\(dir)/runs")[0][2...3] == ["w499.path", "\(dir)/d499/flag"])
            _ = try porter.stop()
        }

        /// Accept=yes: one instance per file, %I the file name, TRIGGER_PATH
        /// its path, the file on stdin; files present at start-up are
        /// handled; names starting with a dot and other names than the glob
        /// are not; at most MaxConnections= jobs run at once.
        @Test func perFileJobs() throws {
            let dir = makeTempDirectory("perfile")
            defer { _ = system("rm -rf '\(dir)'") }
            let spool = "\(dir)/spool"
            mkdir(spool, 0o755)
            writeFile("\(spool)/early.job", "early contents\n")
            let porter = try PorterRun("perfile", units: [
                "spool.path": "[Path]\nPathExistsGlob=\(spool)/*.job\nAccept=yes\nMaxConnections=2\n",
                "spool@.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/runs --instance %I --sleep 150 --remove\nStandardInput=file-trigger\n",
            ])
            try waitUntil(10, "the start-up file") { jobRuns("\(dir)/runs").count == 1 }
            #expect(jobRuns("\(dir)/runs")[0][1...] == ["early.job", "spool.path", "\(spool)/early.job", "early contents"])
            var expected = ["early.job"]
            for i in 0..<8 {
                renameIn(spool, "report-\(i).job", "report \(i)")
                expected.append("report-\(i).job")
            }
            writeFile("\(spool)/in-place.job", "written in place")
            expected.append("in-place.job")
            writeFile("\(spool)/ignored.txt", "")
            var most = 0
            try waitUntil(20, "every job") {
                most = max(most, porter.children.count)
                return jobRuns("\(dir)/runs").count >= expected.count && porter.children.isEmpty
            }
            let runs = jobRuns("\(dir)/runs")
            #expect(runs.map { $0[1] }.sorted() == expected.sorted())
            #expect(runs.allSatisfy { $0[3] == "\(spool)/\($0[1])" })
            #expect(runs.first { $0[1] == "report-3.job" }?[4] == "report 3")
            #expect(most <= 2 && most >= 1)
            #expect(try Files.list(spool) == ["ignored.txt"])
            // The instance name is the escaped file name, as systemd-escape makes it.
            #expect(porter.log.contains("spool@report\\x2d3.job.service: pid"))
            #expect(try porter.stop() == 0)
        }

        /// A failing job is logged with its status and its file left in
        /// place, then tried again after a back-off; with FailedDirectory=
        /// the file is moved there instead.
        @Test func failedJobsRetryOrMoveAway() throws {
            let dir = makeTempDirectory("failjob")
            defer { _ = system("rm -rf '\(dir)'") }
            mkdir("\(dir)/a", 0o755)
            mkdir("\(dir)/b", 0o755)
            let porter = try PorterRun("failjob", units: [
                "retry.path": "[Path]\nDirectoryNotEmpty=\(dir)/a\nAccept=yes\n",
                "retry@.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/retry --fail\n",
                "move.path": "[Path]\nDirectoryNotEmpty=\(dir)/b\nAccept=yes\nFailedDirectory=\(dir)/failed\n",
                "move@.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/move --fail\n",
            ])
            renameIn("\(dir)/a", "x", "")
            renameIn("\(dir)/b", "y", "")
            try porter.waitForLog("retry@x.service: pid")
            #expect(porter.log.contains("exited, status 1"))
            try porter.waitForLog("retry.path: x left in place, trying again in 1s (attempt 2)")
            try waitUntil(10, "the retry") { jobRuns("\(dir)/retry").count == 2 }
            try porter.waitForLog("trying again in 2s (attempt 3)")
            #expect(access("\(dir)/a/x", F_OK) == 0)
            try waitUntil(10, "the move") { access("\(dir)/failed/y", F_OK) == 0 }
            #expect(access("\(dir)/b/y", F_OK) != 0)
            #expect(jobRuns("\(dir)/move").count == 1)
            try porter.waitForLog("move.path: moved \(dir)/b/y to \(dir)/failed/ after its job failed")
            _ = try porter.stop()
        }

        /// A job whose program is missing is logged and retried; porter
        /// keeps watching and the file stays.
        @Test func missingProgramIsLoggedAndRetried() throws {
            let dir = makeTempDirectory("missing")
            defer { _ = system("rm -rf '\(dir)'") }
            mkdir("\(dir)/in", 0o755)
            let porter = try PorterRun("missing", units: [
                "gone.path": "[Path]\nDirectoryNotEmpty=\(dir)/in\nAccept=yes\n",
                "gone@.service": "[Service]\nExecStart=\(dir)/no-such-program\n",
            ])
            renameIn("\(dir)/in", "z", "")
            try porter.waitForLog("gone.path: z left in place, trying again in 1s (attempt 2)")
            #expect(porter.log.contains("gone@z.service: "))
            #expect(porter.log.contains("no-such-program"))
            // Installed meanwhile: the retry runs it.
            writeFile("\(dir)/no-such-program", "#!/bin/sh\nrm \"$TRIGGER_PATH\"\n", mode: 0o755)
            try waitUntil(10, "the retry to remove the file") { access("\(dir)/in/z", F_OK) != 0 }
            #expect(try porter.stop() == 0)
        }

        /// 10 000 files as fast as one process can make them, with an
        /// inotify queue of 64 events when porter may set it (root): the
        /// queue overflows, porter rescans, and every file gets exactly one
        /// job. A second burst leaves porter's memory where the first did.
        @Test func burstWithOverflowLosesNothing() throws {
            let dir = makeTempDirectory("burst")
            defer { if getenv("KEEP") == nil { _ = system("rm -rf '\(dir)'") } }
            let spool = "\(dir)/spool"
            mkdir(spool, 0o755)
            let knob = "/proc/sys/fs/inotify/max_queued_events"
            let saved = readFile(knob).split(separator: "\n").first.map(String.init) ?? ""
            // The limit is taken when porter creates its inotify instance.
            let lowered = getuid() == 0 && !saved.isEmpty && {
                let fd = open(knob, O_WRONLY | O_TRUNC)
                defer { close(fd) }
                return fd >= 0 && write(fd, "64\n", 3) == 3
            }()
            let porter: PorterRun
            do {
                defer {
                    if lowered {
                        let fd = open(knob, O_WRONLY | O_TRUNC)
                        _ = write(fd, saved + "\n", saved.utf8.count + 1)
                        close(fd)
                    }
                }
                porter = try PorterRun("burst", units: [
                    "burst.path": "[Path]\nDirectoryNotEmpty=\(spool)\nAccept=yes\nMaxConnections=16\n",
                    "burst@.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/runs --instance %I --remove\n",
                ])
            }
            var rss: [Int] = [residentKB(porter.pid)]
            for round in 0..<2 {
                for i in 0..<10_000 { renameIn(spool, "r\(round)-\(i)", "") }
                // Cheap checks first: this polls while porter works.
                do {
                    try waitUntil(120, "10 000 jobs of round \(round)") {
                        ((try? Files.list(spool)) ?? ["?"]).isEmpty && porter.children.isEmpty && jobRuns("\(dir)/runs").count >= 10_000 * (round + 1)
                    }
                } catch {
                    let left = (try? Files.list(spool)) ?? []
                    throw TestFailure("\(error): \(jobRuns("\(dir)/runs").count) jobs, \(porter.children.count) running, \(left.count) files left: \(left.prefix(5)); log tail: \(porter.log.split(separator: "\n").suffix(8).joined(separator: "\n"))")
                }
                rss.append(residentKB(porter.pid))
            }
            let names = jobRuns("\(dir)/runs").map { $0[1] }
            #expect(names.count == 20_000)
            #expect(Set(names).count == 20_000, "duplicates: \(names.count - Set(names).count)")
            #expect(try Files.list(spool).isEmpty)
            if lowered {
                #expect(porter.log.contains("inotify queue overflowed"), "no overflow with a queue of 64")
            }
            // Flat: the second burst does not add to what the first needed.
            #expect(rss[2] - rss[1] < 512, "RSS before and after each burst: \(rss) kB")
            print("burst: overflow \(lowered ? "forced (queue 64)" : "not forced"), RSS before and after each 10 000-file burst: \(rss) kB")
            #expect(try porter.stop() == 0)
        }
    }
}
