import Glibc
import PorterCore
import PorterSys

/// A service (or template) with everything resolved that does not change
/// from one start to the next: credentials, the base environment, and, when
/// no setting depends on the instance, argv and Environment= too. Starting
/// an instance then only adds what is specific to it.
final class PreparedService {
    let config: ServiceConfig
    /// Resolved once for every instance, unless a setting uses %i, %n, ...
    let shared: ServiceInstance?
    /// User=, Group=, SupplementaryGroups= resolved, for every command
    /// without the `+` or `!` prefix.
    let accountIDs: (uid: UInt32, gid: UInt32, groups: [UInt32])?
    /// What the main ExecStart= runs as.
    var ids: (uid: UInt32, gid: UInt32, groups: [UInt32])? { config.exec?.fullPrivileges == true ? nil : accountIDs }
    let kill: KillPolicy
    /// PATH, LANG, USER/LOGNAME/HOME/SHELL, PassEnvironment=.
    let baseEnvironment: EnvironmentBlock
    /// `shared`'s complete static environment as NAME=value strings, when
    /// there is no EnvironmentFile= to read at each start.
    let sharedStrings: [String]?
    /// The home directory for WorkingDirectory=~.
    let home: String
    /// Where a service without WorkingDirectory= runs: "/" when porter runs
    /// as root (a system manager), porter's user's home otherwise.
    var defaultWorkingDirectory: String { Processes.effectiveUID == 0 ? "/" : home }
    let host: HostFacts
    var journal: JournalPipe?
    /// ProxyTo= as a socket address (a host name resolved when the unit
    /// was read), or why there is none: each connection is then closed
    /// with that reason, and the socket keeps listening.
    var proxyAddress: Result<SocketAddress, Resolver.Failure>?
    private var executableCache: [String: String] = [:]
    private var fileCache: [String: (modified: Int64, size: Int64, pairs: [(String, String)])] = [:]

    static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// Resolves users and groups and the static parts. A unit that asks for
    /// credentials porter cannot give is refused here, never run as root.
    /// Services with the same base environment share one copy of it (and of
    /// its strings): with a thousand services, per-service copies add up.
    final class Shared {
        var environments: [String: (block: EnvironmentBlock, strings: [String])] = [:]
        init() {}
    }

    static func prepare(_ config: ServiceConfig, host: HostFacts, porterEnvironment: [String: String],
                        shared cache: Shared = Shared()) -> Result<PreparedService, Diagnostic> {
        func refuse(_ key: String, _ message: String) -> Result<PreparedService, Diagnostic> {
            .failure(Diagnostic(.error, in: config.sources, line: config.line(of: key), key: key, message))
        }
        var account: Users.User? = nil
        if let u = config.user {
            guard let found = Users.user(u) else { return refuse("User", "no such user '\(u)'") }
            account = found
        }
        var gid = account?.gid ?? host.gid
        if let g = config.group {
            guard let found = Users.groupID(g) else { return refuse("Group", "no such group '\(g)'") }
            gid = found
        }
        var groups: [UInt32] = account.map { Users.groups(of: $0.name, gid: gid) } ?? []
        for g in config.supplementaryGroups {
            guard let found = Users.groupID(g) else { return refuse("SupplementaryGroups", "no such group '\(g)'") }
            if !groups.contains(found) { groups.append(found) }
        }
        var ids: (uid: UInt32, gid: UInt32, groups: [UInt32])? = nil
        // `+` and `!` commands keep porter's credentials; if every command
        // has one, User= never applies.
        let all = CommandSequence.Phase.allCases.flatMap { config.commands[$0] ?? [] }
        let fullPrivileges = all.isEmpty ? (config.exec?.fullPrivileges ?? false) : all.allSatisfy(\.fullPrivileges)
        if !fullPrivileges && (config.user != nil || config.group != nil || !config.supplementaryGroups.isEmpty) {
            let uid = account?.uid ?? host.uid
            if host.uid != 0 {
                // Unprivileged porter: it can run services as itself only.
                guard uid == host.uid, gid == host.gid, config.supplementaryGroups.isEmpty else {
                    let key = config.user != nil ? "User" : config.group != nil ? "Group" : "SupplementaryGroups"
                    return refuse(key, "porter runs as uid \(host.uid) and cannot switch to uid \(uid) gid \(gid); run porter as root or drop the setting")
                }
            } else {
                ids = (uid, gid, groups)
            }
        }

        // systemd.exec(5): USER, LOGNAME, HOME, SHELL for units with User=
        // (and always in a user manager, which an unprivileged porter is).
        // SetLoginEnvironment=yes sets them for porter's own user too, =no never.
        let me = Users.User(name: host.userName, uid: host.uid, gid: host.gid, home: host.home, shell: host.shell)
        var who: Users.User? = account ?? (host.uid != 0 ? me : nil)
        switch config.setLoginEnvironment {
        case true?: who = who ?? me
        case false?: who = nil
        case nil: break
        }
        let key = "\(who?.name ?? "")\u{0}" + config.passEnvironment.joined(separator: "\u{0}")
        let base: (block: EnvironmentBlock, strings: [String])
        if let hit = cache.environments[key] {
            base = hit
        } else {
            var env = EnvironmentBlock()
            env["PATH"] = defaultPath
            if let lang = porterEnvironment["LANG"] { env["LANG"] = lang }
            if let who {
                env["USER"] = who.name
                env["LOGNAME"] = who.name
                env["HOME"] = who.home
                env["SHELL"] = who.shell
            }
            for name in config.passEnvironment {
                if let v = porterEnvironment[name] { env[name] = v }
            }
            base = (env, env.strings)
            cache.environments[key] = base
        }

        var shared: ServiceInstance? = nil
        // ProxyTo= without ExecStart= relays only: nothing to resolve.
        if !config.dependsOnInstance && config.exec != nil {
            do {
                shared = try config.instantiate(config.name.isTemplate ? "" : nil, host: host)
            } catch {
                return refuse("ExecStart", error.message)
            }
        }
        let p = PreparedService(config: config, shared: shared, ids: ids, base: base,
                                home: account?.home ?? host.home, host: host)
        switch config.proxyTo {
        case nil: break
        case .address(let a)?:
            do { p.proxyAddress = .success(try SocketAddress(a)) } catch {
                p.proxyAddress = .failure(Resolver.Failure(description: "\(a): \(error)"))
            }
        case .host(let name, let port)?:
            p.proxyAddress = Resolver.resolve(name, port: port)
        }
        return .success(p)
    }

    private init(config: ServiceConfig, shared: ServiceInstance?, ids: (uid: UInt32, gid: UInt32, groups: [UInt32])?,
                 base: (block: EnvironmentBlock, strings: [String]), home: String, host: HostFacts) {
        self.config = config
        self.shared = shared
        self.accountIDs = ids
        self.kill = KillPolicy(config)
        self.baseEnvironment = base.block
        self.home = home
        self.host = host
        if let shared, shared.environmentFiles.isEmpty, shared.environment.entries.isEmpty, config.unsetEnvironment.isEmpty {
            sharedStrings = base.strings
        } else if let shared, shared.environmentFiles.isEmpty {
            var env = base.block
            env.merge(shared.environment)
            for name in config.unsetEnvironment { Self.unset(name, in: &env) }
            sharedStrings = env.strings
        } else {
            sharedStrings = nil
        }
    }

    /// The instance's settings: the shared ones, or resolved for this name.
    func instance(_ name: String?) throws(ValueError) -> ServiceInstance {
        guard var s = shared else { return try config.instantiate(name, host: host) }
        if let name { s.unit = config.name.withInstance(name) }
        return s
    }

    /// The environment before activation variables: base, Environment=,
    /// EnvironmentFile= (read now, so a changed file applies to the next
    /// start, as in systemd), UnsetEnvironment=. Missing files that are not
    /// optional are an error.
    func environment(for instance: ServiceInstance) throws(Launch.Failure) -> [String] {
        if let sharedStrings, instance.environmentFiles.isEmpty { return sharedStrings }
        var env = baseEnvironment
        env.merge(instance.environment)
        for f in instance.environmentFiles {
            guard let pairs = try readEnvironmentFile(f.path, optional: f.optional) else { continue }
            for (k, v) in pairs { env[k] = v }
        }
        for name in config.unsetEnvironment { Self.unset(name, in: &env) }
        return env.strings
    }

    /// Read whole or refused: a file over the limit, not a regular file,
    /// or with a NUL or invalid UTF-8 fails the start with the reason, so a
    /// variable is never cut short or silently missing.
    private func readEnvironmentFile(_ path: String, optional: Bool) throws(Launch.Failure) -> [(String, String)]? {
        let st: Files.Status?
        do { st = try Files.status(path) } catch { throw Launch.Failure("EnvironmentFile=\(path): \(error.reason)") }
        guard let st else {
            if optional { return nil }
            throw Launch.Failure("EnvironmentFile=\(path): \(SysError.describe(ENOENT))")
        }
        if let cached = fileCache[path], cached.modified == st.modified, cached.size == st.size { return cached.pairs }
        let bytes: [UInt8]
        do { bytes = try Files.readBytes(path) } catch { throw Launch.Failure("EnvironmentFile=\(path): \(error)") }
        if let problem = TextCheck.problem(bytes) {
            let line = 1 + (bytes.firstIndex { $0 == 0 || $0 >= 0x80 }.map { i in bytes[..<i].filter { $0 == 0x0A }.count } ?? 0)
            throw Launch.Failure("EnvironmentFile=\(path): \(problem) (near line \(line)), refused")
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let name = config.name.description
        let pairs = EnvironmentParsing.file(text) { line, message in
            Log.warning("\(name): \(path):\(line): \(message)")
        }
        fileCache[path] = (st.modified, st.size, pairs)
        return pairs
    }

    /// UnsetEnvironment= takes a name, or NAME=VALUE to unset only that assignment.
    private static func unset(_ spec: String, in env: inout EnvironmentBlock) {
        if let eq = spec.firstIndex(of: "=") {
            let name = String(spec[..<eq])
            if env[name] == String(spec[spec.index(after: eq)...]) { env[name] = nil }
        } else {
            env[spec] = nil
        }
    }

    /// The executable's absolute path; plain names are looked up in the
    /// search path at first use and again after a failure, so a program
    /// installed later is found.
    func executable(_ name: String) -> String? {
        if name.hasPrefix("/") { return name }
        if let hit = executableCache[name] { return hit }
        let found = Files.resolveExecutable(name)
        if let found { executableCache[name] = found }
        return found
    }

    func forgetExecutable(_ name: String) { executableCache[name] = nil }

    /// argv with `$VAR`/`${VAR}` resolved against the final environment.
    func arguments(_ instance: ServiceInstance, environment: [String]) -> [String] {
        guard instance.expandEnvironment, instance.arguments.contains(where: { $0.contains("$") }) else {
            return instance.arguments
        }
        var table: [Substring: String] = [:]
        for e in environment {
            if let eq = e.firstIndex(of: "=") { table[e[..<eq]] = String(e[e.index(after: eq)...]) }
        }
        return instance.arguments.flatMap { EnvironmentExpansion.expand($0) { table[$0] } }
    }
}
