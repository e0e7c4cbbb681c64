/// A point on porter's monotonic clock (CLOCK_MONOTONIC), in nanoseconds.
/// Machines take it as a parameter and never read a clock themselves, so
/// tests control time.
public struct Instant: Comparable, Hashable, Sendable, Codable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }

    public static func + (a: Instant, d: Duration) -> Instant {
        Instant(nanoseconds: a.nanoseconds &+ d.nanoseconds)
    }

    public static func - (a: Instant, b: Instant) -> Duration {
        .nanoseconds(a.nanoseconds - b.nanoseconds)
    }

    public var description: String { "\(Double(nanoseconds) / 1e9)s" }
}

extension Duration {
    /// The duration in whole nanoseconds, saturating at Int64.max.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (ns, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return ns &+ attoseconds / 1_000_000_000
    }

    /// Human form used in log lines and `porter check` ("1.5s", "90s", "500ms").
    public var porterDescription: String {
        let ns = nanoseconds
        if ns % 1_000_000_000 == 0 { return "\(ns / 1_000_000_000)s" }
        if ns >= 1_000_000_000 {
            let tenths = (ns + 50_000_000) / 100_000_000
            return "\(tenths / 10).\(tenths % 10)s"
        }
        if ns >= 1_000_000 { return "\((ns + 500_000) / 1_000_000)ms" }
        if ns >= 1_000 { return "\((ns + 500) / 1_000)us" }
        return "\(ns)ns"
    }
}
