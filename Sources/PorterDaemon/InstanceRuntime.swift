import PorterCore
import PorterSys

/// The running Accept=yes instances by pid; every change touches the
/// instance's deadline.
struct InstanceTable: Sequence {
    private var storage: [Int32: Instance] = [:]
    let timers: Timers

    init(timers: Timers) { self.timers = timers }

    subscript(pid: Int32) -> Instance? {
        get { storage[pid] }
        set {
            storage[pid] = newValue
            timers.touch(.instance(pid))
        }
    }

    mutating func removeValue(forKey pid: Int32) -> Instance? {
        timers.touch(.instance(pid))
        return storage.removeValue(forKey: pid)
    }

    var isEmpty: Bool { storage.isEmpty }
    var count: Int { storage.count }
    func makeIterator() -> Dictionary<Int32, Instance>.Iterator { storage.makeIterator() }
}

/// What started an instance.
enum InstanceOwner {
    case socket(UnitID)
    case path(UnitID, file: String)
}

/// A running Accept=yes instance: what porter holds for it, and the
/// machine that decides when it is stopped.
struct Instance {
    var owner: InstanceOwner
    var ignoreFailure: Bool
    /// The program it was started with, to forget a failed PATH lookup.
    var executable: String
    /// Where its output goes: a journal pipe outlives a unit a reload
    /// removed until its last instance is gone.
    var journal: JournalPipe?
    var machine: InstanceMachine
    /// IdleTimeoutSec=: porter's copy of the connection, watched for traffic.
    var watch: IdleWatch?
    /// A per-file job or per-connection instance with more than one
    /// command: where it is in them.
    var sequence: CommandSequence? = nil
    /// A per-connection instance with commands: the connection, held by
    /// porter until its ExecStart= has it, and what its commands are told.
    var held: HeldConnection? = nil
    /// The connection's peer (`127.0.0.1:5555`), for its log line.
    var peer: String? = nil
    /// The peer's address, for MaxConnectionsPerSource=.
    var source: [UInt8]? = nil
    /// When the connection or file was taken: the instance's duration.
    var started: Instant = MonotonicClock.now()
    /// The template's name, under which the instance is counted.
    var template = ""

    struct HeldConnection {
        /// Until the last ExecStart= line has started.
        var fd: FileDescriptor?
        var info: Connection
        var tcp: Bool
        /// When porter took the connection.
        var since: Instant
        /// Whether the socket's accept machine counts it as running.
        var counted = false
    }

    struct IdleWatch {
        var connection: FileDescriptor
        /// Unix sockets: the epoll registration of the copy, watched
        /// edge-triggered, each event counted as activity. TCP has none:
        /// the kernel's TCP_INFO says when data last went either way.
        var token: UInt64?
    }

    var unit: String { machine.unit }
    var kill: KillPolicy { machine.kill }
    var deadline: Instant? { machine.deadline }
}
