import Glibc
import PorterCore
import PorterSys

/// Live reload (SIGHUP). All or nothing: the whole directory is read and
/// validated again, every new address is bound, and only when all of that
/// worked does anything running change. Listening sockets are handed on by
/// address, so a socket that a unit still asks for is never closed and no
/// connection is refused or reset; running processes finish under the
/// definition they started with.
extension Supervisor {
    /// The listening sockets that a reload may hand on, by what they are
    /// bound to; whatever nobody takes is closed once the reload is done.
    struct Handover {
        struct Held {
            var fd: FileDescriptor
            /// The configuration the socket was last shaped by.
            var config: SocketConfig
            /// RemoveOnStop= of the unit that had it: whether its file goes with it.
            var removeFile: Bool
        }
        var pool: [Listen.Endpoint: Held] = [:]
        /// What each socket unit of the new configuration listens on.
        var fds: [UnitName: [FileDescriptor]] = [:]
        /// Sockets this reload made, with their Unix paths: closed (and
        /// removed) again if the reload is refused.
        var made: [(fd: FileDescriptor, path: String?)] = []
        /// Units still waiting for an address in use (not an error: they
        /// waited before the reload too).
        var stillWaiting: [UnitName: SocketConfig] = [:]
        /// Kept sockets whose unit now asks for other options: reshaped
        /// at commit, when nothing can refuse the reload any more.
        var reshape: [(fd: FileDescriptor, listen: Listen, from: SocketConfig, to: SocketConfig)] = []
    }

    /// How a reload went, for `porter reload` to tell its caller.
    struct ReloadOutcome {
        var ok = false
        /// The summary line ("configuration reloaded in 48ms: ...", or why it was refused).
        var summary = ""
        /// Every error and warning, as logged.
        var problems: [String] = []
    }

    @discardableResult
    func reload(_ reason: String) -> ReloadOutcome {
        var outcome = ReloadOutcome()
        func say(_ level: LogLevel, _ line: String) {
            Log.write(level, line)
            if level >= .warning { outcome.problems.append(line) }
        }
        guard !stopping else {
            outcome.summary = "porter is stopping, not reloading"
            Log.info("\(reason): stopping, not reloading")
            return outcome
        }
        guard let place else {
            outcome.summary = "nothing to reload"
            return outcome
        }
        managerReloading()
        defer {
            managerReloaded(outcome.ok ? "reloaded" : "reload refused, still serving the previous configuration")
            if outcome.ok { stats.porter.reloadsOK += 1 } else { stats.porter.reloadsFailed += 1 }
        }
        let began = MonotonicClock.now()
        func refuse(_ why: String) -> ReloadOutcome {
            outcome.summary = "reload refused: \(why); nothing changed, still serving the previous configuration"
            Log.error("\(reason): " + outcome.summary)
            return outcome
        }
        guard let config = Commands.load(place, host, environment: porterEnvironment) else {
            return refuse("cannot read \(place.description)")
        }
        for n in config.notes { Log.info("reload: " + n) }
        let newSettings = Commands.loadSettings(place)
        for d in newSettings.diagnostics { say(d.severity == .error ? .error : .warning, "reload: " + d.description) }
        let prep = Preparation(config, host: host, environment: porterEnvironment, reuse: currentPrepared())
        let problems = config.diagnostics + prep.diagnostics
        let errors = problems.filter { $0.severity == .error }.count + newSettings.diagnostics.filter { $0.severity == .error }.count
        for d in problems { say(d.severity == .error ? .error : .warning, "reload: " + d.description) }
        guard errors == 0 else {
            return refuse("\(errors) error\(errors == 1 ? "" : "s")")
        }
        var handover: Handover
        switch bind(config) {
        case .success(let h): handover = h
        case .failure(let d):
            say(.error, "reload: \(d.description)")
            return refuse("a socket could not be opened")
        }
        let diff = ConfigurationDiff(old: runningFingerprints(), new: Self.fingerprints(of: config))
        commit(config, prep, &handover)
        adopt(newSettings.settings)
        outcome.ok = true
        outcome.summary = "configuration reloaded in \((MonotonicClock.now() - began).porterDescription): \(diff.summary)"
        Log.info("\(reason): " + outcome.summary)
        // As after start-up: the heap the second parse needed goes back,
        // and so do the mappings of the parser's code (page-cache pages,
        // mapped again by the next reload).
        Processes.releaseStartupMemory()
        return outcome
    }

    /// Every unit porter runs now, with its file's fingerprint.
    func runningFingerprints() -> [UnitName: UInt64] {
        var f: [UnitName: UInt64] = [:]
        for s in sockets {
            f[s.config.name] = s.config.fingerprint
            if let t = s.template { f[t.config.name] = t.config.fingerprint }
        }
        for r in bindRetries.values { f[r.config.name] = r.config.fingerprint }
        for s in services where !s.retired { f[s.prepared.config.name] = (s.next ?? s.prepared).config.fingerprint }
        for p in paths {
            f[p.config.name] = p.config.fingerprint
            if let t = p.template { f[t.config.name] = t.config.fingerprint }
        }
        return f
    }

    static func fingerprints(of config: Configuration) -> [UnitName: UInt64] {
        var f: [UnitName: UInt64] = [:]
        for s in config.sockets { f[s.name] = s.fingerprint }
        for (name, s) in config.services { f[name] = s.fingerprint }
        for p in config.paths { f[p.name] = p.fingerprint }
        return f
    }

    /// What was resolved for each service that runs: kept by a reload for
    /// units whose file did not change.
    func currentPrepared() -> [UnitName: PreparedService] {
        var r: [UnitName: PreparedService] = [:]
        for s in sockets { if let t = s.template { r[t.config.name] = t } }
        for s in services where !s.retired { r[s.prepared.config.name] = s.next ?? s.prepared }
        for p in paths { if let t = p.template { r[t.config.name] = t } }
        return r
    }

    /// Finds or binds a socket for every listen line of `config`. A
    /// socket porter already has for the same address is taken over (with
    /// a note when the unit now asks for other socket options, which only a
    /// new socket would get); anything else is bound now, while the old
    /// sockets still listen. Any failure undoes what was made.
    func bind(_ config: Configuration) -> Result<Handover, Diagnostic> {
        var h = Handover()
        for s in sockets {
            for (fd, listen) in zip(s.fds, s.config.listens) {
                h.pool[listen.endpoint] = Handover.Held(fd: fd, config: s.config, removeFile: s.config.removeOnStop)
            }
        }
        for socket in config.sockets {
            var fds: [FileDescriptor] = []
            var taken: [(Listen.Endpoint, Handover.Held)] = []
            var failure: OpenFailure? = nil
            let owner = owner(of: socket)
            for listen in socket.listens {
                if let old = h.pool.removeValue(forKey: listen.endpoint) {
                    taken.append((listen.endpoint, old))
                    fds.append(old.fd)
                    if old.config.shape != socket.shape { h.reshape.append((old.fd, listen, old.config, socket)) }
                    continue
                }
                let opened: Result<FileDescriptor, OpenFailure>
                switch owner {
                case .success(let o): opened = open(listen, of: socket, owner: o)
                case .failure(let f): opened = .failure(f)
                }
                switch opened {
                case .success(let fd):
                    fds.append(fd)
                    h.made.append((fd, listen.address.unixPath))
                case .failure(let f):
                    failure = f
                }
                if failure != nil { break }
            }
            guard let failure else {
                h.fds[socket.name] = fds
                continue
            }
            if failure.inUse, bindRetries[socket.name] != nil {
                // Waited before the reload and waits on: the sockets it took
                // go back, the ones made for it close again.
                for (endpoint, old) in taken { h.pool[endpoint] = old }
                h.reshape.removeAll { r in taken.contains { $0.1.fd.rawValue == r.fd.rawValue } }
                let madeHere = Set(fds.map(\.rawValue)).subtracting(taken.map(\.1.fd.rawValue))
                for (fd, path) in h.made where madeHere.contains(fd.rawValue) {
                    fd.close()
                    if let path { UnixSocketFile.removeSocketFile(path) }
                }
                h.made.removeAll { madeHere.contains($0.fd.rawValue) }
                h.stillWaiting[socket.name] = socket
                continue
            }
            undo(h)
            return .failure(failure.diagnostic)
        }
        return .success(h)
    }

    /// A refused reload leaves nothing of what it made.
    private func undo(_ h: Handover) {
        for (fd, path) in h.made {
            fd.close()
            if let path { UnixSocketFile.removeSocketFile(path) }
        }
    }

    /// Applies a configuration that has been validated and bound. Nothing
    /// here can fail.
    private func commit(_ config: Configuration, _ prep: Preparation, _ h: inout Handover) {
        activation = (config, prep)
        let now = MonotonicClock.now()
        let newSockets = Set(config.sockets.map(\.name))

        // Sockets: removed ones stop being watched (their fds close below,
        // unless another unit took them); kept ones take their new
        // definition; new ones join.
        for s in sockets where !newSockets.contains(s.config.name) {
            unwatch(socket: s)
            _ = s.instances?.machine.handle(.stop)
            socketIndex[s.config.name] = nil
            sockets.remove(s.id)
        }
        for (name, _) in bindRetries where !newSockets.contains(name) { bindRetries[name] = nil }
        for socket in config.sockets {
            if let waiting = h.stillWaiting[socket.name] {
                bindRetries[socket.name]?.config = waiting
                continue
            }
            guard let fds = h.fds[socket.name] else { continue }
            bindRetries[socket.name] = nil
            if let id = socketIndex[socket.name], let s = sockets[id] {
                update(s, socket, fds, prep)
            } else {
                install(socket, fds)
            }
        }

        // Accept=no services: removed ones stop (and go once their run has
        // ended), kept ones take their sockets and definition, new ones join.
        let newServices = Set(config.passedSockets.keys)
        for s in services where !s.retired && !newServices.contains(s.prepared.config.name) {
            retire(s, now: now)
        }
        for name in newServices.sorted() {
            guard let id = serviceIndex[name], let s = services[id], let p = prep.services[name] else { continue }
            update(s, p, passed: config.passedSockets[name] ?? [])
        }
        installedServices = Set(services.filter { !$0.retired }.map(\.prepared.config.name))
        if let d = ensureNotifySocket(prep) { Log.error(d.description) }
        for d in installServices() { Log.write(d.severity == .error ? .error : .warning, d.description) }

        // Path units: removed ones stop watching, changed ones watch anew
        // (keeping their queue of per-file jobs), new ones join.
        let newPaths = Dictionary(uniqueKeysWithValues: config.paths.map { ($0.name, $0) })
        for p in paths where newPaths[p.config.name] == nil { removePath(p) }
        if !config.paths.isEmpty, let d = ensureInotify() { Log.error(d.description) }
        for path in config.paths {
            if let id = pathIndex[path.name], let old = paths[id] {
                let template = path.accept ? prep.services[path.activates] : nil
                if old.config.fingerprint == path.fingerprint && old.config.accept == path.accept {
                    if let template { old.queue?.template = template }
                    continue
                }
                // Changed: watched anew, under the same id (its running jobs
                // report to it), keeping the queue of per-file jobs.
                for c in old.config.conditions.indices { dropWatches(old, c) }
                let rt = PathRuntime(id: id, config: path, template: template, queue: old.queue, timers: timers)
                paths[id] = rt
                for d in startWatching(rt, now: now) { Log.warning(d.description) }
            } else if let rt = addPath(path, prep) {
                for d in startWatching(rt, now: now) { Log.warning(d.description) }
            }
        }
        // Which path units start which service, from scratch.
        for s in services { s.paths.removeAll() }
        for p in paths {
            guard let link = p.link else { continue }
            link.service = serviceIndex[p.config.activates]
            if let s = link.service.flatMap({ services[$0] }) { s.paths.append(p.id) }
        }

        for r in h.reshape {
            let file = "\(r.to.sources.at(r.listen.line)): \(r.listen.kind.rawValue)"
            let later = Listener.reshape(r.fd, listen: r.listen, from: r.from, to: r.to) { Log.warning("\(file): \($0)") }
            if !later.isEmpty {
                Log.warning("\(file)=\(r.listen.address): \(later.map { $0 + "=" }.joined(separator: ", ")) changed; the listening socket is kept (so no connection is refused) and this applies when porter restarts")
            }
        }
        // What nobody took over closes now, after the new sockets listen;
        // its file goes with RemoveOnStop=, as when systemd stops a socket.
        for (endpoint, old) in h.pool {
            old.fd.close()
            if old.removeFile, case .unixPath(let path) = endpoint.address { UnixSocketFile.removeSocketFile(path) }
        }
        h.pool.removeAll()
        closeUnusedJournals()
        // Banner files were read again: an admin edits them and reloads.
        for s in sockets where !s.config.banners.isEmpty || !s.banners.isEmpty { loadBanners(s) }
        releaseActivation()
        // A pause outlives a reload, but not its unit.
        paused = paused.filter { knows($0) }
        // So are its counts: porter's memory follows the units it has.
        stats.units = stats.units.filter { UnitName.parse($0.key).map { knows($0) } ?? false }
        refreshActivation(now: now)
    }

    /// A socket unit that stays: its new definition, its (possibly new)
    /// listeners, and its watch as its mode says.
    private func update(_ s: SocketRuntime, _ socket: SocketConfig, _ fds: [FileDescriptor], _ prep: Preparation) {
        unwatch(socket: s)
        s.config = socket
        s.fds = fds
        if let kind = socket.internalService {
            if case .internal(let link) = s.handler, link.service == kind {
                if link.machine.maxConnections != socket.maxConnections { accept(s, .limit(socket.maxConnections)) }
            } else {
                // Another built-in, or none before: connections of the old
                // handler finish under it; the count starts again.
                s.handler = SocketRuntime.handler(s.id, socket, nil, timers: timers)
            }
        } else {
            guard let template = prep.services[socket.activates] else { return }
            let proxied = !socket.accept && template.config.proxyTo != nil
            switch (s.handler, socket.accept, proxied) {
            case (.instances(let i), true, _):
                i.template = template
                if i.machine.maxConnections != socket.maxConnections { _ = i.machine.handle(.limit(socket.maxConnections)) }
            case (.service, false, false):
                break
            case (.proxy(let link), false, true):
                if link.machine.maxConnections != socket.maxConnections { accept(s, .limit(socket.maxConnections)) }
            case (.instances, false, _), (.service, true, _), (.service, false, true), (.proxy, true, _), (.proxy, false, false),
                 (.internal, _, _):
                // Accept=, ProxyTo= or InternalService= changed: a new
                // handler (instances and relays running from before
                // finish; the count starts again).
                s.handler = SocketRuntime.handler(s.id, socket, socket.accept ? template : nil, proxied: proxied, timers: timers)
            }
        }
        applyFilters(s)
        switch s.handler {
        case .instances, .proxy, .internal:
            // porter accepts: non-blocking, watched while below the limit.
            for fd in fds { try? fd.setNonBlocking(true) }
            watchAccepting(s)
        case .service:
            // Accept=no: the service's update watches it.
            let nonBlocking = prep.services[socket.activates]?.config.nonBlocking ?? false
            for fd in fds { try? fd.setNonBlocking(nonBlocking) }
        }
    }

    /// An Accept=no service that stays: its sockets now, and its new
    /// definition at once when it is not running, at its next start otherwise.
    private func update(_ s: ServiceRuntime, _ p: PreparedService, passed names: [UnitName]) {
        if p !== s.prepared && p !== s.next {
            if p.journal == nil { p.journal = s.prepared.journal }
            if s.machine.pid == nil {
                s.prepared = p
                s.next = nil
                s.machine.adopt(p.config.policy)
            } else {
                s.next = p
            }
        }
        for t in s.triggers { if let t = sockets[t], t.service == s.id { unwatch(socket: t) } }
        let runtimes = names.compactMap { socketIndex[$0].flatMap { sockets[$0] } }
        let triggers = runtimes.filter { $0.config.activates == s.prepared.config.name }
        s.triggers = triggers.map(\.id)
        // ProxyTo= added or removed: the sockets are porter's, or the
        // service's at its next start; relays under way finish either way.
        let proxied = p.config.proxyTo != nil
        s.passed = proxied ? [] : runtimes.flatMap(\.passed)
        if proxied, s.proxy == nil { s.proxy = ServiceProxy() }
        if !proxied, let px = s.proxy, !px.busy { s.proxy = nil }
        for t in triggers {
            t.service = s.id
            if t.proxy != nil { continue }  // porter accepts on it, whatever the service does
            switch s.machine.state {
            case .listening: watch(socket: t)
            case .running, .freezing:
                if s.machine.policy.idleTimeout != nil { watch(socket: t, activityOf: s.id) }
            case .starting, .stopping, .waitingRestart, .holdingOff, .stopped, .remaining: break
            }
        }
    }

    /// A service the new configuration no longer has: stopped as at
    /// shutdown (KillSignal=, then FinalKillSignal= after TimeoutStopSec=),
    /// and removed once its run has ended.
    private func retire(_ s: ServiceRuntime, now: Instant) {
        s.retired = true
        serviceIndex[s.prepared.config.name] = nil
        s.next = nil
        perform(s.machine.handle(.stop, now: now), service: s, now: now)
        // Its sockets are gone or belong to another service now.
        s.triggers = []
        s.paths = []
        removeIfDone(s)
    }

    /// A retired service whose run has ended leaves the table.
    func removeIfDone(_ s: ServiceRuntime) {
        guard s.retired, s.mainWatch == nil, s.control == nil else { return }
        switch s.machine.state {
        case .running, .freezing, .stopping, .starting: return
        case .listening, .waitingRestart, .holdingOff, .stopped, .remaining: break
        }
        // KillMode=none left it running: nothing of porter's stays with it.
        for (pid, id) in servicePIDs where id == s.id { servicePIDs[pid] = nil }
        for stored in s.stored { stored.fd.close() }
        s.stored.removeAll()
        services.remove(s.id)
        closeUnusedJournals()
    }

    /// Journal pipes of units a reload removed, once no unit and no
    /// running process of theirs uses them.
    func closeUnusedJournals() {
        var used = Set<ObjectIdentifier>()
        for p in currentPrepared().values { if let j = p.journal { used.insert(ObjectIdentifier(j)) } }
        for s in services { if let j = s.prepared.journal { used.insert(ObjectIdentifier(j)) } }
        for (_, inst) in instances { if let j = inst.journal { used.insert(ObjectIdentifier(j)) } }
        journals.removeAll { j in
            guard !used.contains(ObjectIdentifier(j)) else { return false }
            j.flush()
            unregister(j.read, token: j.token)
            j.close()
            return true
        }
    }
}
