import PorterCore
import PorterSys

/// Now, as the machines count time: CLOCK_MONOTONIC, the timerfd's clock.
public enum MonotonicClock {
    public static func now() -> Instant { Instant(nanoseconds: monotonicNanoseconds()) }
}

extension TimerFD {
    func arm(at deadline: Instant?) throws(SysError) { try arm(atNanoseconds: deadline?.nanoseconds) }
}
