import Glibc
import PorterCore
import PorterSys

/// The wiring: the loop (EventLoop: epoll, the timerfd, the deadline
/// heap) hands over what is ready — listeners, a signalfd (SIGCHLD,
/// SIGTERM, SIGINT, SIGHUP), pidfds, the notify socket, inotify, journal
/// pipes — and deadlines that came; the machines of PorterCore decide; the
/// per-kind files (+Accept, +Services, +Paths, +FileJobs, +Reload) perform
/// what they decide. Nothing here blocks, and nothing wakes porter up while
/// no deadline is due and nothing arrives.
public final class Supervisor {
    enum Source {
        case signals
        case listener(socket: UnitID, index: Int)
        /// A listener of a running service, watched edge-triggered for activity.
        case activity(service: UnitID)
        /// porter's copy of an instance's connection (IdleTimeoutSec=, Unix).
        case instanceActivity(pid: Int32)
        /// sd_notify messages.
        case notify
        /// The pidfd of a service's main process that is not porter's child.
        case mainExit(service: UnitID)
        case inotify
        case journal(JournalPipe)
        /// The pidfd of a process left in a group after its main process exited.
        case leftover(group: Int32, pid: Int32)
        /// porter's own sockets: the control socket and the metrics endpoint.
        case controlListener
        case metricsListener
        /// A connection to one of them, by exchange id.
        case exchange(UInt64)
        /// ProxyTo=: either socket of a relayed connection, and the
        /// backend socket of a UDP flow.
        case relay(UInt64)
        case relayBackend(UInt64)
        case flow(UInt64)
        /// A connection to a built-in service (InternalService=).
        case builtin(UInt64)
    }

    let loop: EventLoop<Source>
    let signalFD: SignalFD
    let spawner: Spawner
    let queuedWork = QueuedWork()
    /// Every child's stdin when it has no other.
    let devNull: FileDescriptor
    let host: HostFacts
    let porterEnvironment: [String: String]
    /// The fd limit porter started with, for its children.
    /// (An upgrade's new image takes the old one's.)
    var childFileLimit: (soft: UInt64, hard: UInt64)?
    /// While an upgrade's new image sets up: what the old one handed over.
    var restoration: Restoration?

    /// The units, by stable id; a name index for each table.
    var sockets = UnitTable<SocketRuntime>()
    var paths = UnitTable<PathRuntime>()
    var socketIndex: [UnitName: UnitID] = [:]
    var serviceIndex: [UnitName: UnitID] = [:]
    var pathIndex: [UnitName: UnitID] = [:]
    /// One inotify instance for every path unit, when there is any.
    var inotify: Inotify?
    var inotifyToken: UInt64 = 0
    /// inotify watch descriptor → who relies on it.
    var watches: [Int32: Set<WatchUse>] = [:]
    /// inotify overflows not logged yet, and when the last line was written
    /// (a flood must not flood the log too).
    var overflows = 0
    var overflowLogged: Instant?
    var services = UnitTable<ServiceRuntime>()
    var servicePIDs: [Int32: UnitID] = [:]
    /// Control processes of services (ExecStartPre=, ExecStop=, ...).
    var controlPIDs: [Int32: UnitID] = [:]
    /// Control processes killed because their run was over: reaped quietly.
    var strayControls: Set<Int32> = []
    /// Every deadline of the loop, in its heap.
    var timers: Timers { loop.timers }
    /// Not `lazy`: a lazy property is mutated through a get and a set, so
    /// every change copied the whole table (its dictionary was shared with
    /// the copy) — O(running instances) per connection.
    var instances: InstanceTable
    /// Children that failed before exec: already logged, reaped silently.
    var failedSpawns: Set<Int32> = []
    var journals: [JournalPipe] = []
    /// NOTIFY_SOCKET, when some service uses sd_notify.
    var notify: NotifySocket?
    /// Sockets opened before the services were read, until `activate`.
    var preopened: [UnitName: Result<[FileDescriptor], OpenFailure>] = [:]
    /// What `activate` was given, for units that join later.
    var activation: (config: Configuration, prep: Preparation)?
    /// Accept=no services that run (or were reported as unable to).
    var installedServices: Set<UnitName> = []
    /// Socket units whose address was in use, tried again with back-off.
    var bindRetries: [UnitName: BindRetry] = [:] { didSet { timers.touch(.retries) } }
    /// Process groups that outlived their main process, by group id.
    var leftovers: [Int32: LeftoverGroup] = [:] { didSet { timers.touch(.retries) } }
    /// porter's own settings (porter.conf), endpoints and counts.
    var settings = PorterSettings()
    let own = OwnEndpoints()
    let stats = Stats()
    /// Connections to porter's own sockets; each has a deadline.
    var exchanges: [UInt64: Exchange] = [:] { didSet { timers.touch(.exchanges) } }
    /// ProxyTo=: relayed connections and UDP flows, by id.
    var relays: [UInt64: Relay] = [:]
    var flows: [UInt64: Flow] = [:]
    /// InternalService=: connections porter serves itself, by id.
    var builtins: [UInt64: BuiltinConnection] = [:]
    let pipePool = PipePool()
    /// Units `porter stop` paused, until `porter start`.
    var paused: Set<UnitName> = []
    /// Listening sockets porter was handed (LISTEN_FDS, an upgrade), until
    /// the units that listen on their addresses have taken them.
    var adoption: AdoptionPool?
    /// `--log-level`, which wins over porter.conf's LogLevel=.
    public var levelFromCommandLine: LogLevel?
    /// `porter upgrade`: the check of the new binary under way.
    var pendingUpgrade: PendingUpgrade? { didSet { timers.touch(.retries) } }
    /// Processes an earlier image started for units the configuration no
    /// longer has: stopped, reaped and counted.
    var orphans: [Int32: UpgradeState.OrphanState] = [:]
    /// porter's own service manager, when NOTIFY_SOCKET names one.
    var manager: ManagerLink?
    var nextManagerPing: Instant? { didSet { timers.touch(.managerPing) } }
    /// Accept=no sockets paused by TriggerLimit*= or PollLimit*=.
    var pausedSockets: Set<UnitID> = [] { didSet { timers.touch(.retries) } }
    /// Where each opened address came from (file:line), to say which of
    /// porter's own units holds an address another cannot bind.
    var openedPorts: [ListenConflict.Key: String] = [:]
    var stopping = false
    /// Where the configuration is read again on SIGHUP.
    /// Where the units are read from (and read again on reload).
    public var place: Commands.Place?
    /// A launch needed a large heap: trimmed once the batch of events is
    /// done and its strings are freed.
    var trimPending = false

    /// SIGUSR2 upgrades, as nginx's binary upgrade does.
    static let handledSignals: [Int32] = [SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR2]

    /// Sets up the process for the loop: signals blocked and read through a
    /// signalfd, SIGPIPE ignored (a client that went away must not kill
    /// porter), every inherited fd above 2 marked close-on-exec.
    public init(host: HostFacts, environment: [String: String]) throws(SysError) {
        Signals.resetAllDispositions()
        Signals.setIgnored(SIGPIPE, true)
        try Signals.block(SignalSet(Self.handledSignals))
        Processes.markInheritedCloseOnExec()
        childFileLimit = Processes.raiseFileLimit()
        // A daemon that forks away from its parent (Type=forking, or any
        // service's background helper) is re-parented to porter, not to
        // init: porter can follow it, learn how it ended, and reap it.
        Processes.becomeSubreaper()
        self.host = host
        self.porterEnvironment = environment
        manager = ManagerLink(environment: environment)
        devNull = try Files.open("/dev/null", flags: O_RDWR)
        loop = try EventLoop()
        instances = InstanceTable(timers: loop.timers)
        signalFD = try SignalFD(SignalSet(Self.handledSignals))
        spawner = try Spawner(resetSignals: [SIGPIPE])
        _ = try register(signalFD.fd, .signals)
    }

    func register(_ fd: FileDescriptor, _ source: Source) throws(SysError) -> UInt64 {
        try loop.register(fd, source)
    }

    func unregister(_ fd: FileDescriptor, token: UInt64) { loop.unregister(fd, token: token) }

    /// Runs until a stop signal has been handled and every child is gone.
    /// Returns the exit status.
    public func run() -> Int32 {
        while !(stopping && finished) {
            do {
                try loop.turn(deadline: { deadline(of: $0) }, due: { deadlinePassed($0, now: $1) }, dispatch: { dispatch($0, $1) })
            } catch {
                Log.error("epoll_wait: \(error.reason)")
                return 1
            }
            if trimPending {
                trimPending = false
                Processes.trimHeap()
            }
        }
        for j in journals { j.flush() }
        if let p = own.pidFile { PidFile.remove(p.path, p.fd) }
        Log.info("stopped")
        return 0
    }

    /// `flags` are what epoll reported (readable, writable, hang-ups): the
    /// sources here only read, but a relay needs the rest.
    private func dispatch(_ source: Source, _ flags: Epoll.Events) {
        switch source {
        case .signals:
            while let signal = try? signalFD.next() {
                switch signal {
                case SIGCHLD: reapChildren()
                case SIGTERM, SIGINT: beginStop(Values.signalName(signal))
                case SIGHUP: reload("SIGHUP")
                case SIGUSR2:
                    if let refused = upgradeRequested(by: nil), let why = refused.error { Log.error("SIGUSR2: \(why)") }
                default: break
                }
            }
        case .listener(let socket, let index):
            listenerReadable(socket, index)
        case .notify:
            notificationsArrived()
        case .inotify:
            pathEvents()
        case .mainExit(let service):
            if let s = services[service] { mainProcessExited(s) }
        case .instanceActivity(let pid):
            // Traffic either way, or the peer hanging up (any of `flags`): activity all the same.
            handle(instance: pid, .activity, now: MonotonicClock.now())
        case .activity(let service):
            guard let s = services[service] else { return }
            let now = MonotonicClock.now()
            perform(s.machine.handle(.activity, now: now), service: s, now: now)
        case .journal(let pipe):
            pipe.drain()
        case .leftover(let group, let pid):
            leftoverExited(group: group, pid: pid)
        case .controlListener:
            acceptExchanges(control: true)
        case .metricsListener:
            acceptExchanges(control: false)
        case .exchange(let id):
            if let e = exchanges[id] { exchangeReady(e, flags) }
        case .relay(let id):
            relayEvent(id, flags, backend: false)
        case .relayBackend(let id):
            relayEvent(id, flags, backend: true)
        case .flow(let id):
            flowEvent(id)
        case .builtin(let id):
            builtinEvent(id)
        }
    }

    /// The deadline a key has now.
    private func deadline(of key: TimerKey) -> Instant? {
        switch key {
        // A removed unit has no deadline: its entry leaves the heap.
        case .service(let id): return services[id]?.machine.deadline
        case .socket(let id): return sockets[id]?.acceptMachine?.deadline
        case .path(let id): return paths[id]?.queue?.jobs.deadline
        case .instance(let pid): return instances[pid]?.deadline
        case .control(let id):
            guard let s = services[id] else { return nil }
            return [s.control?.deadline, s.reload?.machine.waitDeadline].compactMap { $0 }.min()
        case .mainSearch(let id): return services[id]?.mainSearch?.next
        case .managerPing: return nextManagerPing
        case .exchanges: return exchanges.values.lazy.filter { !$0.waiting }.map(\.deadline).min()
        case .relay(let id): return relayDeadline(id)
        case .retries:
            let times = bindRetries.values.map(\.at) + leftovers.values.compactMap(\.killAt) + pausedUntilTimes
                + [pendingUpgrade?.deadline].compactMap { $0 } + flowTimes
            return times.min()
        }
    }

    /// A deadline came: the owner of the key is told (a removed unit's key
    /// finds nobody).
    private func deadlinePassed(_ key: TimerKey, now: Instant) {
        switch key {
        case .service(let id):
            guard let s = services[id] else { return }
            perform(s.machine.handle(.timer, now: now), service: s, now: now)
        case .socket(let id):
            guard let s = sockets[id], !stopping else { return }
            accept(s, .timer(now: now))
        case .path(let id):
            guard let p = paths[id], let q = p.queue else { return }
            performJobs(p, q, q.jobs.handle(.timer, now: now))
        case .instance(let pid):
            handle(instance: pid, .timer, now: now)
        case .control(let id):
            guard let s = services[id] else { return }
            controlTimedOut(s, now: now)
            reloadEvent(s, .timer(now))
        case .mainSearch(let id):
            if let s = services[id] { searchMain(s, now: now) }
        case .managerPing:
            managerPingDue(now: now)
        case .exchanges:
            exchangesDue(now: now)
        case .relay(let id):
            relayDue(id, now: now)
        case .retries:
            if !stopping { retryBinds(now: now) }
            leftoversDue(now: now)
            if !stopping { resumePausedSockets(now: now) }
            upgradeCheckDue(now: now)
            flowsDue(now: now)
        }
    }

    private func listenerReadable(_ socket: UnitID, _ index: Int) {
        guard let s = sockets[socket] else { return }
        let now = MonotonicClock.now()
        if pollLimitHit(s, now: now) { return }
        switch s.handler {
        case .instances:
            acceptConnections(s, index)
        case .proxy(let link):
            acceptProxied(s, index, link)
        case .internal(let link):
            if s.config.listens[index].kind == .datagram {
                builtinDatagrams(s, index, link)
            } else {
                acceptBuiltin(s, index, link)
            }
        case .service(let link):
            guard let id = link.id, let service = services[id] else { return }
            if case .listening = service.machine.state, triggerLimitHit(s, now: now) { return }
            perform(service.machine.handle(.readable, now: now), service: service, now: now)
        }
    }

    /// Starts or stops watching all listeners of a socket: level-triggered
    /// to start the service, or, with `activityOf`, edge-triggered so a
    /// running service's new work is noticed once per arrival.
    /// Watches the socket's listeners (those `only` names, or all) that are
    /// not watched yet.
    func watch(socket s: SocketRuntime, activityOf service: UnitID? = nil, only: ((Int) -> Bool)? = nil) {
        guard !stopping, (s.pausedUntil == nil && !activationPaused(s)) || service != nil else { return }
        // porter accepts on a proxied socket for as long as it runs: no activity watch.
        if service != nil, s.proxy != nil { return }
        for (index, fd) in s.fds.enumerated() where s.tokens[index] == nil && only?(index) ?? true {
            do {
                if let service {
                    s.tokens[index] = try loop.register(fd, .activity(service: service), events: [.readable, .edgeTriggered])
                } else {
                    s.tokens[index] = try register(fd, .listener(socket: s.id, index: index))
                }
            } catch {
                Log.error("\(s.name): cannot watch \(s.config.listens[index].address): \(error.reason)")
            }
        }
    }

    /// A socket where porter accepts: every listener while below its limit;
    /// at the limit only the datagram ones, whose traffic the limit does
    /// not hold back.
    func watchAccepting(_ s: SocketRuntime) {
        if s.acceptMachine?.canAccept ?? true {
            watch(socket: s)
        } else {
            unwatch(socket: s, only: s.limitedByMachine)
            watch(socket: s, only: { !s.limitedByMachine($0) })
        }
    }

    /// Stops watching the socket's listeners (those `only` names, or all).
    func unwatch(socket s: SocketRuntime, only: ((Int) -> Bool)? = nil) {
        for (index, token) in s.tokens where only?(index) ?? true {
            unregister(s.fds[index], token: token)
            s.tokens[index] = nil
        }
    }

    /// The journal pipe of a service, created at its first use.
    func journal(for p: PreparedService) throws(SysError) -> FileDescriptor {
        if let j = p.journal { return j.write }
        let j = try JournalPipe(name: p.config.syslogIdentifier ?? p.config.name.description)
        j.token = try register(j.read, .journal(j))
        p.journal = j
        journals.append(j)
        return j.write
    }

    var finished: Bool {
        instances.isEmpty && servicePIDs.isEmpty && controlPIDs.isEmpty && services.allSatisfy { $0.mainWatch == nil } && leftovers.isEmpty
            && orphans.isEmpty
    }
}
