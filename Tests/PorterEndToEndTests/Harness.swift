import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

/// Where `swift build` put the binaries: next to this test bundle.
let buildDirectory: String = {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    let exe = String(decoding: buf[0..<max(n, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return "/" + exe.split(separator: "/").dropLast().joined(separator: "/")
}()
let porterBinary = buildDirectory + "/porter"
let handlerBinary = buildDirectory + "/porter-test-handler"

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func now() -> Instant { Instant(nanoseconds: monotonicNanoseconds()) }

/// Polls `condition` every 10 ms until it holds or `seconds` pass.
@discardableResult
func waitUntil(_ seconds: Double = 10, _ what: @autoclosure () -> String, _ condition: () throws -> Bool) throws -> Bool {
    let deadline = now() + .milliseconds(Int(seconds * 1000))
    while now() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    throw TestFailure("timed out after \(seconds)s waiting for \(what())")
}

func writeFile(_ path: String, _ text: String, mode: mode_t = 0o644) {
    // Parents first (drop-in directories: "echo.socket.d/port.conf").
    var parent = ""
    for part in path.split(separator: "/").dropLast() {
        parent += "/" + part
        mkdir(parent, 0o755)
    }
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    precondition(fd >= 0, "cannot write \(path)")
    _ = text.withCString { write(fd, $0, strlen($0)) }
    close(fd)
}

func readFile(_ path: String) -> String { (try? Files.read(path, limit: 1 << 30)) ?? "" }

func makeTempDirectory(_ tag: String) -> String {
    var template = Array("/tmp/porter-e2e-\(tag)-XXXXXX".utf8CString)
    let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    precondition(p != nil)
    let dir = String(cString: p!)
    chmod(dir, 0o755)
    return dir
}

/// A TCP port that was free a moment ago.
func freePort(_ family: Int32 = AF_INET) -> UInt16 {
    let fd = try! Socket.open(family: family, type: Int32(SOCK_STREAM.rawValue), nonBlocking: false)
    defer { fd.close() }
    let address: ListenAddress = family == AF_INET ? .ipv4(address: [127, 0, 0, 1], port: 1) : .ipv6(address: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], port: 1, scope: nil)
    var a = try! SocketAddress(address)
    a.withMutableSockaddr { sa, _ in
        if family == AF_INET {
            sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port = 0 }
        } else {
            sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_port = 0 }
        }
    }
    a.length = socklen_t(family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
    try! Socket.bind(fd, a)
    return try! Socket.localAddress(fd).port!
}

/// Starts a program with stdout and stderr to files; returns its pid.
func spawnProgram(_ argv: [String], stdout: String, stderr: String) -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var mask = sigset_t()
    sigemptyset(&mask)
    posix_spawnattr_setsigmask(&attr, &mask)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK))
    var pid: pid_t = 0
    let cArgs = argv.map { strdup($0) } + [nil]
    defer { for a in cArgs { free(a) } }
    let r = posix_spawn(&pid, argv[0], &actions, &attr, cArgs, environ)
    precondition(r == 0, "posix_spawn \(argv[0]): \(r)")
    return pid
}

/// Waits for `pid` to exit; its exit code, or 128+signal.
func waitExit(_ pid: Int32, seconds: Double = 20) throws -> Int32 {
    var result: Int32 = -1
    try waitUntil(seconds, "pid \(pid) to exit") {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid {
            result = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            return true
        }
        return false
    }
    return result
}

func processExists(_ pid: Int32) -> Bool { kill(pid, 0) == 0 || errno == EPERM }

/// A running porter on its own configuration directory.
final class PorterRun {
    let dir: String
    let units: String
    let logPath: String
    private(set) var pid: Int32 = 0
    private var exited: Int32?

    /// Writes `units` (file name → text) and starts `porter run`, then waits
    /// for its "ready" line.
    init(_ tag: String, units: [String: String], waitReady: Bool = true, arguments: [String] = [],
         environment: [String] = [], binary: String = porterBinary) throws {
        dir = makeTempDirectory(tag)
        self.units = dir + "/units"
        mkdir(self.units, 0o755)
        logPath = dir + "/porter.log"
        for (name, text) in units { writeFile(self.units + "/" + name, text) }
        // Its own control socket: another porter (a test beside it, one on
        // this host) must not keep this one from starting.
        let control = arguments.contains("--control") ? [] : ["--control", dir + "/control"]
        let env = environment.isEmpty ? [] : ["/usr/bin/env"] + environment
        pid = spawnProgram(env + [binary, "run", "--config-dir", self.units] + control + arguments, stdout: logPath, stderr: logPath)
        if waitReady { try waitForLog("ready:") }
    }

    var log: String { readFile(logPath) }

    @discardableResult
    func waitForLog(_ needle: String, seconds: Double = 10) throws -> String {
        try waitUntil(seconds, "'\(needle)' in porter's log:\n\(log)") {
            if exited == nil, !processExists(pid) || waitpid(pid, nil, WNOHANG) == pid {
                throw TestFailure("porter exited early; log:\n\(log)")
            }
            return log.contains(needle)
        }
        return log
    }

    func count(_ needle: String) -> Int { log.components(needle).count - 1 }

    /// Waits for porter to exit by itself (or after a signal the test sent).
    func waitExited(seconds: Double = 20) throws -> Int32 {
        if let exited { return exited }
        let code = try waitExit(pid, seconds: seconds)
        exited = code
        return code
    }

    /// SIGTERM and the exit code.
    func stop(seconds: Double = 20) throws -> Int32 {
        if let exited { return exited }
        kill(pid, SIGTERM)
        let code = try waitExit(pid, seconds: seconds)
        exited = code
        return code
    }

    /// Open fds of porter itself.
    var fdCount: Int { ((try? Files.list("/proc/\(pid)/fd")) ?? []).count }

    /// Children of porter that are zombies.
    var zombies: [Int32] {
        ((try? Files.list("/proc")) ?? []).compactMap { Int32($0) }.filter { p in
            let stat = readFile("/proc/\(p)/stat")
            guard let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
            return fields.count > 2 && fields[0] == "Z" && Int32(fields[1]) == pid
        }
    }

    /// Live children of porter.
    var children: [Int32] {
        ((try? Files.list("/proc")) ?? []).compactMap { Int32($0) }.filter { p in
            let stat = readFile("/proc/\(p)/stat")
            guard let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
            return fields.count > 2 && fields[0] != "Z" && Int32(fields[1]) == pid
        }
    }

    deinit {
        // A test that failed before stopping porter: SIGTERM first so porter
        // stops the services it started (a SIGKILL would leave them behind
        // for the rest of the run), then SIGKILL if it does not go.
        if exited == nil {
            kill(pid, SIGTERM)
            if (try? waitExit(pid, seconds: 5)) == nil {
                kill(pid, SIGKILL)
                _ = try? waitExit(pid, seconds: 5)
            }
        }
        if getenv("KEEP") == nil { _ = system("rm -rf '\(dir)'") }
    }
}

extension String {
    func components(_ separator: String) -> [Substring] {
        var parts: [Substring] = []
        var rest = self[...]
        while let r = rest.firstRange(of: separator) {
            parts.append(rest[..<r.lowerBound])
            rest = rest[r.upperBound...]
        }
        parts.append(rest)
        return parts
    }
}

/// A client connection with a deadline on every operation.
struct Client {
    let fd: FileDescriptor

    static func tcp(_ port: UInt16, host: [UInt8] = [127, 0, 0, 1]) throws -> Client {
        let address: ListenAddress = host.count == 4 ? .ipv4(address: host, port: port) : .ipv6(address: host, port: port, scope: nil)
        return try connect(address, family: host.count == 4 ? AF_INET : AF_INET6, type: Int32(SOCK_STREAM.rawValue))
    }

    static func unix(_ path: String, type: Int32 = Int32(SOCK_STREAM.rawValue)) throws -> Client {
        try connect(.unixPath(path), family: AF_UNIX, type: type)
    }

    static func udp(_ port: UInt16) throws -> Client {
        try connect(.ipv4(address: [127, 0, 0, 1], port: port), family: AF_INET, type: Int32(SOCK_DGRAM.rawValue))
    }

    static func connect(_ address: ListenAddress, family: Int32, type: Int32, from source: ListenAddress? = nil) throws -> Client {
        let fd = try Socket.open(family: family, type: type, nonBlocking: false)
        if let source {
            try Socket.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            try Socket.bind(fd, try SocketAddress(source))
        }
        try Socket.connect(fd, try SocketAddress(address))
        return Client(fd: fd)
    }

    /// A TCP client from another loopback address (127.0.0.2): what the
    /// access tests tell apart.
    static func tcp(_ port: UInt16, from host: [UInt8]) throws -> Client {
        try connect(.ipv4(address: [127, 0, 0, 1], port: port), family: AF_INET, type: Int32(SOCK_STREAM.rawValue),
                    from: .ipv4(address: host, port: 0))
    }

    static func udp(_ port: UInt16, from host: [UInt8], port sourcePort: UInt16 = 0) throws -> Client {
        try connect(.ipv4(address: [127, 0, 0, 1], port: port), family: AF_INET, type: Int32(SOCK_DGRAM.rawValue),
                    from: .ipv4(address: host, port: sourcePort))
    }

    /// Whether a TCP handshake from `host` completes within `seconds`: a
    /// SYN the kernel filter drops never does (the client retries until
    /// its own timeout).
    static func handshakeCompletes(_ port: UInt16, from host: [UInt8], seconds: Double) throws -> Bool {
        let fd = try Socket.open(family: AF_INET, type: Int32(SOCK_STREAM.rawValue), nonBlocking: true)
        defer { fd.close() }
        try Socket.bind(fd, SocketAddress(ipv4: host, port: 0))
        let r = SocketAddress(ipv4: [127, 0, 0, 1], port: port).withSockaddr { Glibc.connect(fd.rawValue, $0, $1) }
        if r == 0 { return true }
        guard errno == EINPROGRESS else { throw TestFailure("connect: \(SysError.describe(errno))") }
        var p = pollfd(fd: fd.rawValue, events: Int16(POLLOUT), revents: 0)
        guard poll(&p, 1, Int32(seconds * 1000)) == 1 else { return false }
        return (try? Socket.option(fd, SOL_SOCKET, SO_ERROR)) == 0
    }

    /// One datagram within `seconds`, or nil.
    func datagram(seconds: Double) -> [UInt8]? {
        var p = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(seconds * 1000)) == 1 else { return nil }
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd.rawValue, &buf, buf.count, 0)
        return n < 0 ? nil : Array(buf[0..<n])
    }

    func send(_ text: String) throws { try fd.write(text) }

    func shutdownWrite() { _ = shutdown(fd.rawValue, Int32(SHUT_WR)) }

    /// Reads until end of file (or one datagram with `datagram`).
    func readAll(seconds: Double = 10, datagram: Bool = false) throws -> String {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        let deadline = now() + .milliseconds(Int(seconds * 1000))
        while true {
            let left = Int32(max(1, (deadline - now()).nanoseconds / 1_000_000))
            var p = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, left)
            if r == 0 || now() >= deadline { throw TestFailure("read timed out after \(seconds)s; got \(String(decoding: out, as: UTF8.self))") }
            if r < 0 { continue }
            let n = read(fd.rawValue, &buf, buf.count)
            if n < 0 { if errno == EINTR { continue }; throw TestFailure("read: \(SysError.describe(errno))") }
            if n == 0 { break }
            out += buf[0..<n]
            if datagram { break }
        }
        return String(decoding: out, as: UTF8.self)
    }

    func close() { fd.close() }
}

/// A handler report, line by line ("env NAME=value", "fd 3 socket:[...] block inherit", ...).
struct Report {
    let lines: [String]
    init(_ text: String) { lines = text.split(separator: "\n").map(String.init) }

    func values(_ key: String) -> [String] {
        lines.filter { $0.hasPrefix(key + " ") }.map { String($0.dropFirst(key.count + 1)) }
    }
    func value(_ key: String) -> String? { values(key).first }

    var environment: [String: String] {
        var env: [String: String] = [:]
        for e in values("env") {
            if let eq = e.firstIndex(of: "=") { env[String(e[..<eq])] = String(e[e.index(after: eq)...]) }
        }
        return env
    }

    /// fd number → (target, flags)
    var fds: [Int32: String] {
        var out: [Int32: String] = [:]
        for f in values("fd") {
            let parts = f.split(separator: " ", maxSplits: 1)
            if let n = Int32(parts[0]) { out[n] = String(parts[1]) }
        }
        return out
    }

    var pid: Int32 { Int32(value("pid") ?? "") ?? -1 }
}

func inodeOfSocket(_ target: String) -> String? {
    guard target.hasPrefix("socket:[") else { return nil }
    return String(target.dropFirst(8).prefix(while: { $0 != "]" }))
}

func writeBytes(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    precondition(fd >= 0, "cannot write \(path)")
    var done = 0
    while done < bytes.count {
        let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        precondition(n > 0)
        done += n
    }
    close(fd)
}

/// Where each open fd of a process points (readlink of /proc/PID/fd/N).
func fdTargets(_ pid: Int32) -> [String] {
    ((try? Files.list("/proc/\(pid)/fd")) ?? []).map { name in
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/\(pid)/fd/\(name)", &buf, buf.count - 1)
        return String(decoding: buf[0..<max(n, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Whether the tests run as root (chown, User=, other users' files).
let isRoot = geteuid() == 0
