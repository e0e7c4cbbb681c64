public enum ServiceType: String, Sendable {
    case simple, exec, notify, oneshot, forking
    /// Type=notify, and a reload is ReloadSignal= answered by RELOADING=1
    /// and READY=1 (ServiceReload).
    case notifyReload = "notify-reload"

    /// Readiness is READY=1: Type=notify and Type=notify-reload.
    public var isNotify: Bool { self == .notify || self == .notifyReload }
}

/// FileDescriptorStorePreserve= (systemd.service(5)): when the fds a
/// service parked with FDSTORE=1 are closed. `no`: at the end of every
/// run; `restart` (the default): when a run ends without a restart
/// following it (an idle stop, an exit the service is not restarted
/// after, `porter stop`); `yes`: only when the unit goes away.
public enum FDStorePreserve: String, Sendable {
    case no, restart, yes
}

/// RestartMode= (systemd.service(5)). `normal` and `direct` differ in
/// systemd only in the states other units see during a restart (direct
/// skips failed and inactive, and OnFailure=); porter has no units that
/// watch a service, so the two behave the same. `debug`: the restarted
/// run's commands get DEBUG_INVOCATION=1, asking for more logging.
public enum RestartMode: String, Sendable {
    case normal, direct, debug
}

/// NotifyAccess=: whose sd_notify messages are heeded.
public enum NotifyAccess: String, Sendable {
    case none, main, exec, all
}

public enum StandardInput: Equatable, Sendable {
    case null, socket
    case file(String)
    /// porter's own: the file that started a per-file job, read-only.
    case fileTrigger
}

public enum StandardOutput: Equatable, Sendable {
    /// stdout: a copy of stdin; stderr: a copy of stdout.
    case inherit
    case null, socket
    /// Into porter's log, one line per line, prefixed with the unit's name.
    case journal
    case file(String), append(String), truncate(String)
}

/// systemd.kill(5): which processes a stop signals. Porter has no cgroups;
/// the service's process group (porter makes each service a session leader)
/// stands in for the control group.
public enum KillMode: String, Sendable, Codable {
    case controlGroup = "control-group", mixed, process, none
}

/// What `WorkingDirectory=` asks for.
public struct WorkingDirectory: Equatable, Sendable {
    /// nil: the home directory of User= (`~`).
    public var path: String?
    /// `-` prefix: a missing directory is not an error.
    public var optional: Bool
}

/// A `.service` unit (or `@.service` template), as systemd.service(5) and
/// systemd.exec(5) describe it. Strings that may hold instance specifiers
/// are kept unexpanded; `instantiate` resolves them for one instance.
public struct ServiceConfig: Sendable {
    public var name: UnitName
    public var exec: ExecCommand?
    var execLine = 0
    /// The line of a second ExecStart= (only Type=oneshot may have one).
    var extraStartLine = 0
    /// Of the unit file's bytes: whether a reload changed the unit.
    public var fingerprint: UInt64 = 0
    /// Condition*= and Assert*= of [Unit].
    public var unitConditions: [UnitCondition] = []
    /// The unit file and its drop-ins, for messages about its lines.
    public var sources = SourceNames("")
    /// Where User=, Group= and SupplementaryGroups= were set, for the
    /// messages of checks made after parsing (a user that does not exist).
    var credentialLines: (user: Int?, group: Int?, supplementary: Int?) = (nil, nil, nil)
    public func line(of key: String) -> Int? {
        switch key {
        case "User": return credentialLines.user
        case "Group": return credentialLines.group
        case "SupplementaryGroups": return credentialLines.supplementary
        case "ExecStart": return execStartLine
        default: return nil
        }
    }
    public var execStartLine: Int? { execLine > 0 ? execLine : nil }
    /// Environment= words, split but with specifiers unresolved.
    var environment: [(line: Int, name: String, value: String)] = []
    var environmentFiles: [(line: Int, path: String, optional: Bool)] = []
    public var passEnvironment: [String] = []
    public var unsetEnvironment: [String] = []
    var workingDirectory: (line: Int, raw: String)? = nil
    public var user: String?
    public var group: String?
    public var supplementaryGroups: [String] = []
    public var standardInput = StandardInput.null
    var explicitOutput: StandardOutput? = nil
    var explicitError: StandardOutput? = nil
    public var killSignal = Sig.terminate
    public var finalKillSignal = Sig.kill
    /// ReloadSignal=: what a Type=notify-reload service gets on a reload.
    public var reloadSignal = Sig.hangup
    public var killMode = KillMode.controlGroup
    public var sendSIGKILL = true
    public var sendSIGHUP = false
    /// systemd's DefaultTimeoutStopSec.
    public var timeoutStop = Timeout.after(.seconds(90))
    public var nonBlocking = false
    /// systemd.exec(5): UMask= defaults to 0022.
    public var umask: UInt32 = 0o022
    public var noNewPrivileges = false
    /// Sockets= : further socket units whose fds this service receives.
    public var sockets: [UnitName] = []
    /// systemd.unit(5) defaults: 5 starts in 10 s.
    public var startLimitInterval = Duration.seconds(10)
    public var startLimitBurst = 5
    public var type = ServiceType.simple
    public var restart = RestartPolicy.no
    public var restartDelay = Duration.milliseconds(100)
    public var idleTimeout: Duration? = nil
    /// ProxyTo= (porter's own): the address the service listens on; porter
    /// keeps the socket unit's listeners and relays each connection there.
    public var proxyTo: ProxyTarget? = nil
    var proxyLine = 0
    public var proxyToLine: Int { proxyLine }
    /// ProxyProtocol=: the PROXY header sent to the backend first.
    public var proxyProtocol: ProxyProtocolVersion? = nil
    /// ProxyIdleTimeoutSec=: a relayed connection (or UDP flow) that carries
    /// nothing for this long is closed.
    public var proxyIdleTimeout: Duration? = nil
    public var runtimeMax: Duration? = nil
    /// RuntimeRandomizedExtraSec=: up to this much more than RuntimeMaxSec=,
    /// drawn evenly for each run.
    public var runtimeRandomizedExtra: Duration? = nil
    public var startTimeout: Duration? = .seconds(90)
    public var watchdog: Duration? = nil
    /// NotifyAccess= as written; see `effectiveNotifyAccess`.
    public var notifyAccess: NotifyAccess? = nil
    /// FileDescriptorStoreMax=: 0 (systemd's default) keeps no fds.
    public var fdStoreMax = 0
    /// OpenFile=: files porter opens and passes at each start.
    public var openFiles: [OpenFile] = []
    /// RestartMode=: how an automatic restart runs.
    public var restartMode = RestartMode.normal
    /// FileDescriptorStorePreserve=: when the stored fds are let go.
    public var fdStorePreserve = FDStorePreserve.restart
    /// Every command line by phase; `exec` is the first ExecStart=.
    public var commands: [CommandSequence.Phase: [ExecCommand]] = [:]
    var commandLines: [CommandSequence.Phase: Int] = [:]
    /// ExecReload=: what `porter reload UNIT` runs.
    public var reloadCommands: [ExecCommand] { commands[.reload] ?? [] }
    public var remainAfterExit = false
    /// Type=forking: PIDFile= (absolute, specifiers resolved) and GuessMainPID=.
    public var pidFile: String? = nil
    var pidFileLine = 0
    public var guessMainPID = true
    /// RestartSteps= and RestartMaxDelaySec= (nil: infinity, no growth).
    public var restartSteps = 0
    public var restartMaxDelay: Duration? = nil
    public var successExitStatus = ExitStatusSet()
    public var restartPreventExitStatus = ExitStatusSet()
    public var restartForceExitStatus = ExitStatusSet()
    /// Whether there is anything besides one ExecStart= to run.
    public var hasExtraCommands: Bool {
        commands.contains { $0.key != .start && $0.key != .reload && !$0.value.isEmpty } || (commands[.start]?.count ?? 0) > 1
    }
    /// RuntimeDirectory= and the others: names under each root, with their mode.
    public var directories: [ServiceDirectories.Kind: ServiceDirectories.Entry] = [:]
    public var runtimeDirectoryPreserve = ServiceDirectories.Preserve.no
    /// Limits, priorities, affinity and the rest of `ProcessSettings`.
    public var process = ProcessSettings()
    /// SyslogIdentifier=: the name porter's log gives the service's output.
    public var syslogIdentifier: String? = nil
    /// SetLoginEnvironment=; nil: systemd's default (with User= only).
    public var setLoginEnvironment: Bool? = nil

    public init(name: UnitName) {
        self.name = name
        sources = SourceNames(name.description)
    }

    /// systemd's service_fix_stdio(): with a bidirectional stdin (a socket)
    /// stdout defaults to inherit, i.e. the socket; otherwise to the journal.
    public var standardOutput: StandardOutput {
        if let o = explicitOutput, o != .inherit { return o }
        return standardInput == .socket ? .inherit : .journal
    }

    /// stderr defaults to inherit, i.e. wherever stdout goes.
    public var standardError: StandardOutput { explicitError ?? .inherit }

    static let keys = KeySet([
        "Type", "ExecStart", "Environment", "EnvironmentFile", "PassEnvironment", "UnsetEnvironment",
        "WorkingDirectory", "User", "Group", "SupplementaryGroups", "StandardInput", "StandardOutput",
        "StandardError", "KillSignal", "FinalKillSignal", "ReloadSignal", "KillMode", "SendSIGKILL", "SendSIGHUP",
        "TimeoutStopSec", "TimeoutSec", "NonBlocking", "UMask", "NoNewPrivileges", "Sockets", "Restart", "RestartMode", "RuntimeRandomizedExtraSec", "OpenFile",
        "StartLimitInterval", "StartLimitBurst", "RestartSec", "IdleTimeoutSec", "RuntimeMaxSec", "TimeoutStartSec",
        "WatchdogSec", "NotifyAccess", "FileDescriptorStoreMax", "FileDescriptorStorePreserve", "SyslogIdentifier", "SetLoginEnvironment",
        "ExecCondition", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost", "ExecReload",
        "RemainAfterExit", "SuccessExitStatus", "RestartPreventExitStatus", "RestartForceExitStatus",
        "RuntimeDirectoryPreserve", "PIDFile", "GuessMainPID", "RestartSteps", "RestartMaxDelaySec",
        "ProxyTo", "ProxyProtocol", "ProxyIdleTimeoutSec",
    ] + ProcessSettings.keys + ServiceDirectories.Kind.allCases.flatMap { [$0.rawValue, $0.rawValue + "Mode"] })
    static let unitKeys = KeySet(["StartLimitIntervalSec", "StartLimitBurst"])

    public static func read(_ file: UnitFile, name: UnitName, specifiers: Specifiers, diagnostics: inout Diagnostics) -> ServiceConfig? {
        var config = ServiceConfig(name: name)
        config.sources = diagnostics.sources
        var reader = UnitReader(file: file, diagnostics: diagnostics)
        reader.read(section: "Service", implemented: keys, unitKeys: unitKeys) { r, a in
            switch a.key {
            case "User": config.credentialLines.user = a.line
            case "Group": config.credentialLines.group = a.line
            case "SupplementaryGroups": config.credentialLines.supplementary = a.line
            default: break
            }
            config.apply(a, &r, specifiers)
        }
        config.validate(&reader, specifiers)
        config.unitConditions = reader.conditions
        diagnostics = reader.diagnostics
        return diagnostics.hasErrors ? nil : config
    }

    static func isValidUserName(_ s: String) -> Bool {
        if let n = UInt32(s) { return n != UInt32.max }
        guard let f = s.first, f == "_" || (f.isASCII && f.isLetter), s.count <= 256 else { return false }
        return s.dropFirst().allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_-.".contains($0)) }
            || (s.last == "$" && s.dropFirst().dropLast().allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_-.".contains($0)) })
    }

    mutating func apply(_ a: UnitFile.Assignment, _ r: inout UnitReader, _ specifiers: Specifiers) {
        func output(_ s: String, isError: Bool) throws(ValueError) -> StandardOutput {
            switch s {
            case "inherit": return .inherit
            case "null": return .null
            case "socket": return .socket
            case "journal", "syslog", "kmsg", "journal+console", "syslog+console", "kmsg+console": return .journal
            default:
                for (prefix, make) in [("file:", StandardOutput.file), ("append:", StandardOutput.append), ("truncate:", StandardOutput.truncate)]
                    where s.hasPrefix(prefix) {
                    let path = String(s.dropFirst(prefix.count))
                    guard path.hasPrefix("/") else { throw ValueError("\(Quote.value(path)) is not an absolute path, expected \(prefix)/path") }
                    return make(path)
                }
                if s == "tty" || s.hasPrefix("fd:") {
                    throw ValueError("\(Quote.value(s)) is not supported by porter, expected inherit, null, socket, journal, file:PATH, append:PATH or truncate:PATH")
                }
                throw ValueError("invalid value \(Quote.value(s)), expected inherit, null, socket, journal, file:PATH, append:PATH or truncate:PATH")
            }
        }
        func expanded(_ s: String) -> String? {
            // Instance specifiers are resolved per instance; check the syntax now.
            r.value(a, specifiers.expand) != nil ? s : nil
        }

        switch a.key {
        case "Type":
            switch a.value {
            case "simple", "idle", "": type = .simple
            case "exec": type = .exec
            case "notify": type = .notify
            case "oneshot": type = .oneshot
            case "forking": type = .forking
            case "notify-reload": type = .notifyReload
            case "dbus":
                r.error(a, "Type=dbus needs a D-Bus bus name to appear, and porter has no bus; expected simple, exec, notify, notify-reload, oneshot or forking")
            default:
                r.error(a, "invalid value \(Quote.value(a.value)), expected simple, exec, notify, notify-reload, oneshot or forking")
            }
        case "ExecStart", "ExecCondition", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost", "ExecReload":
            let phase = CommandSequence.Phase(rawValue: a.key)!
            if a.value.isEmpty {
                commands[phase] = nil
                if a.key == "ExecStart" { exec = nil }
                return
            }
            guard let parsed = r.value(a, ExecCommand.parse) else { return }
            commands[phase, default: []] += parsed
            if commandLines[phase] == nil { commandLines[phase] = a.line }
            if a.key == "ExecStart" {
                if exec == nil {
                    exec = parsed[0]
                    execLine = a.line
                }
                if (commands[.start]?.count ?? 0) > 1 { commandLines[.start] = commandLines[.start] ?? a.line; extraStartLine = a.line }
            }
        case "RemainAfterExit": if let v = r.value(a, Values.boolean) { remainAfterExit = v }
        case "GuessMainPID": if let v = r.value(a, Values.boolean) { guessMainPID = v }
        case "PIDFile":
            if a.value.isEmpty { pidFile = nil; return }
            guard var p = r.value(a, specifiers.expand) else { return }
            // systemd.service(5): a relative path is under /run.
            if !p.hasPrefix("/") { p = "/run/" + p }
            guard !p.hasSuffix("/"), !p.split(separator: "/").contains(where: { $0 == ".." }) else {
                r.error(a, "\(Quote.value(a.value)) is not a file path, expected /run/NAME.pid or NAME.pid")
                return
            }
            pidFile = p
            pidFileLine = a.line
        case "RestartSteps":
            guard let n = Int(a.value), n >= 0, n <= 3000 else {
                r.error(a, "invalid value \(Quote.value(a.value)), expected a number of restarts 0-3000")
                return
            }
            restartSteps = n
        case "RestartMaxDelaySec":
            if let v = r.value(a, { (s) throws(ValueError) in try Values.timeSpan(s) }) { restartMaxDelay = v.duration }
        case "RuntimeDirectoryPreserve":
            guard let p = ServiceDirectories.Preserve(rawValue: a.value.isEmpty ? "no" : a.value)
                    ?? ((try? Values.boolean(a.value)).map { $0 ? .yes : .no }) else {
                r.error(a, "invalid value \(Quote.value(a.value)), expected no, yes or restart")
                return
            }
            runtimeDirectoryPreserve = p
        case let key where ServiceDirectories.Kind(rawValue: key) != nil:
            let kind = ServiceDirectories.Kind(rawValue: key)!
            let names = Values.words(a.value)
            if names.isEmpty { directories[kind]?.names = []; return }
            for n in names {
                if let problem = ServiceDirectories.problem(n) { r.error(a, problem); return }
                directories[kind, default: .init()].names.append(n)
            }
            directories[kind, default: .init()].line = a.line
        case let key where key.hasSuffix("DirectoryMode") && ServiceDirectories.Kind(rawValue: String(key.dropLast(4))) != nil:
            let kind = ServiceDirectories.Kind(rawValue: String(key.dropLast(4)))!
            if let m = r.value(a, Values.mode) { directories[kind, default: .init()].mode = m }
        case "SuccessExitStatus", "RestartPreventExitStatus", "RestartForceExitStatus":
            var set = a.key == "SuccessExitStatus" ? successExitStatus : a.key == "RestartPreventExitStatus" ? restartPreventExitStatus : restartForceExitStatus
            guard r.value(a, { (v) throws(ValueError) in try set.add(v) }) != nil else { return }
            switch a.key {
            case "SuccessExitStatus": successExitStatus = set
            case "RestartPreventExitStatus": restartPreventExitStatus = set
            default: restartForceExitStatus = set
            }
        case "Environment":
            if a.value.isEmpty {
                environment.removeAll()
                return
            }
            var warnings: [String] = []
            guard let pairs = r.value(a, { (s) throws(ValueError) in try EnvironmentParsing.assignments(s) { warnings.append($0) } }) else { return }
            for w in warnings { r.warning(a, w) }
            for (k, v) in pairs where r.value(a, { (_) throws(ValueError) in try specifiers.expand(v) }) != nil {
                environment.append((a.line, k, v))
            }
        case "EnvironmentFile":
            if a.value.isEmpty {
                environmentFiles.removeAll()
                return
            }
            var path = a.value
            let optional = path.hasPrefix("-")
            if optional { path.removeFirst() }
            guard let p = expanded(path) else { return }
            guard p.hasPrefix("/") || p.hasPrefix("%") else {
                r.error(a, "\(Quote.value(path)) is not an absolute path, expected /path or -/path")
                return
            }
            environmentFiles.append((a.line, p, optional))
        case "PassEnvironment", "UnsetEnvironment":
            let names = Values.words(a.value)
            if a.key == "PassEnvironment" {
                if names.isEmpty { passEnvironment.removeAll() }
                for n in names where EnvironmentExpansion.isValidName(Substring(n)) { passEnvironment.append(n) }
            } else {
                if names.isEmpty { unsetEnvironment.removeAll() }
                unsetEnvironment += names
            }
            for n in names where a.key == "PassEnvironment" && !EnvironmentExpansion.isValidName(Substring(n)) {
                r.warning(a, "invalid variable name \(Quote.value(n)) ignored")
            }
        case "WorkingDirectory":
            workingDirectory = a.value.isEmpty ? nil : (expanded(a.value).map { (a.line, $0) })
        case "User", "Group":
            guard let v = r.value(a, specifiers.expand) else { return }
            if v.isEmpty {
                if a.key == "User" { user = nil } else { group = nil }
            } else if !Self.isValidUserName(v) {
                r.error(a, "invalid \(a.key == "User" ? "user" : "group") name \(Quote.value(v)), expected a name or a numeric id")
            } else if a.key == "User" {
                user = v
            } else {
                group = v
            }
        case "SupplementaryGroups":
            guard let v = r.value(a, specifiers.expand) else { return }
            let names = Values.words(v)
            if names.isEmpty { supplementaryGroups.removeAll() }
            for n in names {
                if Self.isValidUserName(n) { supplementaryGroups.append(n) } else { r.error(a, "invalid group name \(Quote.value(n))") }
            }
        case "StandardInput":
            switch a.value {
            case "null": standardInput = .null
            case "socket": standardInput = .socket
            case "file-trigger": standardInput = .fileTrigger
            default:
                if a.value.hasPrefix("file:"), a.value.dropFirst(5).hasPrefix("/") {
                    standardInput = .file(String(a.value.dropFirst(5)))
                } else if ["tty", "tty-force", "tty-fail", "data"].contains(a.value) || a.value.hasPrefix("fd:") {
                    r.error(a, "\(Quote.value(a.value)) is not supported by porter, expected null, socket, file:PATH or file-trigger")
                } else {
                    r.error(a, "invalid value \(Quote.value(a.value)), expected null, socket, file:PATH or file-trigger")
                }
            }
        case "StandardOutput": explicitOutput = r.value(a) { (s) throws(ValueError) in try output(s, isError: false) }
        case "StandardError": explicitError = r.value(a) { (s) throws(ValueError) in try output(s, isError: true) }
        case "KillSignal": if let v = r.value(a, Values.signal) { killSignal = v }
        case "FinalKillSignal": if let v = r.value(a, Values.signal) { finalKillSignal = v }
        case "ReloadSignal": if let v = r.value(a, Values.signal) { reloadSignal = v }
        case "KillMode":
            guard let m = KillMode(rawValue: a.value) else {
                r.error(a, "invalid value \(Quote.value(a.value)), expected control-group, mixed, process or none")
                return
            }
            killMode = m
        case "SendSIGKILL": if let v = r.value(a, Values.boolean) { sendSIGKILL = v }
        case "SendSIGHUP": if let v = r.value(a, Values.boolean) { sendSIGHUP = v }
        case "TimeoutStopSec", "TimeoutSec":
            // systemd.service(5): 0 disables the timeout, like "infinity".
            if let v = r.value(a, { (s) throws(ValueError) in try Values.timeSpan(s) }) {
                timeoutStop = v.duration == .zero ? .never : v
                if a.key == "TimeoutSec" { startTimeout = v.duration == .zero ? nil : v.duration }
            }
        case "NonBlocking": if let v = r.value(a, Values.boolean) { nonBlocking = v }
        case "UMask": if let v = r.value(a, Values.mode) { umask = v & 0o777 }
        case "NoNewPrivileges": if let v = r.value(a, Values.boolean) { noNewPrivileges = v }
        case "Sockets":
            let names = Values.words(a.value)
            if names.isEmpty { sockets.removeAll() }
            for n in names {
                guard let u = UnitName.parse(n), u.type == .socket, u.instance == nil else {
                    r.error(a, "invalid unit name \(Quote.value(n)), expected NAME.socket")
                    continue
                }
                sockets.append(u)
            }
        case "Restart":
            guard let p = RestartPolicy(rawValue: a.value.isEmpty ? "no" : a.value) else {
                r.error(a, "invalid value \(Quote.value(a.value)), expected no, on-success, on-failure, on-abnormal, on-abort, on-watchdog or always")
                return
            }
            restart = p
        case "RestartSec":
            if let v = r.value(a, { (s) throws(ValueError) in try Values.timeSpan(s) }) { restartDelay = v.duration ?? .seconds(365 * 86400) }
        case "OpenFile":
            guard !a.value.isEmpty else { openFiles.removeAll(); return }
            if let f = r.value(a, { (v) throws(ValueError) in try OpenFile.parse(try specifiers.expand(v)) }) { openFiles.append(f) }
        case "RestartMode":
            guard let m = RestartMode(rawValue: a.value.isEmpty ? "normal" : a.value) else {
                r.error(a, "invalid value \(Quote.value(a.value)), expected normal, direct or debug")
                return
            }
            restartMode = m
        case "RuntimeRandomizedExtraSec":
            guard let v = r.value(a, { (s) throws(ValueError) in try Values.timeSpan(s) }) else { return }
            runtimeRandomizedExtra = v.duration == .zero ? nil : v.duration
        case "IdleTimeoutSec", "RuntimeMaxSec", "WatchdogSec", "TimeoutStartSec":
            // 0 and infinity both mean "never", as for systemd's timeouts.
            guard let v = r.value(a, { (s) throws(ValueError) in try Values.timeSpan(s) }) else { return }
            let d: Duration? = v.duration == .zero ? nil : v.duration
            switch a.key {
            case "IdleTimeoutSec": idleTimeout = d
            case "RuntimeMaxSec": runtimeMax = d
            case "WatchdogSec": watchdog = d
            default: startTimeout = d
            }
        case "ProxyTo":
            proxyLine = a.line
            proxyTo = a.value.isEmpty ? nil : r.value(a) { (v) throws(ValueError) in try ProxyTarget.parse(try specifiers.expand(v)) }
        case "ProxyProtocol":
            switch a.value {
            case "", "no", "off", "false": proxyProtocol = nil
            case "v1", "1": proxyProtocol = .v1
            case "v2", "2": proxyProtocol = .v2
            default: r.error(a, "invalid value \(Quote.value(a.value)), expected v1, v2 or no")
            }
        case "ProxyIdleTimeoutSec":
            guard let v = r.value(a, { (s) throws(ValueError) in try Values.timeSpan(s) }) else { return }
            proxyIdleTimeout = v.duration == .zero ? nil : v.duration
        case "NotifyAccess":
            guard let n = NotifyAccess(rawValue: a.value) else {
                r.error(a, "invalid value \(Quote.value(a.value)), expected none, main, exec or all")
                return
            }
            notifyAccess = n
        case "SyslogIdentifier":
            syslogIdentifier = a.value.isEmpty ? nil : r.value(a, specifiers.expand)
        case "SetLoginEnvironment":
            setLoginEnvironment = a.value.isEmpty ? nil : r.value(a, Values.boolean)
        case "FileDescriptorStoreMax":
            if let v = r.value(a, { (s) throws(ValueError) in try Values.integer(s, in: 0...4096) }) { fdStoreMax = v }
        case "FileDescriptorStorePreserve":
            guard let v = FDStorePreserve(rawValue: a.value) else {
                r.error(a, "invalid value \(Quote.value(a.value)), expected no, restart or yes")
                return
            }
            fdStorePreserve = v
        case "StartLimitIntervalSec", "StartLimitInterval":
            if let v = r.value(a, { (s) throws(ValueError) in try Values.timeSpan(s) }) {
                startLimitInterval = v.duration ?? .zero
            }
        case "StartLimitBurst":
            if let v = r.value(a, { (s) throws(ValueError) in try Values.integer(s, in: 0...1_000_000) }) { startLimitBurst = v }
        default:
            _ = r.value(a) { (v) throws(ValueError) in try process.apply(a.key, v) }
        }
    }
}
