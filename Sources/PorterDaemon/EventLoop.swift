import PorterCore
import PorterSys

/// The machinery of porter's one loop: epoll with a token per
/// registration, and one timerfd armed for the earliest deadline in a heap.
/// It knows nothing about units: its owner says what each token stands
/// for (`Source`) and what each deadline key is, and gets every ready
/// source with the flags epoll reported, and every key whose deadline
/// came. A wake-up costs O(log n) in the deadlines, whatever the number of
/// units.
final class EventLoop<Source> {
    private let epoll: Epoll
    private let timer: TimerFD
    private var timerToken: UInt64 = 0
    let timers = Timers()
    private var sources: [UInt64: Source] = [:]
    private var nextToken: UInt64 = 1
    private var armedDeadline: Instant?
    private var events = Epoll.EventBuffer()

    init() throws(SysError) {
        epoll = try Epoll()
        timer = try TimerFD()
        timerToken = newToken()
        try epoll.add(timer.fd, events: .readable, token: timerToken)
    }

    private func newToken() -> UInt64 {
        defer { nextToken += 1 }
        return nextToken
    }

    /// Watches `fd`; its events are handed over as `source`.
    @discardableResult
    func register(_ fd: FileDescriptor, _ source: Source, events: Epoll.Events = .readable) throws(SysError) -> UInt64 {
        let token = try reserve(fd, events: events)
        sources[token] = source
        return token
    }

    /// Watches `fd` before its source is known (an instance's connection
    /// is watched before the instance has a pid); events that arrive
    /// before `assign` are dropped.
    func reserve(_ fd: FileDescriptor, events: Epoll.Events) throws(SysError) -> UInt64 {
        let token = newToken()
        try epoll.add(fd, events: events, token: token)
        return token
    }

    func assign(_ token: UInt64, _ source: Source) { sources[token] = source }

    /// Changes what a registration waits for; its token stays.
    func modify(_ fd: FileDescriptor, token: UInt64, events: Epoll.Events) throws(SysError) {
        try epoll.modify(fd, events: events, token: token)
    }

    /// Stops watching; an event already read for the token is dropped.
    func unregister(_ fd: FileDescriptor, token: UInt64) {
        sources[token] = nil
        try? epoll.remove(fd)
    }

    /// Forgets a registration whose fd is about to be closed (which takes
    /// it out of epoll, when porter holds the only reference to it): an
    /// event already read for the token is dropped, no syscall is spent.
    func forget(token: UInt64) { sources[token] = nil }

    /// One turn: arms the timer for the earliest deadline (asking each
    /// touched key for its deadline first), waits, then hands over what is
    /// ready. A key whose deadline came is touched again after `due`, so a
    /// deadline its owner left in place is scheduled again, never lost.
    func turn(deadline: (TimerKey) -> Instant?, due: (TimerKey, Instant) -> Void,
              dispatch: (Source, Epoll.Events) -> Void) throws(SysError) {
        arm(deadline)
        let n = try epoll.wait(into: &events)
        for i in 0..<n {
            let token = events.token(i)
            if token == timerToken {
                timer.drain()
                armedDeadline = nil
                let now = MonotonicClock.now()
                for key in timers.heap.due(now: now) {
                    due(key, now)
                    timers.touch(key)
                }
                continue
            }
            // A registration dropped earlier in this batch: stale, skipped.
            guard let source = sources[token] else { continue }
            dispatch(source, events.events(i))
        }
    }

    private func arm(_ deadline: (TimerKey) -> Instant?) {
        timers.heap.flush(deadline)
        let earliest = timers.heap.earliest()
        guard earliest != armedDeadline else { return }
        do {
            try timer.arm(at: earliest)
            armedDeadline = earliest
        } catch {
            Log.error("timerfd_settime: \(error.reason)")
        }
    }
}
