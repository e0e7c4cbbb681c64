import Glibc
import PorterCore
import PorterSys

/// porter.conf applied to the running porter: at start and at each reload.
extension Supervisor {
    /// Log target and level at once, the metrics endpoint moved or closed;
    /// a new control socket path waits for the next start or upgrade
    /// (moving it under a running `porter status` would strand it).
    func adopt(_ new: PorterSettings) {
        let old = settings
        settings = new
        Log.configure(new, levelOverride: levelFromCommandLine)
        if new.metricsListen != old.metricsListen { applyMetricsListen() }
        if new.controlSocket != old.controlSocket {
            Log.warning("\(new.at("ControlSocket")): changed; the control socket stays at \(own.controlPath ?? "none") until porter restarts or upgrades")
        }
    }

    /// Whether a unit of that name runs (a pause of a unit that went
    /// away goes with it).
    func knows(_ name: UnitName) -> Bool {
        if socketIndex[name] != nil || serviceIndex[name] != nil || pathIndex[name] != nil || bindRetries[name] != nil { return true }
        return sockets.contains { $0.template?.config.name == name } || paths.contains { $0.template?.config.name == name }
    }
}
