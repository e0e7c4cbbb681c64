/// xinetd services as porter units: one socket unit per service (its id
/// names it), with `NAME@.service` (wait = no) or `NAME.service`
/// (wait = yes), InternalService= for `type = INTERNAL`, ProxyTo= for
/// `redirect`. Every attribute becomes a porter key or a report row.
public struct XinetdImport {
    public var services: ServicesFile
    /// Names /etc/services lacks, from porter's own small table.
    public var fallback = ServicesFile.builtin
    /// Where the configuration came from, for the comment heading each unit.
    public var source: String
    /// Host names in only_from/no_access to addresses (porter resolves
    /// them when it reads the configuration); nil: names are not resolved.
    public var resolve: XinetdAccess.HostResolver? = nil
    /// hosts.allow and hosts.deny, as a libwrap xinetd checks them, and
    /// where they were read (nil: not read).
    public var hostsAccess: (rules: HostsAccess, from: String)? = nil

    public init(services: ServicesFile, source: String) {
        self.services = services
        self.source = source
    }

    /// `defaults`' own attributes decide which services run (`enabled`,
    /// `disabled`); `services` come with the defaults applied.
    public func convert(_ services: [XinetdService], defaults: [XinetdText.Attribute]) -> ImportResult {
        var result = ImportResult()
        var enabled: Set<String>? = nil, disabled = Set<String>()
        var d = XinetdService(name: "defaults", file: source, line: 0, defaults: [], attributes: [])
        for a in defaults { d.apply(a) }
        if let e = d.values["enabled"] { enabled = Set(e) }
        disabled = Set(d.values["disabled"] ?? [])
        // A libwrap xinetd (Debian's) also asks /etc/hosts.allow and /etc/hosts.deny.
        if let h = hostsAccess {
            result.rows.append(ImportRow(service: "*", attribute: "libwrap", value: h.from, kind: .exact,
                becomes: "IPAddressAllow=, IPAddressDeny=",
                note: h.rules.isEmpty ? "read: no rules" : "read: \(h.rules.rules.count) rule\(h.rules.rules.count == 1 ? "" : "s"); each service's lists let in what both xinetd's attributes and these rules let in",
                isAccess: true))
            for d in h.rules.diagnostics { result.diagnostics.append(d) }
        } else {
            result.rows.append(ImportRow(service: "*", attribute: "libwrap", value: "/etc/hosts.allow, /etc/hosts.deny", kind: .unsupported,
                becomes: "IPAddressAllow=, IPAddressDeny=",
                note: "xinetd built with libwrap also checked these files; they were not read (--hosts-access none): write their rules as IPAddressAllow=/IPAddressDeny=",
                isAccess: true))
        }
        var used = Set<String>()
        for s in services {
            let id = s.id
            if s.value("disable") == "yes" || disabled.contains(id) || disabled.contains(s.name) || (enabled.map { !$0.contains(id) && !$0.contains(s.name) } ?? false) {
                result.skipped.append("\(id) (disabled)")
                result.rows.append(ImportRow(service: id, attribute: "disable", value: s.value("disable") ?? "(defaults)", kind: .skipped,
                                             becomes: "-", note: "disabled in xinetd: not converted; enable it there and import again, or write the units by hand"))
                continue
            }
            let unit = Self.unitName(id)
            if used.contains(unit) {
                // xinetd keeps the first service of an id and ignores the next.
                result.skipped.append("\(id) (duplicate id, \(s.file):\(s.line))")
                result.rows.append(ImportRow(service: id, attribute: "id", value: id, kind: .skipped, becomes: "-",
                                             note: "\(s.file):\(s.line): an earlier service has this id; xinetd ignores this one too"))
                continue
            }
            if result.add(convertOne(s, unit: unit), service: id) { used.insert(unit) }
        }
        return result
    }

    /// A unit name from an xinetd id: letters, digits and `:-_.` stay.
    static func unitName(_ id: String) -> String {
        let ok = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.")
        let name = String(id.map { ok.contains($0) ? $0 : "_" })
        return name.isEmpty ? "service" : name
    }

    func convertOne(_ s: XinetdService, unit: String) -> Result<([(name: String, text: String)], [ImportRow]), ImportRow> {
        let id = s.id
        var rows: [ImportRow] = []
        func row(_ attr: String, _ kind: ImportRow.Kind, _ becomes: String, _ note: String, access: Bool = false) {
            rows.append(ImportRow(service: id, attribute: attr, value: s.value(attr) ?? "", kind: kind, becomes: becomes, note: note, isAccess: access))
        }
        func skip(_ attr: String, _ note: String) -> Result<([(name: String, text: String)], [ImportRow]), ImportRow> {
            .failure(ImportRow(service: id, attribute: attr, value: s.value(attr) ?? "", kind: .skipped, becomes: "-", note: note))
        }
        let origin = "\(s.file):\(s.line)"
        var socket = UnitWriter(header: ["\(unit).socket: imported from xinetd service \(s.name) (\(origin)) by porter import"])
        let types = Set(s.values["type"] ?? [])
        let flags = Set(s.values["flags"] ?? [])

        // What kind of socket, and which port.
        let socketType = s.value("socket_type") ?? ""
        let kind: String
        switch socketType {
        case "stream": kind = "ListenStream"
        case "dgram": kind = "ListenDatagram"
        case "seqpacket": kind = "ListenSequentialPacket"
        case "": return skip("socket_type", "missing: xinetd requires it")
        default: return skip("socket_type", "\(socketType) sockets: porter listens on stream, dgram and seqpacket sockets only")
        }
        if types.contains("RPC") { return skip("type", "RPC services need the portmapper, which porter does not register with") }
        if types.contains("TCPMUX") || types.contains("TCPMUXPLUS") { return skip("type", "TCPMUX (RFC 1078) is not served by porter") }
        let proto = s.value("protocol") ?? (socketType == "dgram" ? "udp" : "tcp")
        guard proto == "tcp" || proto == "udp" else { return skip("protocol", "\(proto): porter's IP sockets are TCP and UDP") }
        let port: UInt16
        if let p = s.value("port") {
            guard let n = UInt16(p), n > 0 else { return skip("port", "not a port number 1-65535") }
            port = n
        } else if types.contains("UNLISTED") {
            return skip("port", "an UNLISTED service needs a port")
        } else if let n = services.port(s.name, proto: proto) {
            port = n
        } else if let n = fallback.port(s.name, proto: proto) {
            port = n
            row("port", .approximate, "\(n)", "\(s.name)/\(proto) is not in the services file; port \(n) from porter's own table")
        } else {
            return skip("port", "\(s.name)/\(proto) is not in the services file; give the service a port")
        }
        // Where: bind/interface, the IPv4 or IPv6 flag.
        var host = "0.0.0.0"
        if flags.contains("IPv6") { host = "[::]" }
        if let b = s.value("bind") ?? s.value("interface") {
            if IPAddress.parseIPv4(b) != nil { host = b } else if IPAddress.parseIPv6(b) != nil { host = "[\(b)]" } else if let h = XinetdAccess.listenHost(b, ipv6: flags.contains("IPv6"), resolve: resolve) {
                host = h
                row(s.value("bind") != nil ? "bind" : "interface", .approximate, h, "\(b) resolved when porter read the configuration")
            } else {
                return skip(s.value("bind") != nil ? "bind" : "interface", "\(b) is not an IP address, nor a host name with an \(flags.contains("IPv6") ? "IPv6" : "IPv4") address; write the address to listen on")
            }
        }
        socket.set("Socket", kind, "\(host):\(port)")
        if host == "[::]" {
            let v6only = s.value("v6only") == "yes"
            socket.set("Socket", "BindIPv6Only", v6only ? "ipv6-only" : "both")
        }

        // The flags.
        for f in flags.sorted() {
            switch f {
            case "IPv4", "IPv6", "REUSE", "NOLIBWRAP", "NAMEINARGS": break
            case "NODELAY": socket.set("Socket", "NoDelay", "yes")
            case "KEEPALIVE": socket.set("Socket", "KeepAlive", "yes")
            case "NORETRY": row("flags", .approximate, "-", "NORETRY: porter does not retry a failed fork either; the connection is closed and logged")
            default: row("flags", .unsupported, "-", "\(f): no porter equivalent; ignored")
            }
        }

        let wait = s.value("wait") == "yes"
        let user = s.value("user"), group = s.value("group")
        var units: [(name: String, text: String)] = []
        var service: UnitWriter? = nil
        var serviceName = ""

        if types.contains("INTERNAL") {
            guard let builtin = InternalService(rawValue: s.name) else {
                return skip("type", "INTERNAL \(s.name): porter's built-ins are echo, discard, daytime, chargen and time")
            }
            socket.set("Socket", "InternalService", builtin.rawValue)
            if user != nil && user != "root" { row("user", .approximate, "-", "built-ins run inside porter, as porter's user") }
        } else if let redirect = s.values["redirect"] {
            guard redirect.count == 2 || (redirect.count == 1 && redirect[0].contains(":")) else {
                return skip("redirect", "expected HOST PORT")
            }
            let target = redirect.count == 2 ? "\(redirect[0].contains(":") ? "[\(redirect[0])]" : redirect[0]):\(redirect[1])" : redirect[0]
            if proto == "udp" { return skip("redirect", "xinetd redirects TCP only") }
            serviceName = "\(unit).service"
            var w = UnitWriter(header: ["\(serviceName): imported from xinetd service \(s.name) (\(origin)) by porter import",
                                        "redirect: porter relays to \(target) and starts nothing"])
            w.set("Service", "ProxyTo", target)
            service = w
        } else {
            guard let server = s.value("server") else { return skip("server", "missing: a service that is not INTERNAL or redirect needs one") }
            var args = s.values["server_args"] ?? []
            var argv0: String? = nil
            if flags.contains("NAMEINARGS") {
                if args.isEmpty { return skip("server_args", "NAMEINARGS needs argv[0] first in server_args") }
                argv0 = args.removeFirst()
            }
            let base = server.split(separator: "/").last.map(String.init) ?? server
            var exec = ""
            if let a0 = argv0, a0 != server && a0 != base {
                exec = "@" + UnitWriter.word(server) + " " + UnitWriter.word(a0)
            } else {
                exec = UnitWriter.word(server)
            }
            if !args.isEmpty { exec += " " + UnitWriter.command(args) }
            serviceName = wait ? "\(unit).service" : "\(unit)@.service"
            var w = UnitWriter(header: ["\(serviceName): imported from xinetd service \(s.name) (\(origin)) by porter import"])
            w.set("Service", "ExecStart", exec)
            if !wait { w.set("Service", "StandardInput", "socket") }
            if let user { w.set("Service", "User", user) }
            if let group { w.set("Service", "Group", group) }
            if user != nil && user != "root" && s.value("groups") != "yes" {
                row("groups", .approximate, "-", "porter (as systemd) gives \(user!) its supplementary groups; xinetd gave only the primary group without groups = yes")
            }
            if wait && socketType == "stream" {
                row("wait", .exact, "Accept=no", "the server accepts on the listening socket (fd 0 and fd 3)")
                w.set("Service", "StandardInput", "socket")
            }
            if wait && socketType == "dgram" { w.set("Service", "StandardInput", "socket") }
            if !wait && socketType == "dgram" {
                row("wait", .approximate, "Accept=no", "dgram with wait = no: porter starts the server when a datagram comes and waits for it to exit before it watches the socket again (systemd cannot accept datagrams)")
            }
            if !wait && socketType != "dgram" { socket.set("Socket", "Accept", "yes") }
            // Environment, limits, process attributes.
            for e in s.values["env"] ?? [] {
                guard e.contains("=") else { row("env", .unsupported, "-", "\(e) is not NAME=VALUE"); continue }
                w.set("Service", "Environment", UnitWriter.word(e))
            }
            if let pass = s.values["passenv"], !pass.isEmpty { w.set("Service", "PassEnvironment", pass.joined(separator: " ")) }
            if let u = s.value("umask") { w.set("Service", "UMask", u.count < 4 ? String(repeating: "0", count: 4 - u.count) + u : u) }
            if let n = s.value("nice") { w.set("Service", "Nice", n) }
            for (attr, key) in [("rlimit_as", "LimitAS"), ("rlimit_cpu", "LimitCPU"), ("rlimit_data", "LimitDATA"),
                                ("rlimit_rss", "LimitRSS"), ("rlimit_stack", "LimitSTACK"), ("rlimit_files", "LimitNOFILE"),
                                ("rlimit_core", "LimitCORE")] {
                guard let v = s.value(attr) else { continue }
                w.set("Service", key, v.uppercased() == "UNLIMITED" ? "infinity" : v)
            }
            service = w
        }

        // Who may connect, and how many.
        let lists = XinetdAccess.convert(onlyFrom: s.values["only_from"], noAccess: s.values["no_access"] ?? [], resolve: resolve)
        if !lists.unsupportedDeny.isEmpty {
            return skip("no_access", "\(lists.unsupportedDeny.joined(separator: " ")): domain wildcards, network names and host names without an address cannot be checked by porter; without them the service would admit hosts xinetd refused, so it is not converted; write addresses instead")
        }
        let names = lists.resolved.map { "\($0.name) is \($0.prefixes.map(\.description).joined(separator: " "))" }.joined(separator: ", ")
        let namesNote = names.isEmpty ? "" : "; host names resolved when porter read the configuration (\(names)), not looked up per connection as xinetd does"
        var access = lists.access
        if let h = hostsAccess, !h.rules.isEmpty {
            let daemon = Self.libwrapName(s, flags: flags)
            let o = h.rules.outcome(for: daemon, resolve: resolve)
            if let why = o.refusal { return skip("libwrap", "\(why); not converted (or run with --hosts-access none to ignore the files)") }
            access = access.intersecting(o.access)
            if !o.matched.isEmpty || !o.notes.isEmpty {
                let keys = o.access.allowsEveryone ? "-" : "IPAddressAllow=\(o.access.allow.map(\.description).joined(separator: " ")) + IPAddressDeny=\(Self.denyText(o.access.deny))"
                row("libwrap", o.notes.isEmpty ? .exact : .approximate, keys,
                    "as daemon \(daemon): \(o.matched.isEmpty ? "no rule names it" : "rules at " + o.matched.joined(separator: ", "))"
                        + (o.notes.isEmpty ? "" : "; " + o.notes.joined(separator: "; ")), access: true)
            }
        }
        if !access.allow.isEmpty { socket.set("Socket", "IPAddressAllow", access.allow.map(\.description).joined(separator: " ")) }
        if !access.deny.isEmpty { socket.set("Socket", "IPAddressDeny", Self.denyText(access.deny)) }
        if let only = s.values["only_from"] {
            let unsupported = lists.unsupportedAllow.isEmpty ? "" : "; \(lists.unsupportedAllow.joined(separator: " ")) left out (names porter cannot check: those hosts are refused)"
            let fromNames = lists.resolved.contains { n in only.contains(n.name) }
            row("only_from", lists.unsupportedAllow.isEmpty && !fromNames ? .exact : .approximate,
                lists.access.allow.isEmpty ? "IPAddressDeny=any" : "IPAddressAllow=\(lists.access.allow.map(\.description).joined(separator: " ")) + IPAddressDeny=any",
                (only.isEmpty ? "empty: nobody may connect" : "checked at accept (kernel filter where the server accepts)") + unsupported
                    + (fromNames ? namesNote : ""), access: true)
        }
        if let no = s.values["no_access"], !no.isEmpty {
            let fromNames = lists.resolved.contains { n in no.contains(n.name) }
            row("no_access", fromNames ? .approximate : .exact, "IPAddressDeny=\(lists.denied.map(\.description).joined(separator: " "))",
                (s.values["only_from"] != nil ? "the more specific match wins, as in xinetd (allowed ranges are written without the denied holes)" : "checked at accept (kernel filter where the server accepts)")
                    + (fromNames ? namesNote : ""), access: true)
        }
        if let i = s.value("instances") {
            if i.uppercased() == "UNLIMITED" {
                socket.set("Socket", "MaxConnections", "1000000")
                row("instances", .approximate, "MaxConnections=1000000", "porter's limit is at most 1000000", access: true)
            } else if let n = Int(i), n > 0 {
                socket.set("Socket", "MaxConnections", String(min(n, 1_000_000)))
                row("instances", .approximate, "MaxConnections=\(n)", "at the limit porter stops accepting and clients wait in the backlog; xinetd accepted and closed them", access: true)
            } else {
                row("instances", .unsupported, "-", "not a number", access: true)
            }
        }
        if let p = s.value("per_source"), p.uppercased() != "UNLIMITED" {
            if let n = Int(p), n > 0 {
                socket.set("Socket", "MaxConnectionsPerSource", String(n))
                row("per_source", .exact, "MaxConnectionsPerSource=\(n)", "an extra connection from that address is closed at once", access: true)
            } else {
                row("per_source", .unsupported, "-", "not a number", access: true)
            }
        }
        if let c = s.values["cps"] {
            if c.count == 2, let rate = Int(c[0]), let wait = Int(c[1]), rate > 0, wait > 0 {
                socket.set("Socket", "TriggerLimitIntervalSec", "1s")
                socket.set("Socket", "TriggerLimitBurst", String(rate))
                socket.set("Socket", "TriggerLimitPauseSec", "\(wait)s")
                row("cps", .approximate, "TriggerLimitIntervalSec=1s TriggerLimitBurst=\(rate) TriggerLimitPauseSec=\(wait)s",
                    "porter pauses the socket for \(wait)s; clients that come meanwhile wait in the backlog and are served after, where xinetd refused them", access: true)
            } else {
                row("cps", .unsupported, "-", "expected two numbers: connections per second and the seconds to pause", access: true)
            }
        }
        for a in ["access_times", "max_load", "deny_time"] where s.values[a] != nil {
            row(a, .unsupported, "-", a == "deny_time" ? "belongs to SENSOR, which porter does not have" : "porter has no such limit; the service is served at all times", access: true)
        }

        // Logging.
        let success = Set(s.values["log_on_success"] ?? []), failure = Set(s.values["log_on_failure"] ?? [])
        if s.values["log_on_success"] != nil || s.values["log_on_failure"] != nil {
            let mode = !success.isEmpty ? "yes" : !failure.isEmpty ? "failures" : "no"
            socket.set("Socket", "LogConnections", mode)
            row("log_on_success", .approximate, "LogConnections=\(mode)",
                "porter's line has the peer, pid, exit status and duration; USERID (ident) and TRAFFIC are not logged")
        }
        if let t = s.value("log_type") {
            row("log_type", .approximate, "porter.conf LogTarget=", "\(t): porter logs where its own LogTarget= says (stderr, journal or syslog)")
        }
        // Banners: written by whoever accepts the connection.
        let porterAccepts = socketType == "stream" && (types.contains("INTERNAL") || s.values["redirect"] != nil || !wait)
        for (b, key) in [("banner", "Banner"), ("banner_success", "BannerSuccess"), ("banner_fail", "BannerFail")] {
            guard let file = s.value(b) else { continue }
            guard porterAccepts else {
                row(b, .unsupported, "-", "porter writes banners only to connections it accepts (stream with wait = no, INTERNAL or redirect)")
                continue
            }
            guard file.hasPrefix("/") else { row(b, .unsupported, "-", "\(file) is not an absolute path"); continue }
            socket.set("Socket", key, file)
            row(b, .approximate, "\(key)=\(file)", "read when porter loads its configuration and at each reload (at most 4 KiB), not at each connection")
        }
        if s.values["libwrap"] != nil && hostsAccess == nil {
            row("libwrap", .unsupported, "-", "tcp_wrappers files were not read (--hosts-access none); use IPAddressAllow=/IPAddressDeny=", access: true)
        }
        for (attr, _) in s.values.sorted(by: { $0.key < $1.key }) where !Self.known.contains(attr) {
            row(attr, .unsupported, "-", "no porter equivalent; ignored")
        }

        units.append(("\(unit).socket", socket.text))
        if let service { units.append((serviceName, service.text)) }
        return .success((units, rows))
    }

    /// Attributes the conversion reads; any other is reported as ignored.
    static let known: Set<String> = [
        "id", "disable", "type", "flags", "socket_type", "protocol", "port", "bind", "interface", "v6only", "user", "group",
        "groups", "wait", "server", "server_args", "redirect", "env", "passenv", "umask", "nice", "rlimit_as", "rlimit_cpu",
        "rlimit_data", "rlimit_rss", "rlimit_stack", "rlimit_files", "rlimit_core", "only_from", "no_access", "instances",
        "per_source", "cps", "access_times", "max_load", "deny_time", "log_on_success", "log_on_failure", "log_type",
        "banner", "banner_success", "banner_fail", "mdns", "libwrap", "enabled", "disabled",
    ]

    /// `any` as systemd writes it, the rest as prefixes.
    /// The daemon name a libwrap xinetd asks hosts_access about (xinetd's
    /// access.c): `libwrap = NAME` if set; the service name for INTERNAL and
    /// redirect; with NAMEINARGS the base name of server_args' first word;
    /// otherwise the base name of `server`, or the id without one.
    static func libwrapName(_ s: XinetdService, flags: Set<String>) -> String {
        if let name = s.value("libwrap") { return name }
        func base(_ p: String) -> String { p.split(separator: "/").last.map(String.init) ?? p }
        if (s.values["type"] ?? []).contains("INTERNAL") || s.values["redirect"] != nil { return s.name }
        if flags.contains("NAMEINARGS"), let first = s.values["server_args"]?.first { return base(first) }
        if let server = s.value("server") { return base(server) }
        return s.id
    }

    static func denyText(_ deny: [IPPrefix]) -> String {
        let any = IPPrefix.symbolic["any"]!
        if any.allSatisfy(deny.contains) {
            return (["any"] + deny.filter { !any.contains($0) }.map(\.description)).joined(separator: " ")
        }
        return deny.map(\.description).joined(separator: " ")
    }
}
