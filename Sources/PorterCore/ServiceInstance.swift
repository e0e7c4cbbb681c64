/// A service's settings with specifiers resolved for one instance (or for
/// the plain unit): what the daemon needs to start it.
public struct ServiceInstance: Sendable {
    public var unit: UnitName
    /// The executable as resolved by specifiers: absolute or a plain name.
    public var executable: String
    /// argv with specifiers resolved; `$VAR` substitution happens at start.
    public var arguments: [String]
    public var expandEnvironment: Bool
    public var environment: EnvironmentBlock
    public var environmentFiles: [(path: String, optional: Bool)]
    public var workingDirectory: WorkingDirectory?
}

extension ServiceConfig {
    /// Whether any setting depends on the instance, so a template's
    /// instances cannot share one resolved `ServiceInstance`.
    public var dependsOnInstance: Bool {
        guard let exec else { return false }
        return ([exec.path] + exec.arguments + environment.map(\.value) + environmentFiles.map(\.path)
            + [workingDirectory?.raw ?? ""]).contains(where: Specifiers.dependsOnInstance)
    }

    /// Resolves specifiers for `instance` (nil for a plain unit).
    public func instantiate(_ instance: String?, host: HostFacts) throws(ValueError) -> ServiceInstance {
        // An instance unit (foo@bar.service) keeps its own instance.
        let unit = instance.map { name.withInstance($0) } ?? name
        let s = Specifiers(unit: unit, host: host, user: user)
        guard let exec else { throw ValueError("no ExecStart=") }
        var env = EnvironmentBlock()
        for e in environment { env[e.name] = try s.expand(e.value) }
        var files: [(path: String, optional: Bool)] = []
        for f in environmentFiles { files.append((try s.expand(f.path), f.optional)) }
        var wd: WorkingDirectory? = nil
        if let w = workingDirectory {
            var p = try s.expand(w.raw)
            let optional = p.hasPrefix("-")
            if optional { p.removeFirst() }
            wd = WorkingDirectory(path: p == "~" ? nil : p, optional: optional)
        }
        return ServiceInstance(
            unit: unit,
            executable: try s.expand(exec.path),
            arguments: try exec.arguments.map { (a) throws(ValueError) in try s.expand(a) },
            expandEnvironment: exec.expandEnvironment,
            environment: env,
            environmentFiles: files,
            workingDirectory: wd)
    }
}

extension ServiceConfig {
    /// What the Accept=no machine needs from this unit.
    public var policy: ServicePolicy {
        var p = ServicePolicy()
        p.kill = KillPolicy(self)
        p.startLimitInterval = startLimitInterval
        p.startLimitBurst = startLimitBurst
        p.restart = restart
        p.restartDelay = restartDelay
        p.idleTimeout = idleTimeout
        p.runtimeMax = runtimeMax
        p.runtimeRandomizedExtra = runtimeRandomizedExtra
        p.notify = type.isNotify
        p.proxied = proxyTo != nil
        p.forking = type == .forking
        p.remainAfterExit = remainAfterExit
        p.restartSteps = restartSteps
        p.restartMaxDelay = restartMaxDelay
        p.startTimeout = startTimeout
        p.watchdog = watchdog
        return p
    }
}

extension ServiceConfig {
    /// systemd.service(5): NotifyAccess= defaults to none, or to main with
    /// Type=notify or WatchdogSec=; porter also defaults it to main when the
    /// service may store fds, which it can only do by notifying.
    public var effectiveNotifyAccess: NotifyAccess {
        notifyAccess ?? (type.isNotify || watchdog != nil || fdStoreMax > 0 ? .main : .none)
    }
}
