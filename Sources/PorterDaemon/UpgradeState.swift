import PorterCore

/// Everything porter knows that the next image needs to go on where this
/// one stopped (version 1 of the handover's `state`): the counts, the
/// pauses, and every unit's and child's state, by unit name. fds are
/// numbers: they stay open across execve(2) (porter clears close-on-exec on
/// exactly these), so the new image finds them where they were. Listening
/// sockets are not listed here: the header names them, and the new image
/// takes each by its address, as it would any socket it was handed.
struct UpgradeState: Codable {
    var porterVersion: String
    var started: Instant
    var units: [String: UnitCounters]
    var counters: PorterCounters
    var paused: [String]
    /// The fd limits porter was started with, which its children get back
    /// (the new image sees only the raised ones).
    var childFileLimit: [UInt64]?
    var controlPath: String?
    var metricsAddress: String?
    var pidFilePath: String?
    var journals: [Journal]
    var sockets: [SocketState]
    var services: [ServiceState]
    var instances: [InstanceState]
    var paths: [PathState]
    var leftovers: [LeftoverState]
    /// Children to reap without a word (killed control commands, failed spawns).
    var strays: [Int32]
    /// Processes of units the configuration no longer had when porter
    /// upgraded (a reload removed them and they were still stopping).
    var orphans: [OrphanState]
    /// ProxyTo=: every relayed connection and UDP flow, with the pipes and
    /// what is in them, and the next id to give.
    var relays: [RelayState] = []
    var flows: [FlowState] = []
    var nextRelay: UInt64 = 1
    /// InternalService=: open connections and where each is (optional: a
    /// state from before built-ins existed has none).
    var builtins: [BuiltinState]? = nil

    struct BuiltinState: Codable {
        var id: UInt64
        var socket: String
        var service: String
        var fd: Int32
        var peer: String
        var source: [UInt8]?
        var since: Instant
        var pending: [UInt8]
        var clientDone: Bool
        var offset: Int
        var bytesIn: UInt64
        var bytesOut: UInt64
    }

    struct RelayState: Codable {
        struct Direction: Codable {
            var read: Int32?
            var write: Int32?
            var capacity: Int
            var inPipe: Int
            var eof: Bool
            var shutDown: Bool
            var moved: UInt64
            var bulk: Bool?
        }
        var id: UInt64
        var socket: String
        var service: String
        var client: Int32
        var backend: Int32?
        var phase: Relay.Phase
        var up: Direction
        var down: Direction
        var prefix: [UInt8]
        var peer: String
        var since: Instant
        var lastTraffic: Instant
        var retryAt: Instant?
        var attempts: Int
        var giveUpAt: Instant?
        /// The client's address, counted again by MaxConnectionsPerSource=.
        var source: [UInt8]? = nil
    }

    struct FlowState: Codable {
        var id: UInt64
        var socket: String
        var listener: Int
        var service: String
        /// sockaddr bytes and length of the client.
        var client: [UInt8]
        var clientLength: UInt32
        var backend: Int32?
        var held: [[UInt8]]
        var lastTraffic: Instant
        var toBackend: UInt64
        var toClient: UInt64
    }

    struct Journal: Codable {
        var name: String
        var read: Int32
        var write: Int32
        /// A line not finished yet.
        var pending: [UInt8]
    }

    struct SocketState: Codable {
        var name: String
        var accept: AcceptMachine?
        var accepted: UInt32
    }

    struct ServiceState: Codable {
        var name: String
        var machine: ServiceMachine.Snapshot
        var kill: KillPolicy
        var retired: Bool
        var mainPIDs: [Int32]
        var controlPIDs: [Int32]
        var group: Int32?
        var mainWatchPID: Int32?
        var forkParentStart: UInt64?
        var mainSearch: Search?
        var stored: [Stored]
        var status: String?
        var queuedAtStart: Int?
        var control: Control?
        /// ProxyTo=: whether this run's backend was seen ready.
        var proxyReady: Bool?
        var mainSequence: CommandSequence?
        var runStartedOK: Bool
        var skipCommands: Bool
        var startPostRan: Bool
        var lastExit: ProcessExit?
        var lastOutcome: CommandSequence.Outcome

        struct Search: Codable {
            var since: UInt64
            var began: Instant
            var next: Instant
            var ambiguousSince: Instant?
        }

        struct Stored: Codable {
            var fd: Int32
            var name: String
        }

        struct Control: Codable {
            var purpose: String
            var sequence: CommandSequence
            var pid: Int32?
            var deadline: Instant?
            var timedOut: Bool
            var deferred: [ServiceMachine.Action]
            var then: CommandSequence?
        }
    }

    struct InstanceState: Codable {
        var pid: Int32
        var socket: String?
        var path: String?
        var file: String?
        var ignoreFailure: Bool
        var executable: String
        var journal: String?
        var machine: InstanceMachine
        var watchFD: Int32?
        var watchUnix: Bool
        var sequence: CommandSequence?
        var held: Held?
        var peer: String?
        var started: Instant
        var template: String
        /// The client's address, counted again by MaxConnectionsPerSource=
        /// (nil from a porter that did not save it).
        var source: [UInt8]? = nil

        struct Held: Codable {
            var fd: Int32?
            var info: Connection
            var tcp: Bool
            var counted: Bool
            var since: Instant
        }
    }

    struct PathState: Codable {
        var name: String
        var jobs: FileJobs?
        var counted: UInt64
        var trigger: PathTrigger?
        var fired: String?
    }

    struct LeftoverState: Codable {
        var group: Int32
        var unit: String
        var kill: KillPolicy
        var killAt: Instant?
        var killed: Bool
    }

    struct OrphanState: Codable {
        var pid: Int32
        var unit: String
        var kill: KillPolicy
        var group: Int32?
    }
}
