import Glibc
import PorterCore
import PorterSys

/// Path units: one inotify instance for all of them.
extension Supervisor {
    /// Sets up every path unit after the services: watches first, then the
    /// start-up check, so nothing that appears in between is missed.
    func activatePaths(_ config: Configuration, _ prep: Preparation) -> [Diagnostic] {
        let (added, problems) = addPaths(config, prep)
        return problems + watchPaths(added)
    }

    /// The path units join the table, not watched yet (an upgrade puts
    /// their queues back in between).
    func addPaths(_ config: Configuration, _ prep: Preparation) -> ([PathRuntime], [Diagnostic]) {
        guard !config.paths.isEmpty else { return ([], []) }
        if let d = ensureInotify() { return ([], [d]) }
        return (config.paths.compactMap { addPath($0, prep) }, [])
    }

    func watchPaths(_ added: [PathRuntime]) -> [Diagnostic] {
        let now = MonotonicClock.now()
        return added.flatMap { startWatching($0, now: now) }
    }

    /// The inotify instance, made when the first path unit needs it.
    func ensureInotify() -> Diagnostic? {
        guard inotify == nil else { return nil }
        do {
            let ino = try Inotify()
            inotifyToken = try register(ino.fd, .inotify)
            inotify = ino
            return nil
        } catch {
            return Diagnostic(.error, file: "inotify", "cannot create an inotify instance: \(error); no path unit is watched")
        }
    }

    /// A path unit joins the table, linked to what it starts; not watched yet.
    func addPath(_ config: PathConfig, _ prep: Preparation) -> PathRuntime? {
        var service: ServiceRuntime? = nil
        var template: PreparedService? = nil
        if config.accept {
            guard let t = prep.services[config.activates] else { return nil }
            template = t
        } else {
            guard let id = serviceIndex[config.activates], let s = services[id] else { return nil }
            service = s
        }
        let id = paths.insert { PathRuntime(id: $0, config: config, template: template, timers: timers) }
        let rt = paths[id]!
        pathIndex[config.name] = id
        if let service, let link = rt.link {
            link.service = service.id
            service.paths.append(id)
        }
        return rt
    }

    /// Makes a path unit's directories, watches them, then looks: anything
    /// that appears in between is seen by one or the other.
    func startWatching(_ rt: PathRuntime, now: Instant) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        if rt.config.makeDirectory {
            // Made component by component in verified parents: never
            // through a symlink someone else could have placed.
            for c in rt.config.conditions where c.kind != .exists && c.kind != .existsGlob {
                do { try SafePath.directory(c.path, trust: .porter, create: rt.config.directoryMode).close() } catch {
                    problems.append(Diagnostic(.warning, in: rt.config.sources, line: c.line, key: c.kind.rawValue,
                                               "MakeDirectory=: \(error)"))
                }
            }
        }
        for c in rt.config.conditions.indices { setUpWatches(rt, c) }
        if rt.queue != nil {
            scan(rt, now: now)
        } else {
            // Conditions already true at start-up trigger at once.
            checkStates(rt, now: now)
        }
        return problems
    }

    /// A reload removed the unit: its watches and directories go; jobs
    /// already running finish and are reaped (their owner is gone).
    func removePath(_ rt: PathRuntime) {
        for c in rt.config.conditions.indices { dropWatches(rt, c) }
        if let s = rt.link?.service.flatMap({ services[$0] }) { s.paths.removeAll { $0 == rt.id } }
        pathIndex[rt.config.name] = nil
        paths.remove(rt.id)
    }

    // MARK: Events

    /// One inotify record with its mask typed.
    struct InotifyEvent {
        var wd: Int32
        var mask: Inotify.Mask
        /// "" for the watched path itself or a name that is not UTF-8 (which
        /// no condition matches; the event still counts for the directory).
        var name: String
        /// The entry's name was not UTF-8: no unit can name such a file.
        var nameNotText = false
    }

    /// Everything waiting in the queue, 64 KiB per read.
    func inotifyEvents(_ inotify: Inotify) -> [InotifyEvent] {
        var events: [InotifyEvent] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { inotify.read(into: $0) }
            if n == 0 { break }
            for r in buffer.withUnsafeBytes({ InotifyRecords.parse(UnsafeRawBufferPointer(rebasing: $0[..<n])) }) {
                events.append(InotifyEvent(wd: r.wd, mask: Inotify.Mask(rawValue: r.mask), name: r.name ?? "", nameNotText: r.name == nil))
            }
        }
        return events
    }

    /// What one read of the inotify queue asks for, gathered so that each
    /// unit is looked at once per batch: a write seen as IN_CLOSE_WRITE and
    /// IN_ATTRIB is one change, not two runs.
    struct PathBatch {
        struct Condition: Hashable { var unit: UnitID; var index: Int }
        /// Conditions whose watches to set up again.
        var redo: Set<Condition> = []
        /// Accept=no units whose state conditions to check.
        var touched: Set<UnitID> = []
        /// Accept=yes units whose directories to scan.
        var rescan: Set<UnitID> = []
        /// Accept=no units with a change, and the path that changed.
        var changed: [UnitID: String] = [:]
    }

    func pathEvents() {
        guard let inotify else { return }
        let now = MonotonicClock.now()
        var batch = PathBatch()
        for event in inotifyEvents(inotify) {
            if event.mask.contains(.overflow) {
                overflowed(&batch, now: now)
                continue
            }
            guard let uses = watches[event.wd] else { continue }
            if event.mask.contains(.ignored) {
                // The watched inode is gone; the kernel dropped the watch.
                watches[event.wd] = nil
            }
            for use in uses {
                guard let rt = paths[use.path], !rt.failed else { continue }
                route(event, to: use, of: rt, &batch, now: now)
            }
        }
        for key in batch.redo {
            guard let rt = paths[key.unit] else { continue }
            let cond = rt.config.conditions[key.index]
            if setUpWatches(rt, key.index) && !cond.isState && rt.queue == nil { batch.changed[rt.id] = cond.path }
        }
        for id in batch.rescan { if let rt = paths[id] { scan(rt, now: now) } }
        // In slot order, for a stable order between units.
        for id in batch.changed.keys.sorted(by: { $0.slot < $1.slot }) { if let rt = paths[id] { fire(rt, batch.changed[id]!, now: now) } }
        for id in batch.touched.sorted(by: { $0.slot < $1.slot }) where batch.changed[id] == nil {
            if let rt = paths[id] { checkStates(rt, now: now) }
        }
    }

    /// Events were dropped: look at everything again, and count every change
    /// condition as fired, since one may have been lost.
    private func overflowed(_ batch: inout PathBatch, now: Instant) {
        overflows += 1
        if overflowLogged.map({ now - $0 >= .seconds(10) }) ?? true {
            Log.warning("inotify queue overflowed\(overflows > 1 ? " \(overflows) times" : "") (fs.inotify.max_queued_events); rescanning every watched path, nothing is lost")
            overflows = 0
            overflowLogged = now
        }
        for rt in paths where !rt.failed {
            if rt.queue != nil {
                batch.rescan.insert(rt.id)
                continue
            }
            batch.touched.insert(rt.id)
            for c in rt.config.conditions where !c.isState { batch.changed[rt.id] = c.path }
        }
    }

    /// What one event means for one condition that relies on its watch.
    private func route(_ event: InotifyEvent, to use: WatchUse, of rt: PathRuntime, _ batch: inout PathBatch, now: Instant) {
        let cond = rt.config.conditions[use.condition]
        let key = PathBatch.Condition(unit: use.path, index: use.condition)
        let selfGone = !event.mask.isDisjoint(with: [.deleteSelf, .moveSelf, .ignored])
        // Watches are shared by inode with the union of the masks: each use
        // looks only at what it asked for.
        if !selfGone && event.mask.isDisjoint(with: Self.mask(for: use.role, cond.kind)) { return }
        switch use.role {
        case .ancestor:
            batch.redo.insert(key)
            if rt.queue != nil { batch.rescan.insert(use.path) } else { batch.touched.insert(use.path) }
        case .parent:
            if selfGone {
                batch.redo.insert(key)
                batch.touched.insert(use.path)
                return
            }
            guard event.name == PathCondition.baseName(of: cond.path) else { return }
            if !event.mask.isDisjoint(with: [.create, .movedTo]) { batch.redo.insert(key) }
            if cond.isState { batch.touched.insert(use.path) } else { batch.changed[use.path] = cond.path }
        case .target:
            if selfGone { batch.redo.insert(key) }
            if event.mask != .ignored { batch.changed[use.path] = cond.path }
        case .directory:
            if selfGone {
                batch.redo.insert(key)
            } else if let pattern = cond.pattern, !Files.matches(event.name, pattern: pattern) {
                return
            }
            batch.touched.insert(use.path)
        case .files:
            if selfGone {
                batch.redo.insert(key)
                batch.rescan.insert(use.path)
                return
            }
            if event.nameNotText, !event.mask.isDisjoint(with: [.closeWrite, .movedTo]) {
                // Said, not skipped in silence: the writer can rename it.
                failure(rt, "\(rt.name): a file in \(cond.directory) has a name that is not UTF-8; it is not a job (rename it)", level: .warning)
                return
            }
            if event.mask.contains(.isDirectory) || !Self.isJobFile(event.name, cond) { return }
            guard let q = rt.queue else { return }
            if !event.mask.isDisjoint(with: [.closeWrite, .movedTo]) {
                fileSeen(rt, q, use.condition, event.name, now: now)
            } else {
                performJobs(rt, q, q.jobs.handle(.vanished(event.name), now: now))
            }
        }
    }

    /// Per-file units take regular files whose names match the glob, or,
    /// for DirectoryNotEmpty=, every name not starting with a dot: writers
    /// can use `.name` while writing and rename it when done.
    static func isJobFile(_ name: String, _ cond: PathCondition) -> Bool {
        Files.matches(name, pattern: cond.pattern ?? "*")
    }

    // MARK: Accept=no: one service

    /// Checks the state conditions (PathExists=, PathExistsGlob=,
    /// DirectoryNotEmpty=) and reports the first that holds.
    func checkStates(_ rt: PathRuntime, now: Instant) {
        guard rt.link != nil, !rt.failed else { return }
        for c in rt.config.conditions.indices where rt.config.conditions[c].isState {
            if let hit = holds(rt, c) {
                fire(rt, hit, now: now, fromState: true)
                return
            }
        }
    }

    /// The path that makes a state condition true, or nil; looked up in
    /// the condition's verified directory.
    func holds(_ rt: PathRuntime, _ c: Int) -> String? {
        let cond = rt.config.conditions[c]
        switch cond.kind {
        case .exists: return conditionPathExists(rt, c) ? cond.path : nil
        case .existsGlob: return withDirectory(rt, c) { Files.firstEntry(in: $0, matching: cond.pattern) }?.map { cond.directory + "/" + $0 }
        case .directoryNotEmpty:
            // As systemd: hidden and backup files do not count (a spool's
            // `.name.tmp` is not work yet; its rename into place is).
            return withDirectory(rt, c) { Files.firstEntry(in: $0, where: { !PathCondition.isHiddenOrBackup($0) }) }?.map { cond.directory + "/" + $0 }
        case .changed, .modified: return nil
        }
    }

    /// A condition of an Accept=no unit fired (a change, or a state that
    /// holds): its trigger machine decides.
    func fire(_ rt: PathRuntime, _ path: String, now: Instant, fromState: Bool = false) {
        guard let link = rt.link, let s = link.service.flatMap({ services[$0] }), !stopping, !activationPaused(rt) else { return }
        let idle = s.machine.state == .listening
        perform(link.trigger.handle(fromState ? .holds(path, serviceIdle: idle) : .changed(path, serviceIdle: idle), now: now),
                path: rt, service: s, now: now)
    }

    /// The service is waiting for work again: a change that fired during
    /// the run, or a state that still holds, starts it again.
    func pathServiceListening(_ rt: PathRuntime, now: Instant) {
        guard let link = rt.link, let s = link.service.flatMap({ services[$0] }), !stopping, !activationPaused(rt) else { return }
        perform(link.trigger.handle(.serviceIdle, now: now), path: rt, service: s, now: now)
    }

    /// Performs what a trigger machine decided.
    private func perform(_ actions: [PathTrigger.Action], path rt: PathRuntime, service s: ServiceRuntime, now: Instant) {
        for action in actions {
            switch action {
            case .start(let path):
                stats.count(rt.name) { $0.pathTriggers += 1 }
                for other in s.paths { paths[other]?.fired = nil }
                rt.fired = path
                Log.info("\(rt.name): \(path) triggered \(s.name)")
                perform(s.machine.handle(.readable, now: now), service: s, now: now)
            case .checkStates:
                checkStates(rt, now: now)
            case .unwatch:
                for c in rt.config.conditions.indices { dropWatches(rt, c) }
            case .log(let level, let message):
                Log.write(level, message)
            }
        }
    }

    /// Shutdown: no new jobs, no more events.
    func stopPaths() {
        for rt in paths {
            for fd in rt.directories { fd?.close() }
            rt.directories = rt.directories.map { _ in nil }
        }
        if let inotify {
            unregister(inotify.fd, token: inotifyToken)
            inotify.close()
        }
        inotify = nil
        watches.removeAll()
    }
}
