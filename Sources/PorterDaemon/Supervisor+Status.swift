import Glibc
import PorterCore
import PorterSys

/// `porter status`: what each unit is doing now, read off the runtimes and
/// the counts. Nothing here changes anything.
extension Supervisor {
    func statusReport(now: Instant) -> StatusReport {
        let seconds: (Instant) -> Double = { max(0, Double(($0 - now).nanoseconds) / 1e9) }
        let ago: (Instant) -> Double = { max(0, Double((now - $0).nanoseconds) / 1e9) }
        func exit(_ name: String) -> StatusReport.Exit? {
            stats.units[name]?.lastExit.map {
                StatusReport.Exit(pid: $0.pid, unit: $0.unit, status: $0.status, success: $0.success, secondsAgo: ago($0.at))
            }
        }
        func counted(_ u: inout StatusReport.Unit) {
            let c = stats.units[u.name] ?? UnitCounters()
            u.activations = c.activations
            u.spawnFailures = c.spawnFailures
            u.failures = c.failures
            u.lastExit = exit(u.name)
            if c.idleStops > 0 { u.idleStops = c.idleStops }
        }
        var units: [StatusReport.Unit] = []
        var instancePIDs: [String: [Int32]] = [:]
        for (pid, inst) in instances {
            let template: String?
            switch inst.owner {
            case .socket(let id): template = sockets[id]?.template?.config.name.description
            case .path(let id, _): template = paths[id]?.template?.config.name.description
            }
            if let template { instancePIDs[template, default: []].append(pid) }
        }

        var templates: [String: (via: [String], running: Int)] = [:]
        for s in sockets {
            var u = StatusReport.Unit(name: s.name, kind: "socket", state: "listening", paused: paused.contains(s.config.name))
            u.activates = s.config.activates.description
            u.listen = s.config.listens.map { $0.kind == .stream ? $0.address.description : "\($0.address) (\($0.kind == .datagram ? "datagram" : "seqpacket"))" }
            let c = stats.units[s.name] ?? UnitCounters()
            u.refused = c.refusedTotal
            u.activations = c.activations
            if let m = s.acceptMachine {
                // Where porter accepts: its connections, its limit, its machine's state.
                u.connectionsNow = m.running
                u.connectionsTotal = c.accepted
                u.maxConnections = m.maxConnections
                switch m.state {
                case .listening: u.state = "listening"
                case .paused: u.state = "at-limit"
                case .backingOff(let until):
                    u.state = "backing-off"
                    u.backoffFor = seconds(until)
                case .closed: u.state = "closed"
                }
            }
            switch s.handler {
            case .instances(let i):
                u.mode = "accept"
                let t = i.template.config.name.description
                templates[t, default: ([], 0)].via.append(s.name)
                templates[t]!.running = instancePIDs[t]?.count ?? 0
            case .proxy:
                u.mode = "proxy"
            case .internal(let link):
                u.mode = "internal"
                u.activates = "internal \(link.service.rawValue)"
            case .service(let link):
                u.mode = "pass"
                let service = link.id.flatMap { services[$0] }
                if let service, service.machine.pid != nil || service.machine.stateName == "starting" {
                    // The service has it (watched only for activity, if at all).
                    u.state = "passed"
                    u.pids = service.machine.pid.map { [$0] } ?? []
                } else if s.watched {
                    u.state = "listening"
                } else {
                    u.state = service?.machine.stateName ?? "waiting"
                }
            }
            if let until = s.pausedUntil {
                u.state = "paused-by-limit"
                u.backoffFor = seconds(until)
            }
            if u.paused { u.state = "paused" }
            units.append(u)
        }
        for (name, retry) in bindRetries {
            var u = StatusReport.Unit(name: name.description, kind: "socket", state: "waiting-for-address", paused: paused.contains(name))
            u.activates = retry.config.activates.description
            u.listen = retry.config.listens.map(\.address.description)
            u.backoffFor = seconds(retry.at)
            units.append(u)
        }
        for s in services where !s.retired {
            let reloading = s.machine.state.isReady && (s.reload != nil || s.reloading)
            var u = StatusReport.Unit(name: s.name, kind: "service", state: reloading ? "reloading" : s.machine.stateName,
                                      paused: paused.contains(s.prepared.config.name))
            u.mode = "service"
            counted(&u)
            u.triggeredBy = s.triggers.compactMap { sockets[$0]?.name } + s.paths.compactMap { paths[$0]?.name }
            u.pids = [s.machine.pid, s.control?.pid].compactMap { $0 }
            u.statusText = s.status
            if let px = s.proxy {
                let c = stats.units[s.name] ?? UnitCounters()
                u.mode = "proxy"
                u.proxyTo = s.prepared.config.proxyTo?.description
                u.connectionsNow = px.relays.count + px.flows.count
                u.connectionsTotal = c.proxied
                // Bytes of relays still open count too.
                let open = px.relays.compactMap { relays[$0] }
                u.bytesToBackend = c.bytesToBackend + open.reduce(0) { $0 + $1.up.moved }
                u.bytesToClient = c.bytesToClient + open.reduce(0) { $0 + $1.down.moved }
            }
            switch s.machine.state {
            case .running(let run):
                if let idle = s.machine.policy.idleTimeout, run.ready { u.idleCheckIn = seconds(run.lastActivity + idle) }
                if !run.ready { u.state = "starting" }
            case .holdingOff(let until):
                u.backoffFor = seconds(until)
            case .waitingRestart(let until):
                u.backoffFor = seconds(until)
            case .listening, .starting, .freezing, .stopping, .remaining, .stopped:
                break
            }
            if u.paused, s.machine.pid == nil { u.state = "paused" }
            units.append(u)
        }
        for p in paths {
            var u = StatusReport.Unit(name: p.name, kind: "path", state: p.failed ? "failed" : "watching", paused: paused.contains(p.config.name))
            u.activates = p.config.activates.description
            u.watches = p.config.conditions.map(\.description)
            let c = stats.units[p.name] ?? UnitCounters()
            u.triggers = c.pathTriggers
            if let q = p.queue {
                u.mode = "per-file"
                let t = q.template.config.name.description
                templates[t, default: ([], 0)].via.append(p.name)
                templates[t]!.running = instancePIDs[t]?.count ?? 0
                u.jobs = StatusReport.Jobs(running: q.jobs.runningCount, pending: q.jobs.waiting, queued: c.jobsQueued,
                                           done: c.jobsDone, failed: c.jobsFailed)
            } else {
                u.mode = "service"
            }
            if u.paused { u.state = "paused" }
            units.append(u)
        }
        for (name, t) in templates {
            var u = StatusReport.Unit(name: name, kind: "template", state: t.running > 0 ? "running" : "waiting",
                                      paused: UnitName.parse(name).map { paused.contains($0) } ?? false)
            counted(&u)
            u.triggeredBy = t.via.sorted()
            u.pids = (instancePIDs[name] ?? []).sorted()
            u.connectionsNow = t.running
            units.append(u)
        }
        units.sort { a, b in
            let ka = UnitName.parse(a.name), kb = UnitName.parse(b.name)
            if let ka, let kb, ka != kb { return ka < kb }
            return a.name < b.name
        }
        let porter = StatusReport.Porter(version: Commands.version, pid: getpid(), uptimeSeconds: ago(stats.started),
                                         configDirectories: place?.directories ?? [], controlSocket: own.controlPath,
                                         metricsListen: own.metrics.map { $0.address.description }, counters: stats.porter)
        return StatusReport(porter: porter, units: units)
    }
}
