import Glibc
import PorterCore
import PorterSys

/// Credentials resolved for every service of a configuration; what `porter
/// check` and `porter run` both do before anything is opened.
struct Preparation {
    var services: [UnitName: PreparedService] = [:]
    var diagnostics: [Diagnostic] = []
    /// Sockets that cannot run because their service was refused.
    var refusedSockets: Set<UnitName> = []
    /// Path units that cannot run because their service was refused.
    var refusedPaths: Set<UnitName> = []

    /// With `unused`, services no socket activates are checked too (for `porter check`).
    init(_ config: Configuration, host: HostFacts, environment: [String: String], unused: Bool = false) {
        let all = unused ? config.services.merging(config.unusedServices) { a, _ in a } : config.services
        let shared = PreparedService.Shared()
        for name in all.keys.sorted() {
            switch PreparedService.prepare(all[name]!, host: host, porterEnvironment: environment, shared: shared) {
            case .success(let p):
                services[name] = p
                // Not an error: the program may be installed before the first connection.
                if let exe = p.shared?.executable, p.executable(exe) == nil || !Files.isExecutable(p.executable(exe)!) {
                    diagnostics.append(Diagnostic(.warning, file: name.description, key: "ExecStart",
                        "\(exe) is not an executable file (yet); starts will fail until it is"))
                }
            case .failure(let d):
                diagnostics.append(d)
                for s in config.sockets where s.activates == name {
                    refusedSockets.insert(s.name)
                    diagnostics.append(Diagnostic(.error, file: s.name.description, "refused because \(name) has errors"))
                }
                for p in config.paths where p.activates == name {
                    refusedPaths.insert(p.name)
                    diagnostics.append(Diagnostic(.error, file: p.name.description, "refused because \(name) has errors"))
                }
            }
        }
    }
}

extension Supervisor {
    /// Opens every socket of `config` and starts watching. Units that fail
    /// (a bind error, an unknown SocketUser=) are reported and skipped; the
    /// rest run. Returns the problems.
    public func activate(_ config: Configuration) -> [Diagnostic] {
        let prep = Preparation(config, host: host, environment: porterEnvironment)
        var problems = prep.diagnostics
        var socketIndex: [UnitName: Int] = [:]

        for socket in config.sockets where !prep.refusedSockets.contains(socket.name) {
            guard let service = prep.services[socket.activates] else { continue }
            let opened = preopened.removeValue(forKey: socket.name) ?? open(socket)
            if case .success(let fds) = opened, !socket.accept, service.config.nonBlocking {
                for fd in fds { try? fd.setNonBlocking(true) }
            }
            switch opened {
            case .success(let fds):
                let rt = SocketRuntime(config: socket, fds: fds)
                if socket.accept {
                    rt.template = service
                    rt.acceptMachine = AcceptMachine(name: socket.name.description, maxConnections: socket.maxConnections)
                }
                socketIndex[socket.name] = sockets.count
                sockets.append(rt)
            case .failure(let d):
                problems.append(d)
            }
        }

        for (name, passedNames) in config.passedSockets.sorted(by: { $0.key < $1.key }) {
            guard let prepared = prep.services[name] else { continue }
            let indices = passedNames.compactMap { socketIndex[$0] }
            guard indices.count == passedNames.count else {
                let missing = passedNames.filter { socketIndex[$0] == nil }.map(\.description).joined(separator: ", ")
                problems.append(Diagnostic(.error, file: name.description, "not started: \(missing) could not be opened"))
                continue
            }
            let triggers = indices.filter { sockets[$0].config.activates == name }
            var passed: [(fd: FileDescriptor, name: String)] = []
            for i in indices {
                for fd in sockets[i].fds { passed.append((fd, sockets[i].config.fileDescriptorName)) }
            }
            let rt = ServiceRuntime(prepared: prepared, triggers: triggers, passed: passed)
            for t in triggers { sockets[t].service = services.count }
            services.append(rt)
            for t in triggers { watch(socket: t) }
        }
        for (i, s) in sockets.enumerated() where s.acceptMachine != nil { watch(socket: i) }
        problems += activatePaths(config, prep)
        if services.contains(where: { $0.prepared.config.effectiveNotifyAccess != .none }) {
            do {
                let n = try NotifySocket(name: "porter-notify-\(Processes.currentPID)")
                _ = try register(n.fd, .notify)
                notify = n
            } catch {
                problems.append(Diagnostic(.error, file: "NOTIFY_SOCKET", "cannot create it: \(error); sd_notify will not reach porter"))
            }
        }
        // Sockets opened early whose units were refused after all.
        for (name, opened) in preopened {
            guard case .success(let fds) = opened else { continue }
            for fd in fds { fd.close() }
            for l in config.socketsRead[name]?.listens ?? [] {
                if let path = l.address.unixPath { try? Files.unlink(path) }
            }
        }
        preopened.removeAll()
        return problems
    }

    /// Binds and listens on every socket, before the services are read.
    /// Failures are kept and reported by `activate` with the rest.
    public func openListeners(_ sockets: [UnitName: SocketConfig]) {
        for name in sockets.keys.sorted() {
            preopened[name] = open(sockets[name]!)
        }
    }

    private func open(_ socket: SocketConfig) -> Result<[FileDescriptor], Diagnostic> {
        let file = socket.name.description
        var owner: (uid: UInt32?, gid: UInt32?) = (nil, nil)
        if let u = socket.socketUser {
            guard let user = Users.user(u) else { return .failure(Diagnostic(.error, file: file, key: "SocketUser", "no such user '\(u)'")) }
            owner.uid = user.uid
        }
        if let g = socket.socketGroup {
            guard let gid = Users.groupID(g) else { return .failure(Diagnostic(.error, file: file, key: "SocketGroup", "no such group '\(g)'")) }
            owner.gid = gid
        }
        // Accept=yes: porter accepts until EAGAIN. Accept=no: the service
        // gets the socket as NonBlocking= says (systemd clears O_NONBLOCK
        // unless asked; `activate` sets it), and porter only ever polls it.
        let options = Listener.Options(nonBlocking: socket.accept, owner: owner)
        var fds: [FileDescriptor] = []
        for listen in socket.listens {
            do {
                let fd = try Listener.open(listen, config: socket, options: options) { warning in
                    Log.warning("\(file):\(listen.line): \(listen.kind.rawValue): \(warning)")
                }
                fds.append(fd)
            } catch {
                for fd in fds { fd.close() }
                return .failure(Diagnostic(.error, file: file, line: listen.line, key: listen.kind.rawValue, "\(listen.address): \(error)"))
            }
        }
        return .success(fds)
    }

    /// Graceful stop: close the listeners (removing Unix socket files with
    /// RemoveOnStop=), send every running service its KillSignal=, escalate
    /// after TimeoutStopSec=, and let the loop end when every child is gone.
    func beginStop(_ reason: String) {
        guard !stopping else {
            Log.info("\(reason): already stopping, waiting for \(instances.count + servicePIDs.count) processes")
            return
        }
        let now = MonotonicClock.now()
        Log.info("\(reason): stopping (\(servicePIDs.count) services and \(instances.count) instances running)")
        for (i, s) in services.enumerated() {
            perform(s.machine.handle(.stop, now: now), service: i, now: now)
        }
        stopping = true
        stopPaths()
        for (i, s) in sockets.enumerated() {
            _ = s.acceptMachine?.handle(.stop)
            unwatch(socket: i)
            for fd in s.fds { fd.close() }
            s.fds.removeAll()
            if s.config.removeOnStop {
                for l in s.config.listens {
                    if let path = l.address.unixPath { try? Files.unlink(path) }
                }
            }
        }
        for (pid, inst) in instances {
            let (signals, killAt) = inst.kill.begin(pid, now: now)
            if signals.isEmpty {
                instances[pid] = nil  // KillMode=none: left running
                continue
            }
            instances[pid]?.stopping = true
            instances[pid]?.killAt = killAt
            for s in signals { Signals.send(s.signal, to: s.pid, group: s.group) }
        }
        for (pid, i) in servicePIDs where services[i].machine.state == .stopped {
            servicePIDs[pid] = nil  // KillMode=none
        }
    }
}
