/// Lines a remote client can cause (a failing per-connection service, a
/// socket at its connection limit) pass at most `burst` times per
/// `interval`; the rest are counted, and the next line that passes says how
/// many were left out. A flood of connections cannot become a flood of log.
public struct LogRateLimit: Sendable {
    public let interval: Duration
    public let burst: Int
    private var windowStart: Instant?
    private var used = 0
    private var suppressed = 0

    public init(interval: Duration, burst: Int) {
        self.interval = interval
        self.burst = burst
    }

    /// nil: leave the line out. Otherwise the line goes out, followed by
    /// the returned note (empty, or how many were left out before it).
    public mutating func admit(now: Instant) -> String? {
        if windowStart.map({ now - $0 >= interval }) ?? true {
            windowStart = now
            used = 0
        }
        guard used < burst else {
            suppressed += 1
            return nil
        }
        used += 1
        defer { suppressed = 0 }
        return suppressed == 0 ? "" : " (\(suppressed) similar line\(suppressed == 1 ? "" : "s") left out)"
    }
}
