import Glibc
import PorterCore
import PorterSys

/// Opens listening sockets as systemd's socket_address_listen() does:
/// SO_REUSEADDR on IP sockets, IPV6_V6ONLY per BindIPv6Only=, parent
/// directories and a stale socket file handled for Unix paths, the access
/// mode applied through the umask at bind time so the file never exists
/// with looser permissions.
public enum Listener {
    public typealias Owner = (uid: UInt32?, gid: UInt32?)
    public struct Options {
        public var nonBlocking: Bool
        public var owner: Owner
        /// Whose directories may hold symlinks in the socket's path.
        public var trust: SafePath.Trust
        public init(nonBlocking: Bool, owner: (uid: UInt32?, gid: UInt32?) = (nil, nil), trust: SafePath.Trust = .porter) {
            self.nonBlocking = nonBlocking
            self.owner = owner
            self.trust = trust
        }
    }

    /// Opens and binds one `Listen*=` address. Socket options that fail are
    /// reported through `warn` and skipped (systemd does the same); bind and
    /// listen failures throw. The caller owns the returned fd.
    public static func open(_ listen: Listen, config: SocketConfig, options: Options,
                            warn: (String) -> Void) throws(ListenError) -> FileDescriptor {
        let type: Int32
        switch listen.kind {
        case .stream: type = Int32(SOCK_STREAM.rawValue)
        case .datagram: type = Int32(SOCK_DGRAM.rawValue)
        case .sequentialPacket: type = Int32(SOCK_SEQPACKET.rawValue)
        }
        var address: SocketAddress
        var fd: FileDescriptor
        do throws(SysError) {
            address = try SocketAddress(listen.address)
            do throws(SysError) {
                fd = try Socket.open(family: address.family, type: type, nonBlocking: options.nonBlocking)
            } catch {
                // No IPv6 on this host: a bare port falls back to IPv4, as systemd does.
                guard error.errno == EAFNOSUPPORT, case .anyPort = listen.address else { throw error }
                address = try SocketAddress(listen.address, ipv4Fallback: true)
                fd = try Socket.open(family: AF_INET, type: type, nonBlocking: options.nonBlocking)
            }
        } catch {
            throw ListenError(step: error.call, errno: error.errno)
        }
        do throws(ListenError) {
            try configure(fd, listen: listen, family: address.family, config: config, warn: warn)
            try bind(fd, address, listen: listen, config: config, owner: options.owner, trust: options.trust)
            if listen.kind != .datagram {
                do { try Socket.listen(fd, backlog: config.backlog) } catch {
                    throw ListenError(step: "listen", errno: error.errno)
                }
            }
        } catch {
            fd.close()
            throw error
        }
        return fd
    }

    static func configure(_ fd: FileDescriptor, listen: Listen, family: Int32, config: SocketConfig,
                          warn: (String) -> Void) throws(ListenError) {
        let inet = family == AF_INET || family == AF_INET6
        let tcp = inet && listen.kind == .stream
        func set(_ name: String, _ level: Int32, _ opt: Int32, _ value: Int32) {
            do { try Socket.setOption(fd, level, opt, value) } catch {
                warn("cannot set \(name) on \(listen.address): \(error.reason), ignoring")
            }
        }
        if inet { set("SO_REUSEADDR", SOL_SOCKET, SO_REUSEADDR, 1) }
        if family == AF_INET6 {
            switch config.bindIPv6Only {
            case .both: set("IPV6_V6ONLY", Int32(IPPROTO_IPV6), IPV6_V6ONLY, 0)
            case .ipv6Only: set("IPV6_V6ONLY", Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1)
            case .default: break
            }
        }
        if config.reusePort { set("SO_REUSEPORT", SOL_SOCKET, SO_REUSEPORT, 1) }
        if config.freeBind && inet {
            if family == AF_INET6 {
                set("IPV6_FREEBIND", Int32(IPPROTO_IPV6), 78 /* IPV6_FREEBIND */, 1)
            } else {
                set("IP_FREEBIND", Int32(IPPROTO_IP), IP_FREEBIND, 1)
            }
        }
        if let device = config.bindToDevice, inet {
            do { try Socket.setOption(fd, SOL_SOCKET, SO_BINDTODEVICE, string: device) } catch {
                warn("cannot set SO_BINDTODEVICE=\(device) on \(listen.address): \(error.reason), ignoring")
            }
        }
        if config.transparent && inet {
            if family == AF_INET6 {
                set("IPV6_TRANSPARENT", Int32(IPPROTO_IPV6), 75 /* IPV6_TRANSPARENT */, 1)
            } else {
                set("IP_TRANSPARENT", Int32(IPPROTO_IP), 19 /* IP_TRANSPARENT */, 1)
            }
        }
        if config.keepAlive { set("SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE, 1) }
        if config.noDelay && tcp { set("TCP_NODELAY", Int32(IPPROTO_TCP), TCP_NODELAY, 1) }
        if let size = config.receiveBuffer { setBuffer(fd, size, SO_RCVBUFFORCE, SO_RCVBUF, "SO_RCVBUF", set) }
        if let size = config.sendBuffer { setBuffer(fd, size, SO_SNDBUFFORCE, SO_SNDBUF, "SO_SNDBUF", set) }
        for o in config.options where applies(o, inet: inet, tcp: tcp) {
            let (level, name) = numbers(o.name, ipv6: family == AF_INET6)
            set(o.key, level, name, o.value)
        }
    }

    /// The FORCE variants pass net.core.rmem_max/wmem_max when privileged;
    /// without the privilege, the plain option (capped by the kernel).
    private static func setBuffer(_ fd: FileDescriptor, _ size: Int, _ force: Int32, _ plain: Int32, _ name: String,
                                  _ set: (String, Int32, Int32, Int32) -> Void) {
        if (try? Socket.setOption(fd, SOL_SOCKET, force, Int32(size))) == nil { set(name, SOL_SOCKET, plain, Int32(size)) }
    }

    /// Whether an option's scope covers this socket.
    private static func applies(_ o: SocketOption, inet: Bool, tcp: Bool) -> Bool {
        switch o.scope {
        case .any: return true
        case .inet: return inet
        case .tcp: return tcp
        }
    }

    /// A reload kept this listening socket for a unit whose options
    /// changed: what a live socket can take is set now (Backlog= by
    /// listen(2) again, KeepAlive=, NoDelay=, the buffers, the integer
    /// options); the keys only a new socket would get (bind-time options,
    /// the file's mode and owner, an option removed without a value to go
    /// back to) are returned, to be said.
    static func reshape(_ fd: FileDescriptor, listen: Listen, from old: SocketConfig, to new: SocketConfig,
                        warn: (String) -> Void) -> [String] {
        var later: [String] = []
        let family = (try? Socket.localAddress(fd))?.family ?? AF_UNIX
        let inet = family == AF_INET || family == AF_INET6
        let tcp = inet && listen.kind == .stream
        func set(_ key: String, _ level: Int32, _ opt: Int32, _ value: Int32) {
            do { try Socket.setOption(fd, level, opt, value) } catch {
                warn("cannot set \(key)= on \(listen.address): \(error.reason), ignoring")
            }
        }
        if new.backlog != old.backlog && listen.kind != .datagram {
            do { try Socket.listen(fd, backlog: new.backlog) } catch { warn("cannot set Backlog= on \(listen.address): \(error.reason), ignoring") }
        }
        if new.keepAlive != old.keepAlive { set("KeepAlive", SOL_SOCKET, SO_KEEPALIVE, new.keepAlive ? 1 : 0) }
        if new.noDelay != old.noDelay && tcp { set("NoDelay", Int32(IPPROTO_TCP), TCP_NODELAY, new.noDelay ? 1 : 0) }
        for (key, o, n, force, plain) in [("ReceiveBuffer", old.receiveBuffer, new.receiveBuffer, SO_RCVBUFFORCE, SO_RCVBUF),
                                          ("SendBuffer", old.sendBuffer, new.sendBuffer, SO_SNDBUFFORCE, SO_SNDBUF)] where o != n {
            guard let size = n else { later.append(key); continue }
            setBuffer(fd, size, force, plain, key, set)
        }
        for o in new.options where !old.options.contains(o) && applies(o, inet: inet, tcp: tcp) {
            let (level, name) = numbers(o.name, ipv6: family == AF_INET6)
            set(o.key, level, name, o.value)
        }
        for o in old.options where !new.options.contains(where: { $0.key == o.key }) { later.append(o.key) }
        if new.bindIPv6Only != old.bindIPv6Only { later.append("BindIPv6Only") }
        if new.reusePort != old.reusePort { later.append("ReusePort") }
        if new.freeBind != old.freeBind { later.append("FreeBind") }
        if new.bindToDevice != old.bindToDevice { later.append("BindToDevice") }
        if new.transparent != old.transparent { later.append("Transparent") }
        if listen.address.unixPath != nil {
            if new.socketMode != old.socketMode { later.append("SocketMode") }
            if new.directoryMode != old.directoryMode { later.append("DirectoryMode") }
            if new.socketUser != old.socketUser { later.append("SocketUser") }
            if new.socketGroup != old.socketGroup { later.append("SocketGroup") }
        }
        return later
    }

    /// setsockopt(2)'s level and option for a named option (linux/socket.h,
    /// netinet/in.h, netinet/tcp.h); some differ on IPv6 sockets.
    static func numbers(_ o: SocketOption.Name, ipv6: Bool) -> (level: Int32, name: Int32) {
        switch o {
        case .passCredentials: return (SOL_SOCKET, SO_PASSCRED)
        case .passSecurity: return (SOL_SOCKET, SO_PASSSEC)
        case .passPIDFD: return (SOL_SOCKET, 76 /* SO_PASSPIDFD */)
        case .broadcast: return (SOL_SOCKET, SO_BROADCAST)
        case .passPacketInfo: return ipv6 ? (Int32(IPPROTO_IPV6), IPV6_RECVPKTINFO) : (Int32(IPPROTO_IP), IP_PKTINFO)
        case .deferAccept: return (Int32(IPPROTO_TCP), TCP_DEFER_ACCEPT)
        case .keepAliveTime: return (Int32(IPPROTO_TCP), TCP_KEEPIDLE)
        case .keepAliveInterval: return (Int32(IPPROTO_TCP), TCP_KEEPINTVL)
        case .keepAliveProbes: return (Int32(IPPROTO_TCP), TCP_KEEPCNT)
        case .priority: return (SOL_SOCKET, SO_PRIORITY)
        case .mark: return (SOL_SOCKET, SO_MARK)
        case .ipTOS: return (Int32(IPPROTO_IP), IP_TOS)
        case .ipTTL: return ipv6 ? (Int32(IPPROTO_IPV6), IPV6_UNICAST_HOPS) : (Int32(IPPROTO_IP), IP_TTL)
        }
    }

    static func bind(_ fd: FileDescriptor, _ address: SocketAddress, listen: Listen, config: SocketConfig,
                     owner: (uid: UInt32?, gid: UInt32?), trust: SafePath.Trust) throws(ListenError) {
        guard let path = listen.address.unixPath else {
            do { try Socket.bind(fd, address) } catch {
                throw ListenError(step: "bind", errno: error.errno, hint: bindHint(error.errno, listen.address))
            }
            return
        }
        do throws(ListenError) {
            try UnixSocketFile.bind(fd, address, path: path, directoryMode: config.directoryMode, socketMode: config.socketMode,
                                    owner: owner, trust: trust, boundInode: QueuedWork.boundFileInode)
        } catch {
            var e = error
            if e.hint == nil, e.step == "bind" { e.hint = bindHint(e.errno, listen.address) }
            throw e
        }
    }

    static func bindHint(_ errno: Int32, _ address: ListenAddress) -> String? {
        switch errno {
        case EACCES:
            if let port = address.port, port < 1024 { return "ports below 1024 need root or CAP_NET_BIND_SERVICE" }
            return nil
        case EADDRINUSE:
            return "another process listens there"
        case EADDRNOTAVAIL:
            return "no interface has this address; FreeBind=yes binds anyway"
        default:
            return nil
        }
    }

    /// FlushPending=: drops what waits on a listening socket, connections
    /// accepted and closed, datagrams read and discarded. Bounded, so a
    /// flood cannot keep porter here.
    static func flush(_ fd: FileDescriptor, datagram: Bool) -> Int {
        var dropped = 0
        var buf = [UInt8](repeating: 0, count: 2048)
        // Non-blocking meanwhile: a client that went away between poll and
        // accept must not stop the loop. The service gets it back as it was.
        let wasNonBlocking = fd.isNonBlocking
        try? fd.setNonBlocking(true)
        defer { if !wasNonBlocking { try? fd.setNonBlocking(false) } }
        while dropped < 10_000 {
            var p = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 0) == 1, p.revents & Int16(POLLIN) != 0 else { break }
            if datagram {
                guard recv(fd.rawValue, &buf, buf.count, Int32(MSG_DONTWAIT)) >= 0 else { break }
            } else {
                var peer = SocketAddress()
                guard let c = try? Socket.accept(fd, peer: &peer) else { break }
                c.close()
            }
            dropped += 1
        }
        return dropped
    }

    /// Symlinks=: each path made a link to the socket's path, its parent
    /// resolved (and made) without following a link someone else placed; a
    /// link already there is replaced, anything else is left and said.
    static func makeSymlinks(_ config: SocketConfig, warn: (String) -> Void) {
        guard let target = config.listens.lazy.compactMap({ $0.address.unixPath }).first else { return }
        for link in config.symlinks {
            let parent = String(link[..<link.lastIndex(of: "/")!])
            let name = String(link[link.index(after: link.lastIndex(of: "/")!)...])
            do {
                let dir = try SafePath.directory(parent.isEmpty ? "/" : parent, trust: .porter, create: 0o755)
                defer { dir.close() }
                if let old = Files.readLink(at: dir, name) {
                    if old == target { continue }
                    unlinkat(dir.rawValue, name, 0)
                } else if Files.status(at: dir, name) != nil {
                    warn("Symlinks=\(link): something that is not a symlink is there; left alone")
                    continue
                }
                if symlinkat(target, dir.rawValue, name) != 0 {
                    warn("Symlinks=\(link): \(SysError.describe(SysError.current))")
                }
            } catch {
                warn("Symlinks=\(link): \(error.description)")
            }
        }
    }

    /// Removes the links of Symlinks= that still point to the socket.
    static func removeSymlinks(_ config: SocketConfig) {
        guard let target = config.listens.lazy.compactMap({ $0.address.unixPath }).first else { return }
        for link in config.symlinks {
            let parent = String(link[..<link.lastIndex(of: "/")!])
            guard let dir = SafePath.existingDirectory(parent.isEmpty ? "/" : parent, trust: .porter) else { continue }
            let name = String(link[link.index(after: link.lastIndex(of: "/")!)...])
            if Files.readLink(at: dir, name) == target { unlinkat(dir.rawValue, name, 0) }
            dir.close()
        }
    }
}
