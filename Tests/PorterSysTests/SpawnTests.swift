import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

/// The test handler, built next to this test bundle.
let handler: String = {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    let exe = String(decoding: buf[0..<max(n, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let dir = exe.split(separator: "/").dropLast().joined(separator: "/")
    return "/" + dir + "/porter-test-handler"
}()

func openFDs() -> Set<Int32> {
    Set(((try? Files.list("/proc/self/fd")) ?? []).compactMap { Int32($0) })
}

func inode(_ fd: Int32) -> UInt64 {
    var st = stat()
    fstat(fd, &st)
    return UInt64(st.st_ino)
}

/// Runs `plan` with stdout on a pipe and returns (pid, output, exit status).
func run(_ spawner: Spawner, _ plan: SpawnPlan) throws -> (Int32, String, Int32) {
    let out = try makePipe()
    var p = plan
    p.fds[1] = out.write.rawValue
    let result = spawner.spawn(p)
    out.write.close()
    defer { out.read.close() }
    guard case .success(let pid) = result else { throw result.failureValue! }
    var text: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(out.read.rawValue, &buf, buf.count)
        if n <= 0 { break }
        text += buf[0..<n]
    }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return (pid, String(decoding: text, as: UTF8.self), status)
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}

func reportLines(_ text: String, _ key: String) -> [String] {
    text.split(separator: "\n").filter { $0.hasPrefix(key + " ") }.map { String($0.dropFirst(key.count + 1)) }
}

@Suite("spawn", .serialized)
struct SpawnTests {
    @Test func fdsLandAtThreeWithListenPIDEvenWhenSourcesOverlap() throws {
        let spawner = try Spawner()
        defer { spawner.close() }
        // Two sockets whose numbers will be swapped: what should become fd 3
        // sits at 4 and vice versa, so the child must lift one of them first.
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0)
        let a = pair[0], b = pair[1]
        defer { close(a); close(b) }
        var plan = SpawnPlan(path: handler, arguments: [handler, "report"], environment: ["LISTEN_FDS=2", "LISTEN_FDNAMES=a:b"],
                             fds: [-1, -1, 2, b, a])
        plan.setListenPID = true
        let devNull = try Files.open("/dev/null", flags: O_RDWR)
        defer { devNull.close() }
        plan.fds[0] = devNull.rawValue
        let (pid, text, status) = try run(spawner, plan)
        #expect(status == 0)
        #expect(reportLines(text, "env").contains("LISTEN_PID=\(pid)"))
        if spawner.pidfsSupported {
            #expect(reportLines(text, "env").contains { $0.hasPrefix("LISTEN_PIDFDID=") && $0 != "LISTEN_PIDFDID=0" })
        }
        let fds = reportLines(text, "fd")
        // Exactly 0-4, all inheritable, 3 and 4 in the asked order.
        #expect(fds.count == 5, "\(fds)")
        #expect(fds.contains { $0.hasPrefix("3 socket:[\(inode(b))]") && $0.hasSuffix("inherit") })
        #expect(fds.contains { $0.hasPrefix("4 socket:[\(inode(a))]") && $0.hasSuffix("inherit") })
        #expect(reportLines(text, "sid") == [String(pid)])
        #expect(reportLines(text, "SigBlk:") == ["0000000000000000"])
        // SIGPIPE is back to its default even if the parent ignores it.
        let ignored = UInt64(reportLines(text, "SigIgn:").first ?? "", radix: 16) ?? 1
        #expect(ignored & (1 << (UInt64(SIGPIPE) - 1)) == 0)
    }

    @Test func execFailureComesBackWithErrno() throws {
        let spawner = try Spawner()
        defer { spawner.close() }
        let plan = SpawnPlan(path: "/nonexistent/program", arguments: ["x"], environment: [], fds: [0, 1, 2])
        let result = spawner.spawn(plan)
        let error = try #require(result.failureValue)
        #expect(error.errno == ENOENT)
        #expect(error.isExecFailure)
        #expect(error.description == "exec /nonexistent/program: No such file or directory")
        var status: Int32 = 0
        #expect(waitpid(try #require(error.pid), &status, 0) > 0)
    }

    @Test func chdirFailureNamesTheDirectory() throws {
        let spawner = try Spawner()
        defer { spawner.close() }
        var plan = SpawnPlan(path: "/bin/true", arguments: ["true"], environment: [], fds: [0, 1, 2])
        plan.workingDirectory = "/nonexistent-dir"
        let error = try #require(spawner.spawn(plan).failureValue)
        #expect(error.description == "chdir /nonexistent-dir: No such file or directory")
        var status: Int32 = 0
        waitpid(error.pid!, &status, 0)
        plan.workingDirectoryOptional = true
        let ok = spawner.spawn(plan)
        guard case .success(let pid) = ok else { Issue.record("optional WorkingDirectory failed"); return }
        waitpid(pid, &status, 0)
        #expect(status == 0)
    }

    @Test func spawningLeaksNoDescriptors() throws {
        let spawner = try Spawner()
        defer { spawner.close() }
        let before = openFDs()
        for _ in 0..<200 {
            let plan = SpawnPlan(path: "/bin/true", arguments: ["true"], environment: [], fds: [0, 1, 2])
            guard case .success(let pid) = spawner.spawn(plan) else { Issue.record("spawn failed"); return }
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        #expect(openFDs() == before)
    }

    @Test func porterFDsAreCloseOnExec() throws {
        let spawner = try Spawner()
        defer { spawner.close() }
        let p = try makePipe()
        defer { p.read.close(); p.write.close() }
        #expect(try p.read.isCloseOnExec() && p.write.isCloseOnExec())
        let s = try Socket.open(family: AF_INET, type: Int32(SOCK_STREAM.rawValue), nonBlocking: true)
        defer { s.close() }
        #expect(try s.isCloseOnExec())
        let e = try Epoll()
        defer { e.close() }
        #expect(try e.fd.isCloseOnExec())
    }
}

func openListener(_ listen: Listen, _ config: SocketConfig) -> Result<FileDescriptor, ListenError> {
    Result { () throws(ListenError) -> FileDescriptor in
        try Listener.open(listen, config: config, options: .init(nonBlocking: true), warn: { _ in })
    }
}

@Suite("listeners and queues", .serialized)
struct ListenerTests {
    @Test func unixSocketGetsModeAndParents() throws {
        let dir = "/tmp/porter-sys-\(getpid())"
        defer { _ = system("rm -rf \(dir)") }
        var config = SocketConfig(name: UnitName.parse("t.socket")!)
        config.socketMode = 0o600
        config.directoryMode = 0o711
        let listen = Listen(kind: .stream, address: .unixPath(dir + "/a/b/t.sock"), line: 1)
        let fd = try Listener.open(listen, config: config, options: .init(nonBlocking: true)) { _ in }
        defer { fd.close() }
        let st = try #require(try Files.status(dir + "/a/b/t.sock", follow: false))
        #expect(st.isSocket && st.mode & 0o777 == 0o600)
        #expect(try Files.status(dir + "/a")!.mode & 0o777 == 0o711)
        // A second open replaces the stale socket file.
        fd.close()
        let again = try Listener.open(listen, config: config, options: .init(nonBlocking: true)) { _ in }
        again.close()
        // A regular file at the path is left alone and reported.
        try Files.unlink(dir + "/a/b/t.sock")
        let f = try Files.open(dir + "/a/b/t.sock", flags: O_WRONLY | O_CREAT)
        f.close()
        #expect(throws: ListenError.self) { try Listener.open(listen, config: config, options: .init(nonBlocking: true)) { _ in } }
    }

    @Test func bindErrorsNameTheCause() throws {
        let config = SocketConfig(name: UnitName.parse("t.socket")!)
        let first = try Listener.open(Listen(kind: .stream, address: .ipv4(address: [127, 0, 0, 1], port: 0x7fff), line: 1),
                                      config: config, options: .init(nonBlocking: true)) { _ in }
        defer { first.close() }
        let second = openListener(Listen(kind: .stream, address: .ipv4(address: [127, 0, 0, 1], port: 0x7fff), line: 1), config)
        #expect(second.failureValue?.description == "bind: Address already in use (another process listens there)")
    }

    @Test func queuedWorkCountsTheAcceptQueue() throws {
        let config = SocketConfig(name: UnitName.parse("t.socket")!)
        let path = "/tmp/porter-q-\(getpid()).sock"
        defer { try? Files.unlink(path) }
        let q = QueuedWork()
        defer { q.close() }
        for address in [ListenAddress.ipv4(address: [127, 0, 0, 1], port: 0x7ffe), .unixPath(path)] {
            let l = try Listener.open(Listen(kind: .stream, address: address, line: 1), config: config, options: .init(nonBlocking: true)) { _ in }
            defer { l.close() }
            #expect(q.measure(l) == 0)
            var clients: [FileDescriptor] = []
            for _ in 0..<3 {
                let family: Int32 = address.isInet ? AF_INET : AF_UNIX
                let c = try Socket.open(family: family, type: Int32(SOCK_STREAM.rawValue), nonBlocking: false)
                try Socket.connect(c, try SocketAddress(address))
                clients.append(c)
            }
            #expect(q.measure(l) == 3, "\(address)")
            for c in clients { c.close() }
        }
    }
}

/// PorterCore spells signal numbers out once, without Glibc: they must be
/// the kernel's.
@Suite("signal numbers")
struct SignalNumberTests {
    @Test func coreNumbersAreGlibcs() {
        #expect(Sig.hangup == SIGHUP && Sig.abort == SIGABRT && Sig.kill == SIGKILL)
        #expect(Sig.terminate == SIGTERM && Sig.continue == SIGCONT)
        let glibc: [(String, Int32)] = [("INT", SIGINT), ("QUIT", SIGQUIT), ("USR1", SIGUSR1), ("USR2", SIGUSR2),
                                        ("PIPE", SIGPIPE), ("CHLD", SIGCHLD), ("STOP", SIGSTOP), ("WINCH", SIGWINCH)]
        for (name, n) in glibc { #expect(Values.signalNames.first { $0.0 == name }?.1 == n, "SIG\(name)") }
        #expect(Values.realtimeMinimum == __libc_current_sigrtmin() && Values.realtimeMaximum == __libc_current_sigrtmax())
    }
}

/// The same for the RLIMIT_ numbers of Limit*=.
@Suite("resource limit numbers")
struct ResourceNumberTests {
    @Test func coreNumbersAreGlibcs() {
        let glibc: [(String, Int32)] = [
            ("LimitCPU", Int32(RLIMIT_CPU.rawValue)), ("LimitFSIZE", Int32(RLIMIT_FSIZE.rawValue)),
            ("LimitDATA", Int32(RLIMIT_DATA.rawValue)), ("LimitSTACK", Int32(RLIMIT_STACK.rawValue)),
            ("LimitCORE", Int32(RLIMIT_CORE.rawValue)), ("LimitRSS", Int32(__RLIMIT_RSS.rawValue)),
            ("LimitNPROC", Int32(__RLIMIT_NPROC.rawValue)), ("LimitNOFILE", Int32(RLIMIT_NOFILE.rawValue)),
            ("LimitMEMLOCK", Int32(__RLIMIT_MEMLOCK.rawValue)), ("LimitAS", Int32(RLIMIT_AS.rawValue)),
            ("LimitLOCKS", Int32(__RLIMIT_LOCKS.rawValue)), ("LimitSIGPENDING", Int32(__RLIMIT_SIGPENDING.rawValue)),
            ("LimitMSGQUEUE", Int32(__RLIMIT_MSGQUEUE.rawValue)), ("LimitNICE", Int32(__RLIMIT_NICE.rawValue)),
            ("LimitRTPRIO", Int32(__RLIMIT_RTPRIO.rawValue)), ("LimitRTTIME", Int32(__RLIMIT_RTTIME.rawValue)),
        ]
        #expect(ResourceLimit.names == glibc.map(\.0))
        for (key, n) in glibc { #expect(ResourceLimit.resource(named: key) == n, "\(key)") }
    }
}
