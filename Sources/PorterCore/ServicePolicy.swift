/// systemd.service(5) Restart=.
public enum RestartPolicy: String, Sendable {
    case no, always
    case onSuccess = "on-success", onFailure = "on-failure", onAbnormal = "on-abnormal"
    case onAbort = "on-abort", onWatchdog = "on-watchdog"

    /// The table in systemd.service(5): which results restart.
    public func restarts(after result: RunResult) -> Bool {
        switch self {
        case .no: return false
        case .always: return true
        case .onSuccess: return result == .success
        case .onFailure: return result != .success
        case .onAbnormal: return [.signal, .coreDump, .timeout, .watchdog].contains(result)
        case .onAbort: return [.signal, .coreDump].contains(result)
        case .onWatchdog: return result == .watchdog
        }
    }
}

/// How a run ended, in systemd's terms (its "service results").
public enum RunResult: Equatable, Sendable, Codable {
    case success
    case exitCode
    case signal
    case coreDump
    /// TimeoutStartSec= or RuntimeMaxSec= ran out.
    case timeout
    case watchdog
    /// The program never ran: exec, credentials, working directory.
    case startFailure
    /// Type=forking: no main process could be found (a missing or foreign
    /// PID file, several candidates); systemd's "protocol".
    case protocolError
    /// porter's own: the run exited cleanly but left the work that started
    /// it queued, so starting it again at once would spin.
    case noProgress

    /// Whether the run counts against StartLimitBurst=.
    public var isFailure: Bool { self != .success }
}

/// What an Accept=no service's machine needs from its unit: stopping,
/// start limits and back-off, Restart=, idle stop, readiness and watchdog.
public struct ServicePolicy: Equatable, Sendable {
    public var kill = KillPolicy()
    /// systemd.unit(5) defaults: 5 starts in 10 s.
    public var startLimitInterval = Duration.seconds(10)
    public var startLimitBurst = 5
    /// Back-off after the start limit: 1 s, doubling while the service keeps
    /// failing, at most `backoffCap`.
    public var backoffBase = Duration.seconds(1)
    public var backoffCap = Duration.seconds(60)
    public var restart = RestartPolicy.no
    /// systemd's RestartSec= default.
    public var restartDelay = Duration.milliseconds(100)
    /// IdleTimeoutSec= (porter's own): stop after this long without work.
    public var idleTimeout: Duration? = nil
    /// RuntimeMaxSec=.
    public var runtimeMax: Duration? = nil
    public var runtimeRandomizedExtra: Duration? = nil

    /// RuntimeMaxSec= plus this run's share of RuntimeRandomizedExtraSec=:
    /// an even draw seeded by when the run began, so the machine stays a
    /// pure value (and an upgrade keeps each run's limit) while successive
    /// runs get different limits.
    public func runtimeLimit(since: Instant) -> Duration? {
        guard let base = runtimeMax else { return nil }
        guard let extra = runtimeRandomizedExtra, extra > .zero else { return base }
        var z = UInt64(bitPattern: since.nanoseconds) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        let fraction = Double(z >> 11) / Double(1 << 53)
        return base + .nanoseconds(Int64(Double(extra.nanoseconds) * fraction))
    }
    /// Type=notify: the run is started when the service says READY=1.
    public var notify = false
    /// Type=forking: the run is started when the first process has exited
    /// and the main process is known.
    public var forking = false
    /// ProxyTo=: the run is started when the backend is ready (READY=1
    /// for Type=notify, otherwise its address accepting a connection).
    public var proxied = false
    /// RemainAfterExit=yes.
    public var remainAfterExit = false
    /// RestartSteps= and RestartMaxDelaySec=: the restart delay grows from
    /// RestartSec= to this in that many restarts.
    public var restartSteps = 0
    public var restartMaxDelay: Duration? = nil
    /// TimeoutStartSec=: how long a notify service may take to be ready.
    public var startTimeout: Duration? = .seconds(90)
    /// WatchdogSec=.
    public var watchdog: Duration? = nil
    /// How long a process may take to stop (SIGSTOP) before an idle stop is
    /// given up as not safe.
    public var freezeLimit = Duration.seconds(1)

    public init() {}

    /// Whether a run is ready only when it says so (notify) or its first
    /// process has exited (forking).
    public var awaitsReadiness: Bool { notify || forking || proxied }

    /// `r` to the power `x` for 0 ≤ x < 1, from square roots (the core
    /// stays free of libm): r^x is the product of r^(1/2^k) over the bits
    /// of x.
    static func power(_ r: Double, _ x: Double) -> Double {
        var result = 1.0, root = r, rest = x
        for _ in 0..<40 {
            root = root.squareRoot()
            rest *= 2
            if rest >= 1 { result *= root; rest -= 1 }
        }
        return result
    }

    /// The delay before automatic restart number `n` (0, 1, ...):
    /// systemd's formula, RestartSec= × (RestartMaxDelaySec= /
    /// RestartSec=)^(n / RestartSteps=), at most RestartMaxDelaySec=.
    public func restartDelay(after n: Int) -> Duration {
        guard restartSteps > 0, let max = restartMaxDelay, max > restartDelay, restartDelay > .zero else { return restartDelay }
        if n >= restartSteps { return max }
        let base = Double(restartDelay.nanoseconds), top = Double(max.nanoseconds)
        return .nanoseconds(Int64(base * Self.power(top / base, Double(n) / Double(restartSteps))))
    }

    /// Back-off number `level` (0, 1, ...).
    public func backoff(_ level: Int) -> Duration {
        var d = backoffBase
        for _ in 0..<min(level, 30) {
            d = d * 2
            if d >= backoffCap { return backoffCap }
        }
        return min(d, backoffCap)
    }
}
