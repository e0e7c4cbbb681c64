import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// migrate (issue 13): one xinetd configuration — a per-connection
/// service and the internal echo (TCP and UDP) and chargen — served by
/// xinetd and by porter reading the same file in place
/// (`porter run --xinetd FILE`), side by side in one run:
/// - spawn rate of the per-connection service at concurrency 1 and 8;
/// - idle memory of the daemon with this configuration;
/// - internal echo: bulk MiB/s through one connection and round trips/s
///   of 64-byte requests; UDP echo round trips/s;
/// - internal chargen: MiB/s read by one client.
func scenarioMigrate(_ o: Options, _ results: Results) {
    guard Systems.porter.unavailable() == nil else { return }
    let xinetdUsable = Systems.xinetd.unavailable() == nil
    if !xinetdUsable { log("migrate: xinetd unavailable (\(Systems.xinetd.unavailable()!)); porter alone") }
    let port0 = Bench.ports(3)
    let (spawnPort, echoPort, chargenPort) = (port0, port0 + 1, port0 + 2)
    let dir = scratch("migrate")
    let conf = dir + "/xinetd.conf"
    writeText(conf, Systems.xinetdDefaults(dir) + """
        service hello
        {
        \ttype        = UNLISTED
        \tsocket_type = stream
        \tprotocol    = tcp
        \twait        = no
        \tuser        = root
        \tbind        = 127.0.0.1
        \tport        = \(spawnPort)
        \tserver      = \(Systems.hello)
        }

        service echo
        {
        \ttype        = INTERNAL UNLISTED
        \tid          = echo-stream
        \tsocket_type = stream
        \tprotocol    = tcp
        \twait        = no
        \tbind        = 127.0.0.1
        \tport        = \(echoPort)
        }

        service echo
        {
        \ttype        = INTERNAL UNLISTED
        \tid          = echo-dgram
        \tsocket_type = dgram
        \tprotocol    = udp
        \twait        = yes
        \tbind        = 127.0.0.1
        \tport        = \(echoPort)
        }

        service chargen
        {
        \ttype        = INTERNAL UNLISTED
        \tid          = chargen-stream
        \tsocket_type = stream
        \tprotocol    = tcp
        \twait        = no
        \tbind        = 127.0.0.1
        \tport        = \(chargenPort)
        }

        """)
    let systems: [(name: String, argv: [String])] = (xinetdUsable ? [("xinetd", ["xinetd", "-dontfork", "-f", conf, "-filelog", dir + "/xinetd-daemon.log"])] : [])
        + [("porter", [Bench.porter, "run", "--xinetd", conf, "--log-level", "warning", "--control", "none"])]
    var t = Table(title: "migrate: the same xinetd.conf served by xinetd and by `porter run --xinetd` (a per-connection service, internal echo TCP+UDP, internal chargen)",
                  note: "Spawn: connections/s of the per-connection service (each read to its end). Idle: the daemon after start, before any traffic. Echo bulk: 256 MiB written and read back through one connection. Echo and UDP round trips: 64-byte requests one after another for 3 s. Chargen: one client reading for 3 s. xinetd 2.3.15 stops answering one UDP client after about 50 requests (also with cps raised in the service itself) and the 1 s receive timeout then ends the run: its UDP figure is what it answered in 3 s.",
                  columns: ["system", "spawn c=1 /s", "spawn c=8 /s", "idle RSS kB", "idle PSS kB", "idle anon kB",
                            "echo MiB/s", "echo RTT/s", "UDP echo RTT/s", "chargen MiB/s"])
    var values: [String: [Double]] = [:]
    for (name, argv) in systems {
        guard let pid = startProcess(argv, log: dir + "/\(name).log") else { continue }
        defer { stopProcess(pid) }
        guard waitListening(.tcp(port: chargenPort), pids: [pid]) else { log("migrate: \(name) did not listen"); continue }
        sleepSeconds(1)
        let idle = Memory.of([pid])
        log("migrate: \(name) spawn")
        var spawn: [Double] = []
        for c in [1, 8] {
            let s = loadConnections([.tcp(port: spawnPort)], total: o.spawnN, concurrency: c, maxSeconds: o.maxSeconds)
            spawn.append(s.rate)
        }
        log("migrate: \(name) echo and chargen")
        let bulk = echoBulk(echoPort, bytes: 256 << 20) ?? .nan
        let rtt = echoRoundTrips(echoPort, seconds: 3, udp: false)
        let udp = echoRoundTrips(echoPort, seconds: 3, udp: true)
        let chargen = chargenRate(chargenPort, seconds: 3) ?? .nan
        let v = [spawn[0], spawn[1], Double(idle.rss), Double(idle.pss), Double(idle.anonymous), bulk, rtt, udp, chargen]
        values[name] = v
        // MiB/s with a decimal, counts and kB without.
        let decimals = [0, 0, 0, 0, 0, 1, 0, 0, 1]
        t.rows.append([name] + zip(v, decimals).map { fmt($0, $1) })
    }
    if let x = values["xinetd"], let p = values["porter"] {
        t.rows.append(["porter / xinetd"] + zip(p, x).map { ratio($0, $1) })
        let names = ["spawn c=1", "spawn c=8"]
        for (i, n) in names.enumerated() {
            results.targets.append(Target(name: "migrate \(n)", goal: "≥ xinetd's", measured: "\(fmt(p[i], 0)) vs \(fmt(x[i], 0))/s", met: p[i] >= x[i]))
        }
        results.targets.append(Target(name: "migrate idle anonymous memory", goal: "≤ xinetd's", measured: "\(fmt(p[4], 0)) vs \(fmt(x[4], 0)) kB", met: p[4] <= x[4]))
        for (i, n) in [(5, "internal echo bulk"), (6, "internal echo round trips"), (7, "internal UDP echo round trips"), (8, "internal chargen")] {
            results.targets.append(Target(name: "migrate \(n)", goal: "≥ xinetd's", measured: "\(fmt(p[i], 1)) vs \(fmt(x[i], 1))", met: p[i] >= x[i]))
        }
    }
    results.tables.append(t)
}

/// Writes `bytes` into an echo connection while reading them back; MiB/s.
func echoBulk(_ port: UInt16, bytes: Int) -> Double? {
    guard let fd = connectedSocket(port) else { return nil }
    defer { close(fd) }
    _ = fcntl(fd, F_SETFL, O_NONBLOCK)
    let chunk = [UInt8](repeating: 0x61, count: 64 << 10)
    var buf = [UInt8](repeating: 0, count: 256 << 10)
    var sent = 0, got = 0
    let t0 = nowNS()
    let deadline = t0 + 60_000_000_000
    while got < bytes && nowNS() < deadline {
        var p = pollfd(fd: fd, events: Int16(POLLIN) | (sent < bytes ? Int16(POLLOUT) : 0), revents: 0)
        guard poll(&p, 1, 5000) > 0 else { return nil }
        if p.revents & Int16(POLLOUT) != 0 && sent < bytes {
            let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, min($0.count, bytes - sent)) }
            if n > 0 { sent += n }
        }
        if p.revents & Int16(POLLIN) != 0 {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { return nil }
            got += n
        }
    }
    guard got >= bytes else { return nil }
    return Double(bytes) / 1_048_576 / (Double(nowNS() - t0) / 1e9)
}

/// 64-byte requests, each waited for, for `seconds`: round trips per second.
func echoRoundTrips(_ port: UInt16, seconds: Double, udp: Bool) -> Double {
    guard let fd = connectedSocket(port, datagram: udp) else { return .nan }
    defer { close(fd) }
    var one: Int32 = 1
    if !udp { setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4) }
    var tv = timeval(tv_sec: 1, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let request = [UInt8](repeating: 0x62, count: 64)
    var buf = [UInt8](repeating: 0, count: 256)
    var count = 0
    let t0 = nowNS()
    let end = t0 + UInt64(seconds * 1e9)
    while nowNS() < end {
        guard request.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == 64 else { return .nan }
        var got = 0
        while got < 64 {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { return Double(count) / (Double(nowNS() - t0) / 1e9) }
            got += n
        }
        count += 1
    }
    return Double(count) / (Double(nowNS() - t0) / 1e9)
}

/// One client reading chargen for `seconds`: MiB/s.
func chargenRate(_ port: UInt16, seconds: Double) -> Double? {
    guard let fd = connectedSocket(port) else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 256 << 10)
    var got = 0
    let t0 = nowNS()
    let end = t0 + UInt64(seconds * 1e9)
    while nowNS() < end {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { return nil }
        got += n
    }
    return Double(got) / 1_048_576 / (Double(nowNS() - t0) / 1e9)
}
