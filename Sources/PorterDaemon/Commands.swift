import Glibc
import PorterCore
import PorterSys

/// The subcommands, minus argument parsing (main.swift does that).
public enum Commands {
    public static let version = "0.1.0"
    /// The file porter was started from, read at start-up: what an upgrade
    /// executes (by then /proc/self/exe may say "(deleted)").
    nonisolated(unsafe) public static var executable: String? = nil

    /// porter's own environment, read once.
    public static func environment() -> [String: String] {
        var env: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return env
    }

    /// Where porter reads units: the directories given, or the defaults
    /// (of which missing ones are skipped).
    public struct Place: Sendable {
        public var directories: [String]
        public var isDefault: Bool
        /// `--xinetd PATH`, `--inetd-conf FILE`: read in place and converted
        /// at every start and reload; `--services FILE` for their names.
        public var xinetd: String?
        public var inetdConf: String?
        public var servicesFile: String?
        /// `--hosts-access DIR`: where hosts.allow and hosts.deny are read
        /// for xinetd's services (libwrap); nil: not read (`none`).
        public var hostsAccess: String?
        public init(_ directories: [String], xinetd: String? = nil, inetdConf: String? = nil, servicesFile: String? = nil,
                    hostsAccess: String? = "/etc") {
            isDefault = directories.isEmpty
            self.directories = isDefault ? ConfigLoader.defaultDirectories : directories
            self.xinetd = xinetd
            self.inetdConf = inetdConf
            self.servicesFile = servicesFile
            self.hostsAccess = hostsAccess
        }
        public var hasLegacy: Bool { xinetd != nil || inetdConf != nil }
        public var description: String { (directories + [xinetd, inetdConf].compactMap { $0 }).joined(separator: ", ") }
    }

    static func open(_ place: Place) -> ConfigLoader.Directories? {
        do {
            let dirs = try ConfigLoader.Directories(place.directories, optional: place.isDefault,
                                                    allowNone: place.isDefault && place.hasLegacy)
            for path in dirs.writableByOthers {
                Log.warning("\(path): others can write this directory; whoever adds a unit here runs programs as porter's user")
            }
            return dirs
        } catch {
            Log.error(error.description)
            return nil
        }
    }

    static func load(_ place: Place, _ host: HostFacts, environment env: [String: String]) -> Configuration? {
        guard let dirs = open(place) else { return nil }
        defer { dirs.close() }
        var units = UnitSet()
        dirs.report(to: &units)
        dirs.add(dirs.names, to: &units, host: host)
        place.addLegacy(to: &units, besides: dirs.names, host: host, log: true)
        checkConditions(&units, ConditionCheck(environment: env, host: host))
        return Configuration.pair(units)
    }

    /// Socket and path units whose conditions fail do not listen or
    /// watch (one line each); a failed assert is a warning.
    static func checkConditions(_ units: inout UnitSet, _ check: ConditionCheck, sockets: Bool = true, paths: Bool = true) {
        let candidates: [(UnitName, [UnitCondition], SourceNames)] =
            (sockets ? units.sockets.values.map { ($0.name, $0.unitConditions, $0.sources) } : [])
            + (paths ? units.paths.values.map { ($0.name, $0.unitConditions, $0.sources) } : [])
        for (name, conditions, sources) in candidates.sorted(by: { $0.0 < $1.0 }) where !conditions.isEmpty {
            switch check.verdict(conditions) {
            case nil: break
            case .skip(let why):
                units.skip(name, "\(name): \(why); not \(name.type == .socket ? "listening" : "watching")")
            case .fail(let why):
                units.report(Diagnostic(.warning, in: sources, line: nil, "\(why); not \(name.type == .socket ? "listening" : "watching")"))
                units.skip(name, "\(name): skipped after a failed assert")
            }
        }
    }

    /// What `porter run` was told on its command line besides the directories.
    public struct RunOptions: Sendable {
        public var logLevel: LogLevel?
        /// `--control PATH` (or `none`).
        public var control: String?
        public var daemon = false
        public var pidFile: String?
        public init() {}
    }

    /// `porter run`: the daemon in the foreground, logging to stderr.
    public static func run(_ place: Place, _ options: RunOptions = RunOptions()) -> Int32 {
        var readiness: Daemon.Readiness? = nil
        // An upgrade's new image is the daemon already.
        if options.daemon && Inheritance.upgrade == nil {
            // Logs that go to stderr keep it (an init script redirects it);
            // with syslog it is /dev/null like stdin and stdout.
            let syslog = loadSettings(place).settings.logTarget == .syslog
            do { readiness = try Daemon.detach(keepStderr: !syslog) } catch {
                Log.error("--daemon: \(error)")
                return 1
            }
        }
        // Everything read at start-up is freed before the loop begins; the
        // supervisor keeps what it needs.
        guard let supervisor = setUp(place, options) else { return 1 }
        Processes.releaseStartupMemory()
        // Every socket is bound: the parent waiting in `--daemon` may go.
        readiness?.ready()
        return supervisor.run()
    }

    /// Sockets come first: the socket units are read and their IP and
    /// abstract sockets bound and listening before any service unit is
    /// read, so clients can connect (and wait in the backlog) as early as
    /// possible, as systemd binds sockets before it starts anything. Unix
    /// paths follow once the pairing has shown their units run.
    static func setUp(_ place: Place, _ options: RunOptions) -> Supervisor? {
        let env = environment()
        let (settings, settingsProblems, _) = loadSettings(place)
        Log.configure(settings, levelOverride: options.logLevel)
        for d in settingsProblems { Log.write(d.severity == .error ? .error : .warning, d.description) }
        let host = ConfigLoader.hostFacts(environment: env)
        guard let dirs = open(place) else { return nil }
        defer { dirs.close() }
        let supervisor: Supervisor
        do {
            supervisor = try Supervisor(host: host, environment: env)
        } catch {
            Log.error("cannot set up the event loop: \(error)")
            return nil
        }
        supervisor.place = place
        // A daemon has no terminal; were one to appear, its job-control
        // signals must not stop porter (the article's list, daemon(7)).
        if options.daemon {
            for sig in [SIGTSTP, SIGTTIN, SIGTTOU] { Signals.setIgnored(sig, true) }
        }
        supervisor.levelFromCommandLine = options.logLevel
        supervisor.settings = settings
        if let handover = Inheritance.upgrade {
            supervisor.beginRestore(Restoration(handover))
        } else if !Inheritance.listenFDs.isEmpty {
            supervisor.adoption = AdoptionPool(Inheritance.listenFDs.map { FileDescriptor($0) }, origin: "LISTEN_FDS")
        }
        // Before any unit's socket: a second porter on the same control
        // socket must not bind anything.
        do { try supervisor.openOwnSockets(controlOverride: options.control) } catch {
            Log.error("control socket: \(error.description)")
            return nil
        }
        if let path = options.pidFile {
            if let fd = supervisor.restoredOwn("pidfile", path) {
                supervisor.own.pidFile = (path, fd)  // written and locked by the old image, same pid
            } else {
            do { supervisor.own.pidFile = (path, try PidFile.create(path, pid: getpid())) } catch {
                Log.error("--pidfile: \(error.description)")
                supervisor.closeOwnSockets()
                return nil
            }
            }
        }
        var units = UnitSet()
        dirs.report(to: &units)
        let names = dirs.names
        let check = ConditionCheck(environment: env, host: host)
        dirs.add(names.filter { $0.type == .socket }, to: &units, host: host)
        place.addLegacy(to: &units, besides: names, host: host, log: true)
        checkConditions(&units, check, paths: false)
        supervisor.openListeners(units.sockets)
        dirs.add(names.filter { $0.type != .socket }, to: &units, host: host)
        checkConditions(&units, check, sockets: false)
        let config = Configuration.pair(units)
        for n in config.notes { Log.info(n) }
        for d in config.diagnostics { Log.write(d.severity == .error ? .error : .warning, d.description) }
        let problems = supervisor.activate(config)
        for d in problems { Log.write(d.severity == .error ? .error : .warning, d.description) }
        supervisor.adoption?.closeRest()
        supervisor.adoption = nil
        supervisor.finishRestore()
        let sockets = supervisor.sockets.count
        let services = supervisor.services.count + supervisor.sockets.filter { $0.template != nil }.count
            + supervisor.paths.filter { $0.template != nil }.count
        let paths = supervisor.paths.count
        let watching = paths == 0 ? "" : ", \(paths) path unit\(paths == 1 ? "" : "s") watching"
        Log.info("ready: \(sockets) socket\(sockets == 1 ? "" : "s") listening\(watching) for \(services) service\(services == 1 ? "" : "s") from \((dirs.paths + [place.xinetd, place.inetdConf].compactMap { $0 }).joined(separator: ", "))")
        supervisor.managerReady()
        return supervisor
    }

    /// `porter check`: parse and validate everything, print each pairing and
    /// every problem; non-zero when there is any error.
    public static func check(_ place: Place, show: [String] = []) -> Int32 {
        let env = environment()
        let host = ConfigLoader.hostFacts(environment: env)
        if !show.isEmpty { return Self.show(place, show) }
        guard let dirs = open(place) else { return 1 }
        var units = UnitSet()
        dirs.report(to: &units)
        dirs.add(dirs.names, to: &units, host: host)
        place.addLegacy(to: &units, besides: dirs.names, host: host, log: false)
        checkConditions(&units, ConditionCheck(environment: env, host: host))
        let config = Configuration.pair(units)
        let made = dirs.names.compactMap { dirs.sources.units[$0] }
        let prep = Preparation(config, host: host, environment: env, unused: true)
        let settings = loadSettings(place)
        let problems = settings.diagnostics + config.diagnostics + prep.diagnostics
        var out = ""
        for n in config.notes { out += "note: \(n)\n" }
        for d in problems { out += "\(d.severity.rawValue): \(d.description)\n" }
        // Where each unit came from, when it is more than one plain file.
        for u in made where !u.dropIns.isEmpty || u.file.linkTarget != nil || u.file.directory > 0 {
            let link = u.file.linkTarget.map { " -> \($0)" } ?? ""
            out += "\(u.name): \(u.file.path)\(link)" + u.dropIns.map { " + \($0.path)" }.joined() + "\n"
        }
        let usable = config.sockets.filter { !prep.refusedSockets.contains($0.name) }
        for s in usable {
            let listens = s.listens.map(\.description).joined(separator: " ")
            if let i = s.internalService {
                out += "\(s.name) -> internal \(i.rawValue) (served by porter, at most \(s.maxConnections) connections): \(listens)\n"
                continue
            }
            let proxy = config.services[s.activates]?.proxyTo
            let mode = s.accept ? "Accept=yes: one instance per connection, at most \(s.maxConnections)"
                : proxy.map { "Accept=no, proxied to \($0), at most \(s.maxConnections) connections" } ?? "Accept=no"
            out += "\(s.name) -> \(s.activates) (\(mode)): \(listens)\n"
        }
        let usablePaths = config.paths.filter { !prep.refusedPaths.contains($0.name) }
        for p in usablePaths {
            let mode = p.accept ? "Accept=yes: one instance per file, at most \(p.maxConnections) at once" : "Accept=no"
            out += "\(p.name) -> \(p.activates) (\(mode)): \(p.conditions.map(\.description).joined(separator: " "))\n"
        }
        if let file = settings.file {
            let s = settings.settings
            let control = OwnSockets.controlPath(s, override: nil, environment: env) ?? "none"
            out += "porter.conf: \(file): control socket \(control), metrics \(s.metricsListen.map { "on \($0)" } ?? "off"), log to \(s.logTarget.rawValue)\n"
        }
        out += verdicts(units: units, config: config, prep: prep, problems: problems,
                        names: Array(units.present) + dirs.sources.masked.keys)
        let errors = problems.filter { $0.severity == .error }.count
        let warnings = problems.count - errors
        let pathCount = usablePaths.isEmpty ? "" : "\(usablePaths.count) path unit\(usablePaths.count == 1 ? "" : "s") and "
        out += pathCount + "\(usable.count) socket\(usable.count == 1 ? "" : "s") ready, \(errors) error\(errors == 1 ? "" : "s"), \(warnings) warning\(warnings == 1 ? "" : "s")\n"
        dirs.close()
        _ = try? FileDescriptor.standardOutput.write(out)
        return errors > 0 ? 1 : 0
    }

    /// One line per unit: whether it would run, and if not, why — what an
    /// admin needs before switching a directory of units over to porter.
    static func verdicts(units: UnitSet, config: Configuration, prep: Preparation, problems: [Diagnostic],
                         names: [UnitName]) -> String {
        let runningSockets = Set(config.sockets.map(\.name)).subtracting(prep.refusedSockets)
        let runningPaths = Set(config.paths.map(\.name)).subtracting(prep.refusedPaths)
        let started = Set(config.sockets.filter { runningSockets.contains($0.name) }.map(\.activates)
                          + config.paths.filter { runningPaths.contains($0.name) }.map(\.activates))
        func firstError(_ name: UnitName) -> String? {
            let n = name.description
            return problems.first { $0.severity == .error && ($0.file == n || $0.file.hasPrefix(n + ".d/")) }?.message
        }
        var lines: [String] = []
        for name in Set(names).sorted() {
            let verdict: String
            if units.masked.contains(name) {
                verdict = "masked"
            } else if units.skipped.contains(name) {
                verdict = "skipped: a condition does not hold on this host"
            } else if runningSockets.contains(name) || runningPaths.contains(name) || (started.contains(name) && prep.services[name] != nil) {
                verdict = "runs"
            } else if units.skippedTargets.contains(name) {
                verdict = "not started: the unit that starts it is skipped"
            } else if config.unusedServices[name] != nil, prep.services[name] != nil {
                verdict = "not started: no socket or path unit starts it"
            } else {
                let why = firstError(name) ?? "see the errors above"
                verdict = "refused: " + (why.hasPrefix("refused ") ? String(why.dropFirst(8)) : why)
            }
            lines.append("  \(name.description.padding(to: 28)) \(verdict)")
        }
        return lines.isEmpty ? "" : "units:\n" + lines.joined(separator: "\n") + "\n"
    }
}


extension Commands {
    /// `porter check --show UNIT`: the files of each unit, as `systemctl
    /// cat` prints them.
    static func show(_ place: Place, _ names: [String]) -> Int32 {
        guard let dirs = open(place) else { return 1 }
        defer { dirs.close() }
        var out = "", status: Int32 = 0
        for n in names {
            guard let name = UnitName.parse(n), let text = dirs.show(name) else {
                Log.error("\(n): no such unit in \(dirs.paths.joined(separator: ", "))"
                          + (UnitName.parse(n).flatMap { dirs.sources.masked[$0] }.map { " (masked by \($0))" } ?? ""))
                status = 1
                continue
            }
            out += text
        }
        _ = try? FileDescriptor.standardOutput.write(out)
        return status
    }
}

extension Commands {
    /// porter.conf from the first configuration directory that has one
    /// (the units' precedence); the defaults when none does.
    public static func loadSettings(_ place: Place) -> (settings: PorterSettings, diagnostics: [Diagnostic], file: String?) {
        for dir in place.directories {
            let path = dir + "/" + PorterSettings.fileName
            let bytes: [UInt8]
            do { bytes = try Files.readBytes(path) } catch {
                if case .system(let e) = error, e.errno == ENOENT || e.errno == ENOTDIR { continue }
                return (PorterSettings(), [Diagnostic(.error, file: PorterSettings.fileName, "\(path): \(error)")], path)
            }
            let (s, d) = PorterSettings.parse(file: PorterSettings.fileName, bytes: bytes)
            return (s, d, path)
        }
        return (PorterSettings(), [], nil)
    }
}
