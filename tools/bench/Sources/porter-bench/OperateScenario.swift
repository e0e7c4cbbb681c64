import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// operate (issue 11): what seeing into porter costs.
/// - Idle: porter with N Accept=yes services, idle for `idleSeconds`,
///   once with nothing of its own open (`--control none`, no metrics) and
///   once with the control socket and `MetricsListen=`: context switches
///   and CPU ticks (the target is 0 wake-ups either way), and the memory.
/// - One scrape of /metrics and one `porter status --json`, timed.
/// - `porter status` latency (the whole command, as an admin runs it)
///   while 200 connections/s are spawned, against the same porter idle.
func scenarioOperate(_ o: Options, _ results: Results) {
    guard Systems.porter.unavailable() == nil else { return }
    let n = o.idleServices
    var t = Table(title: "operate: \(n) Accept=yes services; porter's own sockets idle, then `porter status` under 200 conn/s",
                  note: "Context switches and CPU ticks over \(fmt(o.idleSeconds, 0)) s without traffic. Status: the wall time of the whole `porter status --json` command as an admin runs it (posix_spawn, connect, answer, exit), and of the request alone over the control socket (what porter's loop spends). Scrape: one GET /metrics over a raw socket.",
                  columns: ["run", "context switches", "CPU ticks", "RSS kB", "Anonymous kB", "command p50 ms", "command p99 ms", "command max ms", "request p50 ms", "request max ms", "scrape ms"])
    var switchesWithOwn = -1
    var idleP50 = Double.nan, loadP50 = Double.nan, loadMax = Double.nan
    for own in [false, true] {
        let dir = scratch("porter-operate")
        let conf = dir + "/units"
        try? FileManager.default.createDirectory(atPath: conf, withIntermediateDirectories: true)
        let port0 = Bench.ports(n)
        for i in 0..<n {
            let name = String(format: "svc%03d", i)
            writeText(conf + "/\(name).socket", "[Socket]\nListenStream=127.0.0.1:\(Int(port0) + i)\nAccept=yes\nLogConnections=no\n")
            writeText(conf + "/\(name)@.service", "[Service]\nExecStart=\(Systems.hello)\nStandardInput=socket\n")
        }
        let metricsPort = Bench.ports(1)
        let control = dir + "/control"
        if own { writeText(conf + "/porter.conf", "[Porter]\nMetricsListen=127.0.0.1:\(metricsPort)\n") }
        let argv = [Bench.porter, "run", "--config-dir", conf, "--log-level", "warning", "--control", own ? control : "none"]
        guard let pid = startProcess(argv, log: dir + "/porter.log") else { continue }
        defer { stopProcess(pid) }
        let targets = (0..<n).map { Address.tcp(port: port0 + UInt16($0)) }
        guard waitListening(targets.last!, pids: [pid]) else { continue }
        log("operate: idle \(fmt(o.idleSeconds, 0)) s, \(own ? "control socket and metrics" : "nothing of its own")")
        sleepSeconds(1)
        let a0 = activity([pid])
        sleepSeconds(o.idleSeconds)
        let a1 = activity([pid])
        let m = Memory.of([pid])
        var row = [own ? "control socket + metrics" : "--control none, no metrics", String(a1.switches - a0.switches),
                   String(a1.ticks - a0.ticks), String(m.rss), String(m.anonymous)]
        if own {
            switchesWithOwn = a1.switches - a0.switches
            // porter status, idle and while a paced load spawns 200 instances a second.
            func statusTimes(_ count: Int) -> [Double] {
                (0..<count).map { _ in
                    let t0 = nowNS()
                    if let p = startProcess([Bench.porter, "status", "--json", "--control", control], log: "/dev/null") {
                        var st: Int32 = 0
                        waitpid(p, &st, 0)
                    }
                    return Double(nowNS() - t0) / 1e6
                }
            }
            func requestTimes(_ count: Int) -> [Double] {
                (0..<count).map { _ in
                    let t0 = nowNS()
                    _ = exchange(unix: control, "porter/1 status\n")
                    return Double(nowNS() - t0) / 1e6
                }
            }
            let idle = statusTimes(30)
            let idleRequests = requestTimes(30)
            idleP50 = median(idle)
            let stop = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
            stop.pointee = 0
            let loader = Thread {
                // One connection every 5 ms, each read to its end: 200 spawns/s.
                var next = nowNS()
                var i = 0
                while stop.pointee == 0 {
                    _ = oneConnection(targets[i % targets.count], timeout: 5)
                    i += 1
                    next += 5_000_000
                    let now = nowNS()
                    if next > now { usleep(UInt32((next - now) / 1000)) }
                }
            }
            loader.start()
            sleepSeconds(1)
            let loaded = statusTimes(100)
            let loadedRequests = requestTimes(100)
            stop.pointee = 1
            sleepSeconds(0.5)
            loadP50 = median(loaded)
            loadMax = loaded.max() ?? .nan
            let s0 = nowNS()
            let body = exchange(tcp: metricsPort, "GET /metrics HTTP/1.0\r\n\r\n")
            let scrape = Double(nowNS() - s0) / 1e6
            row += [fmt(loadP50, 2), fmt(percentile(loaded, 0.99), 2), fmt(loadMax, 2),
                    fmt(median(loadedRequests), 2), fmt(loadedRequests.max() ?? .nan, 2), fmt(scrape, 2) + " (\(body.count / 1024) KiB)"]
            t.rows.append(["  (status with no load)", "", "", "", "", fmt(idleP50, 2), fmt(percentile(idle, 0.99), 2), fmt(idle.max() ?? .nan, 2),
                           fmt(median(idleRequests), 2), fmt(idleRequests.max() ?? .nan, 2), ""])
        } else {
            row += ["", "", "", "", "", ""]
        }
        t.rows.insert(row, at: max(0, t.rows.count - (own ? 1 : 0)))
    }
    results.tables.append(t)
    results.targets.append(Target(name: "idle wake-ups with the control socket and metrics", goal: "0 context switches in \(fmt(o.idleSeconds, 0)) s",
                                  measured: String(switchesWithOwn), met: switchesWithOwn == 0))
    results.targets.append(Target(name: "porter status under 200 conn/s", goal: "p50 within 2 × idle",
                                  measured: "\(fmt(loadP50, 2)) ms vs \(fmt(idleP50, 2)) ms idle (max \(fmt(loadMax, 1)) ms)",
                                  met: loadP50.isFinite && idleP50.isFinite ? loadP50 <= 2 * idleP50 : nil))
}

/// One request and its whole answer, over a Unix or TCP stream socket.
func exchange(unix path: String? = nil, tcp port: UInt16? = nil, _ request: String) -> [UInt8] {
    let fd = socket(path != nil ? AF_UNIX : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var ok: Int32 = -1
    if let path {
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &a.sun_path) { raw in for (i, b) in path.utf8.prefix(107).enumerated() { raw[i] = b } }
        ok = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    } else if let port {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        ok = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    }
    guard ok == 0 else { return [] }
    _ = request.withCString { write(fd, $0, strlen($0)) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}
