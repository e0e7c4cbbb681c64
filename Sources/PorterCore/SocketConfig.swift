
/// One `Listen*=` line of a socket unit.
public struct Listen: Hashable, Sendable, CustomStringConvertible {
    public var kind: SocketKind
    public var address: ListenAddress
    public var line: Int

    public init(kind: SocketKind, address: ListenAddress, line: Int) {
        self.kind = kind
        self.address = address
        self.line = line
    }

    public var description: String { "\(kind.rawValue)=\(address)" }
}

/// An integer socket option set on every listening socket of the unit
/// (systemd.socket(5) keys that map one-to-one onto setsockopt).
/// A plain socket option from a `[Socket]` key, by name: the numbers for
/// setsockopt(2) are the syscall layer's business (PorterSys, Listener).
public struct SocketOption: Hashable, Sendable {
    public enum Scope: Sendable { case any, inet, tcp }
    public enum Name: Hashable, Sendable {
        case passCredentials, passSecurity, passPIDFD, broadcast
        /// IP_PKTINFO, IPV6_RECVPKTINFO on IPv6.
        case passPacketInfo
        case deferAccept, keepAliveTime, keepAliveInterval, keepAliveProbes
        case priority, mark, ipTOS
        /// IP_TTL, IPV6_UNICAST_HOPS on IPv6.
        case ipTTL
    }
    public var key: String
    public var name: Name
    public var value: Int32
    public var scope: Scope

    public init(key: String, name: Name, value: Int32, scope: Scope) {
        self.key = key
        self.name = name
        self.value = value
        self.scope = scope
    }
}

public enum BindIPv6Only: String, Sendable {
    case `default`, both, ipv6Only = "ipv6-only"
}

/// A `.socket` unit, as systemd.socket(5) describes it.
public struct SocketConfig: Sendable {
    public var name: UnitName
    public var listens: [Listen] = []
    public var accept = false
    /// systemd's default is SOMAXCONN; the kernel caps it at net.core.somaxconn.
    public var backlog: Int32 = 4096
    public var bindIPv6Only = BindIPv6Only.default
    public var reusePort = false
    public var freeBind = false
    /// BindToDevice=: the network interface the sockets are bound to.
    public var bindToDevice: String?
    public var transparent = false
    /// FlushPending=: Accept=no, what is queued when the service exits is dropped.
    public var flushPending = false
    /// LogConnections= (porter's own, xinetd's log_on_success and
    /// log_on_failure): Accept=yes, one line per connection when its
    /// instance ends, with the peer, pid, exit and duration.
    public var logConnections = LogConnections.yes
    public enum LogConnections: String, Sendable {
        /// Every connection: success at info, failure at warning.
        case yes
        /// Failed ones only (successes at debug).
        case failures
        /// None at info or above (all at debug); spawn errors are still errors.
        case no
    }
    /// TriggerLimitIntervalSec=/TriggerLimitBurst= and PollLimit*=, as
    /// written; off unless one of a pair is set (see `triggerLimit`).
    public var triggerLimitInterval: Duration?
    public var triggerLimitBurst: Int?
    public var pollLimitInterval: Duration?
    public var pollLimitBurst: Int?
    /// TriggerLimitPauseSec= (porter's): how long a socket that hit its
    /// trigger limit stays paused; nil: until the limit's window closes.
    /// xinetd's `cps` second number, inetd's ten minutes.
    public var triggerLimitPause: Duration?
    /// IPAddressAllow=/IPAddressDeny=: who may connect.
    public var access = AddressAccess()
    /// MaxConnectionsPerSource= (nil: off, systemd's default).
    public var maxConnectionsPerSource: Int?
    /// PerSourceLimitIntervalSec=/PerSourceLimitBurst= (porter's).
    public var perSourceLimitInterval: Duration?
    public var perSourceLimitBurst: Int?
    /// InternalService= (porter's): served inside porter, no service unit.
    public var internalService: InternalService?
    /// Banner=, BannerSuccess=, BannerFail= (porter's, xinetd's banner,
    /// banner_success and banner_fail): files whose text porter writes to a
    /// connection it accepted — Banner= to every one, then BannerSuccess=
    /// to one it serves or BannerFail= to one it refuses.
    public var banners = BannerFiles()
    /// Symlinks=: paths made links to the one Unix socket path.
    public var symlinks: [String] = []
    public var keepAlive = false
    public var noDelay = false
    public var receiveBuffer: Int?
    public var sendBuffer: Int?
    public var socketMode: UInt32 = 0o666
    public var directoryMode: UInt32 = 0o755
    public var socketUser: String?
    public var socketGroup: String?
    public var removeOnStop = false
    public var fileDescriptorName: String
    public var maxConnections = 64
    /// `Service=`: only with Accept=no.
    public var service: UnitName?
    public var options: [SocketOption] = []
    /// Whether any Listen*= line was written, valid or not.
    var sawListen = false
    /// Of the unit file's bytes: whether a reload changed the unit.
    public var fingerprint: UInt64 = 0
    /// Condition*= and Assert*= of [Unit].
    public var unitConditions: [UnitCondition] = []
    /// The unit file and its drop-ins, for messages about its lines.
    public var sources = SourceNames("")

    public init(name: UnitName) {
        self.name = name
        sources = SourceNames(name.description)
        // systemd.socket(5): the name defaults to the socket unit's name, suffix included.
        fileDescriptorName = name.description
    }

    static let keys = KeySet([
        "ListenStream", "ListenDatagram", "ListenSequentialPacket", "Accept", "Backlog", "BindIPv6Only",
        "ReusePort", "FreeBind", "KeepAlive", "NoDelay", "ReceiveBuffer", "SendBuffer", "SocketMode",
        "SocketUser", "SocketGroup", "DirectoryMode", "RemoveOnStop", "FileDescriptorName", "MaxConnections",
        "Service", "PassCredentials", "PassSecurity", "PassPIDFD", "PassPacketInfo", "Broadcast",
        "DeferAcceptSec", "KeepAliveTimeSec", "KeepAliveIntervalSec", "KeepAliveProbes", "Priority", "Mark",
        "IPTOS", "IPTTL", "BindToDevice", "Transparent", "FlushPending", "Symlinks",
        "TriggerLimitIntervalSec", "TriggerLimitBurst", "PollLimitIntervalSec", "PollLimitBurst",
        "LogConnections", "TriggerLimitPauseSec", "IPAddressAllow", "IPAddressDeny", "MaxConnectionsPerSource",
        "PerSourceLimitIntervalSec", "PerSourceLimitBurst", "InternalService", "Banner", "BannerSuccess", "BannerFail",
    ])

    /// Reads a socket unit. Returns nil when it has errors (in `diagnostics`).
    public static func read(_ file: UnitFile, name: UnitName, specifiers: Specifiers, diagnostics: inout Diagnostics) -> SocketConfig? {
        var config = SocketConfig(name: name)
        config.sources = diagnostics.sources
        var reader = UnitReader(file: file, diagnostics: diagnostics)
        reader.read(section: "Socket", implemented: keys) { r, a in
            config.apply(a, &r, specifiers)
        }
        config.validate(&reader)
        config.unitConditions = reader.conditions
        diagnostics = reader.diagnostics
        return diagnostics.hasErrors ? nil : config
    }

    mutating func apply(_ a: UnitFile.Assignment, _ r: inout UnitReader, _ specifiers: Specifiers) {
        func flag(_ set: (inout SocketConfig, Bool) -> Void) {
            if let v = r.value(a, Values.boolean) { set(&self, v) }
        }
        func option(_ name: SocketOption.Name, scope: SocketOption.Scope = .any, _ parse: (String) throws(ValueError) -> Int32) {
            options.removeAll { $0.key == a.key }
            if a.value.isEmpty { return }
            if let v = r.value(a, parse) {
                options.append(SocketOption(key: a.key, name: name, value: v, scope: scope))
            }
        }
        func boolOption(_ name: SocketOption.Name, scope: SocketOption.Scope = .any) {
            option(name, scope: scope) { (s) throws(ValueError) -> Int32 in try Values.boolean(s) ? 1 : 0 }
        }
        func seconds(_ s: String) throws(ValueError) -> Int32 {
            guard let d = try Values.timeSpan(s).duration else { throw ValueError("expected a finite time span") }
            return Int32(clamping: d.nanoseconds / 1_000_000_000)
        }
        func int(_ range: ClosedRange<Int>) -> (String) throws(ValueError) -> Int32 {
            { (s) throws(ValueError) -> Int32 in Int32(try Values.integer(s, in: range)) }
        }

        switch a.key {
        case "ListenStream", "ListenDatagram", "ListenSequentialPacket":
            let kind = SocketKind(rawValue: a.key)!
            sawListen = true
            if a.value.isEmpty {
                listens.removeAll()  // an empty assignment resets the list
                return
            }
            guard let expanded = r.value(a, specifiers.expand),
                  let address = r.value(a, { (_) throws(ValueError) in try ListenAddress.parse(expanded, kind: kind) })
            else { return }
            listens.append(Listen(kind: kind, address: address, line: a.line))
        case "Accept": flag { $0.accept = $1 }
        case "Backlog":
            if let v = r.value(a, { (s) throws(ValueError) in try Values.integer(s, in: 0...Int(Int32.max)) }) { backlog = Int32(v) }
        case "BindIPv6Only":
            guard let v = BindIPv6Only(rawValue: a.value) else {
                r.error(a, "invalid value \(Quote.value(a.value)), expected default, both or ipv6-only")
                return
            }
            bindIPv6Only = v
        case "ReusePort": flag { $0.reusePort = $1 }
        case "FreeBind": flag { $0.freeBind = $1 }
        case "Transparent": flag { $0.transparent = $1 }
        case "FlushPending": flag { $0.flushPending = $1 }
        case "LogConnections":
            switch a.value {
            case "yes", "true", "on", "1": logConnections = .yes
            case "no", "false", "off", "0": logConnections = .no
            case "failures": logConnections = .failures
            default: r.error(a, "invalid value \(Quote.value(a.value)), expected yes, failures or no")
            }
        case "TriggerLimitIntervalSec", "PollLimitIntervalSec":
            guard let v = r.value(a, { (s) throws(ValueError) in try Values.timeSpan(s) }) else { return }
            // infinity: one window for ever, which systemd treats as off too.
            let d = v.duration ?? .zero
            if a.key.hasPrefix("Trigger") { triggerLimitInterval = d } else { pollLimitInterval = d }
        case "TriggerLimitBurst", "PollLimitBurst":
            guard let n = r.value(a, { (s) throws(ValueError) in try Values.integer(s, in: 0...Int(Int32.max)) }) else { return }
            if a.key.hasPrefix("Trigger") { triggerLimitBurst = n } else { pollLimitBurst = n }
        case "TriggerLimitPauseSec":
            guard !a.value.isEmpty else { triggerLimitPause = nil; return }
            guard let v = r.value(a, { (s) throws(ValueError) in try Values.timeSpan(s) }) else { return }
            guard let d = v.duration, d > .zero else {
                r.error(a, "invalid value \(Quote.value(a.value)), expected a time span above zero such as 10s or 10min")
                return
            }
            triggerLimitPause = d
        case "IPAddressAllow", "IPAddressDeny":
            // An empty value resets the list, as in systemd.
            guard !Values.words(a.value).isEmpty else {
                if a.key == "IPAddressAllow" { access.allow = [] } else { access.deny = [] }
                return
            }
            guard let list = r.value(a, { (s) throws(ValueError) in try AddressAccess.parseList(s) ?? [] }) else { return }
            if a.key == "IPAddressAllow" { access.allow += list } else { access.deny += list }
        case "MaxConnectionsPerSource":
            guard let v = r.value(a, { (s) throws(ValueError) in try Values.integer(s, in: 0...1_000_000) }) else { return }
            maxConnectionsPerSource = v == 0 ? nil : v
        case "PerSourceLimitIntervalSec":
            guard let v = r.value(a, { (s) throws(ValueError) in try Values.timeSpan(s) }) else { return }
            perSourceLimitInterval = v.duration ?? .zero
        case "PerSourceLimitBurst":
            perSourceLimitBurst = r.value(a, { (s) throws(ValueError) in try Values.integer(s, in: 0...1_000_000) })
        case "Banner", "BannerSuccess", "BannerFail":
            var path: String? = nil
            if !a.value.isEmpty {
                guard a.value.hasPrefix("/"), !a.value.hasSuffix("/") else {
                    r.error(a, "\(Quote.value(a.value)) is not an absolute file path, expected /path/to/banner")
                    return
                }
                path = a.value
            }
            switch a.key {
            case "Banner": banners.always = path
            case "BannerSuccess": banners.success = path
            default: banners.fail = path
            }
        case "InternalService":
            guard !a.value.isEmpty else { internalService = nil; return }
            guard let v = InternalService(rawValue: a.value) else {
                r.error(a, "invalid value \(Quote.value(a.value)), expected echo, discard, daytime, chargen or time")
                return
            }
            internalService = v
        case "BindToDevice":
            // An interface name: at most IFNAMSIZ - 1 bytes, no slash or space.
            guard !a.value.isEmpty else { bindToDevice = nil; return }
            guard a.value.utf8.count < 16, !a.value.contains("/"), !a.value.contains(" "), a.value != ".", a.value != ".." else {
                r.error(a, "invalid interface name \(Quote.value(a.value)), expected a name such as eth0 (at most 15 bytes)")
                return
            }
            bindToDevice = a.value
        case "Symlinks":
            let paths = Values.words(a.value)
            if paths.isEmpty { symlinks.removeAll() }
            for path in paths {
                guard path.hasPrefix("/"), !path.hasSuffix("/") else {
                    r.error(a, "\(Quote.value(path)) is not an absolute file path, expected /path/to/link")
                    continue
                }
                symlinks.append(path)
            }
        case "KeepAlive": flag { $0.keepAlive = $1 }
        case "NoDelay": flag { $0.noDelay = $1 }
        case "ReceiveBuffer": receiveBuffer = r.value(a, Values.size)
        case "SendBuffer": sendBuffer = r.value(a, Values.size)
        case "SocketMode": if let v = r.value(a, Values.mode) { socketMode = v }
        case "DirectoryMode": if let v = r.value(a, Values.mode) { directoryMode = v }
        case "SocketUser": socketUser = a.value.isEmpty ? nil : r.value(a, specifiers.expand)
        case "SocketGroup": socketGroup = a.value.isEmpty ? nil : r.value(a, specifiers.expand)
        case "RemoveOnStop": flag { $0.removeOnStop = $1 }
        case "FileDescriptorName":
            guard let v = r.value(a, specifiers.expand) else { return }
            if v.isEmpty {
                fileDescriptorName = name.description
            } else if v.count > 255 || v.contains(":") || v.unicodeScalars.contains(where: { $0.value < 32 || $0.value >= 127 }) {
                r.error(a, "invalid name \(Quote.value(v)), expected at most 255 printable ASCII characters without ':'")
            } else {
                fileDescriptorName = v
            }
        case "MaxConnections":
            if let v = r.value(a, { (s) throws(ValueError) in try Values.integer(s, in: 1...1_000_000) }) { maxConnections = v }
        case "Service":
            guard let v = r.value(a, specifiers.expand) else { return }
            guard let n = UnitName.parse(v), n.type == .service, n.instance == nil else {
                r.error(a, "invalid unit name \(Quote.value(v)), expected NAME.service")
                return
            }
            service = n
        case "PassCredentials": boolOption(.passCredentials)
        case "PassSecurity": boolOption(.passSecurity)
        case "PassPIDFD": boolOption(.passPIDFD)
        case "Broadcast": boolOption(.broadcast)
        case "PassPacketInfo":
            options.removeAll { $0.key == a.key }
            if let v = r.value(a, Values.boolean), v {
                options.append(SocketOption(key: a.key, name: .passPacketInfo, value: 1, scope: .inet))
            }
        case "DeferAcceptSec": option(.deferAccept, scope: .tcp, seconds)
        case "KeepAliveTimeSec": option(.keepAliveTime, scope: .tcp, seconds)
        case "KeepAliveIntervalSec": option(.keepAliveInterval, scope: .tcp, seconds)
        case "KeepAliveProbes": option(.keepAliveProbes, scope: .tcp, int(1...127))
        case "Priority": option(.priority, int(0...6))
        case "Mark": option(.mark, int(0...Int(Int32.max)))
        case "IPTOS": option(.ipTOS, scope: .inet, int(0...255))
        case "IPTTL":
            options.removeAll { $0.key == a.key }
            if let v = r.value(a, int(1...255)) {
                options.append(SocketOption(key: a.key, name: .ipTTL, value: v, scope: .inet))
            }
        default:
            break
        }
    }

    mutating func validate(_ r: inout UnitReader) {
        if name.isTemplate {
            // Only its instances run (foo@a.socket -> foo@.socket).
            r.diagnostics.error(nil, nil, "a socket template is not run itself, expected NAME.socket or an instance NAME@INSTANCE.socket")
        }
        if listens.isEmpty && !sawListen {
            r.diagnostics.error(nil, nil, "no ListenStream=, ListenDatagram= or ListenSequentialPacket= line; nothing to listen on")
        }
        struct Key: Hashable { var datagram: Bool; var address: ListenAddress }
        var seen = Set<Key>()
        for l in listens where !seen.insert(Key(datagram: l.kind == .datagram, address: l.address)).inserted {
            r.diagnostics.error(l.line, l.kind.rawValue, "\(l.address) is listed twice")
        }
        if !symlinks.isEmpty && listens.compactMap({ $0.address.unixPath }).count != 1 {
            // systemd's rule: the links need exactly one socket path to point to.
            r.diagnostics.error(nil, "Symlinks", "needs exactly one ListenStream=/ListenDatagram=/ListenSequentialPacket= with a Unix socket path to link to")
        }
        if accept && flushPending {
            r.diagnostics.warning(nil, "FlushPending", "has no effect with Accept=yes (systemd's rule): porter accepts every connection itself")
        }
        if let internalService {
            if service != nil {
                r.diagnostics.error(nil, "Service", "not allowed with InternalService=\(internalService.rawValue): porter serves the socket itself")
            }
            if accept {
                r.diagnostics.warning(nil, "Accept", "has no effect with InternalService=: porter serves every connection itself, without a process")
            }
        }
        if !access.allowsEveryone || !access.allow.isEmpty, !listens.isEmpty, listens.allSatisfy({ $0.address.unixPath != nil }) {
            r.diagnostics.warning(nil, access.deny.isEmpty ? "IPAddressAllow" : "IPAddressDeny", "has no effect: every address of this socket is a Unix socket (the lists filter IP peers)")
        }
        if let program = SocketFilter.program(access), program.count > SocketFilter.maxInstructions {
            r.diagnostics.error(nil, "IPAddressDeny", "too many entries: the filter would take \(program.count) instructions, the kernel takes at most \(SocketFilter.maxInstructions)")
        }
        if accept && internalService == nil {
            for l in listens where l.kind == .datagram {
                r.diagnostics.error(l.line, l.kind.rawValue, "Accept=yes needs connection sockets; datagram sockets cannot be accepted, expected Accept=no")
            }
            if service != nil {
                r.diagnostics.error(nil, "Service", "not allowed with Accept=yes: each connection starts an instance of \(name.prefix)@.service")
            }
        }
    }

    /// The service this socket activates: `NAME@.service` instances with
    /// Accept=yes, otherwise Service= or `NAME.service`.
    public var activates: UnitName {
        if accept { return UnitName(prefix: name.prefix, instance: "", type: .service) }
        return service ?? name.withType(.service)
    }
}

extension SocketConfig {
    /// The trigger limit when either key is set, with systemd's defaults
    /// for the other (2 s; 20 starts with Accept=no, 200 connections with
    /// Accept=yes). porter sets none by default: its start limit already
    /// keeps a failing service from spinning, and a default limit would
    /// throttle inetd-style services that legitimately start often.
    public var triggerLimit: RateWindow? {
        guard triggerLimitInterval != nil || triggerLimitBurst != nil else { return nil }
        return RateWindow(interval: triggerLimitInterval ?? .seconds(2), burst: triggerLimitBurst ?? (accept ? 200 : 20))
    }

    /// The poll limit (wake-ups of the listeners) when either key is set;
    /// systemd's defaults for the other: 2 s, 150.
    public var pollLimit: RateWindow? {
        guard pollLimitInterval != nil || pollLimitBurst != nil else { return nil }
        return RateWindow(interval: pollLimitInterval ?? .seconds(2), burst: pollLimitBurst ?? 150)
    }

    /// MaxConnectionsPerSource= and PerSourceLimit*=, when any is set (the
    /// rate with defaults as the trigger limit's: 2 s, 20 connections).
    public var sourceTable: SourceTable? {
        let rate = perSourceLimitInterval != nil || perSourceLimitBurst != nil
            ? RateWindow(interval: perSourceLimitInterval ?? .seconds(2), burst: perSourceLimitBurst ?? 20) : nil
        return SourceTable(maxOpen: maxConnectionsPerSource, rate: rate)
    }

    /// Where porter accepts the connections itself (the checks of
    /// IPAddressAllow= and the per-source limits run there; elsewhere the
    /// kernel filter does).
    public var porterAccepts: Bool { accept || internalService != nil }
}
