import PorterCore
import Testing

@Suite("path units")
struct PathUnitTests {
    func load(_ files: [(String, String)]) -> Configuration {
        Configuration.load(files: files.map { (name: $0.0, text: $0.1) }, host: HostFacts())
    }

    let service = ("watch.service", "[Service]\nExecStart=/bin/true\n")
    let template = ("spool@.service", "[Service]\nExecStart=/bin/true\nStandardInput=file-trigger\n")

    @Test func pairsWithTheServiceOfTheSameNameOrUnit() {
        let c = load([("watch.path", "[Path]\nPathExists=/run/flag\nPathChanged=/etc/x.conf/\n"), service])
        #expect(!c.hasErrors, "\(c.diagnostics)")
        #expect(c.pairings == ["watch.path -> watch.service (Accept=no): PathExists=/run/flag PathChanged=/etc/x.conf"])
        let d = load([("other.path", "[Path]\nDirectoryNotEmpty=/spool\nUnit=watch.service\n"), service])
        #expect(d.pairings == ["other.path -> watch.service (Accept=no): DirectoryNotEmpty=/spool"])
        #expect(d.passedSockets[UnitName.parse("watch.service")!] == [])
    }

    @Test func acceptYesStartsTheTemplate() {
        let c = load([("spool.path", "[Path]\nPathExistsGlob=/var/spool/in/*.job\nAccept=yes\nMaxConnections=4\n"), template])
        #expect(!c.hasErrors, "\(c.diagnostics)")
        #expect(c.pairings == ["spool.path -> spool@.service (Accept=yes, one instance per file, at most 4 at once): PathExistsGlob=/var/spool/in/*.job"])
        #expect(c.paths[0].conditions[0].directory == "/var/spool/in")
        #expect(c.paths[0].conditions[0].pattern == "*.job")
    }

    /// Every mistake names the file, the line and what was expected.
    @Test(arguments: [
        ("[Path]\nPathExists=relative/x\n", "bad.path:2: PathExists: 'relative/x' is not an absolute path, expected /path"),
        ("[Path]\nPathExists=/x\nTriggerLimitBurst=many\n", "bad.path:3: TriggerLimitBurst: invalid number 'many', expected an integer 0-1000000"),
        ("[Path]\nPathExists=/x\nMakeDirectory=perhaps\n", "bad.path:3: MakeDirectory: invalid boolean 'perhaps', expected yes/no, true/false, on/off or 1/0"),
        ("[Path]\nUnit=watch.service\n", "bad.path: no PathExists=, PathExistsGlob=, PathChanged=, PathModified= or DirectoryNotEmpty= line; nothing to watch"),
        ("[Path]\nPathExistsGlob=/sp*/in/*.job\n", "bad.path:2: PathExistsGlob: only the last component of '/sp*/in/*.job' may be a pattern, expected /dir/PATTERN"),
        ("[Path]\nPathChanged=/spool\nAccept=yes\n", "bad.path:2: PathChanged: Accept=yes starts a job per file of a directory, expected DirectoryNotEmpty=DIR or PathExistsGlob=DIR/PATTERN"),
        ("[Path]\nPathExists=/x\nFailedDirectory=/failed\n", "bad.path: FailedDirectory: only with Accept=yes (per-file jobs)"),
        ("[Path]\nPathExists=/x\nUnit=other.socket\n", "bad.path:3: Unit: invalid unit name 'other.socket', expected NAME.service"),
    ])
    func errorsNameFileLineAndExpectation(text: String, message: String) {
        let c = load([("bad.path", text), ("bad.service", "[Service]\nExecStart=/bin/true\n")])
        #expect(c.diagnostics.map(\.description).contains(message), "\(c.diagnostics.map(\.description))")
        #expect(c.paths.isEmpty)
    }

    @Test func misspelledKeysWarnWithTheNearestKey() {
        let c = load([("watch.path", "[Path]\nPathExist=/x\nPathExists=/y\n"), service])
        #expect(c.diagnostics.map(\.description).contains { $0.hasPrefix("watch.path:2: PathExist: unknown key") && $0.contains("PathExists") },
                "\(c.diagnostics.map(\.description))")
        #expect(c.paths.count == 1)
    }

    @Test func missingServicesAreRefused() {
        let c = load([("watch.path", "[Path]\nPathExists=/x\n")])
        #expect(c.diagnostics.map(\.description) == ["watch.path: starts watch.service, which does not exist"])
        let d = load([("spool.path", "[Path]\nDirectoryNotEmpty=/x\nAccept=yes\n")])
        #expect(d.diagnostics.map(\.description) == ["spool.path: Accept=yes starts instances of spool@.service, which does not exist"])
        let e = load([("watch.path", "[Path]\nPathExists=/x\n"), ("watch.socket", "[Socket]\nListenStream=7\n"), service])
        // Both a socket and a path unit may start one service (cups.socket, cups.path).
        #expect(!e.hasErrors, "\(e.diagnostics)")
        #expect(e.paths.count == 1 && e.sockets.count == 1)
        #expect(e.passedSockets[UnitName.parse("watch.service")!]?.map(\.description) == ["watch.socket"])
    }

    @Test func fileTriggerNeedsAPerFileUnit() {
        let c = load([("spool@.service", "[Service]\nExecStart=/bin/true\nStandardInput=file-trigger\n")])
        #expect(c.diagnostics.map(\.description) == ["spool@.service: StandardInput: file-trigger needs a path unit with Accept=yes to start spool@.service"])
        let d = load([("watch.path", "[Path]\nPathExists=/x\n"), ("watch.service", "[Service]\nExecStart=/bin/true\nStandardInput=socket\n")])
        #expect(d.diagnostics.map(\.description) == ["watch.service: StandardInput: socket needs a socket unit, but watch.service is started by watch.path"])
    }

    @Test func instanceNamesAreEscapedLikeSystemdEscape() {
        #expect(UnitName.escape("report.csv") == "report.csv")
        #expect(UnitName.escape("a-b c/d") == "a\\x2db\\x20c-d")
        #expect(UnitName.escape(".hidden") == "\\x2ehidden")
        for name in ["report.csv", "a-b c", "ünï", ".x"] {
            #expect(UnitName.unescape(UnitName.escape(name)) == name)
        }
    }
}

@Suite("per-file job queue")
struct FileJobsTests {
    let t0 = Instant(nanoseconds: 1_000_000_000)
    func v(_ n: Int64) -> FileVersion { FileVersion(inode: UInt64(n), modified: n, size: n) }
    func starts(_ a: [FileJobs.Action]) -> [String] {
        a.compactMap { if case .start(let f) = $0 { return f } else { return nil } }
    }

    /// The activation latency of a job starts when its file was seen,
    /// its wait behind MaxRunning= included.
    @Test func aJobKnowsWhenItsFileWasSeen() {
        var q = FileJobs(name: "spool.path", maxRunning: 1, moveFailed: false)
        _ = q.handle(.seen("a", v(1)), now: t0)
        _ = q.handle(.seen("b", v(2)), now: t0 + .seconds(1))
        _ = q.handle(.seen("b", v(3)), now: t0 + .seconds(2))  // a newer version waited since the first
        #expect(q.seenAt("a") == t0 && q.seenAt("b") == nil)
        #expect(starts(q.handle(.exited("a", success: true, now: nil), now: t0 + .seconds(5))) == ["b"])
        #expect(q.seenAt("b") == t0 + .seconds(1))
        // A vanished queued file leaves nothing behind.
        _ = q.handle(.seen("c", v(4)), now: t0 + .seconds(6))
        _ = q.handle(.vanished("c"), now: t0 + .seconds(7))
        #expect(q.remembered == 1)
    }

    @Test func startsInArrivalOrderUpToTheLimit() {
        var q = FileJobs(name: "spool.path", maxRunning: 2, moveFailed: false)
        #expect(starts(q.handle(.seen("a", v(1)), now: t0)) == ["a"])
        #expect(starts(q.handle(.seen("b", v(2)), now: t0)) == ["b"])
        #expect(starts(q.handle(.seen("c", v(3)), now: t0)) == [])
        #expect(starts(q.handle(.seen("d", v(4)), now: t0)) == [])
        #expect(q.waiting == 2)
        #expect(starts(q.handle(.exited("a", success: true, now: nil), now: t0)) == ["c"])
        #expect(starts(q.handle(.exited("b", success: true, now: nil), now: t0)) == ["d"])
        #expect(q.remembered == 2)
    }

    /// One appearance, one job: an event and a rescan of the same version,
    /// or a stale event read after the job ran, start nothing more.
    @Test func theSameVersionRunsOnce() {
        var q = FileJobs(name: "spool.path", maxRunning: 1, moveFailed: false)
        #expect(starts(q.handle(.seen("a", v(1)), now: t0)) == ["a"])
        #expect(starts(q.handle(.scanned(["a": v(1), "b": v(2)]), now: t0)) == [])
        #expect(starts(q.handle(.seen("b", v(2)), now: t0)) == [])
        #expect(q.waiting == 1)
        // Left in place after success: remembered, not run again.
        #expect(starts(q.handle(.exited("a", success: true, now: v(1)), now: t0)) == ["b"])
        #expect(starts(q.handle(.seen("a", v(1)), now: t0)) == [])
        #expect(starts(q.handle(.exited("b", success: true, now: nil), now: t0)) == [])
        // A new version of it is a new appearance.
        #expect(starts(q.handle(.seen("a", v(5)), now: t0)) == ["a"])
    }

    @Test func aChangeDuringTheRunRunsAgainAfterIt() {
        var q = FileJobs(name: "spool.path", maxRunning: 1, moveFailed: false)
        _ = q.handle(.seen("a", v(1)), now: t0)
        #expect(starts(q.handle(.seen("a", v(2)), now: t0)) == [])
        #expect(starts(q.handle(.exited("a", success: true, now: v(2)), now: t0)) == ["a"])
        #expect(starts(q.handle(.exited("a", success: true, now: nil), now: t0)) == [])
        #expect(q.remembered == 0)
    }

    @Test func vanishedFilesAreDropped() {
        var q = FileJobs(name: "spool.path", maxRunning: 1, moveFailed: false)
        _ = q.handle(.seen("a", v(1)), now: t0)
        _ = q.handle(.seen("b", v(2)), now: t0)
        _ = q.handle(.vanished("b"), now: t0)
        #expect(starts(q.handle(.exited("a", success: true, now: nil), now: t0)) == [])
        // A rescan forgets what is gone and queues what is new.
        _ = q.handle(.seen("c", v(3)), now: t0)
        _ = q.handle(.seen("d", v(4)), now: t0)
        #expect(starts(q.handle(.scanned(["e": v(5)]), now: t0)) == [])
        #expect(q.waiting == 1)
        #expect(starts(q.handle(.exited("c", success: true, now: nil), now: t0)) == ["e"])
    }

    @Test func failuresRetryWithBackOffOrMoveAway() {
        var q = FileJobs(name: "spool.path", maxRunning: 1, moveFailed: false)
        _ = q.handle(.seen("a", v(1)), now: t0)
        let first = q.handle(.exited("a", success: false, now: v(1)), now: t0)
        #expect(first == [.log(.warning, "spool.path: a left in place, trying again in 1s (attempt 2)")])
        #expect(q.deadline == t0 + .seconds(1))
        #expect(starts(q.handle(.scanned(["a": v(1)]), now: t0)) == [])  // a rescan does not cut the wait
        #expect(starts(q.handle(.timer, now: t0 + .seconds(1))) == ["a"])
        let second = q.handle(.exited("a", success: false, now: v(1)), now: t0 + .seconds(1))
        #expect(second == [.log(.warning, "spool.path: a left in place, trying again in 2s (attempt 3)")])
        // Removed meanwhile: forgotten.
        _ = q.handle(.vanished("a"), now: t0 + .seconds(2))
        #expect(q.deadline == nil && q.remembered == 0)

        var m = FileJobs(name: "spool.path", maxRunning: 1, moveFailed: true)
        _ = m.handle(.seen("a", v(1)), now: t0)
        #expect(m.handle(.exited("a", success: false, now: v(1)), now: t0) == [.moveToFailed("a")])
    }

    /// 100 000 files through a queue of 4: the tables shrink back to nothing.
    @Test func memoryIsBoundedByTheFilesPresent() {
        var q = FileJobs(name: "spool.path", maxRunning: 4, moveFailed: false)
        var running: [String] = []
        for i in 0..<100_000 {
            running += starts(q.handle(.seen("f\(i)", v(Int64(i))), now: t0))
            if running.count == 4 {
                let f = running.removeFirst()
                running += starts(q.handle(.exited(f, success: true, now: nil), now: t0))
            }
        }
        while !running.isEmpty {
            let f = running.removeFirst()
            running += starts(q.handle(.exited(f, success: true, now: nil), now: t0))
        }
        #expect(q.remembered == 0)
        #expect(q.waiting == 0)
    }
}

/// Every (state, event) pair of the Accept=no path trigger as a row.
@Suite("path trigger table")
struct PathTriggerTableTests {
    typealias T = PathTrigger
    static let t0 = Instant(nanoseconds: 1_000_000_000)

    static func machine(_ state: T.State, burst: Int = 5) -> T {
        var m = T(name: "p.path", limitInterval: .seconds(2), limitBurst: burst)
        switch state {
        case .watching: break
        case .pending(let p): _ = m.handle(.changed(p, serviceIdle: false), now: t0)
        case .failed:
            for _ in 0...burst { _ = m.handle(.changed("/x", serviceIdle: true), now: t0) }
        case .stopped: _ = m.handle(.stop, now: t0)
        }
        return m
    }

    static let rows: [(T.State, T.Event, [T.Action], T.State)] = [
        (.watching, .changed("/a", serviceIdle: true), [.start("/a")], .watching),
        (.watching, .changed("/a", serviceIdle: false), [], .pending("/a")),
        (.watching, .holds("/a", serviceIdle: true), [.start("/a")], .watching),
        (.watching, .holds("/a", serviceIdle: false), [], .watching),
        (.watching, .serviceIdle, [.checkStates], .watching),
        (.watching, .stop, [], .stopped),
        (.pending("/a"), .changed("/b", serviceIdle: true), [.start("/b")], .watching),
        (.pending("/a"), .changed("/b", serviceIdle: false), [], .pending("/b")),
        (.pending("/a"), .holds("/b", serviceIdle: true), [.start("/b")], .watching),
        (.pending("/a"), .holds("/b", serviceIdle: false), [], .pending("/a")),
        (.pending("/a"), .serviceIdle, [.start("/a")], .watching),
        (.pending("/a"), .stop, [], .stopped),
        (.failed, .changed("/a", serviceIdle: true), [], .failed),
        (.failed, .holds("/a", serviceIdle: true), [], .failed),
        (.failed, .serviceIdle, [], .failed),
        (.failed, .stop, [], .stopped),
        (.stopped, .changed("/a", serviceIdle: true), [], .stopped),
        (.stopped, .holds("/a", serviceIdle: true), [], .stopped),
        (.stopped, .serviceIdle, [], .stopped),
        (.stopped, .stop, [], .stopped),
    ]

    @Test(arguments: 0..<rows.count)
    func row(_ i: Int) {
        let (state, event, actions, after) = Self.rows[i]
        var m = Self.machine(state)
        #expect(m.state == state, "setup of row \(i)")
        #expect(m.handle(event, now: Self.t0 + .seconds(10)) == actions, "row \(i)")
        #expect(m.state == after, "row \(i)")
    }

    @Test func theLimitFailsTheUnitAndExpires() {
        var m = T(name: "p.path", limitInterval: .seconds(2), limitBurst: 2)
        #expect(m.handle(.changed("/a", serviceIdle: true), now: Self.t0) == [.start("/a")])
        // Starts older than the interval no longer count.
        #expect(m.handle(.changed("/a", serviceIdle: true), now: Self.t0 + .seconds(3)) == [.start("/a")])
        #expect(m.handle(.changed("/a", serviceIdle: true), now: Self.t0 + .seconds(4)) == [.start("/a")])
        let failed = m.handle(.serviceIdle, now: Self.t0 + .seconds(4))
        #expect(failed == [.checkStates])
        let over = m.handle(.holds("/a", serviceIdle: true), now: Self.t0 + .seconds(4))
        #expect(over.first == .unwatch && m.isFailed)
        // Burst 0: no limit.
        var free = T(name: "p.path", limitInterval: .seconds(2), limitBurst: 0)
        for _ in 0..<1000 { #expect(free.handle(.changed("/a", serviceIdle: true), now: Self.t0) == [.start("/a")]) }
    }
}

/// systemd's hidden_or_backup_file(), which DirectoryNotEmpty= ignores.
@Suite("hidden or backup files")
struct HiddenOrBackupTests {
    @Test func asSystemdSays() {
        for hidden in [".x.tmp", ".", "a~", "lost+found", "conf.dpkg-old", "x.rpmnew", "y.bak", "z.swp", "a.b.new"] {
            #expect(PathCondition.isHiddenOrBackup(hidden), "\(hidden)")
        }
        for shown in ["letter", "report.pdf", "a.tmp", "new", "x.bak2", "lost+found2"] {
            #expect(!PathCondition.isHiddenOrBackup(shown), "\(shown)")
        }
    }
}
