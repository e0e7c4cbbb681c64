// porter-test-handler: the program porter's end-to-end tests start. It
// reports what it received — environment, fds, credentials, signal state —
// like the handler in ucspi-tcp's `rts` script that echoes TCPREMOTEIP.
//
//   report              write the report to stdout (inetd style) and exit
//   serve [N]           take the fds from LISTEN_FDS, answer N connections
//                       (default 1; 0: forever) with the report, then exit
//   hold                take the fds from LISTEN_FDS; accept connections and
//                       keep each open until the client closes it, forever
//   udp                 stdin is a datagram socket: answer one datagram
//   echo                copy stdin to stdout until end of file
//   exit CODE           exit with CODE
//   crash               die of SIGSEGV
//   sleep [--ignore-term] [--pidfile P]  wait for a signal
//   say TEXT            write TEXT to stdout and stderr, then exit
import CPorter
import Glibc

func readText(_ path: String) -> String {
    let fd = porter_open(path, O_RDONLY | O_CLOEXEC, 0)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

func link(_ path: String) -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink(path, &buf, buf.count - 1)
    return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
}

func report() -> String {
    var lines: [String] = []
    lines.append("pid \(getpid())")
    lines.append("ppid \(getppid())")
    lines.append("pgid \(getpgid(0))")
    lines.append("sid \(getsid(0))")
    lines.append("uid \(getuid()) \(geteuid())")
    lines.append("gid \(getgid()) \(getegid())")
    var groups = [gid_t](repeating: 0, count: 256)
    let ng = getgroups(Int32(groups.count), &groups)
    lines.append("groups " + groups.prefix(Int(max(ng, 0))).map(String.init).joined(separator: ","))
    var cwd = [CChar](repeating: 0, count: 4096)
    if getcwd(&cwd, cwd.count) != nil { lines.append("cwd \(String(cString: cwd))") }
    lines.append("umask \(String(umask(0o022), radix: 8))")
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    lines.append("nofile \(limit.rlim_cur) \(limit.rlim_max)")
    for a in CommandLine.arguments { lines.append("arg \(a)") }
    var p = environ
    while let e = p.pointee {
        lines.append("env \(String(cString: e))")
        p += 1
    }
    if let dir = opendir("/proc/self/fd") {
        let own = dirfd(dir)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard let fd = Int32(name), fd != own else { continue }
            let flags = porter_fcntl_int(fd, F_GETFL, 0)
            let fdflags = porter_fcntl_int(fd, F_GETFD, 0)
            lines.append("fd \(fd) \(link("/proc/self/fd/\(fd)")) \((flags & O_NONBLOCK) != 0 ? "nonblock" : "block") \((fdflags & FD_CLOEXEC) != 0 ? "cloexec" : "inherit")")
        }
        closedir(dir)
    }
    lines += initialSignals
    return lines.joined(separator: "\n") + "\nend\n"
}

extension Substring {
    func replacingTabs() -> String { String(self.map { $0 == "\t" ? " " : $0 }) }
}

func writeAll(_ fd: Int32, _ s: String) {
    var s = s
    s.withUTF8 { b in
        var done = 0
        while done < b.count {
            let n = write(fd, b.baseAddress! + done, b.count - done)
            if n <= 0 { return }
            done += n
        }
    }
}

// The signal state as porter left it, read before this program changes any.
let initialSignals = readText("/proc/self/status").split(separator: "\n")
    .filter { $0.hasPrefix("SigBlk") || $0.hasPrefix("SigIgn") }.map { $0.replacingTabs() }
let args = Array(CommandLine.arguments.dropFirst())
let mode = args.first ?? "report"
signal(SIGPIPE, SIG_IGN)

switch mode {
case "report":
    writeAll(1, report())

case "serve":
    let count = args.count > 1 ? Int(args[1]) ?? 1 : 1
    guard let n = getenv("LISTEN_FDS").flatMap({ Int32(String(cString: $0)) }),
          getenv("LISTEN_PID").map({ String(cString: $0) }) == String(getpid()) else {
        writeAll(2, "porter-test-handler: no LISTEN_FDS for this pid\n")
        exit(3)
    }
    let text = report()
    var served = 0
    while count == 0 || served < count {
        var fds = (0..<n).map { pollfd(fd: 3 + $0, events: Int16(POLLIN), revents: 0) }
        if poll(&fds, nfds_t(fds.count), -1) < 0 { continue }
        for p in fds where p.revents & Int16(POLLIN) != 0 {
            let c = porter_accept4(p.fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
            if c < 0 { continue }
            writeAll(c, "accepted-on \(p.fd)\n" + text)
            close(c)
            served += 1
        }
    }

case "hold":
    let n = getenv("LISTEN_FDS").flatMap { Int32(String(cString: $0)) } ?? 1
    var open: [Int32] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        var fds = (0..<n).map { pollfd(fd: 3 + $0, events: Int16(POLLIN), revents: 0) }
            + open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        if poll(&fds, nfds_t(fds.count), -1) < 0 { continue }
        for p in fds where p.revents != 0 {
            if p.fd < 3 + n {
                let c = porter_accept4(p.fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
                if c >= 0 { open.append(c) }
            } else if read(p.fd, &buf, buf.count) <= 0 {
                close(p.fd)
                open.removeAll { $0 == p.fd }
            }
        }
    }

case "udp":
    var from = sockaddr_storage()
    var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
    var buf = [UInt8](repeating: 0, count: 2048)
    let n = withUnsafeMutablePointer(to: &from) { fp in
        fp.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(0, &buf, buf.count, 0, $0, &len) }
    }
    guard n >= 0 else { exit(4) }
    var reply = "got \(String(decoding: buf[0..<n], as: UTF8.self))\n" + report()
    if reply.utf8.count > 60000 { reply = String(reply.prefix(60000)) }
    _ = reply.withCString { s in
        withUnsafePointer(to: &from) { fp in
            fp.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(1, s, strlen(s), 0, $0, len) }
        }
    }

case "echo":
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(0, &buf, buf.count)
        if n <= 0 { break }
        _ = write(1, buf, n)
    }

case "exit":
    exit(Int32(args.count > 1 ? args[1] : "0") ?? 0)

case "crash":
    signal(SIGSEGV, SIG_DFL)
    kill(getpid(), SIGSEGV)

case "sleep":
    if args.contains("--ignore-term") { signal(SIGTERM, SIG_IGN) }
    if let i = args.firstIndex(of: "--pidfile"), i + 1 < args.count {
        let fd = porter_open(args[i + 1] + ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        writeAll(fd, "\(getpid())\n")
        close(fd)
        rename(args[i + 1] + ".tmp", args[i + 1])
    }
    while true { pause() }

case "say":
    let text = args.dropFirst().joined(separator: " ")
    writeAll(1, text + "\n")
    writeAll(2, text + " (stderr)\n")

default:
    writeAll(2, "porter-test-handler: unknown mode \(mode)\n")
    exit(2)
}
