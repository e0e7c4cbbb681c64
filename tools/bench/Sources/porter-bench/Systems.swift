import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A started system under test: its processes and its scratch directory.
struct Running {
    var pids: [pid_t]
    var dir: String

    func stop() { for p in pids { stopProcess(p) } }
    var alive: Bool { pids.allSatisfy(porter_bench.alive) }
}

/// One system the benchmark runs: a floor, a peer, or porter. Each scenario
/// asks it to start in one role; nil means it cannot play that role.
struct System {
    enum Kind { case floor, reference, peer, porter }
    let name: String
    let kind: Kind
    /// nil when usable, otherwise why not and how to install it.
    let unavailable: () -> String?
    let version: () -> String
    /// Per-connection service of `hello` on an address.
    var spawn: ((Address) -> Running?)? = nil
    /// Accept=no / wait service of `fdwait --pidfile P`.
    var cold: ((Address, String) -> Running?)? = nil
    /// `count` per-connection `hello` services on consecutive ports: writes
    /// the configuration and returns what starts the system, so the scale
    /// scenario times the start alone.
    var many: ((UInt16, Int) -> (() -> Running?)?)? = nil
    /// Whether the cold role execs the service in its own place (one start per trial).
    var oneShotCold = false
    /// A trigger that runs `stamp LOG NAME` once per file closed after
    /// writing in a directory: (directory, log).
    var path: ((String, String) -> Running?)? = nil
}

/// Makes a fresh scratch directory for one start.
func scratch(_ name: String) -> String {
    let dir = "\(Bench.work)/\(name)-\(Bench.nextID())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func start(_ name: String, _ argv: [String], environment: [String: String] = [:]) -> Running? {
    let dir = scratch(name)
    guard let pid = startProcess(argv, log: dir + "/\(name).log", environment: environment) else { return nil }
    return Running(pids: [pid], dir: dir)
}

func debVersion(_ package: String) -> String {
    let v = runCommand(["dpkg-query", "-W", "-f", "${Version}", package]).output
    return v.isEmpty || v.contains("no packages") ? "" : v
}

enum Systems {
    static var hello: String { Bench.build + "/hello" }
    static var fdwait: String { Bench.build + "/fdwait" }

    static var stamp: String { Bench.build + "/stamp" }

    static let all: [System] = [limitInproc, limitSpawn, xinetd, inetd, tcpserver, sdactivate, socat,
                                limitInotify, incron, inotifywait, porter]

    // MARK: path peers

    static let limitInotify = System(
        name: "floor-inotify", kind: .floor, unavailable: { nil },
        version: { "one inotify watch, posix_spawn per event, no queue or rescan" },
        path: { dir, logf in start("floor-inotify", [Bench.build + "/limit-inotify", dir, stamp, logf]) })

    /// incrond in the foreground on a private system table. It syslogs two
    /// lines per event with LOG_CONS; with nothing on /dev/log glibc writes
    /// them to /dev/console, a serial port on a VM, which throttles it many
    /// times over. So, as the shared bench harness does, it runs in a
    /// private mount namespace with a file bind-mounted over /dev/console.
    static let incron = System(
        name: "incron", kind: .peer,
        unavailable: {
            if which("incrond") == nil { return "not installed: apt-get install incron" }
            return getuid() == 0 ? nil : "needs root (a system table)"
        },
        version: { "incron \(debVersion("incron")) (every command through bash -c)" },
        path: { dir, logf in
            let d = scratch("incron")
            let fm = FileManager.default
            try? fm.createDirectory(atPath: d + "/incron.d", withIntermediateDirectories: true)
            try? fm.createDirectory(atPath: d + "/spool", withIntermediateDirectories: true)
            writeText(d + "/incron.conf", "system_table_dir = \(d)/incron.d\nuser_table_dir = \(d)/spool\nallowed_users = \(d)/incron.allow\ndenied_users = \(d)/incron.deny\nlockfile_dir = \(d)\nlockfile_name = incrond\n")
            writeText(d + "/incron.d/bench", "\(dir) IN_CLOSE_WRITE \(stamp) \(logf) $#\n")
            var argv = ["incrond", "-n", "-f", d + "/incron.conf"]
            if !fm.fileExists(atPath: "/dev/log"), which("unshare") != nil {
                writeText(d + "/console.log", "")
                argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        "mount --bind \"$1\" /dev/console && shift && exec \"$@\"", "sh", d + "/console.log"] + argv
            }
            guard let pid = startProcess(argv, log: d + "/incron.log") else { return nil }
            return Running(pids: [pid], dir: d)
        })

    /// The classic loop: inotifywait -m into a FIFO, bash reading it.
    static let inotifywait = System(
        name: "inotifywait loop", kind: .peer,
        unavailable: { which("inotifywait") == nil ? "not installed: apt-get install inotify-tools" : nil },
        version: { "inotify-tools \(debVersion("inotify-tools")), `inotifywait -m -e close_write` | bash `while read`" },
        path: { dir, logf in
            let d = scratch("inotifywait")
            let fifo = d + "/events"
            mkfifo(fifo, 0o600)
            guard let loop = startProcess(["bash", "-c", "exec <\"$1\"; while IFS= read -r f; do \"$2\" \"$3\" \"$f\"; done",
                                           "loop", fifo, stamp, logf], log: d + "/loop.log") else { return nil }
            guard let iw = startProcess(["inotifywait", "-m", "-q", "-e", "close_write", "--format", "%f", "-o", fifo, dir],
                                        log: d + "/inotifywait.log") else {
                stopProcess(loop)
                return nil
            }
            return Running(pids: [iw, loop], dir: d)
        })


    static let limitInproc = System(
        name: "limit-inproc", kind: .reference, unavailable: { nil },
        version: { "accept + write in-process (no spawn)" },
        spawn: { a in
            guard case .tcp = a else { return nil }
            return start("limit-inproc", [Bench.build + "/limit-inproc", "--listen", a.description])
        })

    static let limitSpawn = System(
        name: "floor", kind: .floor, unavailable: { nil },
        version: { "poll + accept + posix_spawn; --wait: vfork + exec with LISTEN_FDS" },
        spawn: { a in start("floor", [Bench.build + "/limit-spawn", "--listen", a.description, "--", hello]) },
        cold: { a, pidfile in start("floor", [Bench.build + "/limit-spawn", "--wait", "--listen", a.description, "--", fdwait, "--pidfile", pidfile]) },
        many: { port0, count in
            var argv = [Bench.build + "/limit-spawn"]
            for i in 0..<count { argv += ["--listen", "127.0.0.1:\(Int(port0) + i)"] }
            return { start("floor", argv + ["--", hello]) }
        })

    /// xinetd's defaults for the benchmarks: limits raised so it never
    /// throttles, no per-connection logging.
    static func xinetdDefaults(_ dir: String) -> String {
        """
        defaults
        {
        \tinstances      = UNLIMITED
        \tper_source     = UNLIMITED
        \tcps            = 1000000 1
        \tlog_type       = FILE \(dir)/services.log
        \tlog_on_success =
        \tlog_on_failure = HOST
        }

        """
    }

    static func xinetdConfig(_ dir: String, _ services: [(port: UInt16, wait: Bool, server: String, args: String)]) -> String {
        var c = xinetdDefaults(dir)
        for (i, s) in services.enumerated() {
            c += """
                service bench-\(i)
                {
                \ttype        = UNLISTED
                \tsocket_type = stream
                \tprotocol    = tcp
                \twait        = \(s.wait ? "yes" : "no")
                \tuser        = root
                \tbind        = 127.0.0.1
                \tport        = \(s.port)
                \tserver      = \(s.server)
                \(s.args.isEmpty ? "" : "\tserver_args = \(s.args)\n")}

                """
        }
        let path = dir + "/xinetd.conf"
        writeText(path, c)
        return path
    }

    static func prepareXinetd(_ services: [(port: UInt16, wait: Bool, server: String, args: String)]) -> () -> Running? {
        let dir = scratch("xinetd")
        let conf = xinetdConfig(dir, services)
        return {
            guard let pid = startProcess(["xinetd", "-dontfork", "-f", conf, "-filelog", dir + "/daemon.log"], log: dir + "/xinetd.log") else { return nil }
            return Running(pids: [pid], dir: dir)
        }
    }

    static func startXinetd(_ services: [(port: UInt16, wait: Bool, server: String, args: String)]) -> Running? {
        prepareXinetd(services)()
    }

    static let xinetd = System(
        name: "xinetd", kind: .peer,
        unavailable: {
            if which("xinetd") == nil { return "not installed: apt-get install xinetd" }
            return geteuid() == 0 ? nil : "needs root (its services run as user root)"
        },
        version: { "xinetd \(debVersion("xinetd"))" },
        spawn: { a in
            guard case .tcp(let p) = a else { return nil }
            return startXinetd([(p, false, hello, "")])
        },
        cold: { a, pidfile in
            guard case .tcp(let p) = a else { return nil }
            return startXinetd([(p, true, fdwait, "--pidfile \(pidfile)")])
        },
        many: { port0, count in prepareXinetd((0..<count).map { (port0 + UInt16($0), false, hello, "") }) })

    // OpenBSD inetd conflicts with xinetd as a Debian package, so it is used
    // unpacked (INETD_BIN, or the cache shared/bench's setup fills).
    static var inetdBinary: String? {
        if let env = ProcessInfo.processInfo.environment["INETD_BIN"], FileManager.default.isExecutableFile(atPath: env) { return env }
        let cache = (ProcessInfo.processInfo.environment["HOME"] ?? "/root") + "/.cache/porter-bench/openbsd-inetd/usr/sbin/inetd"
        if FileManager.default.isExecutableFile(atPath: cache) { return cache }
        return which("inetd")
    }

    static func prepareInetd(_ lines: [String]) -> () -> Running? {
        let dir = scratch("inetd")
        writeText(dir + "/inetd.conf", lines.joined(separator: "\n") + "\n")
        return {
            guard let bin = inetdBinary,
                  let pid = startProcess([bin, "-i", "-R", "1000000", dir + "/inetd.conf"], log: dir + "/inetd.log") else { return nil }
            return Running(pids: [pid], dir: dir)
        }
    }

    static func startInetd(_ lines: [String]) -> Running? { prepareInetd(lines)() }

    static func inetdLine(_ a: Address, wait: Bool, _ argv: [String]) -> String {
        let mode = (wait ? "wait" : "nowait") + ".1000000"
        let args = ([(argv[0] as NSString).lastPathComponent] + argv.dropFirst()).joined(separator: " ")
        switch a {
        case .tcp(let p): return "127.0.0.1:\(p)\tstream\ttcp4\t\(mode)\troot\t\(argv[0])\t\(args)"
        case .unix(let path): return "\(path)\tstream\tunix\t\(mode)\troot\t\(argv[0])\t\(args)"
        }
    }

    static let inetd = System(
        name: "openbsd-inetd", kind: .peer,
        unavailable: {
            if inetdBinary == nil {
                return "not found: it conflicts with xinetd as a package; unpack it with `apt-get download openbsd-inetd && dpkg-deb -x openbsd-inetd_*.deb ~/.cache/porter-bench/openbsd-inetd` or set INETD_BIN"
            }
            return geteuid() == 0 ? nil : "needs root (its services run as user root)"
        },
        version: { "openbsd-inetd \(debVersion("openbsd-inetd").isEmpty ? "(unpacked)" : debVersion("openbsd-inetd"))" },
        spawn: { a in startInetd([inetdLine(a, wait: false, [hello])]) },
        cold: { a, pidfile in startInetd([inetdLine(a, wait: true, [fdwait, "--pidfile", pidfile])]) },
        many: { port0, count in prepareInetd((0..<count).map { inetdLine(.tcp(port: port0 + UInt16($0)), wait: false, [hello]) }) })

    static func startTcpserver(_ ports: [UInt16]) -> Running? {
        let dir = scratch("tcpserver")
        var pids: [pid_t] = []
        for p in ports {
            guard let pid = startProcess(["tcpserver", "-q", "-H", "-R", "-l", "0", "-c", "1000", "-b", "1024", "127.0.0.1", String(p), hello], log: dir + "/tcpserver.log") else { break }
            pids.append(pid)
        }
        return Running(pids: pids, dir: dir)
    }

    static let tcpserver = System(
        name: "tcpserver", kind: .peer,
        unavailable: { which("tcpserver") == nil ? "not installed: apt-get install ucspi-tcp" : nil },
        version: { "ucspi-tcp \(debVersion("ucspi-tcp"))" },
        spawn: { a in
            guard case .tcp(let p) = a else { return nil }
            return startTcpserver([p])
        },
        // One process per socket: at most 64 (the idle scenario's 20), not 1000.
        many: { port0, count in count <= 64 ? { startTcpserver((0..<count).map { port0 + UInt16($0) }) } : nil })

    static let quietSystemd = ["SYSTEMD_LOG_LEVEL": "notice"]

    static let sdactivate = System(
        name: "systemd-socket-activate", kind: .peer,
        unavailable: { which("systemd-socket-activate") == nil ? "not installed: apt-get install systemd (only the standalone tool is used)" : nil },
        version: { runCommand(["systemd-socket-activate", "--version"]).output.split(separator: "\n").first.map(String.init) ?? "" },
        spawn: { a in start("sdactivate", ["systemd-socket-activate", "-l", a.description, "--accept", "--inetd", hello], environment: quietSystemd) },
        cold: { a, pidfile in start("sdactivate", ["systemd-socket-activate", "-l", a.description, fdwait, "--pidfile", pidfile], environment: quietSystemd) },
        many: { port0, count in
            var argv = ["systemd-socket-activate"]
            for i in 0..<count { argv += ["-l", "127.0.0.1:\(Int(port0) + i)"] }
            return { start("sdactivate", argv + ["--accept", "--inetd", hello], environment: quietSystemd) }
        },
        oneShotCold: true)

    static let socat = System(
        name: "socat", kind: .peer,
        unavailable: { which("socat") == nil ? "not installed: apt-get install socat" : nil },
        version: { runCommand(["socat", "-V"]).output.split(separator: "\n").first { $0.contains("version") }.map(String.init) ?? "socat" },
        spawn: { a in
            switch a {
            case .tcp(let p): return start("socat", ["socat", "TCP-LISTEN:\(p),bind=127.0.0.1,reuseaddr,fork,backlog=4096", "EXEC:\(hello)"])
            case .unix(let path): return start("socat", ["socat", "UNIX-LISTEN:\(path),fork,backlog=4096", "EXEC:\(hello)"])
            }
        },
        many: { port0, count in
            guard count <= 64 else { return nil }
            return {
                let dir = scratch("socat")
                var pids: [pid_t] = []
                for i in 0..<count {
                    if let pid = startProcess(["socat", "TCP-LISTEN:\(Int(port0) + i),bind=127.0.0.1,reuseaddr,fork", "EXEC:\(hello)"], log: dir + "/socat.log") { pids.append(pid) }
                }
                return Running(pids: pids, dir: dir)
            }
        })

    // porter on a generated unit directory.
    static func preparePorter(_ units: [(String, String)]) -> () -> Running? {
        let dir = scratch("porter")
        let conf = dir + "/units"
        try? FileManager.default.createDirectory(atPath: conf, withIntermediateDirectories: true)
        for (name, text) in units { writeText(conf + "/" + name, text) }
        return {
            guard let pid = startProcess([Bench.porter, "run", "--config-dir", conf, "--control", "none"], log: dir + "/porter.log") else { return nil }
            return Running(pids: [pid], dir: dir)
        }
    }

    static func startPorter(_ units: [(String, String)]) -> Running? { preparePorter(units)() }

    static func listen(_ a: Address) -> String { a.description }

    static let porter = System(
        name: "porter", kind: .porter,
        unavailable: { FileManager.default.isExecutableFile(atPath: Bench.porter) ? nil : "not built: \(Bench.porter)" },
        version: { runCommand([Bench.porter, "--version"]).output.trimmingCharacters(in: .whitespacesAndNewlines) },
        spawn: { a in
            startPorter([
                ("hello.socket", "[Socket]\nListenStream=\(listen(a))\nAccept=yes\nMaxConnections=1024\n"),
                ("hello@.service", "[Service]\nExecStart=\(hello)\nStandardInput=socket\nStandardOutput=socket\n"),
            ])
        },
        cold: { a, pidfile in
            startPorter([
                ("fdwait.socket", "[Socket]\nListenStream=\(listen(a))\n"),
                ("fdwait.service", "[Service]\nExecStart=\(fdwait) --pidfile \(pidfile)\n"),
            ])
        },
        many: { port0, count in
            var units: [(String, String)] = []
            for i in 0..<count {
                let n = String(format: "svc%04d", i)
                units.append(("\(n).socket", "[Socket]\nListenStream=127.0.0.1:\(Int(port0) + i)\nAccept=yes\n"))
                units.append(("\(n)@.service", "[Service]\nExecStart=\(hello)\nStandardInput=socket\nStandardOutput=socket\n"))
            }
            return preparePorter(units)
        },
        // Per-file jobs: one bench@NAME.service per file.
        path: { dir, logf in
            startPorter([
                ("bench.path", "[Path]\nDirectoryNotEmpty=\(dir)\nAccept=yes\n"),
                ("bench@.service", "[Service]\nExecStart=\(stamp) \(logf) %I\n"),
            ])
        })
}
