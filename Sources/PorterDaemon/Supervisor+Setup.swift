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
    /// The texts of each socket's Banner=, BannerSuccess=, BannerFail=.
    var banners: [UnitName: Banners] = [:]

    /// With `unused`, services no socket activates are checked too (for
    /// `porter check`). A service in `reuse` whose file has not changed
    /// keeps what was resolved for it (a reload).
    init(_ config: Configuration, host: HostFacts, environment: [String: String], unused: Bool = false,
         reuse: [UnitName: PreparedService] = [:]) {
        let all = unused ? config.services.merging(config.unusedServices) { a, _ in a } : config.services
        let shared = PreparedService.Shared()
        for name in all.keys.sorted() {
            if let old = reuse[name], old.config.fingerprint == all[name]!.fingerprint {
                services[name] = old
                continue
            }
            switch PreparedService.prepare(all[name]!, host: host, porterEnvironment: environment, shared: shared) {
            case .success(let p):
                services[name] = p
                if case .failure(let why)? = p.proxyAddress {
                    diagnostics.append(Diagnostic(.warning, in: p.config.sources, line: p.config.proxyToLine, key: "ProxyTo",
                        "\(why); each connection will be closed with this reason until a reload resolves it"))
                }
                // Not an error: the program may be installed before the first connection.
                if let exe = p.shared?.executable, p.executable(exe) == nil || !Files.isExecutable(p.executable(exe)!) {
                    diagnostics.append(Diagnostic(.warning, in: p.config.sources, line: p.config.execStartLine, key: "ExecStart",
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
        for s in config.sockets where !s.banners.isEmpty {
            banners[s.name] = Supervisor.readBanners(s) { key, why in
                diagnostics.append(Diagnostic(.warning, in: s.sources, line: nil, key: key, why))
            }
        }
    }
}

/// Why a socket unit could not be opened, and whether trying again later
/// may work (its address was in use).
struct OpenFailure: Error {
    var diagnostic: Diagnostic
    var inUse = false
    init(_ diagnostic: Diagnostic, inUse: Bool = false) {
        self.diagnostic = diagnostic
        self.inUse = inUse
    }
}

/// A socket unit whose address was in use: when to try again.
struct BindRetry {
    static let first = Duration.seconds(1)
    static let cap = Duration.seconds(60)
    var config: SocketConfig
    var at: Instant
    var delay: Duration
}

extension Supervisor {
    /// Opens every socket of `config` and starts watching. Units that fail
    /// (a bind error, an unknown SocketUser=) are reported and skipped; the
    /// rest run. An address in use (an orphan of a killed porter still
    /// listening, another program) is retried with back-off. Returns the
    /// problems.
    public func activate(_ config: Configuration) -> [Diagnostic] {
        let prep = Preparation(config, host: host, environment: porterEnvironment)
        activation = (config, prep)
        var problems = prep.diagnostics
        let now = MonotonicClock.now()

        for socket in config.sockets where !prep.refusedSockets.contains(socket.name) {
            guard socket.internalService != nil || prep.services[socket.activates] != nil else { continue }
            switch preopened.removeValue(forKey: socket.name) ?? open(socket) {
            case .success(let fds):
                install(socket, fds)
            case .failure(let failure):
                problems.append(failure.diagnostic)
                if failure.inUse {
                    bindRetries[socket.name] = BindRetry(config: socket, at: now + BindRetry.first, delay: BindRetry.first)
                    problems.append(Diagnostic(.warning, file: socket.name.description,
                        "address in use; trying again in \(BindRetry.first.porterDescription), with back-off up to \(BindRetry.cap.porterDescription)"))
                }
            }
        }
        // Before anything can start: a path unit whose condition already
        // holds starts its service now, and a READY=1 sent before the
        // socket is bound would be lost (cupsd started by cups.path).
        if let d = ensureNotifySocket(prep) { problems.append(d) }
        problems += installServices()
        let (added, pathProblems) = addPaths(config, prep)
        problems += pathProblems
        // An upgrade: every unit and child as the old image left them,
        // before anything is looked at or started.
        restoreUnits()
        problems += watchPaths(added)
        // Sockets opened early whose units were refused after all.
        for (name, opened) in preopened {
            guard case .success(let fds) = opened else { continue }
            for fd in fds { fd.close() }
            for l in config.socketsRead[name]?.listens ?? [] {
                if let path = l.address.unixPath { UnixSocketFile.removeSocketFile(path) }
            }
        }
        preopened.removeAll()
        releaseActivation()
        return problems
    }

    /// The sd_notify socket, made once some service may use it.
    func ensureNotifySocket(_ prep: Preparation) -> Diagnostic? {
        guard notify == nil, prep.services.values.contains(where: { $0.config.effectiveNotifyAccess != .none }) else { return nil }
        do {
            let n = try NotifySocket(name: "porter-notify-\(Processes.currentPID)")
            _ = try register(n.fd, .notify)
            notify = n
            return nil
        } catch {
            return Diagnostic(.error, file: "NOTIFY_SOCKET", "cannot create it: \(error); sd_notify will not reach porter")
        }
    }

    /// The configuration is kept only while some socket waits for its
    /// address: otherwise every unit's parsed text would stay in memory
    /// for good (2.8 MB with 1 000 units).
    func releaseActivation() {
        guard bindRetries.isEmpty else { return }
        activation = nil
        openedPorts.removeAll()
    }

    /// A socket whose listeners are open joins the running set; an
    /// Accept=yes one is watched at once.
    func install(_ socket: SocketConfig, _ fds: [FileDescriptor]) {
        if socket.internalService != nil {
            // Served by porter itself: non-blocking, watched at once.
            for fd in fds { try? fd.setNonBlocking(true) }
            let id = sockets.insert { SocketRuntime(id: $0, config: socket, fds: fds, template: nil, timers: timers) }
            socketIndex[socket.name] = id
            applyFilters(sockets[id]!)
            loadBanners(sockets[id]!)
            watch(socket: sockets[id]!)
            return
        }
        guard let (_, prep) = activation, let service = prep.services[socket.activates] else { return }
        let proxied = !socket.accept && service.config.proxyTo != nil
        if !socket.accept, service.config.nonBlocking || proxied {
            for fd in fds { try? fd.setNonBlocking(true) }
        }
        let id = sockets.insert {
            SocketRuntime(id: $0, config: socket, fds: fds, template: socket.accept ? service : nil, proxied: proxied, timers: timers)
        }
        let rt = sockets[id]!
        socketIndex[socket.name] = id
        applyFilters(rt)
        loadBanners(rt)
        if !socket.symlinks.isEmpty { Listener.makeSymlinks(socket) { Log.warning("\(socket.name): \($0)") } }
        // porter accepts itself: for every connection, or for a proxied service.
        if socket.accept { watch(socket: rt) }
    }

    /// Creates the runtime of every Accept=no service whose sockets are
    /// all open and that does not run yet; one still waiting for an
    /// address in use is started once it is bound.
    func installServices() -> [Diagnostic] {
        guard let (config, prep) = activation else { return [] }
        var problems: [Diagnostic] = []
        for (name, passedNames) in config.passedSockets.sorted(by: { $0.key < $1.key }) where !installedServices.contains(name) {
            guard let prepared = prep.services[name] else { continue }
            let indices = passedNames.compactMap { socketIndex[$0].flatMap { sockets[$0] } }
            guard indices.count == passedNames.count else {
                let missing = passedNames.filter { socketIndex[$0] == nil }
                if !missing.contains(where: { bindRetries[$0] != nil }) {
                    installedServices.insert(name)  // never: reported once
                    problems.append(Diagnostic(.error, file: name.description,
                        "not started: \(missing.map(\.description).joined(separator: ", ")) could not be opened"))
                    // Its other sockets would hold clients in a backlog nobody
                    // reads: closed, and said so.
                    for s in indices where s.config.activates == name {
                        close(socket: s)
                        problems.append(Diagnostic(.error, file: s.name, "closed: \(name) cannot start without \(missing.map(\.description).joined(separator: ", "))"))
                    }
                }
                continue
            }
            installedServices.insert(name)
            let triggers = indices.filter { $0.config.activates == name }
            // A proxied service gets no sockets: porter keeps them and relays.
            let proxied = prepared.config.proxyTo != nil
            let id = services.insert {
                ServiceRuntime(id: $0, prepared: prepared, triggers: triggers.map(\.id), passed: proxied ? [] : indices.flatMap(\.passed), timers: timers)
            }
            serviceIndex[name] = id
            if proxied { services[id]!.proxy = ServiceProxy() }
            for t in triggers { t.service = id }
            for t in triggers { watch(socket: t) }
        }
        return problems
    }

    /// Closes a socket's listeners for good, removing its Unix files when
    /// `removeFiles` (a unit that cannot run; RemoveOnStop= at shutdown).
    func close(socket s: SocketRuntime, removeFiles: Bool = true) {
        unwatch(socket: s)
        for fd in s.fds { fd.close() }
        s.fds.removeAll()
        guard removeFiles else { return }
        for l in s.config.listens {
            if let path = l.address.unixPath { UnixSocketFile.removeSocketFile(path) }
        }
        if !s.config.symlinks.isEmpty && s.config.removeOnStop { Listener.removeSymlinks(s.config) }
    }

    /// A retry of an address that was in use came due.
    func retryBinds(now: Instant) {
        for (name, retry) in bindRetries where retry.at <= now {
            switch open(retry.config) {
            case .success(let fds):
                bindRetries[name] = nil
                Log.info("\(name): address free at last, listening")
                install(retry.config, fds)
                for d in installServices() { Log.write(d.severity == .error ? .error : .warning, d.description) }
            case .failure(let failure) where failure.inUse:
                let delay = min(retry.delay * 2, BindRetry.cap)
                bindRetries[name] = BindRetry(config: retry.config, at: now + delay, delay: delay)
                Log.debug("\(name): address still in use, next try in \(delay.porterDescription)")
            case .failure(let failure):
                bindRetries[name] = nil
                Log.error("\(failure.diagnostic.description); no longer trying")
                for d in installServices() { Log.write(d.severity == .error ? .error : .warning, d.description) }
            }
        }
        releaseActivation()
    }

    /// Binds and listens on every socket, before the services are read.
    /// Failures are kept and reported by `activate` with the rest.
    public func openListeners(_ sockets: [UnitName: SocketConfig]) {
        // A unit that repeats another's address is refused by the pairing;
        // binding it would only probe (or fail on) the first one's socket.
        let duplicates = Set(ListenConflict.duplicates(Array(sockets.values)).map(\.unit))
        // A Unix path is bound (and its parents made) only once the unit is
        // known to run: nothing of a unit refused later may touch the file
        // system. IP and abstract sockets leave no trace when closed.
        let early = sockets.filter { !$0.value.listens.contains { $0.address.unixPath != nil } }
        for name in early.keys.sorted() where !duplicates.contains(name) {
            preopened[name] = open(sockets[name]!)
        }
    }

    func open(_ socket: SocketConfig) -> Result<[FileDescriptor], OpenFailure> {
        let resolved: Listener.Owner
        switch owner(of: socket) {
        case .success(let o): resolved = o
        case .failure(let f): return .failure(f)
        }
        var fds: [FileDescriptor] = []
        for listen in socket.listens {
            switch open(listen, of: socket, owner: resolved) {
            case .success(let fd): fds.append(fd)
            case .failure(let f):
                for fd in fds { fd.close() }
                return .failure(f)
            }
        }
        return .success(fds)
    }

    /// SocketUser= and SocketGroup= resolved.
    func owner(of socket: SocketConfig) -> Result<Listener.Owner, OpenFailure> {
        let file = socket.name.description
        var owner: Listener.Owner = (nil, nil)
        if let u = socket.socketUser {
            guard let user = Users.user(u) else { return .failure(OpenFailure(Diagnostic(.error, file: file, key: "SocketUser", "no such user '\(u)'"))) }
            owner.uid = user.uid
        }
        if let g = socket.socketGroup {
            guard let gid = Users.groupID(g) else { return .failure(OpenFailure(Diagnostic(.error, file: file, key: "SocketGroup", "no such group '\(g)'"))) }
            owner.gid = gid
        }
        return .success(owner)
    }

    /// Binds and listens on one Listen*= line.
    func open(_ listen: Listen, of socket: SocketConfig, owner: Listener.Owner) -> Result<FileDescriptor, OpenFailure> {
        let (sourceFile, sourceLine) = socket.sources.locate(listen.line)
        let file = "\(sourceFile):\(sourceLine ?? 0)"
        // Accept=yes: porter accepts until EAGAIN. Accept=no: the service
        // gets the socket as NonBlocking= says (systemd clears O_NONBLOCK
        // unless asked; `activate` sets it), and porter only ever polls it.
        let options = Listener.Options(nonBlocking: socket.accept, owner: owner)
        if let fd = adoption?.take(listen) {
            // Handed to porter already bound and listening: taken as it is.
            try? fd.setNonBlocking(socket.accept)
            openedPorts[ListenConflict.key(listen)] = file
            Log.debug("\(file): \(listen.kind.rawValue)=\(listen.address): adopted fd \(fd.rawValue) (\(adoption!.origin))")
            return .success(fd)
        }
        do {
            let fd = try Listener.open(listen, config: socket, options: options) { warning in
                Log.warning("\(file): \(listen.kind.rawValue): \(warning)")
            }
            openedPorts[ListenConflict.key(listen)] = file
            return .success(fd)
        } catch {
            var error = error
            if error.errno == EADDRINUSE, let other = openedPorts[ListenConflict.key(listen)] {
                // Not another process: one of porter's own units has it.
                error.hint = "\(other) listens there too"
            }
            return .failure(OpenFailure(Diagnostic(.error, in: socket.sources, line: listen.line, key: listen.kind.rawValue, "\(listen.address): \(error)"),
                                        inUse: error.errno == EADDRINUSE))
        }
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
        managerStopping()
        for s in services {
            perform(s.machine.handle(.stop, now: now), service: s, now: now)
        }
        stopping = true
        // New requests find no socket (its file goes); answers under way finish.
        closeOwnSockets()
        // Relayed connections end with porter (their backends are stopping).
        closeRelays(now: now)
        for f in Array(flows.values) { closeFlow(f, why: nil, now: now) }
        closeBuiltins()
        bindRetries.removeAll()
        stopLeftovers()
        stopPaths()
        for s in sockets {
            _ = s.instances?.machine.handle(.stop)
            close(socket: s, removeFiles: s.config.removeOnStop)
        }
        for (pid, _) in instances { handle(instance: pid, .stop, now: now) }
        for (pid, id) in servicePIDs where services[id]?.machine.state ?? .stopped == .stopped {
            servicePIDs[pid] = nil  // KillMode=none
        }
    }
}
