/// systemd's rate limit (TriggerLimit*=, PollLimit*= of socket units): at
/// most `burst` events in a window of `interval` that opens with the first
/// event after the last window closed. What porter does when it is hit
/// differs from systemd: the socket pauses until the window closes and then
/// recovers by itself, instead of failing until someone restarts it.
public struct RateWindow: Equatable, Sendable {
    public let interval: Duration
    public let burst: Int
    var opened: Instant?
    var count = 0

    /// nil when either is zero: the limit is off, as in systemd.
    public init?(interval: Duration, burst: Int) {
        guard interval > .zero, burst > 0 else { return nil }
        self.interval = interval
        self.burst = burst
    }

    /// Counts one event at `now`; returns when the window closes if this
    /// event is one too many (pause until then).
    public mutating func hit(_ now: Instant) -> Instant? {
        if let o = opened, now - o < interval {
            count += 1
        } else {
            opened = now
            count = 1
        }
        return count > burst ? opened! + interval : nil
    }
}
