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
    /// fds[i] becomes fd i in the child; -1 leaves it closed. At least 0-2.
    public var fds: [Int32]
    public var ids: (uid: UInt32, gid: UInt32, groups: [UInt32])? = nil
    public var workingDirectory: String? = nil
    public var workingDirectoryOptional = false
    public var umask: Int32 = -1
    public var noNewPrivileges = false
    /// RLIMIT_NOFILE to restore in the child (porter raises its own).
    public var fileLimit: (soft: UInt64, hard: UInt64)? = nil

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
        default: step = "clone"
        }
        return "\(step)\(subject.isEmpty ? "" : " " + subject): \(SysError.describe(errno))"
    }
}

/// Starts children through porter_spawn (clone with CLONE_VM|CLONE_VFORK;
/// see spawn.c) and learns about failures before the child's exec over one
/// close-on-exec, non-blocking pipe that every child shares. Because the
/// parent resumes only after the child has exec'd or exited, a failure
/// message is already in the pipe when `spawn` reads it: no per-spawn pipe,
/// no waiting.
public final class Spawner {
    private let errorRead: FileDescriptor
    private let errorWrite: FileDescriptor
    /// Signals porter ignores; the child puts them back to SIG_DFL.
    private let resetSignals: [Int32]
    public let pidfsSupported: Bool

    /// Owns the error pipe until `close()`.
    public init(resetSignals: [Int32] = [SIGPIPE]) throws(SysError) {
        let p = try makePipe(nonBlocking: true)
        errorRead = p.read
        errorWrite = p.write
        self.resetSignals = resetSignals
        pidfsSupported = porter_pidfs_supported() != 0
    }

    public func close() {
        errorRead.close()
        errorWrite.close()
    }

    /// Starts `plan`; returns the child's pid once it has exec'd.
    public func spawn(_ plan: SpawnPlan) -> Result<Int32, SpawnError> {
        // One allocation for every string the child reads: argv, envp, the
        // digit slots. Freed when porter_spawn returns (the child has exec'd
        // or exited by then, so nothing refers to it any more).
        let slot = 21
        var extra: [String] = []
        if plan.setListenPID {
            extra.append("LISTEN_PID=")
            if pidfsSupported { extra.append("LISTEN_PIDFDID=") }
        }
        let strings = [plan.path] + plan.arguments + plan.environment + extra + [plan.workingDirectory ?? ""]
        let bytes = strings.reduce(0) { $0 + $1.utf8.count + 1 } + extra.count * slot
        let text = UnsafeMutablePointer<CChar>.allocate(capacity: bytes)
        let pointerCount = plan.arguments.count + 1 + plan.environment.count + extra.count + 1
        let pointers = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: pointerCount)
        defer {
            text.deallocate()
            pointers.deallocate()
        }
        var offset = 0
        func put(_ s: String, room: Int = 0) -> UnsafeMutablePointer<CChar> {
            let start = text + offset
            for b in s.utf8 {
                text[offset] = CChar(bitPattern: b)
                offset += 1
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
        for (i, e) in extra.enumerated() {
            let s = put(e, room: slot)
            pointers[p] = s; p += 1
            let digits = s + e.utf8.count
            if i == 0 { pidDigits = digits } else { pidfdDigits = digits }
        }
        pointers[p] = nil
        let cwd = plan.workingDirectory.map { put($0) }

        let groups = plan.ids?.groups ?? []
        let result: pid_t = plan.fds.withUnsafeBufferPointer { fds in
            groups.withUnsafeBufferPointer { groupList in
                resetSignals.withUnsafeBufferPointer { signals in
                    var rq = porter_spawn_request()
                    rq.path = UnsafePointer(path)
                    rq.argv = UnsafePointer(argv)
                    rq.envp = UnsafePointer(envp)
                    rq.listen_pid_digits = pidDigits
                    rq.listen_pidfdid_digits = pidfdDigits
                    rq.fds = fds.baseAddress
                    rq.nfds = Int32(fds.count)
                    rq.error_fd = errorWrite.rawValue
                    rq.new_session = 1
                    if let ids = plan.ids {
                        rq.change_ids = 1
                        rq.uid = ids.uid
                        rq.gid = ids.gid
                        rq.groups = groupList.baseAddress
                        rq.ngroups = Int32(groupList.count)
                    }
                    rq.cwd = cwd.map { UnsafePointer($0) }
                    rq.cwd_optional = plan.workingDirectoryOptional ? 1 : 0
                    rq.umask = plan.umask
                    rq.no_new_privs = plan.noNewPrivileges ? 1 : 0
                    if let limit = plan.fileLimit {
                        rq.nofile_soft = limit.soft
                        rq.nofile_hard = limit.hard
                    }
                    rq.reset_signals = signals.baseAddress
                    rq.nreset_signals = Int32(signals.count)
                    return porter_spawn(&rq)
                }
            }
        }
        if result < 0 {
            return .failure(SpawnError(stage: Int32(PORTER_STAGE_CLONE.rawValue), errno: -result, pid: nil, subject: ""))
        }
        if let failure = readFailure(), failure.pid == result {
            let subject: String
            switch failure.stage {
            case Int32(PORTER_STAGE_EXEC.rawValue): subject = plan.path
            case Int32(PORTER_STAGE_CHDIR.rawValue): subject = plan.workingDirectory ?? ""
            case Int32(PORTER_STAGE_SETUID.rawValue): subject = plan.ids.map { String($0.uid) } ?? ""
            case Int32(PORTER_STAGE_SETGID.rawValue): subject = plan.ids.map { String($0.gid) } ?? ""
            default: subject = ""
            }
            return .failure(SpawnError(stage: failure.stage, errno: failure.error, pid: result, subject: subject))
        }
        return .success(result)
    }

    private func readFailure() -> porter_spawn_failure? {
        var f = porter_spawn_failure()
        let size = MemoryLayout<porter_spawn_failure>.size
        let n = withUnsafeMutableBytes(of: &f) { raw in (try? errorRead.read(into: raw)) ?? nil }
        guard let n, n == size else { return nil }
        return f
    }
}
