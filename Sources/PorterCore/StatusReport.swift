/// What `porter status` shows: porter itself and one entry per unit. The
/// daemon builds it, the control socket carries it as JSON (the schema
/// `porter status --json` prints, documented in the README), and the
/// client renders it as a table. Fields that do not apply to a unit's
/// kind are left out.
public struct StatusReport: Codable, Equatable, Sendable {
    public struct Porter: Codable, Equatable, Sendable {
        public var version: String
        public var pid: Int32
        public var uptimeSeconds: Double
        public var configDirectories: [String]
        public var controlSocket: String?
        public var metricsListen: String?
        public var counters: PorterCounters
        public init(version: String, pid: Int32, uptimeSeconds: Double, configDirectories: [String], controlSocket: String?,
                    metricsListen: String?, counters: PorterCounters) {
            self.version = version
            self.pid = pid
            self.uptimeSeconds = uptimeSeconds
            self.configDirectories = configDirectories
            self.controlSocket = controlSocket
            self.metricsListen = metricsListen
            self.counters = counters
        }
    }

    public struct Exit: Codable, Equatable, Sendable {
        public var pid: Int32
        public var unit: String
        public var status: String
        public var success: Bool
        public var secondsAgo: Double
        public init(pid: Int32, unit: String, status: String, success: Bool, secondsAgo: Double) {
            self.pid = pid
            self.unit = unit
            self.status = status
            self.success = success
            self.secondsAgo = secondsAgo
        }
    }

    public struct Jobs: Codable, Equatable, Sendable {
        public var running: Int
        public var pending: Int
        public var queued: UInt64
        public var done: UInt64
        public var failed: UInt64
        public init(running: Int, pending: Int, queued: UInt64, done: UInt64, failed: UInt64) {
            (self.running, self.pending, self.queued, self.done, self.failed) = (running, pending, queued, done, failed)
        }
    }

    public struct Unit: Codable, Equatable, Sendable {
        public var name: String
        /// socket, service, template (NAME@.service) or path.
        public var kind: String
        /// listening, watching, running, starting, stopping, holding-off,
        /// reloading, paused, waiting-for-address, failed, ...
        public var state: String
        /// `porter stop` paused it; `porter start` resumes.
        public var paused: Bool
        /// accept (Accept=yes), pass (Accept=no), per-file, service.
        public var mode: String?
        public var activates: String?
        public var triggeredBy: [String]?
        public var listen: [String]?
        public var watches: [String]?
        public var pids: [Int32]
        public var activations: UInt64
        public var spawnFailures: UInt64
        public var failures: UInt64
        public var connectionsNow: Int?
        public var connectionsTotal: UInt64?
        public var maxConnections: Int?
        public var refused: UInt64?
        public var idleStops: UInt64?
        public var lastExit: Exit?
        /// Seconds until the idle check of a running Accept=no service.
        public var idleCheckIn: Double?
        /// Seconds until a back-off (start limit, bind retry, pause) ends.
        public var backoffFor: Double?
        public var jobs: Jobs?
        public var triggers: UInt64?
        /// The service's last STATUS= (sd_notify).
        public var statusText: String?
        /// ProxyTo=: where porter relays, and the bytes relayed each way.
        public var proxyTo: String?
        public var bytesToBackend: UInt64?
        public var bytesToClient: UInt64?

        public init(name: String, kind: String, state: String, paused: Bool = false) {
            self.name = name
            self.kind = kind
            self.state = state
            self.paused = paused
            pids = []
            activations = 0
            spawnFailures = 0
            failures = 0
        }
    }

    public var porter: Porter
    public var units: [Unit]

    public init(porter: Porter, units: [Unit]) {
        self.porter = porter
        self.units = units
    }
}

extension StatusReport {
    /// Seconds in the short form a table wants: 850ms, 12s, 4m10s, 3h2m, 2d5h.
    public static func age(_ seconds: Double) -> String {
        if seconds < 1 { return "\(Int((seconds * 1000).rounded()))ms" }
        let s = Int(seconds.rounded(.down))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60)s" }
        if s < 86400 { return "\(s / 3600)h\(s % 3600 / 60)m" }
        return "\(s / 86400)d\(s % 86400 / 3600)h"
    }

    /// The table `porter status` prints; with `colour`, states in green
    /// (fine), yellow (in between, paused) or red (failed).
    public func table(colour: Bool) -> String {
        let header = ["UNIT", "KIND", "STATE", "PIDS", "STARTS", "CONN NOW/TOTAL", "REFUSED", "LAST EXIT", "IDLE IN", "FAILURES"]
        var rows: [[String]] = []
        var states: [String] = []
        for u in units {
            var pids = u.pids.prefix(3).map(String.init).joined(separator: ",")
            if u.pids.count > 3 { pids += ",+\(u.pids.count - 3)" }
            var conn = "-"
            if let now = u.connectionsNow {
                conn = "\(now)/\(u.connectionsTotal.map(String.init) ?? "-")"
                if let max = u.maxConnections { conn += " (max \(max))" }
            } else if let j = u.jobs {
                conn = "\(j.running)/\(j.queued) jobs"
            }
            let last = u.lastExit.map { "\($0.status) \(Self.age($0.secondsAgo)) ago" } ?? "-"
            var failures = u.failures == 0 ? "-" : String(u.failures)
            if u.spawnFailures > 0 { failures += " (\(u.spawnFailures) spawn)" }
            if let b = u.backoffFor { failures += ", back-off \(Self.age(b))" }
            let state = u.paused && u.state != "paused" ? "\(u.state) (paused)" : u.state
            states.append(state)
            rows.append([u.name, u.kind, state, pids.isEmpty ? "-" : pids,
                         u.activations == 0 && u.kind == "socket" ? "-" : String(u.activations), conn,
                         u.refused.map { $0 == 0 ? "-" : String($0) } ?? "-", last,
                         u.idleCheckIn.map { Self.age($0) } ?? "-", failures])
        }
        let out = "porter \(porter.version), pid \(porter.pid), up \(Self.age(porter.uptimeSeconds)); "
            + "reloads \(porter.counters.reloadsOK) ok, \(porter.counters.reloadsFailed) refused"
            + (porter.counters.upgrades > 0 ? "; upgraded \(porter.counters.upgrades)x" : "")
            + (porter.metricsListen.map { "; metrics on \($0)" } ?? "") + "\n"
        // The state column in colour.
        return out + TextTable.render(header: header, rows: rows, colour: colour ? { row, column in column == 2 ? Self.colour(states[row]) : nil } : nil)
    }

    static func colour(_ state: String) -> String {
        if state.contains("failed") || state.contains("refused") { return "31" }
        if state.contains("paused") || state.contains("holding") || state.contains("waiting") || state.contains("stopping")
            || state.contains("starting") || state.contains("stopped") { return "33" }
        return "32"
    }
}
