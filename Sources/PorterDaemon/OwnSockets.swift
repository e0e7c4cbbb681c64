import Glibc
import PorterCore
import PorterSys

/// The sockets porter listens on for itself: the control socket (Unix,
/// mode 0600, in porter's runtime directory) and the metrics endpoint
/// (TCP, only when `MetricsListen=` asks for it).
enum OwnSockets {
    /// `porter/control` in porter's runtime directory: /run as root,
    /// $XDG_RUNTIME_DIR otherwise; a per-user directory under /tmp when
    /// neither is there (so two users' porters do not meet).
    static func defaultControlPath(environment env: [String: String]) -> String {
        if geteuid() == 0 { return "/run/porter/control" }
        if let xdg = env["XDG_RUNTIME_DIR"], xdg.hasPrefix("/") { return xdg + "/porter/control" }
        return "/tmp/porter-\(geteuid())/control"
    }

    static func controlPath(_ settings: PorterSettings, override: String?, environment: [String: String]) -> String? {
        if let override { return override == "none" ? nil : override }
        switch settings.controlSocket {
        case .standard: return defaultControlPath(environment: environment)
        case .path(let p): return p
        case .disabled: return nil
        }
    }

    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    /// Binds the control socket. A live socket at the path is another
    /// porter (or something else) that owns it: refused, naming the
    /// process; a stale one is replaced. The directory is made (0755, or
    /// 0700 under /tmp) and must belong to root or porter's user and be
    /// writable by nobody else. The caller owns the returned fd.
    static func openControl(_ path: String) throws(Refusal) -> FileDescriptor {
        let parent = SafePath.parent(of: path)
        let mode: UInt32 = parent.hasPrefix("/tmp/") ? 0o700 : 0o755
        let dir: FileDescriptor
        do { dir = try SafePath.directory(parent, trust: .porter, create: mode) } catch {
            throw Refusal(description: "\(path): \(error)")
        }
        var st = stat()
        let owned = fstat(dir.rawValue, &st) == 0 && (st.st_uid == 0 || st.st_uid == geteuid()) && st.st_mode & 0o022 == 0
        dir.close()
        guard owned else {
            throw Refusal(description: "\(path): \(parent) must belong to root or uid \(geteuid()) and be writable by nobody else")
        }
        let fd: FileDescriptor
        do { fd = try Socket.open(family: AF_UNIX, type: Int32(SOCK_STREAM.rawValue), nonBlocking: true) } catch {
            throw Refusal(description: "\(path): \(error)")
        }
        do {
            try UnixSocketFile.bind(fd, SocketAddress(unix: Array(path.utf8), abstract: false), path: path, directoryMode: mode,
                                    socketMode: 0o600, owner: (nil, nil), trust: .porter,
                                    boundInode: QueuedWork.boundFileInode)
            try Socket.listen(fd, backlog: 64)
        } catch let error as ListenError {
            fd.close()
            if error.errno == EADDRINUSE {
                throw Refusal(description: "\(path): in use by \(holder(of: path)); another porter runs with this control socket (stop it, or give this one --control PATH)")
            }
            throw Refusal(description: "\(path): \(error)")
        } catch {
            fd.close()
            throw Refusal(description: "\(path): \(error)")
        }
        return fd
    }

    /// Who listens on a Unix socket: SO_PEERCRED of a connection to it
    /// names the process that called listen(2).
    static func holder(of path: String) -> String {
        guard let fd = try? Socket.open(family: AF_UNIX, type: Int32(SOCK_STREAM.rawValue), nonBlocking: false) else { return "a live socket" }
        defer { fd.close() }
        guard (try? Socket.connect(fd, SocketAddress(unix: Array(path.utf8), abstract: false))) != nil,
              let cred = Socket.peerCredentials(fd), cred.pid > 0 else { return "a live socket" }
        let cmd = (try? Files.read("/proc/\(cred.pid)/cmdline", limit: 4096))?
            .split(separator: "\0").prefix(4).joined(separator: " ") ?? ""
        return "pid \(cred.pid)" + (cmd.isEmpty ? "" : " (\(cmd))")
    }

    /// The metrics endpoint's listener, non-blocking. The caller owns it.
    static func openMetrics(_ address: ListenAddress) throws(ListenError) -> FileDescriptor {
        let a: SocketAddress
        do { a = try SocketAddress(address) } catch { throw ListenError(step: error.call, errno: error.errno) }
        let fd: FileDescriptor
        do { fd = try Socket.open(family: a.family, type: Int32(SOCK_STREAM.rawValue), nonBlocking: true) } catch {
            throw ListenError(step: "socket", errno: error.errno)
        }
        do {
            try Socket.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            try Socket.bind(fd, a)
            try Socket.listen(fd, backlog: 64)
        } catch {
            fd.close()
            throw ListenError(step: error.call, errno: error.errno)
        }
        return fd
    }
}

/// What porter holds of its own sockets.
final class OwnEndpoints {
    var controlPath: String?
    var control: FileDescriptor?
    var controlToken: UInt64 = 0
    var metrics: (fd: FileDescriptor, address: ListenAddress)?
    var metricsToken: UInt64 = 0
    /// `--pidfile`: the path and the locked fd, held until porter exits.
    var pidFile: (path: String, fd: FileDescriptor)?
    var nextExchange: UInt64 = 1
    /// Relays and flows share the ids.
    var nextRelay: UInt64 = 1
    /// At Exchange.maxOpen: the listeners are not watched until one ends.
    var acceptPaused = false
    /// Refused control requests are logged at most this often.
    var refusalLog = LogRateLimit(interval: .seconds(10), burst: 5)
}

/// What porter counts: per unit (by name, so the counts survive a reload
/// that changes the unit) and of itself. The metrics endpoint and `porter
/// status` read it; an upgrade hands it on.
final class Stats {
    var units: [String: UnitCounters] = [:]
    var porter = PorterCounters()
    /// When this porter started, on the monotonic clock (an upgrade keeps it).
    var started = MonotonicClock.now()

    func count(_ unit: String, _ body: (inout UnitCounters) -> Void) {
        body(&units[unit, default: UnitCounters()])
    }

    func exited(_ unit: String, instance: String, pid: Int32, _ status: ExitStatus, success: Bool, now: Instant) {
        count(unit) {
            $0.lastExit = LastExit(pid: pid, unit: instance, status: status.description, success: success, at: now)
            if !success { $0.failures += 1 }
        }
    }
}
