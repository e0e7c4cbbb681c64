import Glibc
import PorterCore
import PorterSys

/// One UDP client flow of a ProxyTo= service: the client's address and
/// porter's socket connected to the backend for it, so the backend's
/// answers come back on that socket and go out to that client from the
/// listener. Datagrams that come before the backend is ready wait (a few,
/// bounded); a flow that carries nothing for ProxyIdleTimeoutSec= (30 s by
/// default for UDP, which has no end) is closed.
final class Flow {
    let id: UInt64
    let socket: UnitID
    /// The listener (index in the socket's fds) the client wrote to.
    let listener: Int
    let service: UnitID
    let client: SocketAddress
    let key: [UInt8]
    var backend: FileDescriptor?
    var token: UInt64?
    var held: [[UInt8]] = []
    var lastTraffic: Instant
    var nextCheck: Instant?
    var toBackend: UInt64 = 0
    var toClient: UInt64 = 0

    /// Datagrams held per flow while the backend starts.
    static let maxHeld = 64
    static let defaultIdle = Duration.seconds(30)

    init(id: UInt64, socket: UnitID, listener: Int, service: UnitID, client: SocketAddress, now: Instant) {
        self.id = id
        self.socket = socket
        self.listener = listener
        self.service = service
        self.client = client
        key = client.identity
        lastTraffic = now
    }
}

extension Supervisor {
    /// Datagrams on a proxied UDP listener: each goes to its client's flow.
    func datagramsArrived(_ s: SocketRuntime, _ index: Int, _ link: SocketRuntime.ProxyLink, _ svc: ServiceRuntime) {
        let now = MonotonicClock.now()
        let listener = s.fds[index]
        var started = false
        for _ in 0..<Self.acceptBatch {
            var peer = SocketAddress()
            let n: Int?
            do {
                n = try Socket.receive(listener, into: &Self.datagram, from: &peer)
            } catch {
                failure(s, "\(s.name): recvfrom: \(error.reason)")
                break
            }
            guard let n else { break }
            let key = peer.identity
            var flow = link.flows[key].flatMap { flows[$0] }
            if flow == nil {
                guard link.machine.canAccept else {
                    stats.count(s.name) { $0.refused["flow-limit", default: 0] += 1 }
                    continue  // at MaxConnections= flows: dropped, as a full queue would
                }
                let f = Flow(id: own.nextRelay, socket: s.id, listener: index, service: svc.id, client: peer, now: now)
                own.nextRelay += 1
                flows[f.id] = f
                link.flows[key] = f.id
                svc.proxy?.flows.insert(f.id)
                stats.count(s.name) { $0.accepted += 1 }
                perform(link.machine.handle(.instanceStarted), socket: s)
                flow = f
                started = true
            }
            let f = flow!
            f.lastTraffic = now
            var bytes = Array(Self.datagram[0..<n])
            if let version = svc.prepared.config.proxyProtocol, version == .v2 {
                bytes = Self.datagramHeader(peer: peer, listener: listener) + bytes
            }
            if let backend = f.backend {
                send(f, backend, bytes, svc)
            } else if f.held.count < Flow.maxHeld {
                f.held.append(bytes)
            }
        }
        if started {
            if svc.prepared.config.exec != nil { perform(svc.machine.handle(.activity, now: now), service: svc, now: now) }
            timers.touch(.retries)
        }
        proxyWork(svc, now: now)
    }

    /// One buffer for every datagram: UDP has no splice, and one 64 KiB
    /// buffer serves every flow in turn.
    nonisolated(unsafe) static var datagram = [UInt8](repeating: 0, count: 65536)

    static func datagramHeader(peer: SocketAddress, listener: FileDescriptor) -> [UInt8] {
        let local = try? Socket.localAddress(listener)
        guard let pb = peer.ipBytes, let pp = peer.port, let lb = local?.ipBytes, let lp = local?.port, pb.count == lb.count else {
            return ProxyHeader.make(.v2, source: nil, destination: nil, udp: true)
        }
        return ProxyHeader.make(.v2, source: .init(address: pb, port: pp), destination: .init(address: lb, port: lp), udp: true)
    }

    private func send(_ f: Flow, _ backend: FileDescriptor, _ bytes: [UInt8], _ svc: ServiceRuntime) {
        let e = bytes.withUnsafeBytes { Socket.send(backend, $0) }
        if e == 0 { f.toBackend &+= UInt64(bytes.count) }
        // A refused datagram (ICMP port unreachable): the backend is gone or
        // not there yet; UDP may lose it, as it would without porter.
    }

    /// The backend of a proxied service may be reachable now: flows whose
    /// datagrams wait connect and send them. For UDP "ready" is READY=1
    /// with Type=notify, otherwise a socket bound to the backend's port.
    func flowsMayGo(_ svc: ServiceRuntime, now: Instant) {
        guard let px = svc.proxy, !px.flows.isEmpty else { return }
        let waiting = px.flows.compactMap { flows[$0] }.filter { $0.backend == nil }
        guard !waiting.isEmpty else { return }
        guard case .success(let address)? = svc.prepared.proxyAddress else {
            let why = { if case .failure(let w)? = svc.prepared.proxyAddress { return w.description } else { return "no address" } }()
            return failFlows(svc, "ProxyTo=\(svc.prepared.config.proxyTo!): \(why)", now: now)
        }
        if !px.readyThisRun, !svc.prepared.config.type.isNotify {
            if let port = address.port {
                guard queuedWork.udpBound(port: port) == true else {
                    for f in waiting { f.nextCheck = now + Self.proxyRetryFirst * 4 }
                    timers.touch(.retries)
                    return
                }
            }
            px.readyThisRun = true
            perform(svc.machine.handle(.ready, now: now), service: svc, now: now)
        }
        for f in waiting {
            // Marking the backend ready above may have connected it already.
            guard f.backend == nil, flows[f.id] != nil else { continue }
            f.nextCheck = nil
            guard let fd = try? Socket.open(family: address.family, type: Int32(SOCK_DGRAM.rawValue), nonBlocking: true) else { continue }
            if case .failed(let e) = Socket.startConnect(fd, address) {
                fd.close()
                if e == ENOENT || e == ECONNREFUSED {
                    // A Unix datagram backend that is not bound yet.
                    f.nextCheck = now + Self.proxyRetryFirst * 4
                    continue
                }
                closeFlow(f, why: "connecting to \(svc.prepared.config.proxyTo!): \(SysError.describe(e))", now: now)
                continue
            }
            guard let token = try? loop.register(fd, .flow(f.id)) else {
                fd.close()
                continue
            }
            f.backend = fd
            f.token = token
            for d in f.held { send(f, fd, d, svc) }
            f.held.removeAll()
            stats.count(svc.name) { $0.proxied += 1 }
        }
        timers.touch(.retries)
    }

    /// Answers from the backend: out to the flow's client, from the listener.
    func flowEvent(_ id: UInt64) {
        guard let f = flows[id], let backend = f.backend, let s = sockets[f.socket], f.listener < s.fds.count else { return }
        let listener = s.fds[f.listener]
        let now = MonotonicClock.now()
        for _ in 0..<Self.acceptBatch {
            var from = SocketAddress()
            let n: Int?
            do {
                n = try Socket.receive(backend, into: &Self.datagram, from: &from)
            } catch {
                // ECONNREFUSED: a datagram to the backend found nobody; the
                // flow stays (the backend may come back), the error is read.
                if error.errno == ECONNREFUSED { continue }
                return closeFlow(f, why: "the backend socket: \(error.reason)", now: now)
            }
            guard let n else { break }
            f.lastTraffic = now
            if Self.datagram.withUnsafeBytes({ Socket.send(listener, UnsafeRawBufferPointer(rebasing: $0[0..<n]), to: f.client) }) == 0 {
                f.toClient &+= UInt64(n)
            }
        }
    }

    /// Flow deadlines live in `.retries` (few, and checked together).
    var flowTimes: [Instant] {
        flows.values.compactMap { f in
            let idle = services[f.service]?.prepared.config.proxyIdleTimeout ?? Flow.defaultIdle
            return [f.nextCheck, f.lastTraffic + idle].compactMap { $0 }.min()
        }
    }

    func flowsDue(now: Instant) {
        var retry: Set<UnitID> = []
        for f in Array(flows.values) {
            let idle = services[f.service]?.prepared.config.proxyIdleTimeout ?? Flow.defaultIdle
            if now >= f.lastTraffic + idle {
                closeFlow(f, why: nil, now: now)
            } else if let at = f.nextCheck, now >= at {
                retry.insert(f.service)
            }
        }
        for id in retry { if let svc = services[id] { proxyWork(svc, now: now) } }
    }

    func closeFlow(_ f: Flow, why: String?, now: Instant) {
        guard flows.removeValue(forKey: f.id) != nil else { return }
        if let fd = f.backend {
            if let t = f.token { unregister(fd, token: t) }
            fd.close()
        }
        let svc = services[f.service]
        svc?.proxy?.flows.remove(f.id)
        stats.count(svc?.name ?? "?") {
            $0.bytesToBackend &+= f.toBackend
            $0.bytesToClient &+= f.toClient
            if why != nil { $0.failures += 1 }
        }
        if let s = sockets[f.socket] {
            s.proxy?.flows[f.key] = nil
            let line = "\(svc?.name ?? "?"): datagrams from \(f.client) \(why.map { "dropped: \($0)" } ?? "relayed"), \(f.toBackend) bytes in, \(f.toClient) out"
            if why == nil { Log.debug(line) } else { failure(s, line, level: .warning) }
            if let link = s.proxy { perform(link.machine.handle(.instanceExited), socket: s) }
        }
        timers.touch(.retries)
        if let svc, case .running = svc.machine.state {
            perform(svc.machine.handle(.activity, now: now), service: svc, now: now)
        }
    }

    /// The backend never became ready: the flows waiting for it go.
    func failFlows(_ svc: ServiceRuntime, _ why: String, now: Instant) {
        for id in svc.proxy?.flows ?? [] {
            if let f = flows[id], f.backend == nil { closeFlow(f, why: why, now: now) }
        }
    }
}
