import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// proxy (issue 12): relays side by side in one run. The backends run
/// already (a `sink` for bulk, `limit-inproc` for short connections); each
/// relay is started in front of them in turn, and the repetitions rotate.
/// - direct: no relay, the client talks to the backend (the floor);
/// - porter: `ProxyTo=` (the service porter starts is a placeholder; the
///   backend is already up), LogConnections=no as the peers log nothing;
/// - haproxy: TCP mode, one thread, `option splice-auto`;
/// - socat: `TCP-LISTEN,fork` → `TCP:`;
/// - systemd-socket-proxyd, started by systemd-socket-activate.
/// Measured: bulk MiB/s through the relay into sink, short connections at
/// concurrency 1 and 16, porter's cost per idle relayed connection, and the
/// cold path (first byte while the backend starts) against
/// systemd-socket-activate + systemd-socket-proxyd --exit-idle-time.
func scenarioProxy(_ o: Options, _ results: Results) {
    guard Systems.porter.unavailable() == nil else { return }
    let sinkPort = Bench.ports(1), helloPort = Bench.ports(1)
    guard let sink = startProcess([Bench.build + "/sink", "--listen", "127.0.0.1:\(sinkPort)"], log: "/dev/null"),
          let hello = startProcess([Bench.build + "/limit-inproc", "--listen", "127.0.0.1:\(helloPort)"], log: "/dev/null") else { return }
    defer {
        stopProcess(sink)
        stopProcess(hello)
    }
    guard waitListening(.tcp(port: sinkPort), pids: [sink]), waitListening(.tcp(port: helloPort), pids: [hello]) else { return }
    let proxyd = ["/lib/systemd/systemd-socket-proxyd", "/usr/lib/systemd/systemd-socket-proxyd"].first { FileManager.default.isExecutableFile(atPath: $0) }
    let activate = which("systemd-socket-activate")
    var relays: [(String, (UInt16, UInt16) -> Running?)] = [("direct", { _, _ in Running(pids: [], dir: "") })]
    relays.append(("porter", { front, back in
        let dir = scratch("porter-proxy")
        let conf = dir + "/units"
        try? FileManager.default.createDirectory(atPath: conf, withIntermediateDirectories: true)
        writeText(conf + "/relay.socket", "[Socket]\nListenStream=127.0.0.1:\(front)\nMaxConnections=1024\nBacklog=4096\nLogConnections=no\n")
        writeText(conf + "/relay.service", "[Service]\nExecStart=/bin/sleep 100000\nProxyTo=127.0.0.1:\(back)\n")
        guard let pid = startProcess([Bench.porter, "run", "--config-dir", conf, "--control", "none", "--log-level", "warning"], log: dir + "/porter.log") else { return nil }
        return Running(pids: [pid], dir: dir)
    }))
    if which("haproxy") != nil {
        relays.append(("haproxy", { front, back in
            let dir = scratch("haproxy")
            writeText(dir + "/haproxy.cfg", """
                global
                    nbthread 1
                    maxconn 4096
                defaults
                    mode tcp
                    timeout connect 5s
                    timeout client 60s
                    timeout server 60s
                    option splice-auto
                frontend relay
                    bind 127.0.0.1:\(front)
                    default_backend be
                backend be
                    server s1 127.0.0.1:\(back)

                """)
            return start("haproxy", ["haproxy", "-db", "-f", dir + "/haproxy.cfg"])
        }))
    } else {
        results.notes.append("haproxy: not installed (apt-get install haproxy)")
    }
    if which("socat") != nil {
        relays.append(("socat", { front, back in
            start("socat", ["socat", "TCP-LISTEN:\(front),bind=127.0.0.1,fork,reuseaddr,backlog=4096", "TCP:127.0.0.1:\(back)"])
        }))
    } else {
        results.notes.append("socat: not installed (apt-get install socat)")
    }
    if let proxyd, let activate {
        relays.append(("systemd-socket-proxyd", { front, back in
            start("proxyd", [activate, "-l", "127.0.0.1:\(front)", proxyd, "127.0.0.1:\(back)"], environment: ["SYSTEMD_LOG_LEVEL": "notice"])
        }))
    } else {
        results.notes.append("systemd-socket-proxyd: not found (apt-get install systemd; PID 1 need not be systemd)")
    }

    var bulk: [String: [Double]] = [:]
    var rate: [String: [Int: [Double]]] = [:]
    var firstByte: [String: [Int: [Double]]] = [:]
    var errors: [String: Int] = [:]
    let bulkBytes = o.proxyBytes
    for rep in 0..<o.reps {
        // Rotate the order: whoever runs first or last gets no edge.
        let order = Array(relays[rep % relays.count..<relays.count] + relays[0..<(rep % relays.count)])
        for (name, startRelay) in order {
            log("proxy: \(name) rep \(rep + 1)")
            for (back, measure) in [(sinkPort, "bulk"), (helloPort, "conn")] {
                let front = name == "direct" ? back : Bench.ports(1)
                guard let run = startRelay(front, back) else { continue }
                defer { run.stop() }
                guard name == "direct" || waitListening(.tcp(port: front), pids: run.pids) else {
                    results.notes.append("proxy: \(name) did not listen")
                    continue
                }
                if measure == "bulk" {
                    _ = bulkThrough(front, bytes: 1 << 20)  // warm-up (starts socket-activated relays)
                    if let mib = bulkThrough(front, bytes: bulkBytes) { bulk[name, default: []].append(mib) } else { errors[name, default: 0] += 1 }
                } else {
                    _ = oneConnection(.tcp(port: front))
                    for c in [1, 16] {
                        let s = loadConnections([.tcp(port: front)], total: o.spawnN, concurrency: c, maxSeconds: o.maxSeconds)
                        rate[name, default: [:]][c, default: []].append(s.rate)
                        firstByte[name, default: [:]][c, default: []].append(median(s.firstByte))
                        errors[name, default: 0] += s.errors
                    }
                }
            }
        }
    }
    let names = relays.map(\.0)
    let directBulk = median(bulk["direct"] ?? [])
    var tb = Table(title: "proxy: \(bulkBytes >> 20) MiB through the relay into sink, median of \(o.reps)",
                   note: "One connection: BULK header, the bytes, the sink's count back. All relays in one run, order rotated per repetition.",
                   columns: ["relay", "MiB/s", "÷ direct", "errors"])
    for n in names {
        let m = median(bulk[n] ?? [])
        tb.rows.append([n, fmt(m, 0), ratio(m, directBulk), String(errors[n] ?? 0)])
    }
    results.tables.append(tb)
    var tc = Table(title: "proxy: \(o.spawnN) short connections through the relay to limit-inproc, median of \(o.reps)",
                   columns: ["relay", "c=1 conn/s", "÷ direct", "c=1 first byte p50 µs", "c=16 conn/s", "÷ direct", "c=16 first byte p50 µs"])
    for n in names {
        var row = [n]
        for c in [1, 16] {
            let r = median(rate[n]?[c] ?? [])
            row += [fmt(r, 0), ratio(r, median(rate["direct"]?[c] ?? [])), fmt(median(firstByte[n]?[c] ?? []), 0)]
        }
        tc.rows.append(row)
    }
    results.tables.append(tc)

    let porterBulk = median(bulk["porter"] ?? []) / directBulk
    results.targets.append(Target(name: "proxy bulk", goal: "≥ 0.90 × direct", measured: String(format: "%.2f", porterBulk), met: porterBulk >= 0.9))
    for c in [1, 16] {
        let p = median(rate["porter"]?[c] ?? []), h = median(rate["haproxy"]?[c] ?? [])
        results.targets.append(Target(name: "proxy short connections, c=\(c)", goal: "≥ HAProxy's rate",
                                      measured: h.isNaN ? fmt(p, 0) + " conn/s (no HAProxy)" : "\(fmt(p, 0)) vs \(fmt(h, 0)) conn/s",
                                      met: h.isNaN ? nil : p >= h))
    }
    proxyIdleCost(o, results, backend: helloPort)
    proxyCold(o, results, proxyd: proxyd, activate: activate)
}

/// BULK n through `port` into sink; MiB/s, nil on failure.
func bulkThrough(_ port: UInt16, bytes: Int) -> Double? {
    let t0 = nowNS()
    guard let fd = connectedSocket(port) else { return nil }
    defer { close(fd) }
    let header = Array("BULK \(bytes)\n".utf8)
    _ = header.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    let chunk = [UInt8](repeating: 0x61, count: 1 << 20)
    var sent = 0
    while sent < bytes {
        let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, min($0.count, bytes - sent)) }
        if n <= 0 { return nil }
        sent += n
    }
    var buf = [UInt8](repeating: 0, count: 64)
    let n = read(fd, &buf, buf.count)
    guard n > 0, String(decoding: buf[0..<n], as: UTF8.self).hasPrefix(String(bytes)) else { return nil }
    return Double(bytes) / 1_048_576 / (Double(nowNS() - t0) / 1e9)
}

/// What an idle relayed connection costs porter: 400 connections opened
/// through it (each relaying, no data), porter's RSS, anonymous memory and
/// fds before and after.
func proxyIdleCost(_ o: Options, _ results: Results, backend: UInt16) {
    // A backend that keeps connections open: a sink child waits for a
    // BULK line that never comes.
    let holdPort = Bench.ports(1), front = Bench.ports(1)
    guard let hold = startProcess([Bench.build + "/sink", "--listen", "127.0.0.1:\(holdPort)"], log: "/dev/null") else { return }
    defer { stopProcess(hold) }
    guard waitListening(.tcp(port: holdPort), pids: [hold]) else {
        results.notes.append("proxy: the holding backend did not listen")
        return
    }
    let dir = scratch("porter-idle-proxy")
    let conf = dir + "/units"
    try? FileManager.default.createDirectory(atPath: conf, withIntermediateDirectories: true)
    writeText(conf + "/relay.socket", "[Socket]\nListenStream=127.0.0.1:\(front)\nMaxConnections=1024\nLogConnections=no\n")
    writeText(conf + "/relay.service", "[Service]\nExecStart=/bin/sleep 100000\nProxyTo=127.0.0.1:\(holdPort)\n")
    guard let pid = startProcess([Bench.porter, "run", "--config-dir", conf, "--control", "none", "--log-level", "warning"], log: dir + "/porter.log") else { return }
    defer { stopProcess(pid) }
    guard waitListening(.tcp(port: front), pids: [pid]) else { return }
    // One first, so the backend (a placeholder) is up and the code is paged in.
    var clients: [Int32] = []
    func open() {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let (_, addr) = Address.tcp(port: front).sockaddr()
        if addr.withUnsafeBytes({ connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(addr.count)) }) == 0 { clients.append(fd) } else { close(fd) }
    }
    open()
    sleepSeconds(0.5)
    let fds0 = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
    let m0 = Memory.of([pid])
    let n = 400
    for _ in 0..<n { open() }
    sleepSeconds(1)
    let fds1 = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
    let m1 = Memory.of([pid])
    let pipes = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?
        .filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)"))?.hasPrefix("pipe:") ?? false }.count ?? 0
    for c in clients { close(c) }
    let per = Double(fds1 - fds0) / Double(n)
    var t = Table(title: "proxy: porter's cost per idle relayed connection (\(n) open, relaying, no traffic)",
                  note: "fds per connection: the client and backend sockets, and one pipe (two fds) per direction; the pipes hold no pages while empty. Memory: porter's own (user space) growth, per connection.",
                  columns: ["fds per connection", "pipe fds in porter", "RSS per connection B", "Anonymous per connection B"])
    t.rows.append([fmt(per, 1), String(pipes), fmt(Double((m1.rss - m0.rss) * 1024) / Double(n), 0), fmt(Double((m1.anonymous - m0.anonymous) * 1024) / Double(n), 0)])
    results.tables.append(t)
    results.targets.append(Target(name: "proxy memory per idle connection", goal: "≤ 2 pipe pairs, no user-space buffer",
                                  measured: "\(fmt(per, 1)) fds (2 sockets + \(fmt(per - 2, 1)) pipe ends), \(fmt(Double((m1.anonymous - m0.anonymous) * 1024) / Double(n), 0)) B anonymous",
                                  met: per <= 6.05))
}

/// The cold path: the backend is not running; the first connection starts
/// it and gets its first byte. porter (ProxyTo=, the backend as its
/// service, IdleTimeoutSec= to stop it between trials) against
/// systemd-socket-activate starting a shell that starts the backend, waits
/// for its port and execs systemd-socket-proxyd --exit-idle-time (what a
/// systemd setup without unit ordering amounts to).
func proxyCold(_ o: Options, _ results: Results, proxyd: String?, activate: String?) {
    let trials = max(5, o.coldTrials / 10)
    var t = Table(title: "proxy: cold path, first byte of the first connection while the backend starts, \(trials) trials",
                  columns: ["system", "first byte p50 ms", "p90 ms", "max ms", "errors"])
    var p50: [String: Double] = [:]
    var systems: [(String, (UInt16, UInt16) -> Running?)] = [("porter", { front, back in
        let dir = scratch("porter-cold-proxy")
        let conf = dir + "/units"
        try? FileManager.default.createDirectory(atPath: conf, withIntermediateDirectories: true)
        writeText(conf + "/app.socket", "[Socket]\nListenStream=127.0.0.1:\(front)\nLogConnections=no\n")
        writeText(conf + "/app.service", "[Service]\nExecStart=\(Bench.build)/limit-inproc --listen 127.0.0.1:\(back)\nProxyTo=127.0.0.1:\(back)\nIdleTimeoutSec=0.3\n")
        guard let pid = startProcess([Bench.porter, "run", "--config-dir", conf, "--control", "none", "--log-level", "warning"], log: dir + "/porter.log") else { return nil }
        return Running(pids: [pid], dir: dir)
    })]
    if let proxyd, let activate {
        systems.append(("systemd-socket-activate + proxyd", { front, back in
            let script = "\(Bench.build)/limit-inproc --listen 127.0.0.1:\(back) & "
                + "until (exec 3<>/dev/tcp/127.0.0.1/\(back)) 2>/dev/null; do sleep 0.002; done; "
                + "exec \(proxyd) --exit-idle-time=0.3s 127.0.0.1:\(back)"
            return start("proxyd-cold", [activate, "-l", "127.0.0.1:\(front)", "/bin/bash", "-c", script], environment: ["SYSTEMD_LOG_LEVEL": "notice"])
        }))
    }
    for (name, startSystem) in systems {
        // systemd-socket-activate without --accept execs its command once:
        // a fresh one for each trial (as the cold scenario does).
        let oneShot = name != "porter"
        let front = Bench.ports(1), back = Bench.ports(1)
        var run: Running? = oneShot ? nil : startSystem(front, back)
        if let r = run, !waitListening(.tcp(port: front), pids: r.pids) { r.stop(); continue }
        var times: [Double] = []
        var failed = 0
        for _ in 0..<trials {
            if oneShot {
                run?.stop()
                stopStarted(commandLine: [Bench.build + "/limit-inproc", "--listen", "127.0.0.1:\(back)"])
                run = startSystem(front, back)
                guard let r = run, waitListening(.tcp(port: front), pids: r.pids) else { failed += 1; continue }
            }
            // Cold: nothing listens on the backend port.
            let deadline = nowNS() + 10_000_000_000
            while listeningPorts(back...back) > 0 && nowNS() < deadline { usleep(2000) }
            usleep(20_000)
            if let r = oneConnection(.tcp(port: front), timeout: 10) { times.append(r.firstByte / 1000) } else { failed += 1 }
        }
        run?.stop()
        if oneShot { stopStarted(commandLine: [Bench.build + "/limit-inproc", "--listen", "127.0.0.1:\(back)"]) }
        p50[name] = median(times)
        t.rows.append([name, fmt(median(times), 2), fmt(percentile(times, 0.9), 2), fmt(times.max() ?? .nan, 2), String(failed)])
    }
    results.tables.append(t)
    if let p = p50["porter"], let s = p50["systemd-socket-activate + proxyd"] {
        results.targets.append(Target(name: "proxy cold path", goal: "first byte p50 ≤ systemd-socket-activate + proxyd's",
                                      measured: "\(fmt(p, 2)) ms vs \(fmt(s, 2)) ms", met: p <= s))
    }
}

/// Stops the processes this run started that run exactly `commandLine`
/// (a backend a relay's shell started, whose pid the bench never saw), by pid.
func stopStarted(commandLine: [String]) {
    let wanted = commandLine.joined(separator: "\u{0}") + "\u{0}"
    for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = Int32(name), readText("/proc/\(name)/cmdline") == wanted else { continue }
        stopProcess(pid)
    }
}
