/// Per-source limits of a socket porter accepts on: MaxConnectionsPerSource=
/// (systemd's: open connections from one IP address) and porter's
/// PerSourceLimitIntervalSec=/PerSourceLimitBurst= (at most Burst new
/// connections from one address per Interval; FreeBSD inetd's
/// max-connections-per-ip-per-minute). A source over either limit has its
/// new connections closed at once; others are served. The rate recovers by
/// itself when the source's window closes.
///
/// Bounded: an address is kept while it has open connections or an open
/// window; windows that closed are dropped once the table grows, so a
/// scan from many addresses costs at most `capacity` entries (past that,
/// a new source is let in unlimited by rate, never refused for lack of room).
public struct SourceTable: Sendable {
    public let maxOpen: Int?
    public let rate: RateWindow?
    public let capacity: Int

    struct Entry {
        var open = 0
        var window: RateWindow?
    }
    private var entries: [[UInt8]: Entry] = [:]
    /// Closed windows are dropped when the table reaches this size.
    private var pruneAt = 1024

    public init?(maxOpen: Int?, rate: RateWindow?, capacity: Int = 65536) {
        guard maxOpen != nil || rate != nil else { return nil }
        self.maxOpen = maxOpen
        self.rate = rate
        self.capacity = capacity
    }

    public enum Verdict: Equatable, Sendable {
        case admitted
        /// MaxConnectionsPerSource=: this many are open from it already.
        case tooMany(Int)
        /// The rate window: it recovers at that instant.
        case tooFast(until: Instant)
    }

    /// A connection from `source` arrived; admitted ones count as open
    /// until `release`.
    public mutating func admit(_ source: [UInt8], now: Instant) -> Verdict {
        var e = entries[source] ?? Entry()
        if let maxOpen, e.open >= maxOpen { return .tooMany(e.open) }
        let known = entries[source] != nil
        if !known && entries.count >= pruneAt {
            prune(now)
            pruneAt = max(1024, entries.count * 2)
        }
        let room = known || entries.count < capacity
        if let rate, room {
            var w = e.window ?? rate
            let until = w.hit(now)
            e.window = w
            if let until {
                entries[source] = e
                return .tooFast(until: until)
            }
        }
        e.open += 1
        // Without room only MaxConnectionsPerSource= needs the entry (and
        // its entries are bounded by the open connections).
        if room || maxOpen != nil { entries[source] = e }
        return .admitted
    }

    /// A connection admitted from `source` ended.
    public mutating func release(_ source: [UInt8], now: Instant) {
        guard var e = entries[source] else { return }
        e.open = max(0, e.open - 1)
        if e.open == 0, !(e.window?.isOpen(at: now) ?? false) {
            entries[source] = nil
        } else {
            entries[source] = e
        }
    }

    /// Drops the sources with nothing open and no open window.
    mutating func prune(_ now: Instant) {
        entries = entries.filter { $0.value.open > 0 || ($0.value.window?.isOpen(at: now) ?? false) }
    }

    public var count: Int { entries.count }
    public func open(_ source: [UInt8]) -> Int { entries[source]?.open ?? 0 }
}

extension RateWindow {
    /// Whether a window opened and has not closed by `now`.
    public func isOpen(at now: Instant) -> Bool {
        guard let o = opened else { return false }
        return now - o < interval
    }
}
