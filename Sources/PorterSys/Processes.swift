import CPorter
import Glibc

/// How a child ended, as waitpid(2) reports it.
public enum ExitStatus: Equatable, Sendable {
    case exited(Int32)
    case signaled(Int32, coreDumped: Bool)

    public init(waitStatus s: Int32) {
        if porter_wifsignaled(s) != 0 {
            self = .signaled(porter_wtermsig(s), coreDumped: porter_wcoredump(s) != 0)
        } else {
            self = .exited(porter_wexitstatus(s))
        }
    }

    public var isSuccess: Bool { self == .exited(0) }
}

public enum Processes {
    /// Reaps one exited child, nil when none is left to reap.
    /// The corresponding C function is waitpid(2) with WNOHANG.
    public static func reap() -> (pid: Int32, status: ExitStatus)? {
        var status: Int32 = 0
        while true {
            let pid = waitpid(-1, &status, WNOHANG)
            if pid > 0 { return (pid, ExitStatus(waitStatus: status)) }
            if pid < 0 && SysError.current == EINTR { continue }
            return nil
        }
    }

    /// Marks every fd above 2 close-on-exec: whatever porter inherited
    /// without the flag must not leak into services.
    /// The corresponding C function is close_range(2) with CLOSE_RANGE_CLOEXEC.
    public static func markInheritedCloseOnExec() {
        _ = porter_close_range(3, UInt32.max, 4 /* CLOSE_RANGE_CLOEXEC */)
    }

    /// Closes every fd above 2 but `keeping`: what porter inherited and
    /// was not handed on purpose (LISTEN_FDS, an upgrade's state). Called
    /// first thing, before porter opens a file of its own.
    public static func closeInherited(keeping: Set<Int32> = []) {
        var from: Int32 = 3
        for keep in keeping.sorted() where keep >= from {
            if keep > from { closeRange(from, keep - 1) }
            from = keep + 1
        }
        closeRange(from, Int32.max)
    }

    private static func closeRange(_ first: Int32, _ last: Int32) {
        if porter_close_range(UInt32(first), UInt32(last), 0) < 0 {
            // Before Linux 5.9: one by one, up to the limit.
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            let top = min(Int64(last), Int64(min(limit.rlim_cur, 65536)) - 1)
            if Int64(first) <= top { for fd in first...Int32(top) { _ = Glibc.close(fd) } }
        }
    }

    /// Makes sure fds 0, 1 and 2 are open (on /dev/null if not), so no
    /// socket porter opens later lands on them by accident.
    public static func ensureStandardFDs() {
        for fd: Int32 in 0...2 where porter_fcntl_int(fd, F_GETFD, 0) == -1 {
            let n = porter_open("/dev/null", O_RDWR, 0)
            if n >= 0 && n != fd { _ = dup2(n, fd); _ = Glibc.close(n) }
        }
    }

    /// Raises the soft fd limit to the hard one: porter holds a listener per
    /// address and one per journal pipe, beyond the usual 1024. Returns the
    /// limits to give children back (select(2)-based programs break above
    /// 1024, which is why the soft limit is low), nil when nothing changed.
    public static func raiseFileLimit() -> (soft: UInt64, hard: UInt64)? {
        var soft: UInt64 = 0, hard: UInt64 = 0
        guard porter_raise_nofile(&soft, &hard) == 0, soft != hard else { return nil }
        return (soft, hard)
    }

    /// Returns free heap pages to the kernel and drops the mappings of
    /// porter's code, once start-up is over (see porter_release_text).
    /// Returns the bytes of code released.
    @discardableResult
    public static func releaseStartupMemory() -> Int {
        porter_trim_heap()
        return porter_release_text()
    }

    /// Gives free heap memory back to the kernel, after a burst of work.
    public static func trimHeap() { porter_trim_heap() }

    /// The process group of a process; nil when it is gone.
    public static func group(of pid: Int32) -> Int32? {
        let g = getpgid(pid)
        return g < 0 ? nil : g
    }

    /// A pidfd (readable when the process exits), close-on-exec; nil when
    /// it is gone or the kernel has none. The corresponding C function is pidfd_open(2).
    public static func pidfd(_ pid: Int32) -> FileDescriptor? {
        let fd = porter_pidfd_open(pid)
        return fd < 0 ? nil : FileDescriptor(fd)
    }

    /// Signals the process a pidfd refers to: never another process that
    /// reused its pid. False once it has exited.
    /// The corresponding C function is pidfd_send_signal(2).
    @discardableResult
    public static func signal(_ pidfd: FileDescriptor, _ signal: Int32) -> Bool {
        porter_pidfd_send_signal(pidfd.rawValue, signal) == 0
    }

    /// Whether any process is in the process group `group`.
    public static func groupHasMembers(_ group: Int32) -> Bool {
        Glibc.kill(-group, 0) == 0 || SysError.current == EPERM
    }

    /// The processes in the process group `group`, from /proc/PID/stat
    /// (field 5). Only asked when a group outlives its main process.
    public static func members(ofGroup group: Int32) -> [Int32] {
        var out: [Int32] = []
        for name in (try? Files.list("/proc")) ?? [] {
            guard let pid = Int32(name), let stat = try? Files.read("/proc/\(pid)/stat", limit: 4096),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // state, ppid, pgrp
            if fields.count > 2, fields[0] != "Z", Int32(fields[2]) == group { out.append(pid) }
        }
        return out
    }

    /// Whether a process is stopped (by SIGSTOP), from /proc/PID/stat.
    public static func isStopped(_ pid: Int32) -> Bool {
        guard let stat = try? Files.read("/proc/\(pid)/stat", limit: 4096),
              let close = stat.lastIndex(of: ")"), stat.index(close, offsetBy: 2) < stat.endIndex else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state == "T" || state == "t"
    }

    /// Orphaned descendants become porter's children instead of init's.
    /// The corresponding C function is prctl(2) with PR_SET_CHILD_SUBREAPER.
    @discardableResult
    public static func becomeSubreaper() -> Bool { porter_set_child_subreaper() == 0 }

    /// What /proc/PID/stat says of a process: its parent, whether it is a
    /// zombie, and when it started (clock ticks since boot). nil when gone.
    public struct Facts: Equatable, Sendable {
        public var parent: Int32
        public var startTicks: UInt64
        public var zombie: Bool
    }

    public static func facts(_ pid: Int32) -> Facts? {
        guard pid > 0, let stat = try? Files.read("/proc/\(pid)/stat", limit: 4096),
              let close = stat.lastIndex(of: ")") else { return nil }
        // After "comm)": state(3) ppid(4) ... starttime(22).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let ppid = Int32(fields[1]), let start = UInt64(fields[19]) else { return nil }
        return Facts(parent: ppid, startTicks: start, zombie: fields[0] == "Z" || fields[0] == "X")
    }

    /// The live children of `parent` that started at or after `since`
    /// ticks, from /proc (a scan, done only when a forking service's
    /// parent has exited).
    public static func children(of parent: Int32, since: UInt64) -> [Int32] {
        var out: [Int32] = []
        for name in (try? Files.list("/proc")) ?? [] {
            guard let pid = Int32(name), let f = facts(pid), f.parent == parent, !f.zombie, f.startTicks >= since else { continue }
            out.append(pid)
        }
        return out.sorted()
    }

    /// Whether `pid` descends from `ancestor` (bounded walk up the parents).
    public static func descends(_ pid: Int32, from ancestor: Int32) -> Bool {
        var p = pid
        for _ in 0..<64 {
            guard let f = facts(p) else { return false }
            if f.parent == ancestor { return true }
            if f.parent <= 1 { return false }
            p = f.parent
        }
        return false
    }

    /// An anonymous in-memory file, close-on-exec. The caller owns it.
    /// The corresponding C function is memfd_create(2).
    public static func memoryFile(_ name: String) throws(SysError) -> FileDescriptor {
        let fd = porter_memfd_create(name)
        if fd < 0 { throw SysError(call: "memfd_create", errno: -fd) }
        return FileDescriptor(fd)
    }

    /// Replaces porter's image with `path`: the same pid, so every child
    /// stays porter's. Returns only when it failed, with why.
    /// The corresponding C function is execve(2).
    public static func replaceImage(path: String, arguments: [String], environment: [String]) -> SysError {
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for a in argv { free(a) }
            for e in envp { free(e) }
        }
        let r = porter_execve(path, argv, envp)
        return SysError(call: "execve(\(path))", errno: -r)
    }

    /// The program this process runs, as a path: read at start-up, before
    /// an upgrade can replace the file (then /proc says "(deleted)").
    public static func executablePath() -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static var currentPID: Int32 { getpid() }
    public static var effectiveUID: UInt32 { geteuid() }
    public static var effectiveGID: UInt32 { getegid() }
}
