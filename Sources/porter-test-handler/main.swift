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
//   notify-serve        sd_notify READY=1 and STATUS=serving, then serve forever
//   notify-never        never READY=1; wait for a signal
//   watchdog LOG N      append "pid WATCHDOG_USEC WATCHDOG_PID" to LOG, READY=1,
//                       N pings 100 ms apart, then hang
//   mainpid             start a child that serves one connection from fd 3,
//                       tell porter MAINPID=child, and exit
//   fdstore             first run: park a pipe holding "state-PID" with porter
//                       (FDSTORE=1, FDNAME=state) and answer "stored ...";
//                       a run that receives it answers "restored <content>"
//   job LOG [OPTIONS]   a path-triggered run: append one line "pid INSTANCE
//                       TRIGGER_UNIT TRIGGER_PATH STDIN" to LOG (one write),
//                       then --sleep MS, --remove (unlink TRIGGER_PATH),
//                       --fail (exit 1); --instance I names the instance
//   notify-big          send a 5000-byte STATUS= message, then STATUS=after; wait
//   notify-fds N        FDSTORE=1 with N pipe ends in one message, then
//                       STATUS=sent; wait
//   forking DIR [--double] [--no-pidfile] [--late] [--lie PID]
//                       a daemon that backgrounds itself: start a new-session
//                       child (with --double through a middle process that
//                       exits), which writes DIR/daemon.pid (--late: 300 ms
//                       after the first process exited; --lie: PID instead of
//                       its own), appends its pid to DIR/starts and answers
//                       each connection on fd 3 with "daemon PID ppid PPID";
//                       the first process exits 0 once the file is there
//   load OUT N PORT...  a client, not a service: N connections one after
//                       another, round robin over the TCP ports on 127.0.0.1,
//                       each read to its end; a connection that fails or
//                       reads nothing counts as a failure. Progress and the
//                       result go to OUT ("done N failures F", one line per 100)
//   backend ADDR [--delay MS] [--udp]
//                       a daemon that binds ADDR itself (127.0.0.1:PORT or
//                       /path), MS after it starts, for ProxyTo= tests; each
//                       connection (one process each) reads a command line:
//                       "echo" copies everything back until end of file,
//                       "sum" reads to end of file and answers "bytes N sum S",
//                       "send N" writes N pattern bytes, "header" answers the
//                       first 120 bytes it received as hex (a PROXY header),
//                       "reset" closes with a reset, "pid" answers its pid;
//                       --udp: a UDP socket answering "PID: <datagram>"
//   peers FILE          take the fds from LISTEN_FDS (stream or datagram)
//                       and serve forever: append "peer IP:PORT" to FILE
//                       for every connection accepted or datagram received,
//                       answer "hello" (a connection is then closed)
//   notify-reload LOG HOW  Type=notify-reload: READY=1, then answer each
//                       connection on fd 3 with "generation N"; on SIGHUP
//                       HOW decides: "good" says RELOADING=1 with
//                       MONOTONIC_USEC=now, waits 200 ms, appends "reloaded
//                       PID" to LOG, bumps the generation, READY=1; "stale"
//                       stamps MONOTONIC_USEC=1; "bare" sends no stamp;
//                       "silent" says nothing. SIGUSR1: RELOADING=1 by
//                       itself; SIGUSR2: READY=1
//   hold-conn MS        inetd style: write "held PID", keep the connection MS
//                       milliseconds, write "released", exit 0
import CPorter
import Glibc
import PorterTestSupport

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
    getrlimit(Int32(RLIMIT_CORE.rawValue), &limit)
    lines.append("core \(limit.rlim_cur) \(limit.rlim_max)")
    errno = 0
    lines.append("nice \(getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0))")
    lines.append("oom_score_adj \(readText("/proc/self/oom_score_adj").trimmingCharacters())")
    lines.append("timerslack \(readText("/proc/self/timerslack_ns").trimmingCharacters())")
    // As porter left it: this program ignores SIGPIPE itself later.
    let sigIgn = initialSignals.first { $0.hasPrefix("SigIgn") } ?? ""
    lines.append("sigpipe \((UInt64(sigIgn.dropFirst(7).trimmingCharacters(), radix: 16) ?? 0) & (1 << (UInt64(SIGPIPE) - 1)) != 0 ? "ignored" : "default")")
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

extension StringProtocol {
    func trimmingCharacters() -> String { String(self.filter { $0 != " " && $0 != "\n" && $0 != "\t" }) }
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

/// sd_notify(3), written out: one datagram to $NOTIFY_SOCKET, with fds
/// passed as SCM_RIGHTS when given.
func sdNotify(_ text: String, fds: [Int32] = []) {
    guard let target = getenv("NOTIFY_SOCKET").map({ String(cString: $0) }) else { return }
    let s = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    defer { close(s) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    var path = Array(target.utf8)
    if path.first == UInt8(ascii: "@") { path[0] = 0 }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.enumerated() { raw[i] = b } }
    let addrLen = socklen_t(MemoryLayout<sa_family_t>.size + path.count)
    var bytes = Array(text.utf8)
    // struct cmsghdr { size_t len; int level; int type; } + the fds, 8-aligned.
    let dataLen = fds.count * 4
    var control = [UInt8](repeating: 0, count: fds.isEmpty ? 0 : 16 + ((dataLen + 7) & ~7))
    if !fds.isEmpty {
        withUnsafeBytes(of: UInt64(16 + dataLen)) { for i in 0..<8 { control[i] = $0[i] } }
        withUnsafeBytes(of: Int32(SOL_SOCKET)) { for i in 0..<4 { control[8 + i] = $0[i] } }
        withUnsafeBytes(of: Int32(SCM_RIGHTS)) { for i in 0..<4 { control[12 + i] = $0[i] } }
        for (k, fd) in fds.enumerated() { withUnsafeBytes(of: fd) { for i in 0..<4 { control[16 + 4 * k + i] = $0[i] } } }
    }
    _ = bytes.withUnsafeMutableBytes { body in
        control.withUnsafeMutableBytes { ctl in
            withUnsafeMutablePointer(to: &addr) { ap in
                var iov = iovec(iov_base: body.baseAddress, iov_len: body.count)
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    var msg = msghdr()
                    msg.msg_name = UnsafeMutableRawPointer(ap)
                    msg.msg_namelen = addrLen
                    msg.msg_iov = iovp
                    msg.msg_iovlen = 1
                    if !fds.isEmpty {
                        msg.msg_control = ctl.baseAddress
                        msg.msg_controllen = ctl.count
                    }
                    return sendmsg(s, &msg, 0)
                }
            }
        }
    }
}

/// Accepts one connection on fd 3 (LISTEN_FDS).
func acceptOne() -> Int32 {
    while true {
        let c = porter_accept4(3, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        if c >= 0 { return c }
        if errno != EINTR && errno != EAGAIN { return -1 }
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

case "peers":
    let n = getenv("LISTEN_FDS").flatMap { Int32(String(cString: $0)) } ?? 1
    func text(_ from: sockaddr_storage) -> String {
        var host = [CChar](repeating: 0, count: 64)
        var port: UInt16 = 0
        var f = from
        withUnsafePointer(to: &f) { p in
            if from.ss_family == sa_family_t(AF_INET) {
                p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    inet_ntop(AF_INET, &a, &host, 64)
                    port = UInt16(bigEndian: sin.pointee.sin_port)
                }
            } else {
                p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                    var a = sin.pointee.sin6_addr
                    inet_ntop(AF_INET6, &a, &host, 64)
                    port = UInt16(bigEndian: sin.pointee.sin6_port)
                }
            }
        }
        return "\(String(cString: host)):\(port)"
    }
    let log = porter_open(args[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    var buf = [UInt8](repeating: 0, count: 2048)
    while true {
        var fds = (0..<n).map { pollfd(fd: 3 + $0, events: Int16(POLLIN), revents: 0) }
        if poll(&fds, nfds_t(fds.count), -1) < 0 { continue }
        for p in fds where p.revents != 0 {
            var from = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            var type: Int32 = 0
            var tlen = socklen_t(4)
            getsockopt(p.fd, SOL_SOCKET, SO_TYPE, &type, &tlen)
            if type == Int32(SOCK_DGRAM.rawValue) {
                let r = withUnsafeMutablePointer(to: &from) { fp in
                    fp.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(p.fd, &buf, buf.count, 0, $0, &len) }
                }
                guard r >= 0 else { continue }
                writeAll(log, "peer \(text(from))\n")
                _ = "hello".withCString { s in
                    withUnsafePointer(to: &from) { fp in
                        fp.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(p.fd, s, 5, 0, $0, len) }
                    }
                }
            } else {
                let c = withUnsafeMutablePointer(to: &from) { fp in
                    fp.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(p.fd, $0, &len) }
                }
                guard c >= 0 else { continue }
                writeAll(log, "peer \(text(from))\n")
                writeAll(c, "hello")
                close(c)
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

case "job":
    func option(_ name: String) -> String? {
        args.firstIndex(of: name).flatMap { $0 + 1 < args.count ? args[$0 + 1] : nil }
    }
    let env = { (k: String) in getenv(k).map { String(cString: $0) } ?? "-" }
    var input: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 256)
    while input.count < 256 {
        let n = read(0, &buf, buf.count)
        if n <= 0 { break }
        input += buf[0..<n]
    }
    let text = String(decoding: input, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "-"
    let instance = option("--instance") ?? "-"
    let fd = porter_open(args[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    writeAll(fd, "\(getpid()) \(instance) \(env("TRIGGER_UNIT")) \(env("TRIGGER_PATH")) \(text.isEmpty ? "-" : text)\n")
    close(fd)
    if let ms = option("--sleep").flatMap({ UInt32($0) }) { usleep(ms * 1000) }
    if args.contains("--remove"), let path = getenv("TRIGGER_PATH") { unlink(path) }
    exit(args.contains("--fail") ? 1 : 0)

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

case "notify-serve":
    sdNotify("READY=1\nSTATUS=serving")
    while true {
        let c = acceptOne()
        if c < 0 { break }
        writeAll(c, "accepted-on 3\n" + report())
        close(c)
    }

case "notify-reload":
    let logPath = args.count > 1 ? args[1] : "/dev/null"
    let how = args.count > 2 ? args[2] : "good"
    var mask = sigset_t()
    sigemptyset(&mask)
    for sig in [SIGHUP, SIGUSR1, SIGUSR2] { sigaddset(&mask, sig) }
    sigprocmask(SIG_BLOCK, &mask, nil)
    let sfd = signalfd(-1, &mask, Int32(SFD_CLOEXEC))
    var generation = 1
    sdNotify("READY=1")
    while true {
        var fds = [pollfd(fd: 3, events: Int16(POLLIN), revents: 0), pollfd(fd: sfd, events: Int16(POLLIN), revents: 0)]
        if poll(&fds, 2, -1) < 0 { continue }
        if fds[1].revents != 0 {
            var info = signalfd_siginfo()
            guard read(sfd, &info, MemoryLayout<signalfd_siginfo>.size) > 0 else { continue }
            switch Int32(info.ssi_signo) {
            case SIGHUP:
                var ts = timespec()
                clock_gettime(CLOCK_MONOTONIC, &ts)
                let now = Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
                switch how {
                case "good":
                    sdNotify("RELOADING=1\nMONOTONIC_USEC=\(now)")
                    usleep(200_000)
                    let fd = porter_open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
                    writeAll(fd, "reloaded \(getpid())\n")
                    close(fd)
                    generation += 1
                    sdNotify("READY=1")
                case "stale": sdNotify("RELOADING=1\nMONOTONIC_USEC=1\nREADY=1")
                case "bare": sdNotify("RELOADING=1\nREADY=1")
                default: break
                }
            case SIGUSR1: sdNotify("RELOADING=1")
            case SIGUSR2: sdNotify("READY=1")
            default: break
            }
        }
        if fds[0].revents != 0 {
            let c = porter_accept4(3, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
            if c >= 0 {
                writeAll(c, "generation \(generation)\n")
                close(c)
            }
        }
    }

case "notify-never":
    sdNotify("STATUS=still starting")
    while true { pause() }

case "watchdog":
    // Die of porter's SIGABRT at once, without the Swift runtime's backtracer.
    signal(SIGABRT, SIG_DFL)
    let logPath = args.count > 1 ? args[1] : "/dev/null"
    let pings = args.count > 2 ? Int(args[2]) ?? 2 : 2
    let line = "\(getpid()) \(getenv("WATCHDOG_USEC").map { String(cString: $0) } ?? "-") \(getenv("WATCHDOG_PID").map { String(cString: $0) } ?? "-")\n"
    let fd = porter_open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    writeAll(fd, line)
    close(fd)
    sdNotify("READY=1")
    for _ in 0..<pings {
        usleep(100_000)
        sdNotify("WATCHDOG=1")
    }
    while true { pause() }

case "mainpid":
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup(CommandLine.arguments[0]), strdup("serve-inherited"), nil]
    guard posix_spawn(&pid, CommandLine.arguments[0], nil, nil, argv, environ) == 0 else { exit(5) }
    sdNotify("MAINPID=\(pid)\nREADY=1")
    usleep(100_000)  // let porter read the message while we are still its main process

case "forking":
    let dir = args[1]
    let double = args.contains("--double"), noFile = args.contains("--no-pidfile"), late = args.contains("--late")
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    posix_spawnattr_setflags(&attr, 0x80)  // POSIX_SPAWN_SETSID (glibc 2.26), which Swift does not import
    let rest = Array(args.dropFirst(1))
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup(CommandLine.arguments[0]), strdup(double ? "forking-middle" : "forking-daemon")]
        + rest.map { strdup($0) } + [nil]
    var pid: pid_t = 0
    guard posix_spawn(&pid, CommandLine.arguments[0], nil, &attr, argv, environ) == 0 else { exit(5) }
    if !noFile && !late {
        // As a well-behaved daemon: the parent exits once the PID file is written.
        for _ in 0..<500 where access(dir + "/daemon.pid", F_OK) != 0 { usleep(10_000) }
    }
    exit(0)

case "forking-middle":
    // The middle of a double fork: start the daemon, then leave.
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup(CommandLine.arguments[0]), strdup("forking-daemon")]
        + args.dropFirst(1).map { strdup($0) } + [nil]
    var pid: pid_t = 0
    guard posix_spawn(&pid, CommandLine.arguments[0], nil, nil, argv, environ) == 0 else { exit(5) }
    usleep(50_000)
    exit(0)

case "forking-daemon":
    let dir = args[1]
    let me = getpid()
    var written = String(me)
    if let i = args.firstIndex(of: "--lie"), i + 1 < args.count { written = args[i + 1] }
    if args.contains("--late") { usleep(300_000) }
    if !args.contains("--no-pidfile") {
        let tmp = dir + "/daemon.pid.tmp"
        let fd = porter_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        writeAll(fd, written + "\n")
        close(fd)
        rename(tmp, dir + "/daemon.pid")
    }
    let log = porter_open(dir + "/starts", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    writeAll(log, "\(me)\n")
    close(log)
    while true {
        let c = acceptOne()
        if c < 0 { pause(); continue }
        writeAll(c, "daemon \(me) ppid \(getppid())\n")
        close(c)
    }

case "serve-inherited":
    let c = acceptOne()
    writeAll(c, "accepted-on 3\n" + report())
    close(c)

case "fdstore":
    let names = getenv("LISTEN_FDNAMES").map { String(cString: $0) }?.split(separator: ":").map(String.init) ?? []
    let c = acceptOne()
    if let k = names.firstIndex(of: "state") {
        var buf = [UInt8](repeating: 0, count: 256)
        let n = read(Int32(3 + k), &buf, buf.count)
        writeAll(c, "restored \(String(decoding: buf.prefix(max(n, 0)), as: UTF8.self))\n")
    } else {
        var p: [Int32] = [-1, -1]
        porter_pipe2(&p, O_CLOEXEC)
        writeAll(p[1], "state-\(getpid())")
        close(p[1])
        sdNotify("FDSTORE=1\nFDNAME=state", fds: [p[0]])
        writeAll(c, "stored state-\(getpid())\n")
    }
    close(c)

case "notify-big":
    sdNotify("STATUS=" + String(repeating: "x", count: 5000))
    sdNotify("STATUS=after")
    while true { pause() }

case "notify-fds":
    let count = args.count > 1 ? Int(args[1]) ?? 1 : 1
    var ends: [Int32] = []
    for _ in 0..<count {
        var p: [Int32] = [-1, -1]
        porter_pipe2(&p, O_CLOEXEC)
        ends.append(p[0])
        close(p[1])
    }
    sdNotify("FDSTORE=1\nFDNAME=many", fds: ends)
    sdNotify("STATUS=sent")
    while true { pause() }

case "load":
    let out = args[1]
    let total = Int(args[2]) ?? 0
    let ports = args.dropFirst(3).compactMap { UInt16($0) }
    var failures = 0
    var lastError = ""
    let progress = porter_open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    var buf = [UInt8](repeating: 0, count: 4096)
    for i in 0..<total {
        let port = ports[i % ports.count]
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var tv = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let c = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var got = 0
        if c == 0 {
            while true {
                let n = read(fd, &buf, buf.count)
                if n <= 0 {
                    if n < 0 { lastError = "read \(errno) on \(port)" }
                    break
                }
                got += n
            }
        } else {
            lastError = "connect \(errno) on \(port)"
        }
        close(fd)
        if c != 0 || got == 0 {
            failures += 1
            if got == 0 && c == 0 && lastError.isEmpty { lastError = "nothing read on \(port)" }
        }
        if (i + 1) % 100 == 0 { writeAll(progress, "progress \(i + 1) failures \(failures)\n") }
    }
    writeAll(progress, "done \(total) failures \(failures) \(lastError)\n")

case "backend":
    backend(args)

case "hold-conn":
    let ms = Int32(args.count > 1 ? args[1] : "500") ?? 500
    writeAll(1, "held \(getpid())\n")
    usleep(UInt32(ms) * 1000)
    writeAll(1, "released\n")

case "say":
    let text = args.dropFirst().joined(separator: " ")
    writeAll(1, text + "\n")
    writeAll(2, text + " (stderr)\n")

default:
    writeAll(2, "porter-test-handler: unknown mode \(mode)\n")
    exit(2)
}

/// The pattern byte at `offset` of a "send" stream (what tests check).
func patternByte(_ offset: Int) -> UInt8 { UInt8(truncatingIfNeeded: offset &* 31 &+ 7) }

func backend(_ args: [String]) {
    guard args.count > 1 else { exit(2) }
    let address = args[1]
    var delay: UInt32 = 0
    if let i = args.firstIndex(of: "--delay"), i + 1 < args.count { delay = UInt32(args[i + 1]) ?? 0 }
    let udp = args.contains("--udp")
    usleep(delay * 1000)
    let fd: Int32
    if address.hasPrefix("/") {
        fd = socket(AF_UNIX, udp ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue), 0)
        unlink(address)
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &a.sun_path) { raw in for (i, b) in address.utf8.prefix(107).enumerated() { raw[i] = b } }
        guard withUnsafePointer(to: &a, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }) == 0 else { exit(4) }
    } else {
        let port = UInt16(address.split(separator: ":").last ?? "") ?? 0
        fd = socket(AF_INET, udp ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        guard withUnsafePointer(to: &a, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }) == 0 else { exit(4) }
    }
    writeAll(2, "backend \(getpid()) bound \(address)\n")
    if udp {
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            var from = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = withUnsafeMutablePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buf, buf.count, 0, $0, &len) } }
            if n < 0 { continue }
            let reply = Array("\(getpid()): ".utf8) + buf[0..<n]
            _ = withUnsafePointer(to: &from) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    reply.withUnsafeBytes { r in sendto(fd, r.baseAddress, r.count, 0, sa, len) }
                }
            }
        }
    }
    listen(fd, 512)
    signal(SIGCHLD, SIG_IGN)  // children reaped by the kernel
    while true {
        let c = accept(fd, nil, nil)
        if c < 0 { continue }
        if fork() == 0 {
            close(fd)
            serveBackendConnection(c)
            exit(0)
        }
        close(c)
    }
}

func serveBackendConnection(_ c: Int32) {
    var buf = [UInt8](repeating: 0, count: 1 << 16)
    var received: [UInt8] = []
    var header: [UInt8] = []
    // A PROXY header first, if there is one, then the command line up to
    // its newline (the rest is data).
    let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    func more() -> Bool {
        let n = read(c, &buf, buf.count)
        if n <= 0 { return false }
        received += buf[0..<n]
        return true
    }
    // Enough to tell: a v2 header is 16 bytes at least; anything that is
    // not a prefix of its signature is not one.
    while (received.isEmpty || (received.count < 16 && signature.starts(with: received.prefix(12)))) && more() {}
    if received.starts(with: signature), received.count >= 16 {
        let total = 16 + (Int(received[14]) << 8 | Int(received[15]))
        while received.count < total && more() {}
        header = Array(received.prefix(total))
        received.removeFirst(min(total, received.count))
    } else if received.starts(with: Array("PROXY ".utf8)) {
        while !received.contains(0x0A) && more() {}
        if let nl = received.firstIndex(of: 0x0A) {
            header = Array(received[...nl])
            received.removeFirst(nl + 1)
        }
    }
    while !received.contains(0x0A) && received.count < 4096 && more() {}
    guard let nl = received.firstIndex(of: 0x0A) else { return }
    let line = Array(received[..<nl])
    let rest = Array(received[(nl + 1)...])
    let command = String(decoding: line, as: UTF8.self)
    let words = command.split(separator: " ")
    switch words.first ?? "" {
    case "echo":
        if !rest.isEmpty { writeAll(c, String(decoding: rest, as: UTF8.self)) }
        while true {
            let n = read(c, &buf, buf.count)
            if n <= 0 { break }
            var done = 0
            while done < n { let w = buf.withUnsafeBytes { write(c, $0.baseAddress! + done, n - done) }; if w <= 0 { return }; done += w }
        }
    case "sum":
        var sum = WordSum()
        rest.withUnsafeBytes { sum.add($0) }
        while true {
            let n = read(c, &buf, buf.count)
            if n <= 0 { break }
            buf.withUnsafeBytes { sum.add(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        writeAll(c, sum.text + "\n")
    case "send":
        let total = Int(words.count > 1 ? words[1] : "0") ?? 0
        var sent = 0
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while sent < total {
            let n = min(chunk.count, total - sent)
            for i in 0..<n { chunk[i] = patternByte(sent + i) }
            var done = 0
            while done < n { let w = chunk.withUnsafeBytes { write(c, $0.baseAddress! + done, n - done) }; if w <= 0 { return }; done += w }
            sent += n
        }
    case "header":
        // What came before the command line: a PROXY header, if any.
        writeAll(c, header.prefix(120).map { String($0, radix: 16) }.joined(separator: " ") + "\n")
    case "reset":
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(c, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
    case "pid":
        writeAll(c, "\(getpid())\n")
    default:
        writeAll(c, "unknown \(command)\n")
    }
    close(c)
}
