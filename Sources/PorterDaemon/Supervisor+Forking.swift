import Glibc
import PorterCore
import PorterSys

/// Type=forking: a daemon that backgrounds itself. porter is a child
/// subreaper, so whatever the first process leaves behind is re-parented
/// to porter and reaped by it like any child. Without cgroups, "a process
/// of the service" means: a live child (or descendant) of porter, started
/// no earlier than the service's first process, that porter does not
/// already know as another unit's — the rule the PID file and the guess
/// both have to pass.
struct MainSearch {
    /// When /proc says the first process started (clock ticks since boot).
    var since: UInt64
    var began: Instant
    var next: Instant
    /// When the guess first saw several candidates.
    var ambiguousSince: Instant?

    /// How often a missing PID file or an unclear guess is tried again.
    static let retry = Duration.milliseconds(20)
    /// How long several candidates may stay before the guess gives up.
    static let ambiguityLimit = Duration.milliseconds(500)
}

extension Supervisor {
    /// Remembers when the first process of a forking service started, for
    /// telling its descendants from older processes.
    func notedForkParent(_ s: ServiceRuntime, pid: Int32) {
        guard s.prepared.config.type == .forking else { return }
        s.forkParentStart = Processes.facts(pid)?.startTicks
    }

    /// The first process exited cleanly: look for the main process now,
    /// and again every few milliseconds while the answer is "not yet".
    func findMain(_ s: ServiceRuntime, now: Instant) {
        s.mainSearch = MainSearch(since: s.forkParentStart ?? 0, began: now, next: now)
        searchMain(s, now: now)
    }

    /// A retry of the search came due.
    func searchMain(_ s: ServiceRuntime, now: Instant) {
        guard var search = s.mainSearch, now >= search.next else { return }
        guard case .running(let run) = s.machine.state, run.seekingMain else {
            // The machine gave up (TimeoutStartSec=, a stop): so does the search,
            // and what the first process left goes with it.
            s.mainSearch = nil
            stopLeftBehind(s, since: search.since)
            return
        }
        let c = s.prepared.config
        let event: ServiceMachine.Event?
        if let file = c.pidFile {
            event = mainFromPIDFile(s, file, search)
        } else if c.guessMainPID {
            event = guessMain(s, &search, now: now)
        } else {
            event = .mainNotFound("the first process exited; with GuessMainPID=no and no PIDFile= porter cannot follow the daemon, so the run is over", failed: false)
        }
        guard let event else {
            search.next = now + MainSearch.retry
            s.mainSearch = search
            return
        }
        s.mainSearch = nil
        if case .mainNotFound(_, true) = event {
            // What the run left must not outlive it (systemd stops the cgroup).
            stopLeftBehind(s, since: search.since)
        }
        if case .mainFound(let pid, _) = event {
            servicePIDs[pid] = s.id
            // Signals go to the daemon's own group (it usually made a new
            // session), never to porter's.
            if let g = Processes.group(of: pid), g != getpgrp() { s.group = g }
        }
        perform(s.machine.handle(event, now: now), service: s, now: now)
    }

    /// PIDFile=: read whole, without following a symlink in the last
    /// component; nil while it is missing or still empty.
    private func mainFromPIDFile(_ s: ServiceRuntime, _ path: String, _ search: MainSearch) -> ServiceMachine.Event? {
        let (dirPath, name) = Self.split(path)
        let bytes: [UInt8]
        do {
            let dir = try SafePath.directory(dirPath, trust: .porter)
            defer { dir.close() }
            let fd = try Files.open(at: dir, name, flags: O_RDONLY | O_NONBLOCK)
            bytes = try Files.readAll(fd, limit: 4096)
        } catch let e as SysError where e.errno == ENOENT {
            return nil
        } catch let e as SysError where e.errno == ELOOP {
            return .mainNotFound("PIDFile=\(path) is a symlink; refused (porter does not follow links to a PID file)", failed: true)
        } catch {
            return .mainNotFound("PIDFile=\(path): \(error)", failed: true)
        }
        let text = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
        if text.isEmpty { return nil }  // created, not written yet
        guard let pid = Int32(text), pid > 0 else {
            return .mainNotFound("PIDFile=\(path) holds \(Quote.value(String(text.prefix(40)))), not a process id", failed: true)
        }
        if let why = notOfService(pid, search) {
            return .mainNotFound("PIDFile=\(path) names pid \(pid), \(why); refused, as systemd refuses a PID file naming a process outside the service", failed: true)
        }
        return .mainFound(pid, how: "from PIDFile=\(path)")
    }

    /// GuessMainPID=yes: the one process the first left behind, now a child
    /// of porter. None left: the daemon is gone and the run is over; several:
    /// wait a little (a double fork passes through two), then give up.
    private func guessMain(_ s: ServiceRuntime, _ search: inout MainSearch, now: Instant) -> ServiceMachine.Event? {
        let candidates = forkCandidates(since: search.since)
        switch candidates.count {
        case 0:
            return .mainNotFound("the first process exited and left no process running; the run is over", failed: false)
        case 1:
            return .mainFound(candidates[0], how: "guessed: the one process left")
        default:
            let first = search.ambiguousSince ?? now
            search.ambiguousSince = first
            guard now - first >= MainSearch.ambiguityLimit else { return nil }
            return .mainNotFound("cannot tell which of pids \(candidates.map(String.init).joined(separator: ", ")) is the main process (set PIDFile=); stopping them", failed: true)
        }
    }

    /// KillSignal= to what the first process left, when no main process
    /// came of it.
    private func stopLeftBehind(_ s: ServiceRuntime, since: UInt64) {
        for pid in forkCandidates(since: since) {
            Signals.send(s.prepared.kill.killSignal, to: pid, group: Processes.group(of: pid) == pid)
        }
    }

    /// porter's children that no unit owns and that started no earlier
    /// than `since`.
    func forkCandidates(since: UInt64) -> [Int32] {
        Processes.children(of: getpid(), since: since).filter { !isKnownChild($0) }
    }

    private func isKnownChild(_ pid: Int32) -> Bool {
        servicePIDs[pid] != nil || controlPIDs[pid] != nil || instances[pid] != nil || strayControls.contains(pid)
            || failedSpawns.contains(pid)
    }

    /// Why `pid` is not a process of the service being searched, or nil.
    private func notOfService(_ pid: Int32, _ search: MainSearch) -> String? {
        guard let f = Processes.facts(pid), !f.zombie else { return "which is not running" }
        if isKnownChild(pid) { return "which porter runs for another unit" }
        guard Processes.descends(pid, from: getpid()) else { return "which porter did not start (not its descendant)" }
        guard f.startTicks >= search.since else { return "which is older than the service's first process" }
        return nil
    }

    /// A guessed main process exited cleanly: when a double fork passed
    /// through it, its child carries on as the main process.
    func guessedMainMovedOn(_ s: ServiceRuntime, pid: Int32, _ status: ExitStatus) -> Bool {
        let c = s.prepared.config
        guard c.type == .forking, c.pidFile == nil, c.guessMainPID, status.isSuccess, !stopping,
              case .running(let run) = s.machine.state, run.ready, run.pid == pid, let since = s.forkParentStart else { return false }
        let candidates = forkCandidates(since: since)
        guard candidates.count == 1 else { return false }
        let next = candidates[0]
        servicePIDs[next] = s.id
        if let g = Processes.group(of: next), g != getpgrp() { s.group = g }
        Log.info("\(s.name): main pid \(pid) exited; pid \(next), which it left, carries on as the main process (guessed)")
        let now = MonotonicClock.now()
        perform(s.machine.handle(.mainPID(next), now: now), service: s, now: now)
        return true
    }

    /// systemd removes the PID file once the service has stopped, so the
    /// next start cannot read a stale one; unlinkat does not follow a link.
    func removePIDFile(_ s: ServiceRuntime) {
        guard s.prepared.config.type == .forking, let path = s.prepared.config.pidFile else { return }
        let (dirPath, name) = Self.split(path)
        guard let dir = try? SafePath.directory(dirPath, trust: .porter) else { return }
        defer { dir.close() }
        _ = unlinkat(dir.rawValue, name, 0)
    }

    static func split(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return ("/", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }
}
