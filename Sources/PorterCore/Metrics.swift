/// What porter counts, per unit and in all, and the Prometheus text
/// exposition format (version 0.0.4) it is served in. The daemon bumps the
/// counters where things happen and reads the gauges (what runs now) at
/// scrape time; nothing here touches the system. Codable: an upgrade hands
/// the counts to the new image.
public struct UnitCounters: Codable, Equatable, Sendable {
    /// Processes started: Accept=no runs, per-connection instances, per-file jobs.
    public var activations: UInt64 = 0
    public var spawnFailures: UInt64 = 0
    /// Accept=yes sockets: connections porter accepted.
    public var accepted: UInt64 = 0
    /// Connections closed by porter without being served, by reason.
    public var refused: [String: UInt64] = [:]
    public var idleStops: UInt64 = 0
    /// Path units: times a condition started the service or queued a file.
    public var pathTriggers: UInt64 = 0
    public var jobsQueued: UInt64 = 0
    public var jobsDone: UInt64 = 0
    public var jobsFailed: UInt64 = 0
    /// Runs or instances that ended in failure.
    public var failures: UInt64 = 0
    /// ProxyTo=: connections (and UDP flows) relayed to the backend, and the bytes each way.
    public var proxied: UInt64 = 0
    public var bytesToBackend: UInt64 = 0
    public var bytesToClient: UInt64 = 0
    public var latency = Histogram()
    /// The last process of the unit that ended (status, not a metric).
    public var lastExit: LastExit?

    public init() {}

    public var refusedTotal: UInt64 { refused.values.reduce(0, +) }
}

/// How and when the last process of a unit ended.
public struct LastExit: Codable, Equatable, Sendable {
    public var pid: Int32
    /// The unit or instance name (`echo@3-127.0.0.1:7007-127.0.0.1:5555.service`).
    public var unit: String
    /// "exited, status 0", "killed by SIGTERM"...
    public var status: String
    public var success: Bool
    /// On the monotonic clock (which an upgrade keeps).
    public var at: Instant
    public init(pid: Int32, unit: String, status: String, success: Bool, at: Instant) {
        self.pid = pid
        self.unit = unit
        self.status = status
        self.success = success
        self.at = at
    }
}

/// A Prometheus histogram with fixed buckets (seconds).
public struct Histogram: Codable, Equatable, Sendable {
    public static let bounds: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    /// Observations at or below each bound (not cumulative); the last slot is above every bound.
    public var counts = [UInt64](repeating: 0, count: bounds.count + 1)
    public var sumNanoseconds: UInt64 = 0
    public var count: UInt64 = 0

    public init() {}

    public mutating func observe(nanoseconds ns: Int64) {
        let v = max(ns, 0)
        let seconds = Double(v) / 1e9
        let slot = Self.bounds.firstIndex { seconds <= $0 } ?? Self.bounds.count
        counts[slot] &+= 1
        sumNanoseconds &+= UInt64(v)
        count &+= 1
    }
}

/// Counts of porter itself.
public struct PorterCounters: Codable, Equatable, Sendable {
    public var reloadsOK: UInt64 = 0
    public var reloadsFailed: UInt64 = 0
    public var upgrades: UInt64 = 0
    public var controlRequests: UInt64 = 0
    public var controlRefused: UInt64 = 0
    public init() {}
}

/// What runs at the moment of a scrape, per unit.
public struct UnitGauges: Sendable {
    public var kind: String
    /// Accept=yes instances or per-file jobs running; 0/1 for an Accept=no service.
    public var running: Int
    /// ProxyTo= services: connections and flows open now, and the bytes of
    /// those not counted yet (they are when each closes).
    public var proxied: (open: Int, toBackend: UInt64, toClient: UInt64)? = nil
    /// Per-file jobs waiting.
    public var pending: Int
    public init(kind: String, running: Int, pending: Int = 0) {
        self.kind = kind
        self.running = running
        self.pending = pending
    }
}

/// The standard process metrics, read from /proc by the daemon.
public struct ProcessFacts: Sendable {
    public var cpuSeconds: Double
    public var residentBytes: UInt64
    public var virtualBytes: UInt64
    public var openFDs: Int
    public var maxFDs: UInt64
    public var startTimeSeconds: Double
    public init(cpuSeconds: Double, residentBytes: UInt64, virtualBytes: UInt64, openFDs: Int, maxFDs: UInt64, startTimeSeconds: Double) {
        self.cpuSeconds = cpuSeconds
        self.residentBytes = residentBytes
        self.virtualBytes = virtualBytes
        self.openFDs = openFDs
        self.maxFDs = maxFDs
        self.startTimeSeconds = startTimeSeconds
    }
}

public enum MetricsText {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// A label value as the text format wants it: backslash, double quote
    /// and newline escaped.
    static func label(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func number(_ d: Double) -> String {
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return String(d)
    }

    public static func render(units: [String: UnitCounters], gauges: [String: UnitGauges], porter: PorterCounters,
                              process: ProcessFacts?, version: String) -> String {
        var out = ""
        let names = gauges.keys.sorted()
        func family(_ name: String, _ type: String, _ help: String, _ rows: () -> Void) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            rows()
        }
        // Each family for the kinds of unit it applies to: starts for
        // services and templates, connections for sockets, files for paths.
        let processes: Set<String> = ["service", "template"]
        func perUnit(_ name: String, _ help: String, kinds: Set<String>, _ value: (UnitCounters) -> UInt64) {
            family(name, "counter", help) {
                for n in names where gauges[n].map({ kinds.contains($0.kind) }) ?? false {
                    out += "\(name){unit=\"\(label(n))\"} \(value(units[n] ?? UnitCounters()))\n"
                }
            }
        }
        family("porter_build_info", "gauge", "The running porter's version.") {
            out += "porter_build_info{version=\"\(label(version))\"} 1\n"
        }
        family("porter_unit_info", "gauge", "Each unit porter runs, with its kind (socket, service, template, path).") {
            for n in names { if let g = gauges[n] { out += "porter_unit_info{unit=\"\(label(n))\",kind=\"\(label(g.kind))\"} 1\n" } }
        }
        perUnit("porter_activations_total", "Processes started: Accept=no service runs, per-connection instances, per-file jobs.", kinds: processes) { $0.activations }
        perUnit("porter_spawn_failures_total", "Starts that failed before the program ran (exec, credentials, directories, limits).", kinds: processes) { $0.spawnFailures }
        perUnit("porter_failures_total", "Runs, instances and jobs that ended in failure.", kinds: processes) { $0.failures }
        perUnit("porter_connections_accepted_total", "Connections accepted by porter for Accept=yes sockets.", kinds: ["socket"]) { $0.accepted }
        family("porter_connections_refused_total", "counter", "Connections porter closed without serving them, by reason.") {
            for n in names where gauges[n]?.kind == "socket" {
                for (reason, v) in (units[n]?.refused ?? [:]).sorted(by: { $0.key < $1.key }) {
                    out += "porter_connections_refused_total{unit=\"\(label(n))\",reason=\"\(label(reason))\"} \(v)\n"
                }
            }
        }
        family("porter_running", "gauge", "Processes running now: Accept=yes instances, per-file jobs, 1 for a running Accept=no service.") {
            for n in names { if let g = gauges[n] { out += "porter_running{unit=\"\(label(n))\"} \(g.running)\n" } }
        }
        perUnit("porter_idle_stops_total", "Services and instances stopped for IdleTimeoutSec=.", kinds: processes) { $0.idleStops }
        perUnit("porter_path_triggers_total", "Path units: a condition started the service or queued a file.", kinds: ["path"]) { $0.pathTriggers }
        perUnit("porter_jobs_queued_total", "Per-file jobs queued.", kinds: ["path"]) { $0.jobsQueued }
        perUnit("porter_jobs_done_total", "Per-file jobs that succeeded.", kinds: ["path"]) { $0.jobsDone }
        perUnit("porter_jobs_failed_total", "Per-file jobs that failed.", kinds: ["path"]) { $0.jobsFailed }
        family("porter_jobs_pending", "gauge", "Per-file jobs waiting to run.") {
            for n in names { if let g = gauges[n], g.kind == "path" { out += "porter_jobs_pending{unit=\"\(label(n))\"} \(g.pending)\n" } }
        }
        family("porter_proxy_connections_total", "counter", "ProxyTo=: connections (and UDP flows) relayed to the backend.") {
            for n in names where gauges[n]?.proxied != nil { out += "porter_proxy_connections_total{unit=\"\(label(n))\"} \(units[n]?.proxied ?? 0)\n" }
        }
        family("porter_proxy_open_connections", "gauge", "ProxyTo=: connections (and UDP flows) open now, waiting or relaying.") {
            for n in names { if let p = gauges[n]?.proxied { out += "porter_proxy_open_connections{unit=\"\(label(n))\"} \(p.open)\n" } }
        }
        family("porter_proxy_bytes_total", "counter", "ProxyTo=: bytes relayed, by direction.") {
            for n in names {
                guard let p = gauges[n]?.proxied else { continue }
                let c = units[n] ?? UnitCounters()
                out += "porter_proxy_bytes_total{unit=\"\(label(n))\",direction=\"to_backend\"} \(c.bytesToBackend &+ p.toBackend)\n"
                out += "porter_proxy_bytes_total{unit=\"\(label(n))\",direction=\"to_client\"} \(c.bytesToClient &+ p.toClient)\n"
            }
        }
        family("porter_activation_latency_seconds", "histogram",
               "From the event (a connection, a readable socket, a file) to the spawn: the exec for Accept=no services, the clone for instances and jobs.") {
            for n in names where gauges[n] != nil {
                guard let h = units[n]?.latency, h.count > 0 else { continue }
                var cumulative: UInt64 = 0
                for (i, bound) in Histogram.bounds.enumerated() {
                    cumulative += h.counts[i]
                    out += "porter_activation_latency_seconds_bucket{unit=\"\(label(n))\",le=\"\(bound)\"} \(cumulative)\n"
                }
                out += "porter_activation_latency_seconds_bucket{unit=\"\(label(n))\",le=\"+Inf\"} \(h.count)\n"
                out += "porter_activation_latency_seconds_sum{unit=\"\(label(n))\"} \(Double(h.sumNanoseconds) / 1e9)\n"
                out += "porter_activation_latency_seconds_count{unit=\"\(label(n))\"} \(h.count)\n"
            }
        }
        family("porter_reloads_total", "counter", "Reloads (SIGHUP or porter reload), by result.") {
            out += "porter_reloads_total{result=\"ok\"} \(porter.reloadsOK)\n"
            out += "porter_reloads_total{result=\"failed\"} \(porter.reloadsFailed)\n"
        }
        family("porter_upgrades_total", "counter", "Upgrades in place (porter upgrade) this process went through.") {
            out += "porter_upgrades_total \(porter.upgrades)\n"
        }
        family("porter_control_requests_total", "counter", "Requests on the control socket, by result.") {
            out += "porter_control_requests_total{result=\"served\"} \(porter.controlRequests)\n"
            out += "porter_control_requests_total{result=\"refused\"} \(porter.controlRefused)\n"
        }
        if let p = process {
            family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.") {
                out += "process_cpu_seconds_total \(number(p.cpuSeconds))\n"
            }
            family("process_open_fds", "gauge", "Number of open file descriptors.") { out += "process_open_fds \(p.openFDs)\n" }
            family("process_max_fds", "gauge", "Maximum number of open file descriptors.") { out += "process_max_fds \(p.maxFDs)\n" }
            family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.") {
                out += "process_virtual_memory_bytes \(p.virtualBytes)\n"
            }
            family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.") {
                out += "process_resident_memory_bytes \(p.residentBytes)\n"
            }
            family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.") {
                out += "process_start_time_seconds \(number(p.startTimeSeconds))\n"
            }
        }
        return out
    }
}
