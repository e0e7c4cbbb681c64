import Glibc
import PorterCore
import PorterDaemon
@testable import PorterSys
import Testing

let runningAsRoot = geteuid() == 0

func owner(_ path: String) -> uid_t {
    var st = stat()
    return lstat(path, &st) == 0 ? st.st_uid : uid_t.max
}

/// Issue 8: what porter binds, chowns, creates and opens in directories
/// that others can write.
@Suite("paths others can write", .serialized)
struct SafePathTests {
    let dir: String

    init() {
        dir = "/tmp/porter-safe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(dir, 0o755)
    }

    func cleanUp() { _ = system("rm -rf '\(dir)'") }

    /// F1: a symlink swapped in between bind(2) and the ownership change
    /// is never followed: the target keeps its owner, the unit fails.
    @Test(.enabled(if: runningAsRoot, "chown to another user needs root"))
    func f1_socketUserChownDoesNotFollowASwappedSymlink() throws {
        defer { cleanUp() }
        let target = dir + "/target"
        writeTestFile(target, "root file\n")
        var config = SocketConfig(name: UnitName.parse("app.socket")!)
        config.socketMode = 0o660
        let path = dir + "/app.sock"
        let listen = Listen(kind: .stream, address: .unixPath(path), line: 1)
        UnixSocketFile.afterBindForTesting = { p in
            // What the racing user did: rename a symlink over the new socket
            // (this test's only: other suites may bind meanwhile).
            guard p == path else { return }
            _ = symlink(target, dir + "/lnk")
            _ = rename(dir + "/lnk", p)
        }
        defer { UnixSocketFile.afterBindForTesting = nil }
        let result = Result { () throws(ListenError) -> FileDescriptor in
            try Listener.open(listen, config: config, options: .init(nonBlocking: true, owner: (65534, 65534))) { _ in }
        }
        #expect(owner(target) == 0, "the root file was chowned through the symlink")
        #expect(result.failureValue?.description.contains("is not the socket porter bound") == true, "\(result)")
        if case .success(let fd) = result { fd.close() }
    }

    /// F1, without the race: the socket itself is chowned.
    @Test(.enabled(if: runningAsRoot, "chown to another user needs root"))
    func f1_socketUserChownsTheBoundSocket() throws {
        defer { cleanUp() }
        let config = SocketConfig(name: UnitName.parse("app.socket")!)
        let path = dir + "/app.sock"
        let fd = try Listener.open(Listen(kind: .stream, address: .unixPath(path), line: 1), config: config,
                                   options: .init(nonBlocking: true, owner: (65534, nil))) { _ in }
        defer { fd.close() }
        #expect(owner(path) == 65534)
    }

    /// F3: a socket file something still listens on is not stale: it stays,
    /// and the bind is reported as in use; a dead one is replaced.
    @Test func f3_liveUnixSocketIsNotReplaced() throws {
        defer { cleanUp() }
        let config = SocketConfig(name: UnitName.parse("n.socket")!)
        let path = dir + "/n.sock"
        let listen = Listen(kind: .stream, address: .unixPath(path), line: 1)
        let live = try Listener.open(listen, config: config, options: .init(nonBlocking: true)) { _ in }
        var st = stat()
        lstat(path, &st)
        let inode = st.st_ino
        let second = Result { () throws(ListenError) -> FileDescriptor in
            try Listener.open(listen, config: config, options: .init(nonBlocking: true)) { _ in }
        }
        #expect(second.failureValue?.description == "bind: Address already in use (a live socket is there: something accepts connections on it; stop it first)")
        lstat(path, &st)
        #expect(st.st_ino == inode, "the live socket file was replaced")
        // A live datagram socket counts too.
        live.close()
        let dgram = try Listener.open(Listen(kind: .datagram, address: .unixPath(path), line: 1), config: config,
                                      options: .init(nonBlocking: true)) { _ in }
        #expect(throws: ListenError.self) { try Listener.open(listen, config: config, options: .init(nonBlocking: true)) { _ in } }
        dgram.close()
        // Nobody listens any more: stale, replaced.
        let again = try Listener.open(listen, config: config, options: .init(nonBlocking: true)) { _ in }
        again.close()
    }

    /// F3: a parent directory that is a symlink in a directory others can
    /// write is refused; the victim's socket behind it stays untouched.
    @Test func f3_symlinkedParentInAWritableDirectoryIsRefused() throws {
        defer { cleanUp() }
        let rootdir = dir + "/rootdir", writable = dir + "/x"
        mkdir(rootdir, 0o755)
        mkdir(writable, 0o777)
        chmod(writable, 0o777)
        let config = SocketConfig(name: UnitName.parse("a.socket")!)
        let victim = try Listener.open(Listen(kind: .stream, address: .unixPath(rootdir + "/victim.sock"), line: 1),
                                       config: config, options: .init(nonBlocking: true)) { _ in }
        defer { victim.close() }
        #expect(symlink(rootdir, writable + "/sub") == 0)
        let result = Result { () throws(ListenError) -> FileDescriptor in
            try Listener.open(Listen(kind: .stream, address: .unixPath(writable + "/sub/victim.sock"), line: 1),
                              config: config, options: .init(nonBlocking: true)) { _ in }
        }
        #expect(result.failureValue?.description == "\(writable)/sub is a symlink in a directory that others can write (anyone can write it); porter follows symlinks only in directories that only root can write", "\(result)")
        // A symlink in a directory only root (or porter) can write is followed.
        let trusted = dir + "/link"
        #expect(symlink(rootdir, trusted) == 0)
        let ok = try Listener.open(Listen(kind: .stream, address: .unixPath(trusted + "/other.sock"), line: 1),
                                   config: config, options: .init(nonBlocking: true)) { _ in }
        ok.close()
        #expect(access(rootdir + "/other.sock", F_OK) == 0)
    }

    @Test func resolutionCreatesFollowsAndRefuses() throws {
        defer { cleanUp() }
        let trust = SafePath.Trust.porter
        // Made with the mode, component by component.
        let made = try SafePath.directory(dir + "/m/n/o", trust: trust, create: 0o700)
        made.close()
        var st = stat()
        stat(dir + "/m/n", &st)
        #expect(st.st_mode & 0o777 == 0o700)
        // Missing: the deepest existing directory.
        if case .missing(let fd, let at) = try SafePath.open(dir + "/m/zz/yy", trust: trust) {
            #expect(at == dir + "/m")
            fd.close()
        } else {
            Issue.record("expected .missing")
        }
        // Relative and absolute symlinks, "..", in a trusted directory.
        #expect(symlink("m/n", dir + "/rel") == 0)
        #expect(symlink(dir + "/m/../m/n", dir + "/abs") == 0)
        for p in [dir + "/rel/o", dir + "/abs/o"] {
            let fd = try SafePath.directory(p, trust: trust)
            var a = stat(), b = stat()
            fstat(fd.rawValue, &a)
            stat(dir + "/m/n/o", &b)
            #expect(a.st_ino == b.st_ino, "\(p)")
            fd.close()
        }
        // A loop ends with ELOOP, not forever.
        #expect(symlink(dir + "/loop", dir + "/loop") == 0)
        #expect(throws: SafePath.Problem.self) { try SafePath.directory(dir + "/loop/x", trust: trust) }
        // A file in the way.
        writeTestFile(dir + "/file", "")
        #expect(throws: SafePath.Problem.self) { try SafePath.directory(dir + "/file/x", trust: trust, create: 0o755) }
    }
}

func writeTestFile(_ path: String, _ text: String) {
    let fd = creat(path, 0o644)
    precondition(fd >= 0)
    _ = text.withCString { write(fd, $0, strlen($0)) }
    close(fd)
}

/// Issue 9: the idle check asks the kernel for one port's connections; the
/// count stays exact with unrelated connections on the host.
@Suite("connections of a listener", .serialized)
struct ConnectionCountTests {
    @Test func countsOnlyTheListenersConnections() throws {
        let config = SocketConfig(name: UnitName.parse("t.socket")!)
        func listener() throws -> (FileDescriptor, UInt16) {
            let fd = try Listener.open(Listen(kind: .stream, address: .ipv4(address: [127, 0, 0, 1], port: 0), line: 1),
                                       config: config, options: .init(nonBlocking: false)) { _ in }
            return (fd, try Socket.localAddress(fd).port!)
        }
        let (mine, port) = try listener()
        let (other, otherPort) = try listener()
        defer { mine.close(); other.close() }
        var held: [FileDescriptor] = []
        defer { for f in held { f.close() } }
        func connect(_ p: UInt16, _ l: FileDescriptor) throws {
            let c = try Socket.open(family: AF_INET, type: Int32(SOCK_STREAM.rawValue), nonBlocking: false)
            try Socket.connect(c, try SocketAddress(.ipv4(address: [127, 0, 0, 1], port: p)))
            var peer = SocketAddress()
            let a = try #require(try Socket.accept(l, peer: &peer))
            held += [c, a]
        }
        for _ in 0..<200 { try connect(otherPort, other) }
        for _ in 0..<3 { try connect(port, mine) }
        let q = QueuedWork()
        defer { q.close() }
        // Both ends of a loopback connection carry the port: the accepted
        // side as its source, the client side as its destination only.
        #expect(q.connections(of: mine) == 3)
        #expect(q.connections(of: other) == 200)
    }
}

/// Socket options are named in the configuration and numbered here.
@Suite("socket option numbers")
struct SocketOptionTests {
    @Test func namedOptionsReachTheKernel() throws {
        var config = SocketConfig(name: UnitName.parse("t.socket")!)
        config.options = [
            SocketOption(key: "IPTTL", name: .ipTTL, value: 42, scope: .inet),
            SocketOption(key: "KeepAliveTimeSec", name: .keepAliveTime, value: 77, scope: .tcp),
            SocketOption(key: "Priority", name: .priority, value: 3, scope: .any),
        ]
        let v4 = try Listener.open(Listen(kind: .stream, address: .ipv4(address: [127, 0, 0, 1], port: 0), line: 1),
                                   config: config, options: .init(nonBlocking: true)) { _ in }
        defer { v4.close() }
        #expect(try Socket.option(v4, Int32(IPPROTO_IP), IP_TTL) == 42)
        #expect(try Socket.option(v4, Int32(IPPROTO_TCP), TCP_KEEPIDLE) == 77)
        #expect(try Socket.option(v4, SOL_SOCKET, SO_PRIORITY) == 3)
        if let v6 = try? Listener.open(Listen(kind: .stream, address: .ipv6(address: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], port: 0, scope: nil), line: 1),
                                       config: config, options: .init(nonBlocking: true), warn: { _ in }) {
            defer { v6.close() }
            #expect(try Socket.option(v6, Int32(IPPROTO_IPV6), IPV6_UNICAST_HOPS) == 42)
        }
    }
}

extension ConnectionCountTests {
    /// Unix: an accepted connection still open counts (it carries the
    /// listener's name); the idle check must see one the service accepted
    /// and has not answered yet.
    @Test func countsAcceptedUnixConnections() throws {
        var template = Array("/tmp/porter-cc-XXXXXX".utf8CString)
        let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
        defer { _ = system("rm -rf '\(dir)'") }
        let path = dir + "/s.sock"
        let config = SocketConfig(name: UnitName.parse("t.socket")!)
        let l = try Listener.open(Listen(kind: .stream, address: .unixPath(path), line: 1), config: config,
                                  options: .init(nonBlocking: false)) { _ in }
        defer { l.close() }
        let q = QueuedWork()
        defer { q.close() }
        var held: [FileDescriptor] = []
        defer { for f in held { f.close() } }
        let c1 = try Socket.open(family: AF_UNIX, type: Int32(SOCK_STREAM.rawValue), nonBlocking: false)
        try Socket.connect(c1, try SocketAddress(.unixPath(path)))
        held.append(c1)
        #expect(q.measure(l) == 1, "one queued")
        var peer = SocketAddress()
        let a = try #require(try Socket.accept(l, peer: &peer))
        held.append(a)
        #expect(q.measure(l) == 0, "none queued")
        #expect(q.connections(of: l) == 1, "one accepted and open")
    }
}
