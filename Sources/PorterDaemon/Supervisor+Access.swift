import Glibc
import PorterCore
import PorterSys

/// Who may connect: IPAddressAllow=/IPAddressDeny=, MaxConnectionsPerSource=
/// and PerSourceLimit*=.
///
/// Where porter accepts (Accept=yes, ProxyTo=, InternalService= on stream
/// sockets) it checks each peer itself: a refused one is closed at once,
/// logged with its address (rate-limited) and counted under its reason.
/// Where porter does not see the peers (an Accept=no service accepts, and
/// every datagram socket) the address lists become a classic BPF filter on
/// the socket (`SocketFilter`): the kernel drops a denied client's SYN or
/// datagram before anyone sees it, so the service never learns of it, and
/// nothing is logged or counted. The per-source limits need porter to
/// accept, so they apply where it does.
extension Supervisor {
    /// Whether porter accepts the connections of listener `index` itself.
    func acceptsItself(_ s: SocketRuntime, _ index: Int) -> Bool {
        guard s.config.listens[index].kind != .datagram else { return false }
        switch s.handler {
        case .instances, .proxy, .internal: return true
        case .service: return false
        }
    }

    /// Puts the kernel filter on the listeners porter does not accept on,
    /// and takes it off the others (a reload may have moved a socket from
    /// one kind to the other, an upgrade hands over a filtered socket).
    func applyFilters(_ s: SocketRuntime) {
        let program = SocketFilter.program(s.config.access)?.map { (code: $0.code, jt: $0.jt, jf: $0.jf, k: $0.k) } ?? []
        for (index, fd) in s.fds.enumerated() where index < s.config.listens.count {
            // A Unix socket has no IP header: the filter would drop everything.
            switch s.config.listens[index].address {
            case .unixPath, .abstract: continue
            case .anyPort, .ipv4, .ipv6: break
            }
            let wanted = acceptsItself(s, index) ? [] : program
            do { try Socket.setFilter(fd, wanted) } catch {
                Log.error("\(s.name): \(s.config.listens[index].address): cannot \(wanted.isEmpty ? "remove" : "attach") the IPAddressAllow=/IPAddressDeny= filter: \(error.reason)"
                    + (wanted.isEmpty ? "" : "; this listener is NOT filtered"))
            }
        }
    }

    /// A connection porter accepted from `peer`: true when it may be served
    /// (and, with per-source limits, counts as open until `connectionEnded`);
    /// false when it was refused, logged and counted (the caller closes it).
    /// The socket's banners go out here: BannerFail= to a refused peer,
    /// BannerSuccess= to an admitted one (one that cannot take it is gone:
    /// refused too, silently).
    func admit(_ s: SocketRuntime, peer: SocketAddress, connection: FileDescriptor, now: Instant) -> Bool {
        guard check(s, peer: peer, now: now) else {
            if !s.banners.isEmpty { _ = sendBanner(s, connection, served: false) }
            return false
        }
        if !s.banners.isEmpty && !sendBanner(s, connection, served: true) {
            connectionEnded(s, source: peer.ipBytes)
            return false
        }
        return true
    }

    private func check(_ s: SocketRuntime, peer: SocketAddress, now: Instant) -> Bool {
        guard let source = peer.ipBytes else { return true }
        if case .denied(let rule) = s.config.access.check(source) {
            stats.count(s.name) { $0.refused["denied", default: 0] += 1 }
            let why = s.config.access.allow.isEmpty ? "IPAddressDeny=\(rule)" : "IPAddressDeny=\(rule), not in IPAddressAllow="
            refused(s, "\(s.name): connection from \(peer.description) denied by \(why); closed", now: now)
            return false
        }
        guard s.sources != nil else { return true }
        switch s.sources!.admit(source, now: now) {
        case .admitted:
            return true
        case .tooMany(let open):
            stats.count(s.name) { $0.refused["per-source", default: 0] += 1 }
            refused(s, "\(s.name): connection from \(peer.description) refused: \(open) open from this address, MaxConnectionsPerSource=\(s.config.maxConnectionsPerSource ?? 0)", now: now)
            return false
        case .tooFast(let until):
            stats.count(s.name) { $0.refused["per-source-rate", default: 0] += 1 }
            let rate = s.sources!.rate!
            refused(s, "\(s.name): connection from \(peer.description) refused: more than PerSourceLimitBurst=\(rate.burst) in \(rate.interval.porterDescription) from this address; it may connect again in \((until - now).porterDescription)", now: now)
            return false
        }
    }

    /// A connection `admit` let in has ended (its instance, relay or
    /// built-in exchange is over).
    func connectionEnded(_ s: SocketRuntime, source: [UInt8]?) {
        guard let source, s.sources != nil else { return }
        s.sources!.release(source, now: MonotonicClock.now())
    }

    private func refused(_ s: SocketRuntime, _ message: String, now: Instant) {
        if let note = s.accessLog.admit(now: now) { Log.warning(message + note) }
    }
}
