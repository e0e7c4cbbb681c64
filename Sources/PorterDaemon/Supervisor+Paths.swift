import Glibc
import PorterCore
import PorterSys

/// Who relies on an inotify watch: which condition of which path unit, and
/// in what role.
///   target    the watched path itself (PathChanged=, PathModified=)
///   parent    the directory that holds it: its appearance, removal, renames
///   directory DirectoryNotEmpty= and PathExistsGlob= (Accept=no): entries
///   files     Accept=yes: files closed after writing or moved in
///   ancestor  the deepest existing directory above a path that does not
///             exist yet, until the next component appears
struct WatchUse: Hashable {
    enum Role: Hashable { case target, parent, directory, files, ancestor }
    var path: Int
    var condition: Int
    var role: Role
}

/// Path units: one inotify instance for all of them.
extension Supervisor {
    static func mask(for role: WatchUse.Role, _ kind: PathCondition.Kind) -> Inotify.Mask {
        switch role {
        case .target:
            let changed: Inotify.Mask = [.closeWrite, .attrib, .create, .delete, .deleteSelf, .moveSelf, .movedFrom, .movedTo]
            return kind == .modified ? changed.union(.modify) : changed
        case .parent: return [.create, .movedTo, .movedFrom, .delete, .deleteSelf, .moveSelf, .onlyDirectory]
        case .directory: return [.create, .movedTo, .deleteSelf, .moveSelf, .onlyDirectory]
        case .files: return [.closeWrite, .movedTo, .movedFrom, .delete, .deleteSelf, .moveSelf, .onlyDirectory]
        case .ancestor: return [.create, .movedTo, .deleteSelf, .moveSelf, .onlyDirectory]
        }
    }

    /// Sets up every path unit after the services: watches first, then the
    /// start-up check, so nothing that appears in between is missed.
    func activatePaths(_ config: Configuration, _ prep: Preparation) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        guard !config.paths.isEmpty else { return [] }
        do {
            let ino = try Inotify()
            _ = try register(ino.fd, .inotify)
            inotify = ino
        } catch {
            return [Diagnostic(.error, file: "inotify", "cannot create an inotify instance: \(error); no path unit is watched")]
        }
        for config in config.paths {
            let rt = PathRuntime(config: config)
            if config.accept {
                guard let template = prep.services[config.activates] else { continue }
                rt.template = template
                rt.jobs = FileJobs(name: config.name.description, maxRunning: config.maxConnections,
                                   moveFailed: config.failedDirectory != nil)
            } else {
                guard let s = services.firstIndex(where: { $0.prepared.config.name == config.activates }) else { continue }
                rt.service = s
                services[s].paths.append(paths.count)
            }
            paths.append(rt)
        }
        let now = MonotonicClock.now()
        for (p, rt) in paths.enumerated() {
            if rt.config.makeDirectory {
                for c in rt.config.conditions where c.kind != .exists && c.kind != .existsGlob {
                    do { try Files.makeParents(of: c.path + "/.", mode: rt.config.directoryMode) } catch {
                        problems.append(Diagnostic(.warning, file: rt.name, line: c.line, key: c.kind.rawValue,
                                                   "MakeDirectory=: \(error)"))
                    }
                }
            }
            for c in rt.config.conditions.indices { setUpWatches(p, c) }
            if rt.jobs != nil {
                scan(p, now: now)
            } else {
                // Conditions already true at start-up trigger at once.
                checkStates(p, now: now)
            }
        }
        return problems
    }

    // MARK: Watches

    /// (Re)creates the watches of one condition: the path and its parent if
    /// they exist, otherwise the deepest existing ancestor. Each watch is
    /// added before the next level is checked, so a directory created in
    /// between is either seen by the check or reported by the watch.
    /// Returns whether the path appeared or vanished since the last look.
    @discardableResult
    func setUpWatches(_ p: Int, _ c: Int) -> Bool {
        guard let inotify else { return false }
        let rt = paths[p]
        let cond = rt.config.conditions[c]
        dropWatches(p, c)
        var added: [Int32] = []
        func add(_ path: String, _ role: WatchUse.Role) -> Bool {
            guard let wd = try? inotify.add(path, mask: Self.mask(for: role, cond.kind)) else { return false }
            added.append(wd)
            watches[wd, default: []].insert(WatchUse(path: p, condition: c, role: role))
            return true
        }
        let isDirectoryCondition = cond.kind == .directoryNotEmpty || cond.kind == .existsGlob
        let directoryRole: WatchUse.Role = rt.config.accept ? .files : .directory
        for _ in 0..<8 {
            if isDirectoryCondition {
                if add(cond.directory, directoryRole) { break }
            } else {
                if cond.kind != .exists { _ = add(cond.path, .target) }
                if add(Self.parent(of: cond.path), .parent) { break }
            }
            // Missing: wait for it from the deepest ancestor that exists.
            let missing = isDirectoryCondition ? cond.directory : Self.parent(of: cond.path)
            var dir = Self.parent(of: missing)
            while dir != "/" && !((try? Files.status(dir))??.isDirectory ?? false) { dir = Self.parent(of: dir) }
            _ = add(dir, .ancestor)
            // Appeared since the look? Then try again from the top.
            if !((try? Files.status(missing))??.isDirectory ?? false) { break }
        }
        paths[p].watchDescriptors[c] = added
        let exists = ((try? Files.status(cond.path)) ?? nil) != nil
        defer { paths[p].existed[c] = exists }
        return exists != paths[p].existed[c]
    }

    private func dropWatches(_ p: Int, _ c: Int) {
        for wd in paths[p].watchDescriptors[c] {
            guard let uses = watches[wd] else { continue }
            watches[wd] = uses.filter { $0.path != p || $0.condition != c }
            if watches[wd]!.isEmpty {
                watches[wd] = nil
                inotify?.remove(wd)
            }
        }
        paths[p].watchDescriptors[c] = []
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    static func baseName(of path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    // MARK: Events

    func pathEvents() {
        guard let inotify else { return }
        let now = MonotonicClock.now()
        var redo: Set<[Int]> = []  // conditions whose watches to set up again
        var touched: Set<Int> = []  // Accept=no units to check after the batch
        var rescan: Set<Int> = []
        // Changes fired in this batch, one per unit: a write seen as
        // IN_CLOSE_WRITE and IN_ATTRIB is one change, not two runs.
        var changed: [Int: String] = [:]
        for event in inotify.read() {
            if event.mask.contains(.overflow) {
                // Events were dropped: look at everything again, and count
                // every change condition as fired, since one may have been lost.
                overflows += 1
                if overflowLogged.map({ now - $0 >= .seconds(10) }) ?? true {
                    Log.warning("inotify queue overflowed\(overflows > 1 ? " \(overflows) times" : "") (fs.inotify.max_queued_events); rescanning every watched path, nothing is lost")
                    overflows = 0
                    overflowLogged = now
                }
                for (p, rt) in paths.enumerated() where !rt.failed {
                    if rt.jobs != nil { rescan.insert(p); continue }
                    touched.insert(p)
                    for c in rt.config.conditions where !c.isState { changed[p] = c.path }
                }
                continue
            }
            guard let uses = watches[event.wd] else { continue }
            if event.mask.contains(.ignored) {
                // The watched inode is gone; the kernel dropped the watch.
                watches[event.wd] = nil
            }
            for use in uses where use.path < paths.count && !paths[use.path].failed {
                let rt = paths[use.path]
                let cond = rt.config.conditions[use.condition]
                let selfGone = !event.mask.isDisjoint(with: [.deleteSelf, .moveSelf, .ignored])
                // Watches are shared by inode with the union of the masks:
                // each use looks only at what it asked for.
                if !selfGone && event.mask.isDisjoint(with: Self.mask(for: use.role, cond.kind)) { continue }
                switch use.role {
                case .ancestor:
                    redo.insert([use.path, use.condition])
                    if rt.jobs != nil { rescan.insert(use.path) } else { touched.insert(use.path) }
                case .parent:
                    if selfGone {
                        redo.insert([use.path, use.condition])
                        touched.insert(use.path)
                        continue
                    }
                    guard event.name == Self.baseName(of: cond.path) else { continue }
                    if !event.mask.isDisjoint(with: [.create, .movedTo]) { redo.insert([use.path, use.condition]) }
                    if cond.isState { touched.insert(use.path) } else { changed[use.path] = cond.path }
                case .target:
                    if selfGone { redo.insert([use.path, use.condition]) }
                    if event.mask == .ignored { continue }
                    changed[use.path] = cond.path
                case .directory:
                    if selfGone {
                        redo.insert([use.path, use.condition])
                    } else if let pattern = cond.pattern, !Files.matches(event.name, pattern: pattern) {
                        continue
                    }
                    touched.insert(use.path)
                case .files:
                    if selfGone {
                        redo.insert([use.path, use.condition])
                        rescan.insert(use.path)
                        continue
                    }
                    if event.mask.contains(.isDirectory) || !Self.isJobFile(event.name, cond) { continue }
                    if !event.mask.isDisjoint(with: [.closeWrite, .movedTo]) {
                        fileSeen(use.path, cond.directory, event.name, now: now)
                    } else {
                        performJobs(use.path, rt.jobs!.handle(.vanished(event.name), now: now))
                    }
                }
            }
        }
        for key in redo {
            let cond = paths[key[0]].config.conditions[key[1]]
            if setUpWatches(key[0], key[1]) && !cond.isState && paths[key[0]].jobs == nil { changed[key[0]] = cond.path }
        }
        for p in rescan { scan(p, now: now) }
        for p in changed.keys.sorted() { fire(p, changed[p]!, now: now) }
        for p in touched.sorted() where changed[p] == nil { checkStates(p, now: now) }
    }

    /// Per-file units take regular files whose names match the glob, or,
    /// for DirectoryNotEmpty=, every name not starting with a dot: writers
    /// can use `.name` while writing and rename it when done.
    static func isJobFile(_ name: String, _ cond: PathCondition) -> Bool {
        Files.matches(name, pattern: cond.pattern ?? "*")
    }

    // MARK: Accept=no: one service

    /// Checks the state conditions (PathExists=, PathExistsGlob=,
    /// DirectoryNotEmpty=) and fires for the first that holds.
    func checkStates(_ p: Int, now: Instant) {
        let rt = paths[p]
        guard rt.jobs == nil, !rt.failed else { return }
        for c in rt.config.conditions where c.isState {
            if let hit = Self.holds(c) {
                fire(p, hit, now: now, fromState: true)
                return
            }
        }
    }

    /// The path that makes a state condition true, or nil.
    static func holds(_ c: PathCondition) -> String? {
        switch c.kind {
        case .exists: return ((try? Files.status(c.path)) ?? nil) != nil ? c.path : nil
        case .existsGlob: return Files.glob(c.path).first
        case .directoryNotEmpty: return Files.firstEntry(c.path).map { c.directory + "/" + $0 }
        case .changed, .modified: return nil
        }
    }

    /// A condition of an Accept=no unit fired. A state that holds while the
    /// service runs is checked again when it exits (as in systemd); a change
    /// is remembered and starts the service again then (systemd loses it).
    func fire(_ p: Int, _ path: String, now: Instant, fromState: Bool = false) {
        let rt = paths[p]
        guard let s = rt.service, !rt.failed, !stopping else { return }
        guard services[s].machine.state == .listening else {
            if !fromState {
                rt.pending = true
                rt.fired = path
            }
            return
        }
        let limit = rt.config
        if limit.triggerLimitBurst > 0 && limit.triggerLimitInterval > .zero {
            rt.triggers.removeAll { now - $0 >= limit.triggerLimitInterval }
            if rt.triggers.count >= limit.triggerLimitBurst {
                rt.failed = true
                for c in rt.config.conditions.indices { dropWatches(p, c) }
                Log.error("\(rt.name): trigger limit hit (\(limit.triggerLimitBurst) starts in \(limit.triggerLimitInterval.porterDescription)), failed; no longer watching until porter restarts (TriggerLimitBurst=)")
                return
            }
            rt.triggers.append(now)
        }
        for other in services[s].paths { paths[other].fired = nil }
        rt.fired = path
        rt.pending = false
        Log.info("\(rt.name): \(path) triggered \(services[s].name)")
        perform(services[s].machine.handle(.readable, now: now), service: s, now: now)
    }

    /// The service is waiting for work again: a change that fired during
    /// the run, or a state that still holds, starts it again.
    func pathServiceListening(_ p: Int, now: Instant) {
        let rt = paths[p]
        guard !rt.failed, !stopping else { return }
        if rt.pending, let path = rt.fired {
            rt.pending = false
            fire(p, path, now: now)
        } else {
            checkStates(p, now: now)
        }
    }

    // MARK: Accept=yes: a job per file

    private func version(_ path: String) -> FileVersion? {
        guard let st = (try? Files.status(path, follow: false)) ?? nil, st.isRegular else { return nil }
        return FileVersion(inode: st.inode, modified: st.modified, size: st.size)
    }

    private func fileSeen(_ p: Int, _ dir: String, _ name: String, now: Instant) {
        let rt = paths[p]
        guard rt.jobs != nil else { return }
        if let v = version(dir + "/" + name) {
            performJobs(p, rt.jobs!.handle(.seen(name, v), now: now))
        } else {
            performJobs(p, rt.jobs!.handle(.vanished(name), now: now))
        }
    }

    /// Every matching file present: at start-up, after an overflow, and
    /// when a watched directory appears or is replaced.
    func scan(_ p: Int, now: Instant) {
        let rt = paths[p]
        guard rt.jobs != nil, !rt.failed else { return }
        var present: [String: FileVersion] = [:]
        for c in rt.config.conditions {
            for name in Files.regularFiles(in: c.directory, matching: c.pattern ?? "*") {
                if let v = version(c.directory + "/" + name) { present[name] = v }
            }
        }
        performJobs(p, rt.jobs!.handle(.scanned(present), now: now))
    }

    /// Carries out what the job queue decided. A job that cannot start
    /// counts as failed at once; the loop (not recursion) keeps a burst of
    /// such failures from nesting.
    func performJobs(_ p: Int, _ actions: [FileJobs.Action]) {
        var work = actions
        defer {
            // The end of a burst: hand the heap it needed back.
            if paths[p].jobs?.isIdle ?? false, paths[p].jobsSinceTrim >= 1000 {
                paths[p].jobsSinceTrim = 0
                Processes.trimHeap()
            }
        }
        while !work.isEmpty {
            let action = work.removeFirst()
            switch action {
            case .start(let file):
                if let failed = startJob(p, file) { work += failed }
            case .moveToFailed(let file):
                moveToFailed(p, file)
            case .log(let level, let message):
                Log.write(level, message)
            }
        }
    }

    /// The directory of the condition that holds `file`.
    private func directory(_ rt: PathRuntime, of file: String) -> String {
        let conds = rt.config.conditions
        if conds.count > 1, let c = conds.first(where: { Self.isJobFile(file, $0) && version($0.directory + "/" + file) != nil }) {
            return c.directory
        }
        return conds[0].directory
    }

    /// Starts the job of one file; returns the queue's actions if it could
    /// not be started.
    private func startJob(_ p: Int, _ file: String) -> [FileJobs.Action]? {
        let rt = paths[p]
        guard let template = rt.template, rt.jobs != nil else { return nil }
        let now = MonotonicClock.now()
        if stopping { return nil }
        let path = directory(rt, of: file) + "/" + file
        let instanceName = UnitName.escape(file)
        let unitName = template.config.name.withInstance(instanceName).description
        // Opened (or looked at) now: a file removed since it was queued has no job.
        var input: FileDescriptor? = nil
        if template.config.standardInput == .fileTrigger {
            guard let fd = try? Files.open(path, flags: O_RDONLY | O_NOFOLLOW | O_NONBLOCK) else {
                return rt.jobs!.handle(.exited(file, success: true, now: nil), now: now)
            }
            input = fd
        } else if version(path) == nil {
            return rt.jobs!.handle(.exited(file, success: true, now: nil), now: now)
        }
        defer { input?.close() }
        let launch: Launch
        do {
            let instance = try template.instance(instanceName)
            launch = try Launch.make(template, instance: instance, socket: nil, listen: [], triggerFile: input,
                                     activation: [("TRIGGER_UNIT", rt.name), ("TRIGGER_PATH", path)],
                                     devNull: devNull, fileLimit: childFileLimit,
                                     journal: { () throws(SysError) in try journal(for: template) })
        } catch let error as ValueError {
            Log.error("\(unitName): \(error.message)")
            return rt.jobs!.handle(.exited(file, success: false, now: version(path)), now: now)
        } catch let error as Launch.Failure {
            Log.error("\(unitName): \(error.message)")
            return rt.jobs!.handle(.exited(file, success: false, now: version(path)), now: now)
        } catch {
            Log.error("\(unitName): \(error)")
            return rt.jobs!.handle(.exited(file, success: false, now: version(path)), now: now)
        }
        defer { launch.close() }
        switch spawner.spawnDetached(launch.plan) {
        case .success(let pid):
            var instance = Instance(owner: .path(p, file: file), unit: unitName, kill: template.kill,
                                    ignoreFailure: template.config.exec?.ignoreFailure ?? false, executable: launch.plan.path)
            instance.runtimeEnd = template.config.runtimeMax.map { now + $0 }
            instances[pid] = instance
            Log.debug("\(unitName): started pid \(pid) for \(path)")
            rt.jobsSinceTrim += 1
            return nil
        case .failure(let error):
            if let pid = error.pid { failedSpawns.insert(pid) }
            if error.isExecFailure { template.forgetExecutable(launch.plan.path) }
            Log.error("\(unitName): \(error)")
            return rt.jobs!.handle(.exited(file, success: false, now: version(path)), now: now)
        }
    }

    /// A job ended: its file's fate is the queue's to decide.
    func jobExited(_ p: Int, file: String, success: Bool) {
        let rt = paths[p]
        guard rt.jobs != nil else { return }
        let now = MonotonicClock.now()
        let after = version(directory(rt, of: file) + "/" + file)
        performJobs(p, rt.jobs!.handle(.exited(file, success: success, now: after), now: now))
    }

    private func moveToFailed(_ p: Int, _ file: String) {
        let rt = paths[p]
        guard let failed = rt.config.failedDirectory else { return }
        let from = directory(rt, of: file) + "/" + file
        do {
            try Files.makeParents(of: failed + "/" + file, mode: rt.config.directoryMode)
            try Files.rename(from, failed + "/" + file)
            Log.warning("\(rt.name): moved \(from) to \(failed)/ after its job failed")
        } catch {
            Log.error("\(rt.name): cannot move \(from) to FailedDirectory=\(failed): \(error); left in place")
        }
    }

    /// Shutdown: no new jobs, no more events.
    func stopPaths() {
        if let inotify {
            for (token, source) in sources {
                if case .inotify = source { unregister(inotify.fd, token: token) }
            }
            inotify.close()
        }
        inotify = nil
        watches.removeAll()
    }
}
