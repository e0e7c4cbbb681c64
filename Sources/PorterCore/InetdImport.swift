/// inetd.conf(5) (netkit, OpenBSD, Debian's openbsd-inetd): one entry per
/// line, `service socket-type protocol wait|nowait[.max] user[:group]
/// server argv0 args...`; `#` starts a comment line; a line that begins
/// with a blank continues the entry before it (inetd's `skip()`); an
/// `ADDRESS:` line sets the address for the entries after it, and
/// `ADDRESS:service` one entry's. Debian's `#<off># ` lines are entries
/// update-inetd disabled.
public struct InetdEntry: Equatable, Sendable {
    public var host: String?
    public var service: String
    public var socketType: String
    public var proto: String
    public var wait: Bool
    /// nowait.N / wait.N: at most N starts a minute.
    public var maxPerMinute: Int?
    public var user: String
    public var group: String?
    public var server: String
    /// argv[0] first, as inetd passes them.
    public var arguments: [String]
    public var file: String
    public var line: Int
    public var disabled = false
}

public struct InetdText: Sendable {
    public private(set) var entries: [InetdEntry] = []
    public private(set) var diagnostics: [Diagnostic] = []

    public init(file: String, text: String) {
        // Join continuation lines first, keeping each entry's first line number.
        var logical: [(line: Int, text: String, disabled: Bool)] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var t = String(raw)
            if t.hasSuffix("\r") { t.removeLast() }
            if t.hasPrefix("#<off>#") {
                logical.append((i + 1, String(t.dropFirst(7)), true))
                continue
            }
            let trimmed = t.trimmingWhitespace()
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            if (t.hasPrefix(" ") || t.hasPrefix("\t")), let last = logical.last, !last.disabled {
                logical[logical.count - 1].text += " " + trimmed
                continue
            }
            logical.append((i + 1, trimmed, false))
        }
        var defaultHost: String? = nil
        for (line, text, disabled) in logical {
            var words = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            // "ADDRESS:" alone: the address of the entries after it ("*:" resets).
            if words.count == 1, words[0].hasSuffix(":") {
                let h = String(words[0].dropLast())
                defaultHost = h == "*" ? nil : h
                continue
            }
            guard words.count >= 6 else {
                if !disabled {
                    diagnostics.append(Diagnostic(.error, file: file, line: line,
                        "expected SERVICE SOCKET-TYPE PROTOCOL WAIT USER SERVER [ARGS...], got \(words.count) field\(words.count == 1 ? "" : "s")"))
                }
                continue
            }
            var host = defaultHost
            var service = words[0]
            if let colon = service.lastIndex(of: ":"), !service.hasPrefix("[") || service[..<colon].hasSuffix("]") {
                let h = String(service[..<colon])
                // [::1]:service: the brackets are not part of the address.
                host = h == "*" ? nil : h.hasPrefix("[") && h.hasSuffix("]") ? String(h.dropFirst().dropLast()) : h
                service = String(service[service.index(after: colon)...])
            }
            let waitField = words[3].split(separator: ".", maxSplits: 1).map(String.init)
            guard waitField[0] == "wait" || waitField[0] == "nowait" else {
                if !disabled { diagnostics.append(Diagnostic(.error, file: file, line: line, "\(Quote.value(words[3])): expected wait, nowait or nowait.MAX")) }
                continue
            }
            var max: Int? = nil
            if waitField.count == 2 {
                guard let n = Int(waitField[1]), n >= 0 else {
                    if !disabled { diagnostics.append(Diagnostic(.error, file: file, line: line, "\(Quote.value(words[3])): MAX after the dot must be a number")) }
                    continue
                }
                max = n
            }
            // user, user.group, user:group (FreeBSD's /class is dropped).
            var userField = words[4]
            if let slash = userField.firstIndex(of: "/") { userField = String(userField[..<slash]) }
            var user = userField, group: String? = nil
            if let sep = userField.firstIndex(where: { $0 == ":" || $0 == "." }) {
                user = String(userField[..<sep])
                group = String(userField[userField.index(after: sep)...])
            }
            let (socketType, proto, server) = (words[1], words[2], words[5])
            words.removeFirst(6)
            entries.append(InetdEntry(host: host, service: service, socketType: socketType, proto: proto, wait: waitField[0] == "wait",
                                      maxPerMinute: max, user: user, group: group, server: server, arguments: words,
                                      file: file, line: line, disabled: disabled))
        }
    }
}

/// inetd entries as porter units, named after the service, with the
/// protocol added when another entry already has the name (`tftp-udp`).
public struct InetdImport {
    public var services: ServicesFile
    public var fallback = ServicesFile.builtin

    /// Host names in `host:service` to addresses (resolved when porter
    /// reads the configuration); nil: names are not resolved.
    public var resolve: XinetdAccess.HostResolver? = nil

    public init(services: ServicesFile) { self.services = services }

    public func convert(_ entries: [InetdEntry]) -> ImportResult {
        var result = ImportResult()
        var used = Set<String>()
        for e in entries {
            let label = "\(e.service)/\(e.proto)"
            if e.disabled {
                result.skipped.append("\(label) (disabled)")
                result.rows.append(ImportRow(service: label, attribute: "#<off>#", value: "\(e.file):\(e.line)", kind: .skipped, becomes: "-",
                                             note: "disabled by update-inetd: not converted"))
                continue
            }
            result.add(convertOne(e, used: &used), service: label)
        }
        return result
    }

    func convertOne(_ e: InetdEntry, used: inout Set<String>) -> Result<([(name: String, text: String)], [ImportRow]), ImportRow> {
        let label = "\(e.service)/\(e.proto)"
        var rows: [ImportRow] = []
        func row(_ attr: String, _ value: String, _ kind: ImportRow.Kind, _ becomes: String, _ note: String, access: Bool = false) {
            rows.append(ImportRow(service: label, attribute: attr, value: value, kind: kind, becomes: becomes, note: note, isAccess: access))
        }
        func skip(_ attr: String, _ value: String, _ note: String) -> Result<([(name: String, text: String)], [ImportRow]), ImportRow> {
            .failure(ImportRow(service: label, attribute: attr, value: value, kind: .skipped, becomes: "-", note: note))
        }
        let kind: String
        switch e.socketType {
        case "stream": kind = "ListenStream"
        case "dgram": kind = "ListenDatagram"
        case "seqpacket": kind = "ListenSequentialPacket"
        default: return skip("socket-type", e.socketType, "porter listens on stream, dgram and seqpacket sockets only")
        }
        if e.proto.hasPrefix("rpc/") || e.service.contains("/") {
            return skip("protocol", e.proto, "RPC services need the portmapper, which porter does not register with")
        }
        // Where.
        var address: String
        var ipv6 = false, ipProto = "tcp"
        switch e.proto {
        case "tcp", "tcp4": ipProto = "tcp"
        case "udp", "udp4": ipProto = "udp"
        case "tcp6", "tcp46": ipProto = "tcp"; ipv6 = true
        case "udp6", "udp46": ipProto = "udp"; ipv6 = true
        case "unix": ipProto = "unix"
        default: return skip("protocol", e.proto, "porter's sockets are TCP, UDP and Unix")
        }
        if ipProto == "unix" {
            guard e.service.hasPrefix("/") else { return skip("service", e.service, "a unix entry names a socket path") }
            address = e.service
        } else {
            let port: UInt16
            if let p = services.port(e.service, proto: ipProto) {
                port = p
            } else if let p = fallback.port(e.service, proto: ipProto) {
                port = p
                row("service", e.service, .approximate, "port \(p)", "\(e.service)/\(ipProto) is not in the services file; port \(p) from porter's own table")
            } else {
                return skip("service", e.service, "\(e.service)/\(ipProto) is not in the services file; add it there or write the unit by hand")
            }
            if let h = e.host {
                if IPAddress.parseIPv4(h) != nil { address = "\(h):\(port)" } else if IPAddress.parseIPv6(h) != nil { address = "[\(h)]:\(port)" } else if let a = XinetdAccess.listenHost(h, ipv6: ipv6, resolve: resolve) {
                    address = "\(a):\(port)"
                    row("host", h, .approximate, a, "resolved when porter read the configuration (inetd binds the name's first \(ipv6 ? "IPv6" : "IPv4") address too)")
                } else {
                    return skip("host", h, "\(h) is not an IP address, nor a host name with an \(ipv6 ? "IPv6" : "IPv4") address; write the address to listen on")
                }
            } else {
                address = ipv6 ? "[::]:\(port)" : "0.0.0.0:\(port)"
            }
        }
        // The service's name; with the protocol when that is taken or
        // not the usual one (echo-udp beside echo, myapp-tcp6).
        let named = XinetdImport.unitName(e.service.hasPrefix("/") ? (e.service.split(separator: "/").last.map(String.init) ?? "unix") : e.service)
        let usual = (e.socketType == "stream" && e.proto == "tcp") || (e.socketType == "dgram" && e.proto == "udp")
        var unit = usual && !used.contains(named) ? named : "\(named)-\(XinetdImport.unitName(e.proto))"
        if used.contains(unit) {
            var n = 2
            while used.contains("\(unit)-\(n)") { n += 1 }
            unit += "-\(n)"
        }
        used.insert(unit)
        let origin = "\(e.file):\(e.line)"
        var socket = UnitWriter(header: ["\(unit).socket: imported from inetd.conf (\(origin)) by porter import"])
        socket.set("Socket", kind, address)
        if ipv6 && (e.proto == "tcp6" || e.proto == "udp6") { socket.set("Socket", "BindIPv6Only", "ipv6-only") }
        if ipv6 && (e.proto == "tcp46" || e.proto == "udp46") { socket.set("Socket", "BindIPv6Only", "both") }
        if let max = e.maxPerMinute {
            // inetd: more than MAX starts in a minute and the service rests for ten.
            socket.set("Socket", "TriggerLimitIntervalSec", "60s")
            socket.set("Socket", "TriggerLimitBurst", String(max))
            socket.set("Socket", "TriggerLimitPauseSec", "10min")
            row("wait", "\(e.wait ? "wait" : "nowait").\(max)", .approximate, "TriggerLimitIntervalSec=60s TriggerLimitBurst=\(max) TriggerLimitPauseSec=10min",
                "as inetd: past \(max) starts a minute the service pauses ten minutes; clients that come meanwhile wait in the backlog instead of being refused", access: true)
        }
        var units: [(name: String, text: String)] = []
        if e.server == "internal" {
            guard let builtin = InternalService(rawValue: e.service) else {
                return skip("server", "internal", "porter's built-ins are echo, discard, daytime, chargen and time")
            }
            socket.set("Socket", "InternalService", builtin.rawValue)
            if e.user != "root" { row("user", e.user, .approximate, "-", "built-ins run inside porter, as porter's user") }
            units.append(("\(unit).socket", socket.text))
            return .success((units, rows))
        }
        guard e.server.hasPrefix("/") else { return skip("server", e.server, "expected an absolute program path or internal") }
        let stream = e.socketType != "dgram"
        let accept = stream && !e.wait
        let serviceName = accept ? "\(unit)@.service" : "\(unit).service"
        var service = UnitWriter(header: ["\(serviceName): imported from inetd.conf (\(origin)) by porter import"])
        let base = e.server.split(separator: "/").last.map(String.init) ?? e.server
        var exec: String
        if let a0 = e.arguments.first, a0 != e.server, a0 != base {
            exec = "@" + UnitWriter.word(e.server) + " " + UnitWriter.word(a0)
        } else {
            exec = UnitWriter.word(e.server)
        }
        if e.arguments.count > 1 { exec += " " + UnitWriter.command(Array(e.arguments.dropFirst())) }
        service.set("Service", "ExecStart", exec)
        // inetd hands every server its socket on stdin and stdout.
        service.set("Service", "StandardInput", "socket")
        if e.user != "root" || e.group != nil {
            service.set("Service", "User", e.user)
        }
        if let g = e.group { service.set("Service", "Group", g) }
        if accept {
            socket.set("Socket", "Accept", "yes")
        } else if !stream && !e.wait {
            row("wait", "nowait", .approximate, "Accept=no",
                "dgram nowait: porter starts the server when a datagram comes and waits for it to exit before it watches the socket again")
        }
        if accept {
            // Every inetd allowed as many as came; porter's default is 64 at once.
            socket.set("Socket", "MaxConnections", "1000")
            row("nowait", e.maxPerMinute.map { "nowait.\($0)" } ?? "nowait", .approximate, "MaxConnections=1000",
                "inetd limits starts per minute, not running servers; porter holds clients beyond 1000 at once in the backlog", access: true)
        }
        units.append(("\(unit).socket", socket.text))
        units.append((serviceName, service.text))
        return .success((units, rows))
    }
}
