import CPorter
import Glibc

/// Everything a child needs, decided by the supervisor.
public struct SpawnPlan {
    public var path: String
    public var arguments: [String]
    /// NAME=value strings; LISTEN_PID and LISTEN_PIDFDID are added by the
    /// child itself when `setListenPID` is set, because only it knows its pid.
    public var environment: [String]
    public var setListenPID = false
    /// WATCHDOG_PID=, written by the child too.
    public var setWatchdogPID = false
    /// fds[i] becomes fd i in the child; -1 leaves it closed. At least 0-2.
    public var fds: [Int32]
    public var ids: (uid: UInt32, gid: UInt32, groups: [UInt32])? = nil
    public var workingDirectory: String? = nil
    public var workingDirectoryOptional = false
    public var umask: Int32 = -1
    public var noNewPrivileges = false
    /// RLIMIT_NOFILE to restore in the child (porter raises its own).
    public var fileLimit: (soft: UInt64, hard: UInt64)? = nil
    /// Limits, priorities and the rest, set before the ids change.
    public var settings: Settings? = nil

    /// What systemd.exec(5) sets on the process besides ids and streams.
    public struct Settings {
        public var limits: [(resource: Int32, soft: UInt64, hard: UInt64)] = []
        public var nice: Int32? = nil
        public var oomScoreAdjust: Int32? = nil
        public var ioPriority: Int32? = nil
        public var scheduler: (policy: Int32, priority: Int32)? = nil
        public var affinity: [UInt8]? = nil
        public var timerSlack: UInt64? = nil
        public var personality: UInt32? = nil
        public var ignoreSIGPIPE = false
        public init() {}
    }

    public init(path: String, arguments: [String], environment: [String], fds: [Int32]) {
        self.path = path
        self.arguments = arguments
        self.environment = environment
        self.fds = fds
    }
}

/// Why a child did not get to run its program: the step and the errno.
public struct SpawnError: Error, Equatable, CustomStringConvertible {
    public var stage: Int32
    public var errno: Int32
    /// The child that failed; it has exited with 127 and still needs reaping.
    public var pid: Int32?
    public var subject: String

    /// The program itself could not be executed (missing, not executable...).
    public var isExecFailure: Bool { stage == Int32(PORTER_STAGE_EXEC.rawValue) }

    public var description: String {
        let step: String
        switch stage {
        case Int32(PORTER_STAGE_SIGNALS.rawValue): step = "reset signals"
        case Int32(PORTER_STAGE_SETSID.rawValue): step = "setsid"
        case Int32(PORTER_STAGE_SETGROUPS.rawValue): step = "setgroups"
        case Int32(PORTER_STAGE_SETGID.rawValue): step = "setgid"
        case Int32(PORTER_STAGE_SETUID.rawValue): step = "setuid"
        case Int32(PORTER_STAGE_FDS.rawValue): step = "move file descriptors"
        case Int32(PORTER_STAGE_CHDIR.rawValue): step = "chdir"
        case Int32(PORTER_STAGE_NO_NEW_PRIVS.rawValue): step = "no_new_privs"
        case Int32(PORTER_STAGE_EXEC.rawValue): step = "exec"
        case Int32(PORTER_STAGE_RLIMIT.rawValue): step = "setrlimit(RLIMIT_NOFILE)"
        case Int32(PORTER_STAGE_NICE.rawValue): step = "Nice=: setpriority"
        case Int32(PORTER_STAGE_OOM_SCORE.rawValue): step = "OOMScoreAdjust=: /proc/self/oom_score_adj"
        case Int32(PORTER_STAGE_IOPRIO.rawValue): step = "IOSchedulingClass=: ioprio_set"
        case Int32(PORTER_STAGE_SCHEDULER.rawValue): step = "CPUSchedulingPolicy=: sched_setscheduler"
        case Int32(PORTER_STAGE_AFFINITY.rawValue): step = "CPUAffinity=: sched_setaffinity"
        case Int32(PORTER_STAGE_TIMER_SLACK.rawValue): step = "TimerSlackNSec=: prctl(PR_SET_TIMERSLACK)"
        case Int32(PORTER_STAGE_PERSONALITY.rawValue): step = "Personality=: personality"
        case let s where s >= Int32(PORTER_STAGE_LIMIT_BASE.rawValue) && s < Int32(PORTER_STAGE_LIMIT_BASE.rawValue) + 16:
            let names = ["CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS", "LOCKS",
                         "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"]
            step = "Limit\(names[Int(s - Int32(PORTER_STAGE_LIMIT_BASE.rawValue))])=: setrlimit"
        default: step = "clone"
        }
        return "\(step)\(subject.isEmpty ? "" : " " + subject): \(SysError.describe(errno))"
    }
}

/// Everything one child reads between clone and exec, in memory porter
/// owns until the child has let go of it: strings, argv/envp arrays, the fd
/// table, groups and the request itself.
final class SpawnMemory {
    let request = UnsafeMutablePointer<porter_spawn_request>.allocate(capacity: 1)
    private let text: UnsafeMutablePointer<CChar>
    private let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    private let fds: UnsafeMutablePointer<Int32>
    private let groups: UnsafeMutablePointer<gid_t>
    private var settings: UnsafeMutablePointer<porter_process_settings>? = nil
    private var limits: UnsafeMutablePointer<porter_rlimit>? = nil
    private var affinity: UnsafeMutablePointer<UInt8>? = nil

    init(_ plan: SpawnPlan, errorFD: Int32, resetSignals: UnsafePointer<Int32>, resetCount: Int, pidfs: Bool) {
        let slot = 21  // room for 20 digits and a NUL
        var extra: [String] = []
        if plan.setListenPID {
            extra.append("LISTEN_PID=")
            if pidfs { extra.append("LISTEN_PIDFDID=") }
        }
        if plan.setWatchdogPID { extra.append("WATCHDOG_PID=") }
        var bytes = plan.path.utf8.count + 1 + extra.count * slot + (plan.workingDirectory?.utf8.count ?? 0) + 1
        for a in plan.arguments { bytes += a.utf8.count + 1 }
        for e in plan.environment { bytes += e.utf8.count + 1 }
        for e in extra { bytes += e.utf8.count + 1 }
        text = .allocate(capacity: bytes)
        pointers = .allocate(capacity: plan.arguments.count + plan.environment.count + extra.count + 2)
        fds = .allocate(capacity: max(plan.fds.count, 1))
        fds.initialize(from: plan.fds, count: plan.fds.count)
        let groupList = plan.ids?.groups ?? []
        groups = .allocate(capacity: max(groupList.count, 1))
        groups.initialize(from: groupList, count: groupList.count)

        var offset = 0
        func put(_ s: String, room: Int = 0) -> UnsafeMutablePointer<CChar> {
            let start = text + offset
            var s = s
            s.withUTF8 { u in
                if let base = u.baseAddress {
                    UnsafeMutableRawPointer(start).copyMemory(from: base, byteCount: u.count)
                }
                offset += u.count
            }
            text[offset] = 0
            offset += 1 + room
            return start
        }
        let path = put(plan.path)
        var p = 0
        let argv = pointers
        for a in plan.arguments { pointers[p] = put(a); p += 1 }
        pointers[p] = nil; p += 1
        let envp = pointers + p
        for e in plan.environment { pointers[p] = put(e); p += 1 }
        var pidDigits: UnsafeMutablePointer<CChar>? = nil
        var pidfdDigits: UnsafeMutablePointer<CChar>? = nil
        var watchdogDigits: UnsafeMutablePointer<CChar>? = nil
        for e in extra {
            let start = put(e, room: slot)
            pointers[p] = start; p += 1
            let digits = start + e.utf8.count
            switch e {
            case "LISTEN_PID=": pidDigits = digits
            case "LISTEN_PIDFDID=": pidfdDigits = digits
            default: watchdogDigits = digits
            }
        }
        pointers[p] = nil

        var rq = porter_spawn_request()
        rq.path = UnsafePointer(path)
        rq.argv = UnsafePointer(argv)
        rq.envp = UnsafePointer(envp)
        rq.listen_pid_digits = pidDigits
        rq.listen_pidfdid_digits = pidfdDigits
        rq.watchdog_pid_digits = watchdogDigits
        rq.fds = UnsafePointer(fds)
        rq.nfds = Int32(plan.fds.count)
        rq.error_fd = errorFD
        rq.new_session = 1
        if let ids = plan.ids {
            rq.change_ids = 1
            rq.uid = ids.uid
            rq.gid = ids.gid
            rq.groups = UnsafePointer(groups)
            rq.ngroups = Int32(groupList.count)
        }
        rq.cwd = plan.workingDirectory.map { UnsafePointer(put($0)) }
        rq.cwd_optional = plan.workingDirectoryOptional ? 1 : 0
        rq.umask = plan.umask
        rq.no_new_privs = plan.noNewPrivileges ? 1 : 0
        if let limit = plan.fileLimit {
            rq.nofile_soft = limit.soft
            rq.nofile_hard = limit.hard
        }
        rq.reset_signals = resetSignals
        rq.nreset_signals = Int32(resetCount)
        if let ps = plan.settings {
            var c = porter_process_settings()
            if !ps.limits.isEmpty {
                let l = UnsafeMutablePointer<porter_rlimit>.allocate(capacity: ps.limits.count)
                for (i, x) in ps.limits.enumerated() { (l + i).initialize(to: porter_rlimit(resource: x.resource, cur: x.soft, max: x.hard)) }
                c.limits = UnsafePointer(l)
                c.nlimits = Int32(ps.limits.count)
                limits = l
            }
            if let n = ps.nice { c.set_nice = 1; c.nice = n }
            if let o = ps.oomScoreAdjust { c.set_oom_score = 1; c.oom_score_adj = o }
            if let io = ps.ioPriority { c.set_ioprio = 1; c.ioprio = io }
            if let sc = ps.scheduler { c.set_scheduler = 1; c.sched_policy = sc.policy; c.sched_priority = sc.priority }
            if let mask = ps.affinity {
                let a = UnsafeMutablePointer<UInt8>.allocate(capacity: mask.count)
                a.initialize(from: mask, count: mask.count)
                c.affinity = UnsafePointer(a)
                c.affinity_size = Int32(mask.count)
                affinity = a
            }
            if let t = ps.timerSlack { c.set_timer_slack = 1; c.timer_slack = t }
            if let p = ps.personality { c.set_personality = 1; c.personality = UInt(p) }
            c.ignore_sigpipe = ps.ignoreSIGPIPE ? 1 : 0
            let box = UnsafeMutablePointer<porter_process_settings>.allocate(capacity: 1)
            box.initialize(to: c)
            settings = box
            rq.settings = UnsafePointer(box)
        }
        request.initialize(to: rq)
    }

    deinit {
        request.deallocate()
        text.deallocate()
        pointers.deallocate()
        fds.deallocate()
        groups.deallocate()
        settings?.deallocate()
        limits?.deallocate()
        affinity?.deallocate()
    }
}

/// Starts children through porter_spawn (see spawn.c) and learns about
/// failures before exec over one close-on-exec, non-blocking pipe that every
/// child shares: a failing child writes `{pid, step, errno}` and exits 127.
///
/// Two ways to start:
/// - `spawn` waits for the exec (CLONE_VFORK): the outcome is known when it
///   returns. Accept=no services use it, so their machine learns at once.
/// - `spawnDetached` does not wait: the child execs on the other core while
///   porter accepts the next connection. Its stack and memory stay reserved
///   until the kernel says the child has let go (CLONE_CHILD_CLEARTID); a
///   failure shows up later, by pid, through `failure(of:)`.
public final class Spawner {
    private let errorRead: FileDescriptor
    private let errorWrite: FileDescriptor
    /// Signals porter ignores; the child puts them back to SIG_DFL.
    private let resetSignals: UnsafeMutablePointer<Int32>
    private let resetCount: Int
    public let pidfsSupported: Bool

    /// A stack and the word the kernel clears when the child lets go of it.
    private struct Slot {
        let stack: UnsafeMutableRawPointer
        let done: UnsafeMutablePointer<Int32>
        var memory: SpawnMemory?
        var pid: Int32 = 0
    }
    private static let stackSize = 64 * 1024
    /// Idle slots kept for the next burst (all of them, at two).
    private static let keptSlots = 2
    /// Children allowed between clone and exec at once; beyond that porter
    /// waits for the exec as with `spawn`. Two keep both cores busy (porter
    /// accepting, a child exec'ing); more raised throughput no further on
    /// two cores but stretched the tail: at 16 concurrent clients, p99 was
    /// 9 ms with 2, 10 ms with 3, 14 ms with 4 and 24-56 ms unbounded, for
    /// 1.08-1.15x the posix_spawn floor's rate (loadgen conn -n 3000 -c 16).
    private static let maxSlots = 2
    private var busy: [Slot] = []
    private var idle: [Slot] = []
    /// What a detached child was asked to do, to word a failure.
    private var subjects: [Int32: (path: String, cwd: String?, ids: (uid: UInt32, gid: UInt32)?)] = [:]
    private var failures: [Int32: (stage: Int32, errno: Int32)] = [:]

    /// Owns the error pipe until `close()`.
    public init(resetSignals: [Int32] = [SIGPIPE]) throws(SysError) {
        let p = try makePipe(nonBlocking: true)
        errorRead = p.read
        errorWrite = p.write
        self.resetSignals = .allocate(capacity: max(resetSignals.count, 1))
        self.resetSignals.initialize(from: resetSignals, count: resetSignals.count)
        resetCount = resetSignals.count
        pidfsSupported = porter_pidfs_supported() != 0
    }

    public func close() {
        errorRead.close()
        errorWrite.close()
    }

    private func memory(_ plan: SpawnPlan) -> SpawnMemory {
        SpawnMemory(plan, errorFD: errorWrite.rawValue, resetSignals: resetSignals, resetCount: resetCount, pidfs: pidfsSupported)
    }

    /// Starts `plan` and returns the child's pid once it has exec'd.
    public func spawn(_ plan: SpawnPlan) -> Result<Int32, SpawnError> {
        let m = memory(plan)
        let pid = porter_spawn(m.request)
        if pid < 0 {
            return .failure(SpawnError(stage: Int32(PORTER_STAGE_CLONE.rawValue), errno: -pid, pid: nil, subject: ""))
        }
        // CLONE_VFORK: a failure message, if any, is in the pipe already.
        drainFailures()
        if let f = failures.removeValue(forKey: pid) {
            return .failure(Self.error(f, pid: pid, path: plan.path, cwd: plan.workingDirectory, ids: plan.ids.map { ($0.uid, $0.gid) }))
        }
        return .success(pid)
    }

    /// Starts `plan` without waiting for its exec; a later failure is
    /// reported by `failure(of:)`. Falls back to `spawn` when every slot is busy.
    public func spawnDetached(_ plan: SpawnPlan) -> Result<Int32, SpawnError> {
        reclaim()
        var slot: Slot
        if let s = idle.popLast() {
            slot = s
        } else if busy.count < Self.maxSlots, let stack = porter_stack_create(Self.stackSize) {
            slot = Slot(stack: stack, done: .allocate(capacity: 1))
        } else {
            return spawn(plan)
        }
        let m = memory(plan)
        let pid = porter_spawn_detached(m.request, slot.stack + Self.stackSize, slot.done)
        if pid < 0 {
            idle.append(slot)
            return .failure(SpawnError(stage: Int32(PORTER_STAGE_CLONE.rawValue), errno: -pid, pid: nil, subject: ""))
        }
        slot.memory = m
        slot.pid = pid
        busy.append(slot)
        subjects[pid] = (plan.path, plan.workingDirectory, plan.ids.map { ($0.uid, $0.gid) })
        return .success(pid)
    }

    /// Frees the slots of children that have exec'd or exited.
    public func reclaim() {
        guard !busy.isEmpty else { return }
        drainFailures()
        var i = 0
        while i < busy.count {
            if porter_spawn_released(busy[i].done) != 0 {
                var s = busy.remove(at: i)
                s.memory = nil
                if failures[s.pid] == nil { subjects[s.pid] = nil }
                if idle.count < Self.keptSlots {
                    idle.append(s)
                } else {
                    porter_stack_destroy(s.stack, Self.stackSize)
                    s.done.deallocate()
                }
            } else {
                i += 1
            }
        }
    }

    /// The exec failure of a detached child, once (it has exited with 127).
    public func failure(of pid: Int32) -> SpawnError? {
        reclaim()
        drainFailures()
        guard let f = failures.removeValue(forKey: pid) else { return nil }
        let s = subjects.removeValue(forKey: pid)
        return Self.error(f, pid: pid, path: s?.path ?? "", cwd: s?.cwd, ids: s?.ids)
    }

    /// Reads every failure message waiting in the pipe.
    public func drainFailures() {
        var f = porter_spawn_failure()
        let size = MemoryLayout<porter_spawn_failure>.size
        while true {
            let n = withUnsafeMutableBytes(of: &f) { raw in (try? errorRead.read(into: raw)) ?? nil }
            guard let n, n == size else { return }
            failures[f.pid] = (f.stage, f.error)
        }
    }

    private static func error(_ f: (stage: Int32, errno: Int32), pid: Int32, path: String, cwd: String?,
                              ids: (uid: UInt32, gid: UInt32)?) -> SpawnError {
        let subject: String
        switch f.stage {
        case Int32(PORTER_STAGE_EXEC.rawValue): subject = path
        case Int32(PORTER_STAGE_CHDIR.rawValue): subject = cwd ?? ""
        case Int32(PORTER_STAGE_SETUID.rawValue): subject = ids.map { String($0.uid) } ?? ""
        case Int32(PORTER_STAGE_SETGID.rawValue): subject = ids.map { String($0.gid) } ?? ""
        default: subject = ""
        }
        return SpawnError(stage: f.stage, errno: f.errno, pid: pid, subject: subject)
    }
}
