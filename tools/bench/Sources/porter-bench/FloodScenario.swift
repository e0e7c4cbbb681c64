import Foundation
#if canImport(Glibc)
import Glibc
#endif

// MARK: - log-flood (issue #8, F5)

/// One service floods its journal pipe (`cat /dev/zero >&2`) while the
/// load generator connects to another, per-connection socket one client at
/// a time. What matters is the loop: the other socket's first-byte latency
/// under the flood, as a ratio to the same porter idle, and to a control run
/// whose flooding service writes to /dev/null instead (StandardError=null).
/// The peers do not read their services' output (xinetd, inetd and
/// tcpserver hand stderr on), so there is no peer to put beside it.
func scenarioLogFlood(_ o: Options, _ results: Results) {
    guard Systems.porter.unavailable() == nil else {
        results.skipped["porter"] = Systems.porter.unavailable()
        return
    }
    let probes = 300
    var t = Table(title: "log-flood: \(probes) connections at concurrency 1 to a per-connection `hello` while another service writes `cat /dev/zero >&2` (porter at --log-level warning, so nothing reaches the disk)",
                  columns: ["run", "first byte p50 µs", "p99 µs", "max µs", "p50 ÷ idle", "max ÷ idle", "errors", "porter CPU s"])
    var idleP50 = Double.nan, idleMax = Double.nan
    for (label, stderr, flood) in [("idle", "journal", false), ("flood, StandardError=null (control)", "null", true), ("flood, StandardError=journal", "journal", true)] {
        let probe = Address.tcp(port: Bench.ports(1))
        let trigger = Address.tcp(port: Bench.ports(1))
        let dir = scratch("porter-flood")
        let conf = dir + "/units"
        try? FileManager.default.createDirectory(atPath: conf, withIntermediateDirectories: true)
        writeText(conf + "/hello.socket", "[Socket]\nListenStream=\(probe)\nAccept=yes\n")
        writeText(conf + "/hello@.service", "[Service]\nExecStart=\(Systems.hello)\nStandardInput=socket\nStandardOutput=socket\n")
        writeText(conf + "/flood.socket", "[Socket]\nListenStream=\(trigger)\n")
        writeText(conf + "/flood.service", "[Service]\nExecStart=/bin/sh -c 'exec timeout 60 cat /dev/zero >&2'\nStandardError=\(stderr)\n")
        log("log-flood: \(label)")
        guard let pid = startProcess([Bench.porter, "run", "--config-dir", conf, "--control", "none", "--log-level", "warning"], log: dir + "/porter.log") else { continue }
        defer { stopProcess(pid) }
        guard waitListening(probe, pids: [pid]) else { continue }
        _ = oneConnection(probe)
        var holder: Int32 = -1
        if flood {
            // Connecting starts the flooding service; the connection stays queued.
            let (family, bytes) = trigger.sockaddr()
            holder = socket(family, Int32(SOCK_STREAM.rawValue), 0)
            _ = bytes.withUnsafeBytes { connect(holder, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(bytes.count)) }
            usleep(300_000)
        }
        defer { if holder >= 0 { close(holder) } }
        let cpu0 = processCPU(pid)
        let s = loadConnections([probe], total: probes, concurrency: 1, maxSeconds: 60)
        let cpu = processCPU(pid) - cpu0
        let p50 = percentile(s.firstByte, 0.5), p99 = percentile(s.firstByte, 0.99), mx = s.firstByte.max() ?? .nan
        if !flood { idleP50 = p50; idleMax = mx }
        t.rows.append([label, fmt(p50, 0), fmt(p99, 0), fmt(mx, 0), ratio(p50, idleP50), ratio(mx, idleMax), String(s.errors), fmt(cpu, 2)])
        if flood && stderr == "journal" {
            results.targets.append(Target(name: "log-flood: other socket's p50 under a journal flood", goal: "≤ 2 × idle (within a few ms)",
                                          measured: "\(fmt(p50, 0)) µs vs \(fmt(idleP50, 0)) µs idle, max \(fmt(mx, 0)) µs",
                                          met: p50.isNaN ? nil : p50 <= 2 * idleP50 || p50 - idleP50 < 3000))
        }
    }
    results.tables.append(t)
}

/// utime+stime of a process in seconds.
func processCPU(_ pid: pid_t) -> Double {
    let stat = readText("/proc/\(pid)/stat")
    guard let close = stat.lastIndex(of: ")") else { return .nan }
    let f = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
    guard f.count > 12, let u = Double(f[11]), let k = Double(f[12]) else { return .nan }
    return (u + k) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

// MARK: - idle-measure (issue #9)

/// The cost of porter's idle checks of Accept=no services (IdleTimeoutSec=):
/// each asks sock_diag for its listener's open connections. `services`
/// services hold one connection each, so every check (once a second each)
/// goes to the kernel. Measured as porter's CPU time (user + system) per
/// check over `seconds`, on a quiet host and then with as many unrelated
/// established loopback connections as the fd limit allows; runs the same
/// way with any porter binary, so the landed one can stand beside.
func scenarioIdleMeasure(_ o: Options, _ results: Results) {
    guard Systems.porter.unavailable() == nil else { return }
    let services = 20, seconds: UInt32 = 8
    let port0 = Bench.ports(services)
    let dir = scratch("porter-idle-measure")
    let conf = dir + "/units"
    try? FileManager.default.createDirectory(atPath: conf, withIntermediateDirectories: true)
    for k in 0..<services {
        writeText(conf + "/hold\(k).socket", "[Socket]\nListenStream=127.0.0.1:\(Int(port0) + k)\n")
        writeText(conf + "/hold\(k).service", "[Service]\nExecStart=\(Bench.build)/holdconn\nIdleTimeoutSec=1\n")
    }
    log("idle-measure")
    guard let pid = startProcess([Bench.porter, "run", "--config-dir", conf, "--control", "none"], log: dir + "/porter.log") else { return }
    defer { stopProcess(pid) }
    guard waitListening(.tcp(port: port0 + UInt16(services - 1)), pids: [pid]) else { return }
    func connectTo(_ bytes: [UInt8]) -> Int32 {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        _ = bytes.withUnsafeBytes { connect(s, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(bytes.count)) }
        return s
    }
    var holders: [Int32] = []
    for k in 0..<services { holders.append(connectTo(Address.tcp(port: port0 + UInt16(k)).sockaddr().bytes)) }
    defer { for h in holders { close(h) } }
    sleep(2)  // every service running, its connection accepted
    func cpuPerCheck() -> Double {
        let t0 = processCPU(pid)
        sleep(seconds)
        return (processCPU(pid) - t0) / Double(services * Int(seconds)) * 1e6
    }
    let quiet = cpuPerCheck()
    // Unrelated established loopback connections: both ends in this process.
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    let l = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var one: Int32 = 1
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, 4)
    let otherBytes = Address.tcp(port: Bench.ports(1)).sockaddr().bytes
    _ = otherBytes.withUnsafeBytes { bind(l, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(otherBytes.count)) }
    listen(l, 4096)
    var fds: [Int32] = [l]
    defer { for f in fds { close(f) } }
    for _ in 0..<min(20_000, (Int(limit.rlim_cur) - 500) / 2) {
        let c = connectTo(otherBytes)
        let a = accept(l, nil, nil)
        if c < 0 || a < 0 { break }
        fds += [c, a]
    }
    let made = (fds.count - 1) / 2
    let loaded = cpuPerCheck()
    var t = Table(title: "idle-measure: porter's CPU per idle check (\(services) Accept=no services, IdleTimeoutSec=1, one open connection each, \(seconds) s)",
                  columns: ["host", "CPU µs per check", "÷ quiet"])
    t.rows.append(["quiet", fmt(quiet, 0), "1.00"])
    t.rows.append(["\(made) unrelated established loopback connections (\(2 * made) sockets)", fmt(loaded, 0), ratio(loaded, quiet)])
    t.note = "The kernel walks its whole established-socket hash for each check (the quiet figure is mostly that walk); porter asks it to skip other ports (inet_diag id.idiag_sport), so unrelated connections are not copied out or parsed."
    results.tables.append(t)
}

/// "573us", "2ms", "1.2s" (porter's durations) in µs.
func microseconds(_ s: String) -> Double? {
    if s.hasSuffix("us"), let v = Double(s.dropLast(2)) { return v }
    if s.hasSuffix("ns"), let v = Double(s.dropLast(2)) { return v / 1000 }
    if s.hasSuffix("ms"), let v = Double(s.dropLast(2)) { return v * 1000 }
    if s.hasSuffix("s"), let v = Double(s.dropLast(1)) { return v * 1e6 }
    return nil
}
