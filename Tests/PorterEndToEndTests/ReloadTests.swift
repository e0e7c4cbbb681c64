import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Synchronization
import Testing

/// Clients on their own thread, connecting in turn to each target until
/// told to stop: every connection must be answered.
final class ClientLoop: @unchecked Sendable {
    enum Target: Sendable {
        case tcp(UInt16)
        case unix(String)
    }

    let targets: [(Target, String)]
    let done = Atomic<Int>(0)
    let stopFlag = Atomic<Bool>(false)
    let finished = Atomic<Bool>(false)
    let failures = Mutex<[String]>([])
    private var thread = pthread_t()

    /// `targets`: where to connect and what the answer must contain.
    init(_ targets: [(Target, String)]) { self.targets = targets }

    func start() {
        let box = Unmanaged.passRetained(self)
        pthread_create(&thread, nil, { raw in
            let loop = Unmanaged<ClientLoop>.fromOpaque(raw!).takeRetainedValue()
            loop.run()
            return nil
        }, box.toOpaque())
    }

    private func run() {
        var i = 0
        while !stopFlag.load(ordering: .relaxed) {
            let (target, expected) = targets[i % targets.count]
            i += 1
            do {
                let c: Client
                switch target {
                case .tcp(let port): c = try Client.tcp(port)
                case .unix(let path): c = try Client.unix(path)
                }
                defer { c.close() }
                let answer = try c.readAll(seconds: 10)
                if !answer.contains(expected) {
                    failures.withLock { $0.append("\(target): answer without '\(expected)': \(answer.prefix(80))") }
                }
            } catch {
                failures.withLock { $0.append("\(target): \(error)") }
            }
            done.add(1, ordering: .relaxed)
        }
        finished.store(true, ordering: .releasing)
    }

    func stop() throws {
        stopFlag.store(true, ordering: .relaxed)
        try waitUntil(20, "the client loop to finish") { finished.load(ordering: .acquiring) }
        pthread_join(thread, nil)
    }
}

extension EndToEnd {
    @Suite("live reload", .timeLimit(.minutes(3)))
    struct Reload {
        /// 20 reloads under a client loop over TCP and Unix, Accept=yes and
        /// Accept=no, that add, remove, change and leave units alone: no
        /// connection fails, and porter's fds and children are back to
        /// where they were.
        @Test func twentyReloadsUnderLoadLoseNoConnection() throws {
            let (a, c) = (freePort(), freePort())
            let extraPorts = (0..<10).map { _ in freePort() }
            let dir = makeTempDirectory("reload-load")
            defer { _ = system("rm -rf '\(dir)'") }
            let (bPath, dPath) = (dir + "/b.sock", dir + "/d.sock")
            func bService(_ gen: Int) -> String { "[Service]\nExecStart=\(handlerBinary) say B-\(gen)\nStandardInput=socket\n" }
            func dService(_ gen: Int) -> String { "[Service]\nExecStart=\(handlerBinary) serve 0\nEnvironment=GEN=\(gen)\n" }
            let porter = try PorterRun("reloadload", units: [
                "a.socket": "[Socket]\nListenStream=127.0.0.1:\(a)\nAccept=yes\n",
                "a@.service": "[Service]\nExecStart=\(handlerBinary) say A\nStandardInput=socket\n",
                "b.socket": "[Socket]\nListenStream=\(bPath)\nAccept=yes\n",
                "b@.service": bService(0),
                "c.socket": "[Socket]\nListenStream=127.0.0.1:\(c)\n",
                "c.service": "[Service]\nExecStart=\(handlerBinary) serve 0\n",
                "d.socket": "[Socket]\nListenStream=\(dPath)\n",
                "d.service": dService(0),
            ])
            // Warm up: every unit has served once (its journal pipe exists,
            // its Accept=no service runs).
            for target in [ClientLoop.Target.tcp(a), .unix(bPath), .tcp(c), .unix(dPath)] {
                let client: Client
                switch target {
                case .tcp(let p): client = try Client.tcp(p)
                case .unix(let p): client = try Client.unix(p)
                }
                _ = try client.readAll()
                client.close()
            }
            try waitUntil(10, "the Accept=yes instances to be reaped") { porter.children.count == 2 }
            let baseFDs = porter.fdCount
            let baseChildren = porter.children.count

            let loop = ClientLoop([(.tcp(a), "A"), (.unix(bPath), "B-"), (.tcp(c), "accepted-on"), (.unix(dPath), "accepted-on")])
            loop.start()
            for k in 1...20 {
                // Change b@ and d every time; add a unit on odd reloads and
                // remove it on even ones; a and c stay as they are.
                writeFile(porter.units + "/b@.service", bService(k))
                writeFile(porter.units + "/d.service", dService(k))
                let extra = extraPorts[(k - 1) / 2]
                if k % 2 == 1 {
                    writeFile(porter.units + "/e.socket", "[Socket]\nListenStream=127.0.0.1:\(extra)\nAccept=yes\n")
                    writeFile(porter.units + "/e@.service", "[Service]\nExecStart=\(handlerBinary) say E\nStandardInput=socket\n")
                } else {
                    unlink(porter.units + "/e.socket")
                    unlink(porter.units + "/e@.service")
                }
                let before = loop.done.load(ordering: .relaxed)
                kill(porter.pid, SIGHUP)
                try waitUntil(10, "reload \(k) in the log") { porter.count("configuration reloaded") == k }
                if k % 2 == 1 {
                    let e = try Client.tcp(extra)
                    #expect(try e.readAll().contains("E"), "the added unit serves")
                    e.close()
                } else {
                    #expect(throws: (any Error).self, "a removed unit's port refuses") { try Client.tcp(extra).close() }
                }
                let answer = try Client.unix(bPath)
                #expect(try answer.readAll().contains("B-\(k)"), "a changed template takes effect at the next connection")
                answer.close()
                try waitUntil(30, "connections between reloads") { loop.done.load(ordering: .relaxed) >= before + 250 }
            }
            try waitUntil(60, "5 000 connections") { loop.done.load(ordering: .relaxed) >= 5000 }
            try loop.stop()
            let failures = loop.failures.withLock { $0 }
            #expect(failures.isEmpty, "\(failures.count) failed connections of \(loop.done.load(ordering: .relaxed)): \(failures.prefix(5))")
            #expect(porter.count("reload refused") == 0, "\(porter.log)")
            #expect(porter.log.contains("2 added, 0 removed, 2 changed, 6 unchanged; added: e.socket e@.service; changed: b@.service d.service"), "\(porter.log)")
            try waitUntil(10, "children back to \(baseChildren)") { porter.children.count == baseChildren }
            try waitUntil(10, "porter's fds back to \(baseFDs), now \(porter.fdCount): \(fdTargets(porter.pid))") { porter.fdCount == baseFDs }
            #expect(porter.zombies.isEmpty)
            // d.service kept running through it all: the changed definition
            // waits for its next start, it did not restart it.
            #expect(porter.count("d.service: started pid") == 1, "\(porter.log)")
            #expect(try porter.stop() == 0)
        }

        /// A reload with an error changes nothing: the error is logged with
        /// its file and line, and the old configuration keeps serving — also
        /// the units the refused reload would have changed.
        @Test func invalidReloadIsRefusedAndTheOldConfigurationServes() throws {
            let (a, taken) = (freePort(), freePort())
            let porter = try PorterRun("reloadbad", units: [
                "a.socket": "[Socket]\nListenStream=127.0.0.1:\(a)\nAccept=yes\n",
                "a@.service": "[Service]\nExecStart=\(handlerBinary) say old\nStandardInput=socket\n",
            ])
            writeFile(porter.units + "/a@.service", "[Service]\nExecStart=\(handlerBinary) say new\nStandardInput=socket\n")
            writeFile(porter.units + "/bad.socket", "[Socket]\nListenStream=70000\nAccept=yes\n")
            writeFile(porter.units + "/bad@.service", "[Service]\nExecStart=/bin/true\n")
            kill(porter.pid, SIGHUP)
            try porter.waitForLog("reload refused: 1 error")
            #expect(porter.log.contains("bad.socket:2: ListenStream: port 70000 out of range"), "\(porter.log)")
            var client = try Client.tcp(a)
            #expect(try client.readAll().contains("old"))
            client.close()

            // An address that cannot be bound refuses the reload the same way.
            let holder = try Socket.open(family: AF_INET, type: Int32(SOCK_STREAM.rawValue), nonBlocking: false)
            defer { holder.close() }
            try Socket.bind(holder, try SocketAddress(.ipv4(address: [127, 0, 0, 1], port: taken)))
            try Socket.listen(holder, backlog: 1)
            writeFile(porter.units + "/bad.socket", "[Socket]\nListenStream=127.0.0.1:\(taken)\nAccept=yes\n")
            kill(porter.pid, SIGHUP)
            try porter.waitForLog("reload refused: a socket could not be opened")
            #expect(porter.log.contains("bad.socket:2: ListenStream: 127.0.0.1:\(taken): bind: Address already in use"), "\(porter.log)")
            client = try Client.tcp(a)
            #expect(try client.readAll().contains("old"))
            client.close()

            // Fixed: the reload goes through.
            unlink(porter.units + "/bad.socket")
            unlink(porter.units + "/bad@.service")
            kill(porter.pid, SIGHUP)
            try porter.waitForLog("configuration reloaded")
            client = try Client.tcp(a)
            #expect(try client.readAll().contains("new"))
            client.close()
            #expect(try porter.stop() == 0)
        }

        /// Units removed while their processes run: an Accept=no service is
        /// stopped (KillSignal=) and its port closes; an Accept=yes instance
        /// finishes its connection and is reaped.
        @Test func unitsRemovedWhileTheirServicesRun() throws {
            let (svc, inst) = (freePort(), freePort())
            let dir = makeTempDirectory("reload-rm")
            defer { _ = system("rm -rf '\(dir)'") }
            let porter = try PorterRun("reloadrm", units: [
                "svc.socket": "[Socket]\nListenStream=127.0.0.1:\(svc)\n",
                "svc.service": "[Service]\nExecStart=\(handlerBinary) hold\n",
                "inst.socket": "[Socket]\nListenStream=127.0.0.1:\(inst)\nAccept=yes\n",
                "inst@.service": "[Service]\nExecStart=\(handlerBinary) echo\nStandardInput=socket\n",
                "stay.socket": "[Socket]\nListenStream=127.0.0.1:\(freePort())\nAccept=yes\n",
                "stay@.service": "[Service]\nExecStart=\(handlerBinary) say stay\nStandardInput=socket\n",
            ])
            let held = try Client.tcp(svc)
            defer { held.close() }
            let echo = try Client.tcp(inst)
            defer { echo.close() }
            try porter.waitForLog("svc.service: started pid")
            try waitUntil(10, "both running") { porter.children.count == 2 }
            for name in ["svc.socket", "svc.service", "inst.socket", "inst@.service"] { unlink(porter.units + "/" + name) }
            kill(porter.pid, SIGHUP)
            try porter.waitForLog("configuration reloaded")
            #expect(porter.log.contains("0 added, 4 removed, 0 changed, 2 unchanged"), "\(porter.log)")
            try porter.waitForLog("svc.service: pid")
            try waitUntil(10, "the removed service to be gone") { porter.children.count == 1 }
            #expect(throws: (any Error).self, "the removed socket is closed") { try Client.tcp(svc).close() }
            #expect(throws: (any Error).self, "the removed Accept=yes socket is closed") { try Client.tcp(inst).close() }
            // The instance still serves its connection, then ends and is reaped.
            try echo.send("still here\n")
            echo.shutdownWrite()
            #expect(try echo.readAll() == "still here\n")
            try waitUntil(10, "the instance to be reaped") { porter.children.isEmpty }
            #expect(porter.zombies.isEmpty)
            #expect(try porter.stop() == 0)
        }

        /// A unit that waits for an address in use keeps waiting across a
        /// reload (not an error: it waited before), and the socket a reload
        /// made for its other, free address is closed again, not leaked.
        @Test func aUnitWaitingForItsAddressWaitsOnAcrossAReload() throws {
            let (free, busy) = (freePort(), freePort())
            let holder = try Socket.open(family: AF_INET, type: Int32(SOCK_STREAM.rawValue), nonBlocking: false)
            try Socket.bind(holder, try SocketAddress(.ipv4(address: [127, 0, 0, 1], port: busy)))
            try Socket.listen(holder, backlog: 1)
            let porter = try PorterRun("reloadwait", units: [
                "w.socket": "[Socket]\nListenStream=127.0.0.1:\(free)\nListenStream=127.0.0.1:\(busy)\nAccept=yes\n",
                "w@.service": "[Service]\nExecStart=\(handlerBinary) say waited\nStandardInput=socket\n",
            ])
            try porter.waitForLog("address in use; trying again")
            let fds = porter.fdCount
            kill(porter.pid, SIGHUP)
            try porter.waitForLog("configuration reloaded")
            #expect(porter.count("reload refused") == 0, "\(porter.log)")
            #expect(porter.fdCount == fds, "a reload leaks no socket: \(fdTargets(porter.pid))")
            holder.close()
            try porter.waitForLog("w.socket: address free at last, listening", seconds: 20)
            let c = try Client.tcp(free)
            #expect(try c.readAll().contains("waited"))
            c.close()
            #expect(try porter.stop() == 0)
        }

        /// Path units across reloads: a changed per-file unit watches anew
        /// and keeps its queue (every file runs once, none twice); a removed
        /// path unit no longer starts its service; an added one does.
        @Test func pathUnitsAcrossReloads() throws {
            let dir = makeTempDirectory("reload-path")
            defer { _ = system("rm -rf '\(dir)'") }
            mkdir(dir + "/in", 0o755)
            let spool = "[Service]\nExecStart=\(handlerBinary) job \(dir)/jobs --instance %I --sleep 100 --remove\n"
            let porter = try PorterRun("reloadpath", units: [
                "spool.path": "[Path]\nDirectoryNotEmpty=\(dir)/in\nAccept=yes\nMaxConnections=1\n",
                "spool@.service": spool,
                "flag.path": "[Path]\nPathExists=\(dir)/flag\n",
                "flag.service": "[Service]\nExecStart=\(handlerBinary) job \(dir)/flags --remove\n",
            ])
            for k in 0..<6 { renameIn(dir + "/in", "f\(k)", "job \(k)\n") }
            try waitUntil(10, "the first job") { jobRuns(dir + "/jobs").count >= 1 }
            // One job at a time, 100 ms each: the rest are queued when the
            // unit changes (MaxConnections=2 now).
            writeFile(porter.units + "/spool.path", "[Path]\nDirectoryNotEmpty=\(dir)/in\nAccept=yes\nMaxConnections=2\n")
            unlink(porter.units + "/flag.path")
            unlink(porter.units + "/flag.service")
            writeFile(porter.units + "/other.path", "[Path]\nPathExists=\(dir)/other\n")
            writeFile(porter.units + "/other.service", "[Service]\nExecStart=\(handlerBinary) job \(dir)/others --remove\n")
            kill(porter.pid, SIGHUP)
            try porter.waitForLog("configuration reloaded")
            #expect(porter.log.contains("2 added, 2 removed, 1 changed, 1 unchanged"), "\(porter.log)")
            try waitUntil(20, "all six jobs") { jobRuns(dir + "/jobs").count >= 6 }
            try waitUntil(10, "the inbox empty") { ((try? Files.list(dir + "/in")) ?? ["?"]).isEmpty }
            let instances = jobRuns(dir + "/jobs").map { $0[1] }
            #expect(instances.sorted() == (0..<6).map { "f\($0)" }, "each file once: \(instances)")
            writeFile(dir + "/other", "")
            try waitUntil(10, "the added unit's run") { jobRuns(dir + "/others").count == 1 }
            writeFile(dir + "/flag", "")
            usleep(300_000)
            #expect(jobRuns(dir + "/flags").isEmpty, "a removed path unit starts nothing")
            #expect(access(dir + "/flag", F_OK) == 0)
            #expect(try porter.stop() == 0)
        }

        /// A socket kept across a reload while its mode flips: Accept=no to
        /// Accept=yes and back, on the same listening socket. The old
        /// service is stopped; the connections are served either way.
        @Test func acceptFlipsOnAKeptSocket() throws {
            let port = freePort()
            let porter = try PorterRun("reloadflip", units: [
                "a.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "a.service": "[Service]\nExecStart=\(handlerBinary) serve 0\n",
            ])
            var c = try Client.tcp(port)
            #expect(try c.readAll().hasPrefix("accepted-on 3"))
            c.close()
            let inode = { fdTargets(porter.pid).filter { $0.hasPrefix("socket:") }.sorted() }
            let before = inode()
            unlink(porter.units + "/a.service")
            writeFile(porter.units + "/a.socket", "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n")
            writeFile(porter.units + "/a@.service", "[Service]\nExecStart=\(handlerBinary) say instance\nStandardInput=socket\n")
            kill(porter.pid, SIGHUP)
            try porter.waitForLog("configuration reloaded")
            try porter.waitForLog("a.service: pid")
            c = try Client.tcp(port)
            #expect(try c.readAll().contains("instance"))
            c.close()
            #expect(inode() == before, "the same listening socket")
            unlink(porter.units + "/a@.service")
            writeFile(porter.units + "/a.socket", "[Socket]\nListenStream=127.0.0.1:\(port)\n")
            writeFile(porter.units + "/a.service", "[Service]\nExecStart=\(handlerBinary) serve 0\n")
            kill(porter.pid, SIGHUP)
            try waitUntil(10, "the second reload") { porter.count("configuration reloaded") == 2 }
            c = try Client.tcp(port)
            #expect(try c.readAll().hasPrefix("accepted-on 3"))
            c.close()
            #expect(try porter.stop() == 0)
        }

        /// Options a live socket can take are set on the kept socket at
        /// reload (Backlog=, read back from the kernel through ss(8)); one
        /// only a new socket gets is named, and applies at restart.
        @Test(.enabled(if: access("/usr/bin/ss", X_OK) == 0 || access("/bin/ss", X_OK) == 0, "needs ss(8) from iproute2"))
        func changedOptionsOnAKeptSocket() throws {
            let port = freePort()
            let porter = try PorterRun("reloadopts", units: [
                "o.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\nBacklog=16\n",
                "o@.service": "[Service]\nExecStart=\(handlerBinary) say ok\nStandardInput=socket\n",
            ])
            func backlog() -> String {
                let out = porter.dir + "/ss.out"
                _ = system("ss -ltnH 'sport = :\(port)' > '\(out)'")
                return readFile(out).split(separator: " ", omittingEmptySubsequences: true).dropFirst(2).first.map(String.init) ?? "?"
            }
            #expect(backlog() == "16")
            let sockets = fdTargets(porter.pid).filter { $0.hasPrefix("socket:") }.sorted()
            writeFile(porter.units + "/o.socket", "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\nBacklog=64\n")
            kill(porter.pid, SIGHUP)
            try porter.waitForLog("configuration reloaded")
            #expect(backlog() == "64", "Backlog= set on the kept socket")
            #expect(fdTargets(porter.pid).filter { $0.hasPrefix("socket:") }.sorted() == sockets, "the same socket")
            #expect(!porter.log.contains("applies when porter restarts"), "\(porter.log)")
            writeFile(porter.units + "/o.socket", "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\nBacklog=64\nReusePort=yes\n")
            kill(porter.pid, SIGHUP)
            try waitUntil(10, "the second reload") { porter.count("configuration reloaded") == 2 }
            #expect(porter.log.contains("o.socket:2: ListenStream=127.0.0.1:\(port): ReusePort= changed; the listening socket is kept"), "\(porter.log)")
            let c = try Client.tcp(port)
            #expect(try c.readAll().contains("ok"))
            c.close()
            #expect(try porter.stop() == 0)
        }
    }
}
