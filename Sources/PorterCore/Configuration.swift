/// A configuration directory read as a whole: every unit parsed and
/// validated, sockets paired with the services they activate. A unit with
/// errors is refused (with its diagnostics) and the rest stands, as inetd
/// skips a bad entry and goes on.
public struct Configuration: Sendable {
    /// Sockets that will be opened, in name order.
    public var sockets: [SocketConfig] = []
    /// Path units that will be watched, in name order.
    public var paths: [PathConfig] = []
    /// Services by name; Accept=yes sockets map to their `NAME@.service` template.
    public var services: [UnitName: ServiceConfig] = [:]
    /// For each Accept=no service: the sockets whose fds it receives, in order
    /// (the ones that activate it, then Sockets=).
    public var passedSockets: [UnitName: [UnitName]] = [:]
    public var diagnostics: [Diagnostic] = []
    /// Masked units and aliases, one line each.
    public var notes: [String] = []
    /// Units that were refused, with every unit that depended on them.
    public var refused: Set<UnitName> = []
    /// Valid services that no socket activates: not run, but `porter check`
    /// still validates their credentials.
    public var unusedServices: [UnitName: ServiceConfig] = [:]
    /// Every socket unit that parsed, used or not (to clean up after sockets
    /// opened early).
    public var socketsRead: [UnitName: SocketConfig] = [:]

    public var hasErrors: Bool { diagnostics.contains { $0.severity == .error } }

    public func socket(_ name: UnitName) -> SocketConfig? { sockets.first { $0.name == name } }

    /// Reads `files` (file name and contents) and pairs them.
    public static func load(files: [(name: String, text: String)], host: HostFacts) -> Configuration {
        var units = UnitSet()
        for (name, text) in files.sorted(by: { $0.name < $1.name }) {
            units.add(fileName: name, bytes: Array(text.utf8), host: host)
        }
        return pair(units)
    }

    /// Pairs every socket of `units` with the service it activates and
    /// checks what needs both sides.
    public static func pair(_ units: UnitSet) -> Configuration {
        var c = Configuration()
        c.diagnostics = units.diagnostics
        c.notes = units.notes
        c.refused = units.refused
        let socketConfigs = units.sockets
        c.socketsRead = socketConfigs
        let serviceConfigs = units.services
        let present = units.present

        for (unit, d) in ListenConflict.duplicates(Array(socketConfigs.values)) {
            c.diagnostics.append(d)
            c.refused.insert(unit)
        }

        // Pair every socket with the service it activates.
        var triggers: [UnitName: [UnitName]] = [:]
        for name in socketConfigs.keys.sorted() where !c.refused.contains(name) {
            let socket = socketConfigs[name]!
            // Served inside porter: nothing to pair with.
            if socket.internalService != nil { continue }
            let target = socket.activates
            guard serviceConfigs[target] != nil else {
                let why: String
                if c.refused.contains(target) {
                    why = "refused because \(target) has errors"
                } else if units.masked.contains(target) {
                    why = "activates \(target), which is masked"
                } else if socket.accept {
                    why = "Accept=yes starts instances of \(target), which does not exist"
                        + (present.contains(name.withType(.service)) ? " (\(name.withType(.service)) is for Accept=no)" : "")
                } else {
                    why = "activates \(target), which does not exist"
                        + (present.contains(target.withInstance("")) ? " (\(target.withInstance("")) is a template, for Accept=yes)" : "")
                }
                c.diagnostics.append(Diagnostic(.error, file: name.description, why))
                c.refused.insert(name)
                continue
            }
            triggers[target, default: []].append(name)
        }

        // Pair every path unit with the service it starts.
        var pathTriggers: [UnitName: [UnitName]] = [:]
        for name in units.paths.keys.sorted() {
            let path = units.paths[name]!
            let target = path.activates
            guard serviceConfigs[target] != nil else {
                let why = c.refused.contains(target) ? "refused because \(target) has errors"
                    : units.masked.contains(target) ? "starts \(target), which is masked"
                    : path.accept ? "Accept=yes starts instances of \(target), which does not exist"
                    : "starts \(target), which does not exist"
                c.diagnostics.append(Diagnostic(.error, file: name.description, why))
                c.refused.insert(name)
                continue
            }
            pathTriggers[target, default: []].append(name)
        }

        // Cross-checks that need both sides, then the final sets.
        for serviceName in serviceConfigs.keys.sorted() {
            let service = serviceConfigs[serviceName]!
            // Started by paths only; with sockets too (cups.socket and
            // cups.path), it is paired as a socket-activated service below and
            // a start from either hands over all its sockets.
            if let byPath = pathTriggers[serviceName], triggers[serviceName] == nil {
                if service.standardInput == .fileTrigger && !serviceName.isTemplate {
                    c.diagnostics.append(Diagnostic(.error, file: serviceName.description, key: "StandardInput",
                        "file-trigger is for per-file jobs: a NAME@.service started by a path unit with Accept=yes"))
                    c.refused.insert(serviceName)
                    for p in byPath { c.refused.insert(p) }
                    continue
                }
                if service.standardInput == .socket || service.standardOutput == .socket || service.standardError == .socket {
                    c.diagnostics.append(Diagnostic(.error, file: serviceName.description, key: "StandardInput",
                        "socket needs a socket unit, but \(serviceName) is started by \(byPath.map(\.description).joined(separator: ", "))"))
                    c.refused.insert(serviceName)
                    for p in byPath { c.refused.insert(p) }
                    continue
                }
                c.services[serviceName] = service
                if !serviceName.isTemplate { c.passedSockets[serviceName] = [] }
                continue
            }
            if service.standardInput == .fileTrigger {
                c.diagnostics.append(Diagnostic(.error, file: serviceName.description, key: "StandardInput",
                    "file-trigger needs a path unit with Accept=yes to start \(serviceName)"))
                c.refused.insert(serviceName)
                continue
            }
            guard let activating = triggers[serviceName] else {
                c.unusedServices[serviceName] = service
                // A socket that was refused already has its own error.
                let refusedReferrer = c.refused.contains { $0.type == .socket && ($0.prefix == serviceName.prefix) }
                    || units.skipped.contains { $0.type == .socket && $0.prefix == serviceName.prefix } || units.skippedTargets.contains(serviceName)
                // A template whose instances are units of their own is not run itself.
                let instantiated = serviceName.isTemplate && units.services.keys.contains { !$0.isTemplate && $0.withInstance("") == serviceName }
                if !refusedReferrer && !instantiated {
                    c.diagnostics.append(Diagnostic(.warning, file: serviceName.description,
                        "not activated by any socket or path unit, so porter will not start it"))
                }
                continue
            }
            // The socket named like the service first, then the others by
            // name, then Sockets= in the order given.
            var passed = activating.filter { $0.prefix == serviceName.prefix } + activating.filter { $0.prefix != serviceName.prefix }
            var ok = true
            for extra in service.sockets where !passed.contains(extra) {
                guard let s = socketConfigs[extra], !s.accept else {
                    c.diagnostics.append(Diagnostic(.error, file: serviceName.description, key: "Sockets",
                        "\(extra) does not exist or has errors, or is Accept=yes"))
                    ok = false
                    continue
                }
                passed.append(extra)
            }
            let isAccept = serviceName.isTemplate
            let listenCount = passed.compactMap { socketConfigs[$0]?.listens.count }.reduce(0, +)
            let usesSocketIO = service.standardInput == .socket || service.standardOutput == .socket || service.standardError == .socket
            if usesSocketIO && !isAccept && listenCount != 1 {
                c.diagnostics.append(Diagnostic(.error, file: serviceName.description, key: "StandardInput",
                    "socket needs exactly one listening socket with Accept=no, but \(serviceName) receives \(listenCount)"))
                ok = false
            }
            if !ok {
                c.refused.insert(serviceName)
                for s in activating { c.refused.insert(s) }
                continue
            }
            c.services[serviceName] = service
            if !isAccept { c.passedSockets[serviceName] = passed }
        }
        c.sockets = socketConfigs.keys.sorted().filter { !c.refused.contains($0) }.map { socketConfigs[$0]! }
        for s in c.sockets where !s.banners.isEmpty {
            // Only a connection porter accepts can be written to before it is served.
            let proxied = !s.accept && c.services[s.activates]?.proxyTo != nil
            if !s.porterAccepts && !proxied {
                c.diagnostics.append(Diagnostic(.warning, file: s.name.description, key: s.banners.firstKey,
                    "has no effect with Accept=no: the service accepts the connections, porter writes banners only to those it accepts (Accept=yes, InternalService=, ProxyTo=)"))
            } else if s.listens.allSatisfy({ $0.kind == .datagram }) {
                c.diagnostics.append(Diagnostic(.warning, file: s.name.description, key: s.banners.firstKey,
                    "has no effect: datagram sockets have no connection to write a banner to"))
            }
        }
        c.paths = units.paths.keys.sorted().filter { !c.refused.contains($0) && !c.refused.contains(units.paths[$0]!.activates) }
            .map { units.paths[$0]! }
        return c
    }

    /// One line per socket: what it listens on and what it starts, for
    /// `porter check`.
    public var pairings: [String] {
        sockets.map { s in
            let listens = s.listens.map(\.description).joined(separator: " ")
            if let i = s.internalService { return "\(s.name) -> internal \(i.rawValue) (served by porter, at most \(s.maxConnections) connections): \(listens)" }
            let mode = s.accept ? "Accept=yes, one instance per connection, at most \(s.maxConnections)" : "Accept=no"
            return "\(s.name) -> \(s.activates) (\(mode)): \(listens)"
        } + paths.map { p in
            let mode = p.accept ? "Accept=yes, one instance per file, at most \(p.maxConnections) at once" : "Accept=no"
            return "\(p.name) -> \(p.activates) (\(mode)): \(p.conditions.map(\.description).joined(separator: " "))"
        }
    }
}

/// Unit files read one by one, each parsed and checked on its own; `pair`
/// then checks what needs several. Porter adds the socket units first and
/// opens their sockets before it reads the services.
public struct UnitSet: Sendable {
    public private(set) var sockets: [UnitName: SocketConfig] = [:]
    public private(set) var services: [UnitName: ServiceConfig] = [:]
    public private(set) var paths: [UnitName: PathConfig] = [:]
    public private(set) var present: Set<UnitName> = []
    public private(set) var refused: Set<UnitName> = []
    public private(set) var diagnostics: [Diagnostic] = []

    public init() {}

    /// Room for `count` more units of each kind, so a large directory does
    /// not rehash its tables over and over.
    public mutating func reserve(_ count: Int) {
        sockets.reserveCapacity(sockets.count + count)
        services.reserveCapacity(services.count + count)
        present.reserveCapacity(present.count + count)
    }

    /// Whether porter reads a file of this name at all.
    public static func isUnitFileName(_ name: String) -> Bool {
        name.hasSuffix(".socket") || name.hasSuffix(".service") || name.hasSuffix(".path")
    }

    public mutating func add(fileName: String, bytes: [UInt8], host: HostFacts) {
        guard let name = UnitName.parse(fileName) else {
            if Self.isUnitFileName(fileName) {
                diagnostics.append(Diagnostic(.error, file: fileName, "invalid unit name, expected NAME.socket, NAME.service or NAME@.service with letters, digits and :-_.\\ only"))
            }
            return  // not a unit file: README, editor backups, ...
        }
        add(name, files: [(fileName, bytes)], host: host)
    }

    /// Adds unit `name` made of `files`: the unit file, then its drop-ins
    /// in the order they apply (`UnitSources`). Each is parsed on its own,
    /// so a syntax error names its file and line.
    public mutating func add(_ name: UnitName, files: [(name: String, bytes: [UInt8])], host: HostFacts) {
        present.insert(name)
        let sources = SourceNames(files.map(\.name))
        var d = Diagnostics(sources: sources)
        var parsed: [UnitFile] = []
        var print = Fingerprint.of(files.first?.bytes ?? [])
        for (k, f) in files.enumerated() {
            parsed.append(UnitFile.parse(fileName: f.name, bytes: f.bytes, firstLine: k * SourceNames.stride, diagnostics: &d))
            if k > 0 { print = print &* 31 &+ Fingerprint.of(Array(f.name.utf8)) &* 17 &+ Fingerprint.of(f.bytes) }
        }
        let file = parsed.count == 1 ? parsed[0] : UnitFile.merging(parsed)
        let specifiers = Specifiers(unit: name, host: host)
        switch name.type {
        case .socket:
            if var s = SocketConfig.read(file, name: name, specifiers: specifiers, diagnostics: &d) {
                s.fingerprint = print
                sockets[name] = s
            } else {
                refused.insert(name)
            }
        case .service:
            if var s = ServiceConfig.read(file, name: name, specifiers: specifiers, diagnostics: &d) {
                s.fingerprint = print
                services[name] = s
            } else {
                refused.insert(name)
            }
        case .path:
            if var p = PathConfig.read(file, name: name, specifiers: specifiers, diagnostics: &d) {
                p.fingerprint = print
                paths[name] = p
            } else {
                refused.insert(name)
            }
        }
        diagnostics += d.all
    }

    /// What an admin should know but is no problem: masked units, aliases.
    public private(set) var notes: [String] = []
    public mutating func note(_ line: String) { notes.append(line) }
    /// Socket and path units whose Condition*= failed: not listening or
    /// watching, and the services they activate are not warned about.
    public private(set) var skipped: Set<UnitName> = []
    public mutating func skip(_ name: UnitName, _ line: String) {
        if let s = sockets[name] { skippedTargets.insert(s.activates) }
        sockets[name] = nil
        if let p = paths[name] { skippedTargets.insert(p.activates) }
        paths[name] = nil
        skipped.insert(name)
        notes.append(line)
    }
    public private(set) var skippedTargets: Set<UnitName> = []
    /// Masked units: not loaded, and what needs them says so.
    public private(set) var masked: Set<UnitName> = []
    public mutating func mask(_ name: UnitName, _ line: String) {
        masked.insert(name)
        notes.append(line)
    }

    /// Adds a problem found outside the parser.
    public mutating func report(_ d: Diagnostic) { diagnostics.append(d) }

    /// A unit file that could not be read whole: an error, and the unit is
    /// refused, so what depends on it says why.
    public mutating func refuse(fileName: String, unit: UnitName? = nil, _ message: String) {
        diagnostics.append(Diagnostic(.error, file: fileName, message))
        if let name = unit ?? UnitName.parse(fileName) {
            present.insert(name)
            refused.insert(name)
        }
    }
}
