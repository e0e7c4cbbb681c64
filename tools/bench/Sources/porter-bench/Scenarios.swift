import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Collects what every scenario found.
final class Results {
    var tables: [Table] = []
    var targets: [Target] = []
    var panels: [Panel] = []
    var skipped: [String: String] = [:]
    var notes: [String] = []
}

/// The systems usable for a role, in a rotating order so no system always
/// runs first (or last) in a repetition.
func usable(_ role: (System) -> Bool, results: Results) -> [System] {
    Systems.all.filter { s in
        if let why = s.unavailable() {
            results.skipped[s.name] = why
            return false
        }
        return role(s)
    }
}

func rotated<T>(_ a: [T], by k: Int) -> [T] {
    guard !a.isEmpty else { return a }
    let r = k % a.count
    return Array(a[r...] + a[..<r])
}

// MARK: - spawn

func scenarioSpawn(_ o: Options, _ results: Results) {
    let systems = usable({ $0.spawn != nil }, results: results)
    for unix in [false, true] {
        let concs = [1, 16]
        // samples[system][conc] = [(rate, fb50, fb99, eof50, errors)]
        var samples: [String: [Int: [(Double, Double, Double, Double, Int)]]] = [:]
        var notes: [String: String] = [:]
        for rep in 0..<o.reps {
            for sys in rotated(systems, by: rep) {
                let address: Address = unix ? .unix("\(Bench.work)/spawn-\(Bench.nextID()).sock") : .tcp(port: Bench.ports(1))
                log("spawn \(unix ? "unix" : "tcp"): \(sys.name) rep \(rep + 1)")
                guard let run = sys.spawn!(address) else {
                    notes[sys.name] = "n/a"
                    continue
                }
                defer { run.stop() }
                guard waitListening(address, pids: run.pids) else {
                    notes[sys.name] = "did not listen"
                    continue
                }
                _ = oneConnection(address)  // warm-up
                for c in concs {
                    let s = loadConnections([address], total: o.spawnN, concurrency: c, maxSeconds: o.maxSeconds)
                    samples[sys.name, default: [:]][c, default: []].append(
                        (s.rate, percentile(s.firstByte, 0.5), percentile(s.firstByte, 0.99), percentile(s.eof, 0.5), s.errors))
                }
            }
        }
        for c in concs {
            func med(_ name: String, _ f: ((Double, Double, Double, Double, Int)) -> Double) -> Double {
                median((samples[name]?[c] ?? []).map(f))
            }
            let floorRate = med("floor") { $0.0 }, porterRate = med("porter") { $0.0 }
            var t = Table(title: "spawn, \(unix ? "Unix" : "TCP"), concurrency \(c): \(o.spawnN) connections to a per-connection `hello`, median of \(o.reps)",
                          columns: ["system", "conn/s", "÷ floor", "porter ÷ system", "first byte p50 µs", "p99 µs", "EOF p50 µs", "errors"])
            var bars: [(String, Double)] = []
            for sys in systems where sys.spawn != nil {
                guard samples[sys.name]?[c] != nil else {
                    t.rows.append([sys.name, "-", "-", "-", "-", "-", "-", notes[sys.name] ?? "n/a"])
                    continue
                }
                let rate = med(sys.name) { $0.0 }
                let errors = (samples[sys.name]?[c] ?? []).map { $0.4 }.reduce(0, +)
                t.rows.append([sys.name, fmt(rate), ratio(rate, floorRate), ratio(porterRate, rate),
                               fmt(med(sys.name) { $0.1 }, 0), fmt(med(sys.name) { $0.2 }, 0), fmt(med(sys.name) { $0.3 }, 0), String(errors)])
                if sys.kind != .reference { bars.append((sys.name, rate / floorRate)) }
            }
            results.tables.append(t)
            results.panels.append(Panel(title: "spawn \(unix ? "Unix" : "TCP") c=\(c): conn/s", higherIsBetter: true, bars: bars))
            let goal = c == 1 ? 0.95 : 1.0
            results.targets.append(Target(
                name: "spawn \(unix ? "Unix" : "TCP") c=\(c)", goal: "≥ \(goal) × floor conn/s",
                measured: ratio(porterRate, floorRate), met: porterRate.isNaN ? nil : porterRate / floorRate >= goal))
            let porterP99 = med("porter") { $0.2 }
            let peerP99 = systems.filter { $0.kind == .peer }.map { med($0.name) { $0.2 } }.filter { !$0.isNaN }
            if let best = peerP99.min() {
                results.targets.append(Target(
                    name: "spawn \(unix ? "Unix" : "TCP") c=\(c) p99", goal: "first-byte p99 ≤ every peer's",
                    measured: "\(fmt(porterP99, 0)) µs vs best peer \(fmt(best, 0)) µs", met: porterP99 <= best))
            }
        }
    }
}

// MARK: - cold

func scenarioCold(_ o: Options, _ results: Results) {
    let systems = usable({ $0.cold != nil }, results: results)
    struct Slot {
        var system: System
        var address: Address
        var pidfile: String
        var run: Running?
        var firstByte: [Double] = []
        var failures = 0
    }
    var slots: [Slot] = []
    for sys in systems {
        let address = Address.tcp(port: Bench.ports(1))
        let pidfile = "\(Bench.work)/cold-\(Bench.nextID()).pid"
        var slot = Slot(system: sys, address: address, pidfile: pidfile)
        if !sys.oneShotCold {
            guard let run = sys.cold!(address, pidfile), waitListening(address, pids: run.pids) else {
                results.skipped[sys.name] = "cold: did not start"
                continue
            }
            slot.run = run
        }
        slots.append(slot)
    }
    log("cold: \(o.coldTrials) trials, systems alternating")
    let deadline = nowNS() + UInt64(o.maxSeconds * 3 * 1e9)
    for trial in 0..<o.coldTrials where nowNS() < deadline {
        for i in rotated(Array(slots.indices), by: trial) {
            var s = slots[i]
            if s.system.oneShotCold {
                guard let run = s.system.cold!(s.address, s.pidfile), waitListening(s.address, pids: run.pids) else {
                    s.failures += 1
                    slots[i] = s
                    continue
                }
                s.run = run
            }
            unlink(s.pidfile)
            if let r = oneConnection(s.address) {
                s.firstByte.append(r.firstByte)
            } else {
                s.failures += 1
            }
            // The daemon writes its pid once it has answered; wait for it to be gone.
            let until = nowNS() + 5_000_000_000
            var pid: pid_t = 0
            while nowNS() < until {
                if let p = pid_t(readText(s.pidfile).trimmingCharacters(in: .whitespacesAndNewlines)) { pid = p; break }
                usleep(200)
            }
            if s.system.oneShotCold, let run = s.run {
                for p in run.pids { var st: Int32 = 0; waitpid(p, &st, 0) }
                s.run = nil
            } else {
                while pid > 0 && nowNS() < until && (kill(pid, 0) == 0) { usleep(200) }
            }
            slots[i] = s
            sleepSeconds(0.02)
        }
    }
    var porterShare: [Double] = []
    for s in slots {
        if s.system.kind == .porter, let dir = s.run?.dir {
            for line in readText(dir + "/porter.log").split(separator: "\n") {
                guard let r = line.range(of: " in "), line.contains("started pid") else { continue }
                let d = String(line[r.upperBound...])
                if d.hasSuffix("us"), let v = Double(d.dropLast(2)) { porterShare.append(v) }
                else if d.hasSuffix("ms"), let v = Double(d.dropLast(2)) { porterShare.append(v * 1000) }
            }
        }
        s.run?.stop()
    }
    let floor = slots.first { $0.system.kind == .floor }.map { percentile($0.firstByte, 0.5) } ?? .nan
    let porter = slots.first { $0.system.kind == .porter }.map { percentile($0.firstByte, 0.5) } ?? .nan
    var t = Table(title: "cold: connect → first byte of an Accept=no service that is not running, \(o.coldTrials) trials, systems alternating",
                  note: "The service (`fdwait`) answers one connection and exits, so every trial starts it. porter's own share (readable event → child exec'd), median: \(fmt(median(porterShare), 0)) µs.",
                  columns: ["system", "trials ok", "p50 µs", "p90 µs", "p99 µs", "max µs", "p50 ÷ floor", "porter ÷ system", "failures"])
    var bars: [(String, Double)] = []
    for s in slots {
        let p50 = percentile(s.firstByte, 0.5)
        t.rows.append([s.system.name, String(s.firstByte.count), fmt(p50, 0), fmt(percentile(s.firstByte, 0.9), 0),
                       fmt(percentile(s.firstByte, 0.99), 0), fmt(s.firstByte.max() ?? .nan, 0), ratio(p50, floor), ratio(porter, p50), String(s.failures)])
        bars.append((s.system.name, p50 / floor))
    }
    results.tables.append(t)
    results.panels.append(Panel(title: "cold start: connect → first byte p50", higherIsBetter: false, bars: bars))
    results.targets.append(Target(name: "cold", goal: "≤ 1.10 × floor latency (p50)", measured: ratio(porter, floor),
                                  met: porter.isNaN ? nil : porter / floor <= 1.10))
}

// MARK: - idle

func scenarioIdle(_ o: Options, _ results: Results) {
    let systems = usable({ $0.many != nil }, results: results)
    var t = Table(title: "idle: \(o.idleServices) services configured, no traffic, \(fmt(o.idleSeconds, 0)) s",
                  note: "Anonymous: memory the kernel cannot reclaim. porter's static binary shares its text with nobody, so PSS counts all of it; the text column says what it costs.",
                  columns: ["system", "processes", "RSS kB", "PSS kB", "Anonymous kB", "context switches", "CPU ticks", "text RSS/PSS kB"])
    var mem: [String: Memory] = [:]
    var switches: [String: Int] = [:]
    var bars: [(String, Double)] = []
    for sys in systems {
        let port0 = Bench.ports(o.idleServices)
        log("idle: \(sys.name)")
        guard let run = sys.many!(port0, o.idleServices)?() else { continue }
        defer { run.stop() }
        let deadline = nowNS() + 15_000_000_000
        while listeningPorts(port0...(port0 + UInt16(o.idleServices - 1))) < o.idleServices && nowNS() < deadline { usleep(1000) }
        sleepSeconds(1)
        let a0 = activity(run.pids)
        sleepSeconds(o.idleSeconds)
        let a1 = activity(run.pids)
        let m = Memory.of(run.pids)
        mem[sys.name] = m
        switches[sys.name] = a1.switches - a0.switches
        let text = sys.kind == .porter ? Memory.text(of: run.pids[0]) : nil
        t.rows.append([sys.name, String(run.pids.count), String(m.rss), String(m.pss), String(m.anonymous),
                       String(a1.switches - a0.switches), String(a1.ticks - a0.ticks), text.map { "\($0.rss) / \($0.pss)" } ?? ""])
    }
    results.tables.append(t)
    if let floor = mem["floor"] {
        for s in systems { if let m = mem[s.name] { bars.append((s.name, Double(m.pss) / Double(floor.pss))) } }
        results.panels.append(Panel(title: "idle: PSS", higherIsBetter: false, bars: bars))
    }
    if let p = mem["porter"] {
        results.targets.append(Target(name: "idle wake-ups", goal: "0 context switches in \(fmt(o.idleSeconds, 0)) s",
                                      measured: String(switches["porter"] ?? -1), met: switches["porter"] == 0))
        if let x = mem["xinetd"] {
            results.targets.append(Target(name: "idle anonymous memory", goal: "≤ xinetd's (\(x.anonymous) kB)",
                                          measured: "\(p.anonymous) kB", met: p.anonymous <= x.anonymous))
            results.targets.append(Target(name: "idle PSS", goal: "≤ 2 × xinetd's (\(2 * x.pss) kB)",
                                          measured: "\(p.pss) kB", met: p.pss <= 2 * x.pss))
        }
    }
}

// MARK: - scale

func scenarioScale(_ o: Options, _ results: Results) {
    let systems = usable({ $0.many != nil }, results: results)
    var t = Table(title: "scale: \(o.scaleServices) TCP services: start → all listening, memory, one hello per port",
                  note: "Ready: from starting the process until every port is in LISTEN (sock_diag, polled every 0.5 ms). Memory at that moment and 1 s later.",
                  columns: ["system", "ready ms", "÷ floor", "porter ÷ system", "RSS kB at ready", "RSS kB after 1 s", "PSS kB after 1 s", "hello ok"])
    var ready: [String: Double] = [:]
    var settled: [String: Memory] = [:]
    for sys in systems {
        let port0 = Bench.ports(o.scaleServices)
        let range = port0...(port0 + UInt16(o.scaleServices - 1))
        log("scale: \(sys.name)")
        guard let launch = sys.many!(port0, o.scaleServices) else {
            t.rows.append([sys.name, "-", "-", "-", "-", "-", "-", "n/a (one process per socket)"])
            continue
        }
        // Page-cache the configuration as a running system would have it.
        sleepSeconds(0.2)
        let t0 = nowNS()
        guard let run = launch() else { continue }
        defer { run.stop() }
        var ms = Double.nan
        let deadline = t0 + UInt64(o.maxSeconds * 1e9)
        while nowNS() < deadline {
            if listeningPorts(range) == o.scaleServices {
                ms = Double(nowNS() - t0) / 1e6
                break
            }
            if !run.alive { break }
            usleep(500)
        }
        let atReady = Memory.of(run.pids)
        sleepSeconds(1)
        let later = Memory.of(run.pids)
        let check = loadConnections((0..<o.scaleServices).map { Address.tcp(port: port0 + UInt16($0)) },
                                    total: o.scaleServices, concurrency: 16, maxSeconds: o.maxSeconds)
        ready[sys.name] = ms
        settled[sys.name] = later
        t.rows.append([sys.name, fmt(ms), "", "", String(atReady.rss), String(later.rss), String(later.pss), "\(check.ok)/\(o.scaleServices)"])
    }
    let floor = ready["floor"] ?? .nan, porter = ready["porter"] ?? .nan
    for i in t.rows.indices where t.rows[i][1] != "-" {
        let v = ready[t.rows[i][0]] ?? .nan
        t.rows[i][2] = ratio(v, floor)
        t.rows[i][3] = ratio(porter, v)
    }
    results.tables.append(t)
    results.panels.append(Panel(title: "scale: \(o.scaleServices) services, start → all listening", higherIsBetter: false,
                                bars: systems.compactMap { s in ready[s.name].map { (s.name, $0 / floor) } }))
    results.targets.append(Target(name: "scale time", goal: "all listening ≤ 1.2 × floor", measured: ratio(porter, floor),
                                  met: porter.isNaN ? nil : porter / floor <= 1.2))
    if let m = settled["porter"] {
        results.targets.append(Target(name: "scale memory", goal: "RSS < 8 MiB (8192 kB) with \(o.scaleServices) services",
                                      measured: "\(m.rss) kB", met: m.rss < 8192))
    }
}
