import CPorter
import Glibc

/// A set of signals, as sigset_t.
public struct SignalSet {
    public var raw = sigset_t()

    public init(_ signals: [Int32] = []) {
        sigemptyset(&raw)
        for s in signals { sigaddset(&raw, s) }
    }
}

public enum Signals {
    /// Blocks `set` for the whole process (porter has one thread), so the
    /// signals are only ever read from a signalfd.
    /// The corresponding C function is sigprocmask(2) with SIG_BLOCK.
    public static func block(_ set: SignalSet) throws(SysError) {
        var s = set.raw
        _ = try retrying("sigprocmask") { sigprocmask(SIG_BLOCK, &s, nil) }
    }

    /// Sets the disposition of `signal` to SIG_IGN or SIG_DFL.
    /// The corresponding C function is sigaction(2).
    public static func setIgnored(_ signal: Int32, _ ignored: Bool) {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = ignored ? SIG_IGN : SIG_DFL
        sigemptyset(&action.sa_mask)
        _ = sigaction(signal, &action, nil)
    }

    /// Puts every catchable signal back to SIG_DFL: whatever porter's parent
    /// ignored (nohup's SIGHUP, a shell's SIGINT) must not leak into services.
    public static func resetAllDispositions() {
        for s in Int32(1)...64 where s != SIGKILL && s != SIGSTOP {
            setIgnored(s, false)
        }
    }

    /// Sends `signal` to a process, or to a process group when `group` is set.
    /// ESRCH (already gone) is not an error. The corresponding C function is kill(2).
    @discardableResult
    public static func send(_ signal: Int32, to pid: Int32, group: Bool = false) -> Bool {
        Glibc.kill(group ? -pid : pid, signal) == 0
    }
}

/// A signalfd: blocked signals become readable records.
public struct SignalFD {
    public let fd: FileDescriptor

    /// The caller owns the returned fd. The corresponding C function is signalfd(2).
    public init(_ set: SignalSet) throws(SysError) {
        var s = set.raw
        fd = FileDescriptor(try retrying("signalfd") { signalfd(-1, &s, Int32(SFD_CLOEXEC | SFD_NONBLOCK)) })
    }

    /// The next pending signal number, or nil when none is pending.
    public func next() throws(SysError) -> Int32? {
        var info = signalfd_siginfo()
        let size = MemoryLayout<signalfd_siginfo>.size
        let n = try withUnsafeMutableBytes(of: &info) { (raw: UnsafeMutableRawBufferPointer) throws(SysError) -> Int? in
            try fd.read(into: raw)
        }
        guard let n, n == size else { return nil }
        return Int32(bitPattern: info.ssi_signo)
    }

    public func close() { fd.close() }
}
