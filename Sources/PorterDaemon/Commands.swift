import Glibc
import PorterCore
import PorterSys

/// The subcommands, minus argument parsing (main.swift does that).
public enum Commands {
    public static let version = "0.1.0"

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

    static func openDirectory(_ directory: String) -> ConfigLoader.Directory? {
        guard let st = try? Files.status(directory), st.isDirectory else {
            Log.error("\(directory): not a directory; expected --config-dir DIR with .socket and .service files")
            return nil
        }
        do {
            let dir = try ConfigLoader.Directory(directory)
            if dir.writableByOthers {
                Log.warning("\(directory): others can write this directory; whoever adds a unit here runs programs as porter's user")
            }
            return dir
        } catch {
            Log.error("\(directory): cannot read: \(error.reason)")
            return nil
        }
    }

    static func load(_ directory: String, _ host: HostFacts) -> Configuration? {
        guard let dir = openDirectory(directory) else { return nil }
        defer { dir.close() }
        var units = UnitSet()
        dir.reportInvalidNames(to: &units)
        dir.add(dir.names, to: &units, host: host)
        return Configuration.pair(units)
    }

    /// `porter run`: the daemon in the foreground, logging to stderr.
    public static func run(configDirectory: String) -> Int32 {
        // Everything read at start-up is freed before the loop begins; the
        // supervisor keeps what it needs.
        guard let supervisor = setUp(configDirectory) else { return 1 }
        Processes.releaseStartupMemory()
        return supervisor.run()
    }

    /// Sockets come first: the socket units are read and their IP and
    /// abstract sockets bound and listening before any service unit is
    /// read, so clients can connect (and wait in the backlog) as early as
    /// possible, as systemd binds sockets before it starts anything. Unix
    /// paths follow once the pairing has shown their units run.
    static func setUp(_ configDirectory: String) -> Supervisor? {
        let env = environment()
        let host = ConfigLoader.hostFacts(environment: env)
        guard let dir = openDirectory(configDirectory) else { return nil }
        defer { dir.close() }
        let supervisor: Supervisor
        do {
            supervisor = try Supervisor(host: host, environment: env)
        } catch {
            Log.error("cannot set up the event loop: \(error)")
            return nil
        }
        supervisor.configDirectory = configDirectory
        var units = UnitSet()
        dir.reportInvalidNames(to: &units)
        dir.add(dir.names.filter { $0.hasSuffix(".socket") }, to: &units, host: host)
        supervisor.openListeners(units.sockets)
        dir.add(dir.names.filter { !$0.hasSuffix(".socket") }, to: &units, host: host)
        let config = Configuration.pair(units)
        for d in config.diagnostics { Log.write(d.severity == .error ? .error : .warning, d.description) }
        let problems = supervisor.activate(config)
        for d in problems { Log.write(d.severity == .error ? .error : .warning, d.description) }
        let sockets = supervisor.sockets.count
        let services = supervisor.services.count + supervisor.sockets.filter { $0.template != nil }.count
            + supervisor.paths.filter { $0.template != nil }.count
        let paths = supervisor.paths.count
        let watching = paths == 0 ? "" : ", \(paths) path unit\(paths == 1 ? "" : "s") watching"
        Log.info("ready: \(sockets) socket\(sockets == 1 ? "" : "s") listening\(watching) for \(services) service\(services == 1 ? "" : "s") from \(configDirectory)")
        return supervisor
    }

    /// `porter check`: parse and validate everything, print each pairing and
    /// every problem; non-zero when there is any error.
    public static func check(configDirectory: String) -> Int32 {
        let env = environment()
        let host = ConfigLoader.hostFacts(environment: env)
        guard let config = load(configDirectory, host) else { return 1 }
        let prep = Preparation(config, host: host, environment: env, unused: true)
        let problems = config.diagnostics + prep.diagnostics
        var out = ""
        for d in problems { out += "\(d.severity.rawValue): \(d.description)\n" }
        let usable = config.sockets.filter { !prep.refusedSockets.contains($0.name) }
        for s in usable {
            let listens = s.listens.map(\.description).joined(separator: " ")
            let mode = s.accept ? "Accept=yes: one instance per connection, at most \(s.maxConnections)" : "Accept=no"
            out += "\(s.name) -> \(s.activates) (\(mode)): \(listens)\n"
        }
        let usablePaths = config.paths.filter { !prep.refusedPaths.contains($0.name) }
        for p in usablePaths {
            let mode = p.accept ? "Accept=yes: one instance per file, at most \(p.maxConnections) at once" : "Accept=no"
            out += "\(p.name) -> \(p.activates) (\(mode)): \(p.conditions.map(\.description).joined(separator: " "))\n"
        }
        let errors = problems.filter { $0.severity == .error }.count
        let warnings = problems.count - errors
        let pathCount = usablePaths.isEmpty ? "" : "\(usablePaths.count) path unit\(usablePaths.count == 1 ? "" : "s") and "
        out += pathCount + "\(usable.count) socket\(usable.count == 1 ? "" : "s") ready, \(errors) error\(errors == 1 ? "" : "s"), \(warnings) warning\(warnings == 1 ? "" : "s")\n"
        _ = try? FileDescriptor.standardOutput.write(out)
        return errors > 0 ? 1 : 0
    }
}
