import CPorter
import Glibc

/// An epoll instance. Each registration carries a caller-chosen 64-bit token
/// instead of the fd, so an event for a registration that was dropped and
/// whose fd number was reused can be recognised as stale (as swift-nio does).
public struct Epoll {
    public let fd: FileDescriptor

    /// The caller owns the returned instance and closes it with `close()`.
    /// The corresponding C function is epoll_create1(2).
    public init() throws(SysError) {
        fd = FileDescriptor(try retrying("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) })
    }

    public struct Events: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let readable = Events(rawValue: EPOLLIN.rawValue)
        public static let writable = Events(rawValue: EPOLLOUT.rawValue)
        public static let hangup = Events(rawValue: EPOLLHUP.rawValue)
        public static let error = Events(rawValue: EPOLLERR.rawValue)
        /// The peer shut down its writing side (a relay passes it on).
        public static let readHangup = Events(rawValue: EPOLLRDHUP.rawValue)
        /// Report each new arrival once instead of while data waits.
        public static let edgeTriggered = Events(rawValue: EPOLLET.rawValue)
    }

    public struct Event: Sendable {
        public var token: UInt64
        public var events: Events
    }

    /// The corresponding C function is epoll_ctl(2) with EPOLL_CTL_ADD.
    public func add(_ target: FileDescriptor, events: Events, token: UInt64) throws(SysError) {
        try control(EPOLL_CTL_ADD, target, events, token)
    }

    /// The corresponding C function is epoll_ctl(2) with EPOLL_CTL_MOD.
    public func modify(_ target: FileDescriptor, events: Events, token: UInt64) throws(SysError) {
        try control(EPOLL_CTL_MOD, target, events, token)
    }

    /// The corresponding C function is epoll_ctl(2) with EPOLL_CTL_DEL.
    public func remove(_ target: FileDescriptor) throws(SysError) {
        try control(EPOLL_CTL_DEL, target, [], 0)
    }

    private func control(_ op: Int32, _ target: FileDescriptor, _ events: Events, _ token: UInt64) throws(SysError) {
        var ev = epoll_event()
        ev.events = events.rawValue
        ev.data.u64 = token
        _ = try retrying("epoll_ctl") { epoll_ctl(fd.rawValue, op, target.rawValue, &ev) }
    }

    /// Space for the events of one wait, reused from one wait to the next.
    public struct EventBuffer {
        var raw: [epoll_event]
        public init(capacity: Int = 64) { raw = [epoll_event](repeating: epoll_event(), count: capacity) }
        public func token(_ i: Int) -> UInt64 { raw[i].data.u64 }
        public func events(_ i: Int) -> Events { Events(rawValue: raw[i].events) }
    }

    /// Waits for events; `timeoutMilliseconds` -1 waits forever. Returns how
    /// many are in `buffer`, 0 when interrupted. The corresponding C function is epoll_wait(2).
    public func wait(into buffer: inout EventBuffer, timeoutMilliseconds: Int32 = -1) throws(SysError) -> Int {
        let count = buffer.raw.count
        let n = buffer.raw.withUnsafeMutableBufferPointer { p in
            epoll_wait(fd.rawValue, p.baseAddress, Int32(count), timeoutMilliseconds)
        }
        if n < 0 {
            let e = SysError.current
            if e == EINTR { return 0 }
            throw SysError(call: "epoll_wait", errno: e)
        }
        return Int(n)
    }

    public func close() { fd.close() }
}
