import CPorter
import Glibc

/// One timerfd on CLOCK_MONOTONIC, armed for the earliest deadline porter
/// has (as swift-nio's SelectorEpoll does): no deadline, no wake-up.
public struct TimerFD {
    public let fd: FileDescriptor

    /// The caller owns the returned fd. The corresponding C function is timerfd_create(2).
    public init() throws(SysError) {
        fd = FileDescriptor(try retrying("timerfd_create") {
            timerfd_create(CLOCK_MONOTONIC, Int32(TFD_CLOEXEC | TFD_NONBLOCK))
        })
    }

    /// Arms the timer for an absolute time on CLOCK_MONOTONIC, in
    /// nanoseconds, or disarms it with nil.
    /// The corresponding C function is timerfd_settime(2) with TFD_TIMER_ABSTIME.
    public func arm(atNanoseconds deadline: Int64?) throws(SysError) {
        var spec = itimerspec()
        if let deadline {
            // A zero it_value would disarm; a deadline in the past fires at once.
            let ns = max(deadline, 1)
            spec.it_value.tv_sec = Int(ns / 1_000_000_000)
            spec.it_value.tv_nsec = Int(ns % 1_000_000_000)
        }
        _ = try retrying("timerfd_settime") { timerfd_settime(fd.rawValue, Int32(TFD_TIMER_ABSTIME), &spec, nil) }
    }

    /// Consumes the expiration count so the fd stops being readable.
    public func drain() {
        var count: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &count) { raw in try? fd.read(into: raw) }
    }

    public func close() { fd.close() }
}

/// CLOCK_MONOTONIC, the clock the timerfd uses, in nanoseconds.
/// The corresponding C function is clock_gettime(2).
public func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
