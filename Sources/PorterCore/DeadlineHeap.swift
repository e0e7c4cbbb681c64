/// When each timed thing next needs the loop, in a binary min-heap: a
/// wake-up costs O(log n), not a scan of every unit (issue 9).
///
/// Owners do not cancel entries. They mark a key as changed (`touch`);
/// before the loop waits, `flush` asks each changed key for its deadline
/// now and pushes it if it moved. An entry whose key has moved on since is
/// stale and is dropped when it reaches the top, as swift-nio drops the
/// events of dropped registrations. When stale entries outnumber the live
/// ones the heap is rebuilt, so churn cannot grow it without bound.
public struct DeadlineHeap<Key: Hashable & Sendable>: Sendable {
    private var heap: [(at: Instant, key: Key)] = []
    /// The deadline each key has in the heap (its live entry).
    private var scheduled: [Key: Instant] = [:]
    private var touched: Set<Key> = []

    public init() {}

    public var isEmpty: Bool { scheduled.isEmpty }
    public var count: Int { scheduled.count }
    /// Entries held, live and stale (for tests of the bound).
    public var entries: Int { heap.count }

    public mutating func touch(_ key: Key) { touched.insert(key) }

    /// Asks every touched key for its deadline now (nil: none).
    public mutating func flush(_ deadline: (Key) -> Instant?) {
        guard !touched.isEmpty else { return }
        for key in touched {
            let d = deadline(key)
            guard scheduled[key] != d else { continue }
            scheduled[key] = d
            if let d { push(d, key) }
        }
        touched.removeAll(keepingCapacity: true)
        if heap.count > 64 && heap.count > 4 * scheduled.count { rebuild() }
    }

    /// The earliest live deadline (stale entries on top are dropped).
    public mutating func earliest() -> Instant? {
        while let top = heap.first {
            if scheduled[top.key] == top.at { return top.at }
            pop()
        }
        return nil
    }

    /// The keys whose deadline is at or before `now`, earliest first; they
    /// are unscheduled (the owner touches them again as it handles them).
    public mutating func due(now: Instant) -> [Key] {
        var keys: [Key] = []
        while let top = heap.first, top.at <= now {
            pop()
            guard scheduled[top.key] == top.at else { continue }
            scheduled[top.key] = nil
            keys.append(top.key)
        }
        return keys
    }

    private mutating func rebuild() {
        heap = scheduled.map { (at: $0.value, key: $0.key) }
        var i = heap.count / 2
        while i > 0 { i -= 1; down(i) }
    }

    private mutating func push(_ at: Instant, _ key: Key) {
        heap.append((at, key))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].at < heap[parent].at else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private mutating func pop() {
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        if !heap.isEmpty { down(0) }
    }

    private mutating func down(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count && heap[l].at < heap[m].at { m = l }
            if r < heap.count && heap[r].at < heap[m].at { m = r }
            if m == i { return }
            heap.swapAt(i, m)
            i = m
        }
    }
}
