import Glibc
import PorterCore
import PorterSys

/// The Prometheus endpoint: `GET /metrics` in the text exposition format.
/// The counts are kept as things happen; what runs now and the process
/// facts are read at the scrape.
extension Supervisor {
    func metricsRequest(_ e: Exchange, _ request: HTTPRequest) {
        let head = request.method == "HEAD"
        switch request.path {
        case "/metrics":
            let body = MetricsText.render(units: stats.units, gauges: gauges(), porter: stats.porter,
                                          process: ProcessInfo.facts(), version: Commands.version)
            answer(e, HTTPRequest.response(status: 200, reason: "OK", contentType: MetricsText.contentType, body: body, head: head))
        case "/":
            answer(e, HTTPRequest.response(status: 200, reason: "OK", contentType: "text/plain; charset=utf-8",
                                           body: "porter \(Commands.version): metrics at /metrics\n", head: head))
        default:
            answer(e, HTTPRequest.response(status: 404, reason: "Not Found", contentType: "text/plain; charset=utf-8",
                                           body: "404 Not Found: porter serves /metrics\n", head: head))
        }
    }

    /// What runs now, per unit.
    func gauges() -> [String: UnitGauges] {
        var g: [String: UnitGauges] = [:]
        var perTemplate: [String: Int] = [:]
        for (_, inst) in instances {
            switch inst.owner {
            case .socket(let id): if let t = sockets[id]?.template { perTemplate[t.config.name.description, default: 0] += 1 }
            case .path(let id, _): if let t = paths[id]?.template { perTemplate[t.config.name.description, default: 0] += 1 }
            }
        }
        for s in sockets {
            g[s.name] = UnitGauges(kind: "socket", running: s.instances?.machine.running ?? 0)
            if let t = s.template { g[t.config.name.description] = UnitGauges(kind: "template", running: perTemplate[t.config.name.description] ?? 0) }
        }
        for s in services where !s.retired {
            var gauge = UnitGauges(kind: "service", running: s.machine.pid == nil ? 0 : 1)
            if let px = s.proxy {
                let open = px.relays.compactMap { relays[$0] }
                gauge.proxied = (px.relays.count + px.flows.count, open.reduce(0) { $0 + $1.up.moved }, open.reduce(0) { $0 + $1.down.moved })
            }
            g[s.name] = gauge
        }
        for p in paths {
            g[p.name] = UnitGauges(kind: "path", running: p.queue?.jobs.runningCount ?? 0, pending: p.queue?.jobs.waiting ?? 0)
            if let t = p.template { g[t.config.name.description] = UnitGauges(kind: "template", running: perTemplate[t.config.name.description] ?? 0) }
        }
        return g
    }
}

/// The standard process metrics of porter itself, from /proc.
enum ProcessInfo {
    static func facts() -> ProcessFacts? {
        guard let stat = try? Files.read("/proc/self/stat", limit: 4096), let close = stat.lastIndex(of: ")") else { return nil }
        // After "comm)": state(3) ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24).
        let f = stat[stat.index(after: close)...].split(separator: " ")
        guard f.count > 22, let utime = Double(f[11]), let stime = Double(f[12]), let start = Double(f[19]),
              let vsize = UInt64(f[20]), let rss = UInt64(f[21]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        var boot: Double = 0
        if let s = try? Files.read("/proc/stat", limit: 1 << 20),
           let line = s.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }) {
            boot = Double(line.dropFirst(6).trimmingWhitespace()) ?? 0
        }
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let fds = ((try? Files.list("/proc/self/fd")) ?? []).count - 1  // less the one listing it
        return ProcessFacts(cpuSeconds: (utime + stime) / ticks, residentBytes: rss * page, virtualBytes: vsize,
                            openFDs: max(0, fds), maxFDs: UInt64(limit.rlim_cur), startTimeSeconds: boot + start / ticks)
    }
}
