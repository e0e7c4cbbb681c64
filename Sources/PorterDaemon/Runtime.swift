import PorterCore
import PorterSys

/// What has a deadline in the loop's heap.
enum TimerKey: Hashable, Sendable {
    case service(UnitID)
    case socket(UnitID)
    case path(UnitID)
    case instance(Int32)
    /// The control command of a service (ExecStartPre=, ExecStop=, ...).
    case control(UnitID)
    /// Type=forking: the next look for the main process.
    case mainSearch(UnitID)
    /// Bind retries and leftover groups: few, and rarely any.
    case retries
    /// WATCHDOG=1 to porter's own service manager.
    case managerPing
    /// Connections to the control socket and the metrics endpoint.
    case exchanges
    /// A relayed connection's retry, give-up or idle check.
    case relay(UInt64)
}

/// The loop's deadlines. A runtime whose deadline may have moved touches
/// its key (its property observers do, so no mutation can be missed); the
/// loop asks each touched key for its deadline before it waits.
final class Timers {
    var heap = DeadlineHeap<TimerKey>()
    func touch(_ key: TimerKey) { heap.touch(key) }
}

/// A socket unit while porter runs: its open listeners and, with
/// Accept=yes, the machine that decides whether to accept.
final class SocketRuntime {
    /// Replaced by a reload that changed the unit (which starts its limit
    /// windows afresh).
    var config: SocketConfig {
        didSet {
            triggerWindow = config.triggerLimit
            pollWindow = config.pollLimit
            // New per-source limits count afresh; unchanged ones keep
            // counting the connections that are open.
            if oldValue.maxConnectionsPerSource != config.maxConnectionsPerSource
                || oldValue.perSourceLimitInterval != config.perSourceLimitInterval
                || oldValue.perSourceLimitBurst != config.perSourceLimitBurst {
                sources = config.sourceTable
            }
        }
    }
    /// TriggerLimit*= and PollLimit*=, and, while an Accept=no socket is
    /// paused for hitting one, when it is watched again.
    var triggerWindow: RateWindow?
    var pollWindow: RateWindow?
    var pausedUntil: Instant?
    /// One per Listen*= line, in order; closed at shutdown.
    var fds: [FileDescriptor]
    /// epoll tokens of the fds while they are watched, by listener index.
    var tokens: [Int: UInt64] = [:]
    /// What handles the work that arrives: the one place a socket's mode
    /// lives. A built-in service or a proxy is one more case here, and the
    /// loop's switch over it says what each does.
    enum Handler {
        /// Accept=yes: one process per connection, from a template, while
        /// the accept machine allows.
        case instances(Instances)
        /// Accept=no: the service that receives the listening sockets.
        case service(ServiceLink)
        /// Accept=no with a ProxyTo= service: porter keeps the listeners,
        /// accepts (at most MaxConnections= at once) and relays.
        case proxy(ProxyLink)
        /// InternalService=: porter answers itself, without a process.
        case `internal`(InternalLink)
    }

    /// What every handler where porter accepts has: its accept machine,
    /// whose every change may move the socket's deadline.
    class AcceptingLink {
        var machine: AcceptMachine { didSet { timers.touch(key) } }
        private let timers: Timers
        private let key: TimerKey
        init(machine: AcceptMachine, timers: Timers, key: TimerKey) {
            self.machine = machine
            self.timers = timers
            self.key = key
        }
    }

    /// Stream sockets: at most MaxConnections= open at once, the rest wait
    /// in the backlog (as for Accept=yes).
    final class InternalLink: AcceptingLink {
        let service: InternalService
        init(service: InternalService, machine: AcceptMachine, timers: Timers, key: TimerKey) {
            self.service = service
            super.init(machine: machine, timers: timers, key: key)
        }
    }

    /// The same limit as Accept=yes: relays instead of instances.
    final class ProxyLink: AcceptingLink {
        var service: UnitID?
        /// UDP: one flow per client address, per datagram listener.
        var flows: [[UInt8]: UInt64] = [:]
    }

    /// Every machine call may move its deadline (a back-off after a failed accept).
    final class Instances: AcceptingLink {
        /// A reload may replace it; running instances keep theirs.
        var template: PreparedService
        init(template: PreparedService, machine: AcceptMachine, timers: Timers, key: TimerKey) {
            self.template = template
            super.init(machine: machine, timers: timers, key: key)
        }
    }

    final class ServiceLink {
        /// Set once the service is installed (all its sockets are open).
        var id: UnitID?
    }

    var handler: Handler
    /// Connections accepted so far: the NR of systemd's instance names.
    var accepted: UInt32 = 0
    /// Where the loop keeps the deadline, and this socket's id.
    var timers: Timers?
    let id: UnitID
    /// Per-connection failures and the at-the-limit line: a remote client
    /// can drive them, so they are rate-limited.
    var failureLog = LogRateLimit(interval: .seconds(10), burst: 10)
    var limitLog = LogRateLimit(interval: .seconds(60), burst: 1)
    /// Refused peers (IPAddressDeny=, the per-source limits): a scan must
    /// not become a flood of log lines.
    var accessLog = LogRateLimit(interval: .seconds(10), burst: 10)
    /// MaxConnectionsPerSource= and PerSourceLimit*=, where porter accepts.
    var sources: SourceTable?
    /// The texts of Banner=, BannerSuccess=, BannerFail=, read at load.
    var banners = Banners()

    /// With a template: Accept=yes; without: Accept=no (proxied or not).
    init(id: UnitID, config: SocketConfig, fds: [FileDescriptor], template: PreparedService?, proxied: Bool = false, timers: Timers) {
        self.id = id
        self.config = config
        self.fds = fds
        self.timers = timers
        triggerWindow = config.triggerLimit
        pollWindow = config.pollLimit
        sources = config.sourceTable
        handler = Self.handler(id, config, template, proxied: proxied, timers: timers)
    }

    static func handler(_ id: UnitID, _ config: SocketConfig, _ template: PreparedService?, proxied: Bool = false,
                        timers: Timers) -> Handler {
        if let service = config.internalService {
            return .internal(InternalLink(service: service,
                                          machine: AcceptMachine(name: config.name.description, maxConnections: config.maxConnections),
                                          timers: timers, key: .socket(id)))
        }
        if let template {
            return .instances(Instances(template: template,
                                        machine: AcceptMachine(name: config.name.description, maxConnections: config.maxConnections),
                                        timers: timers, key: .socket(id)))
        }
        if proxied {
            return .proxy(ProxyLink(machine: AcceptMachine(name: config.name.description, maxConnections: config.maxConnections),
                                    timers: timers, key: .socket(id)))
        }
        return .service(ServiceLink())
    }

    var name: String { config.name.description }

    /// Accept=yes: the template and the machine.
    var instances: Instances? {
        if case .instances(let i) = handler { return i }
        return nil
    }

    /// Accept=no: the service this socket activates, once installed.
    var service: UnitID? {
        get {
            switch handler {
            case .service(let link): return link.id
            case .proxy(let link): return link.service
            case .instances, .internal: return nil
            }
        }
        set {
            switch handler {
            case .service(let link): link.id = newValue
            case .proxy(let link): link.service = newValue
            case .instances, .internal: break
            }
        }
    }

    var proxy: ProxyLink? {
        if case .proxy(let p) = handler { return p }
        return nil
    }

    var builtin: InternalLink? {
        if case .internal(let i) = handler { return i }
        return nil
    }

    /// The link of every handler where porter accepts (Accept=yes, a proxy,
    /// a built-in); nil for Accept=no.
    var accepting: AcceptingLink? {
        switch handler {
        case .instances(let i): return i
        case .proxy(let p): return p
        case .internal(let b): return b
        case .service: return nil
        }
    }

    /// Its accept machine. Setting it sets the handler's own, whose
    /// observer moves the socket's deadline.
    var acceptMachine: AcceptMachine? {
        get { accepting?.machine }
        set { if let m = newValue { accepting?.machine = m } }
    }

    var template: PreparedService? { instances?.template }

    /// What an Accept=no service receives of this socket: each listener,
    /// with its LISTEN_FDNAMES name.
    var passed: [(fd: FileDescriptor, name: String)] { fds.map { ($0, config.fileDescriptorName) } }
    var watched: Bool { !tokens.isEmpty }

    /// Where porter accepts, the limit of its accept machine (MaxConnections=)
    /// holds back new connections only: datagram listeners of the same unit
    /// (a built-in's UDP side, a proxy's flows) stay watched.
    func limitedByMachine(_ index: Int) -> Bool { config.listens[index].kind != .datagram }
}

/// An Accept=no service while porter runs.
final class ServiceRuntime {
    /// The definition the current (or next) run uses.
    var prepared: PreparedService
    /// A reload changed the unit while it ran: the definition of its next start.
    var next: PreparedService?
    /// A reload removed the unit: it goes once its run has ended.
    var retired = false
    /// Every call into the machine may move its deadline; every change of
    /// state is one debug line, here and nowhere else.
    var machine: ServiceMachine {
        didSet {
            timers?.touch(.service(id))
            if oldValue.stateName != machine.stateName || machine.state.isReady != oldValue.state.isReady {
                if Log.threshold == .debug, oldValue.stateName != machine.stateName {
                    Log.debug("\(name): \(oldValue.stateName) -> \(machine.stateName)")
                }
                noticeTransition(from: oldValue.state, to: machine.state)
            }
        }
    }

    /// What the control commands need to know of the machine's moves, read
    /// (and cleared) by the next `perform`: a stop began, the service became
    /// ready, the run ended.
    var stopBegan = false
    var becameReady = false
    var runEnded = false
    /// RemainAfterExit=yes: ExecStartPost= of a oneshot already ran when
    /// the run ended into `remaining`.
    var startPostRan = false
    /// The commands running for this service besides its main process.
    var control: ControlRun? { didSet { timers?.touch(.control(id)) } }
    /// This run is an automatic restart (RestartMode=debug marks it).
    var restarted = false
    /// The service said RELOADING=1 by itself and not yet READY=1.
    var reloading = false
    /// `porter reload UNIT` in progress (its deadline shares the control key).
    var reload: ReloadJob? { didSet { timers?.touch(.control(id)) } }
    /// Type=oneshot: where the run is in its ExecStart= lines.
    var mainSequence: CommandSequence?
    /// Whether this run's main process started (ExecStop= runs only then).
    var runStartedOK = false
    /// Condition*= said no: the failed start runs no ExecStopPost=.
    var skipCommands = false
    /// How the last main process ended and what that made of the run, for
    /// $EXIT_CODE, $EXIT_STATUS and $SERVICE_RESULT.
    var lastExit: ProcessExit?
    var lastOutcome = CommandSequence.Outcome.success

    /// An idle stop began (counted by the next `perform`).
    var idleStopBegan = false
    /// The main process of a proxied service was just started: what
    /// waits for its backend may try it.
    var proxyStarted = false

    private func noticeTransition(from old: ServiceMachine.State, to new: ServiceMachine.State) {
        if case .freezing = old, case .stopping(_, _, .idle) = new { idleStopBegan = true }
        if old.isRunningOrFrozen, new.isStopping { stopBegan = true }
        if case .starting = old, case .running = new { proxyStarted = true }
        if case .starting = new, old != .starting {
            if case .waitingRestart = old { restarted = true } else { restarted = false }
        }
        if new.isReady, !old.isReady { becameReady = true }
        if old.isRunningOrFrozen || old.isStopping, !(new.isRunningOrFrozen || new.isStopping) { runEnded = true }
        // RemainAfterExit=yes: the run ended into `remaining`; its stop
        // commands wait until the service leaves it.
        if case .remaining = old, new != .remaining { runEnded = true }
        if case .starting = old {
            switch new {
            case .listening, .waitingRestart, .holdingOff, .stopped: runEnded = true  // the start failed
            case .starting, .running, .freezing, .stopping, .remaining: break
            }
        }
    }
    var timers: Timers?
    let id: UnitID
    /// Sockets whose readability starts the service.
    var triggers: [UnitID]
    /// What the service receives from fd 3 on, with LISTEN_FDNAMES names;
    /// the fds are the sockets' (SocketRuntime.fds owns them).
    var passed: [(fd: FileDescriptor, name: String)]
    /// Path units that start the service.
    var paths: [UnitID] = []
    /// Work queued on the triggering listeners when the service started.
    var queuedAtStart: Int?
    /// The process group of the current run (porter makes the service a
    /// session leader: the group is its first pid, even after MAINPID=).
    var group: Int32?
    /// A main process that is not porter's child (MAINPID=), followed
    /// through a pidfd, which becomes readable when it exits.
    var mainWatch: (pid: Int32, fd: FileDescriptor, token: UInt64)?
    /// A MAINPID= process that ended while porter was being upgraded.
    var mainWatchPendingPID: Int32?
    /// Type=forking: when the first process started, and the search for
    /// the main process once it has exited.
    var forkParentStart: UInt64?
    var mainSearch: MainSearch? { didSet { timers?.touch(.mainSearch(id)) } }
    /// FDSTORE=1: fds the service parked with porter, passed again at each start.
    var stored: [(fd: FileDescriptor, name: String)] = []
    /// The last STATUS= it sent.
    var status: String?
    /// ProxyTo=: the connections porter relays to it.
    var proxy: ServiceProxy?

    init(id: UnitID, prepared: PreparedService, triggers: [UnitID], passed: [(fd: FileDescriptor, name: String)], timers: Timers) {
        self.id = id
        self.timers = timers
        self.prepared = prepared
        self.triggers = triggers
        self.passed = passed
        machine = ServiceMachine(name: prepared.config.name.description, policy: prepared.config.policy)
    }

    var name: String { prepared.config.name.description }
}

/// The commands of a service that run besides its main process, one at a
/// time: before the start (ExecCondition=, ExecStartPre=), after it
/// (ExecStartPost=), before the kill (ExecStop=) and once the run is over
/// (ExecStop= if it was not run, ExecStopPost=). What the machine decided
/// meanwhile and must wait for them waits in `deferred`.
/// `porter reload UNIT` of a running service: where the reload stands and
/// the control exchanges waiting for its outcome.
struct ReloadJob {
    var machine: ServiceReload
    var waiters: [UInt64]
}

final class ControlRun {
    enum Purpose: String { case start, startPost, stop, end, reload }
    let purpose: Purpose
    var sequence: CommandSequence
    var pid: Int32?
    var deadline: Instant?
    /// Killed at its deadline: its exit is a timeout.
    var timedOut = false
    var deferred: [ServiceMachine.Action] = []
    /// The commands after the run, when it ended while ExecStop= ran: they
    /// follow it instead of cutting it short.
    var then: CommandSequence?

    init(_ purpose: Purpose, _ sequence: CommandSequence) {
        self.purpose = purpose
        self.sequence = sequence
    }

    /// Whether `action` must wait for these commands: a start or a watch
    /// for the commands after a run, the stop signals for ExecStop=.
    func holds(_ action: ServiceMachine.Action) -> Bool {
        switch (purpose, action) {
        case (.end, .watch), (.end, .start), (.stop, .watch), (.stop, .start): return true
        case (.stop, .signal(let sig)): return sig.signal != Sig.continue
        default: return false
        }
    }
}

/// A path unit while porter runs.
final class PathRuntime {
    /// What the unit does when its conditions fire: one of two kinds, never
    /// a mix of optionals.
    enum Mode {
        /// Accept=no: starts one service, when its trigger machine says.
        case service(ServiceLink)
        /// Accept=yes: one job per file, from a template.
        case perFile(JobQueue)
    }

    final class ServiceLink {
        var service: UnitID?
        var trigger: PathTrigger
        init(_ trigger: PathTrigger) { self.trigger = trigger }
    }

    final class JobQueue {
        /// What each job runs (a reload may replace it; running jobs keep theirs).
        var template: PreparedService
        var jobs: FileJobs { didSet { timers.touch(key) } }
        var sinceTrim = 0
        /// `jobs.enqueued` already added to the unit's counts.
        var counted: UInt64 = 0
        private let timers: Timers
        private let key: TimerKey
        init(template: PreparedService, jobs: FileJobs, timers: Timers, key: TimerKey) {
            self.template = template
            self.jobs = jobs
            self.timers = timers
            self.key = key
        }
    }

    let config: PathConfig
    let id: UnitID
    let mode: Mode
    /// Per-job failures: anyone who may write the directory can drive them.
    var failureLog = LogRateLimit(interval: .seconds(10), burst: 10)
    /// The path that started the service last, for TRIGGER_PATH.
    var fired: String?
    /// The inotify watches each condition relies on.
    var watchDescriptors: [[Int32]]
    /// Whether each condition's path existed at the last look: a path
    /// that appeared or went away while porter looked elsewhere is a change.
    var existed: [Bool]
    /// The directory each condition looks into (the directory itself for
    /// DirectoryNotEmpty= and PathExistsGlob=, the parent otherwise),
    /// resolved through SafePath and held open: every look, open and
    /// rename goes through it, so a swapped path component cannot redirect
    /// porter. nil while it is missing or refused.
    var directories: [FileDescriptor?]
    /// Why a condition's directory was refused, to log each reason once.
    var refusals: [String?]

    /// Accept=yes units pass the template (and, across a reload, the queue
    /// to keep); Accept=no units get a trigger machine.
    init(id: UnitID, config: PathConfig, template: PreparedService?, queue: JobQueue? = nil, timers: Timers) {
        self.id = id
        self.config = config
        if let template {
            let q = queue ?? JobQueue(template: template,
                                      jobs: FileJobs(name: config.name.description, maxRunning: config.maxConnections,
                                                     moveFailed: config.failedDirectory != nil),
                                      timers: timers, key: .path(id))
            q.template = template
            mode = .perFile(q)
        } else {
            mode = .service(ServiceLink(PathTrigger(name: config.name.description, limitInterval: config.triggerLimitInterval,
                                                    limitBurst: config.triggerLimitBurst)))
        }
        watchDescriptors = Array(repeating: [], count: config.conditions.count)
        existed = Array(repeating: false, count: config.conditions.count)
        directories = Array(repeating: nil, count: config.conditions.count)
        refusals = Array(repeating: nil, count: config.conditions.count)
    }

    var name: String { config.name.description }

    /// The job queue of a per-file unit.
    var queue: JobQueue? {
        if case .perFile(let q) = mode { return q }
        return nil
    }

    /// The service link of an Accept=no unit.
    var link: ServiceLink? {
        if case .service(let l) = mode { return l }
        return nil
    }

    /// The trigger limit was hit: the unit watches nothing any more.
    var failed: Bool { link?.trigger.isFailed ?? false }

    /// The template a job of this unit runs, or nil for Accept=no.
    var template: PreparedService? { queue?.template }
}

/// What porter holds for a ProxyTo= service: the relays (connections
/// porter accepted for it) and the UDP flows, and whether the backend of
/// this run has been seen ready.
final class ServiceProxy {
    /// Relays waiting for the backend, oldest first.
    var waiting: [UInt64] = []
    /// Every live relay and flow of this service.
    var relays: Set<UInt64> = []
    var flows: Set<UInt64> = []
    /// The backend accepted a connection in this run (or said READY=1).
    var readyThisRun = false
    var busy: Bool { !relays.isEmpty || !flows.isEmpty }
}
