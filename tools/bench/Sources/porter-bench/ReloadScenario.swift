import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// reload: porter with N Accept=yes TCP services (N sockets and N
/// templates), one connection served on each; then 20 reloads that each
/// change one unit while a client load runs over every port. Reported: the
/// time from SIGHUP to "configuration reloaded" against a cold parse of
/// the same directory (`porter check`), connections that failed during the
/// reloads, and porter's memory before and after them.
func scenarioReload(_ o: Options, _ results: Results) {
    guard Systems.porter.unavailable() == nil else { return }
    let n = o.scaleServices, reloads = 20
    let port0 = Bench.ports(n)
    let dir = scratch("porter-reload")
    let conf = dir + "/units"
    let logPath = dir + "/porter.log"
    try? FileManager.default.createDirectory(atPath: conf, withIntermediateDirectories: true)
    func template(_ k: Int) -> String {
        "[Service]\nExecStart=\(Systems.hello)\nStandardInput=socket\nStandardOutput=socket\nEnvironment=GENERATION=\(k)\n"
    }
    for i in 0..<n {
        let name = String(format: "svc%04d", i)
        writeText(conf + "/\(name).socket", "[Socket]\nListenStream=127.0.0.1:\(Int(port0) + i)\nAccept=yes\n")
        writeText(conf + "/\(name)@.service", template(0))
    }
    log("reload: cold parse (porter check) of \(2 * n) unit files")
    var parse: [Double] = []
    for _ in 0..<max(3, o.reps) {
        let t0 = nowNS()
        _ = runCommand([Bench.porter, "check", "--config-dir", conf])
        parse.append(Double(nowNS() - t0) / 1e6)
    }
    guard let pid = startProcess([Bench.porter, "run", "--config-dir", conf, "--control", "none"], log: logPath) else { return }
    defer { stopProcess(pid) }
    let targets = (0..<n).map { Address.tcp(port: port0 + UInt16($0)) }
    guard waitListening(targets.last!, pids: [pid]) else { return }
    let first = loadConnections(targets, total: n, concurrency: 16, maxSeconds: o.maxSeconds)
    sleepSeconds(1)
    let before = Memory.of([pid])
    // The log grows by every connection: only what is new is read.
    let logFile = FileHandle(forReadingAtPath: logPath)
    var logged: [String] = []
    var refusedSeen = false
    func reloadsLogged() -> [String] {
        if let data = logFile?.readDataToEndOfFile(), !data.isEmpty {
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                if line.contains("configuration reloaded") { logged.append(String(line)) }
                if line.contains("reload refused") { refusedSeen = true }
            }
        }
        return logged
    }
    var took: [Double] = []
    var inside: [Double] = []
    var failed = 0, served = 0, refusedReloads = 0
    var rss: [Int] = []
    var anon: [Int] = []
    for k in 1...reloads {
        // One unit changes; a load over every port runs across the reload.
        writeText(conf + "/svc0000@.service", template(k))
        let load = LoadBox()
        Thread.detachNewThread {
            load.stats = loadConnections(targets, total: 1500, concurrency: 8, maxSeconds: 30)
            load.done.signal()
        }
        sleepSeconds(0.1)
        let t0 = nowNS()
        kill(pid, SIGHUP)
        let deadline = nowNS() + 30_000_000_000
        while reloadsLogged().count < k && nowNS() < deadline {
            if refusedSeen { refusedReloads += 1; refusedSeen = false; break }
            usleep(200)
        }
        took.append(Double(nowNS() - t0) / 1e6)
        if let line = reloadsLogged().last, let r = line.range(of: "reloaded in "),
           let v = microseconds(String(line[r.upperBound...].prefix { $0 != ":" })) {
            inside.append(v / 1000)
        }
        load.done.wait()
        failed += load.stats.errors
        served += load.stats.ok
        let m = Memory.of([pid])
        rss.append(m.rss)
        anon.append(m.anonymous)
    }
    let after = Memory.of([pid])
    let afterFirst = rss.first ?? 0
    let parseMs = median(parse), reloadMs = median(took), insideMs = median(inside)
    var t = Table(title: "reload: \(n) Accept=yes services (\(2 * n) unit files), one unit changed per reload, \(reloads) reloads under load",
                  note: "SIGHUP → the \"configuration reloaded\" line, polled from porter's log every 0.2 ms (porter's own figure beside it), while 8 clients connect to every port in turn. Cold parse: `porter check` on the same directory (read, parse, validate, resolve credentials), median of \(parse.count).",
                  columns: ["measure", "value"])
    t.rows.append(["cold parse (porter check), ms", fmt(parseMs)])
    t.rows.append(["SIGHUP → applied, median ms (max)", "\(fmt(reloadMs)) (\(fmt(took.max() ?? .nan)))"])
    t.rows.append(["porter's own reload time, median ms", fmt(insideMs)])
    t.rows.append(["reload ÷ cold parse", ratio(reloadMs, parseMs)])
    t.rows.append(["connections during the reloads: served / failed", "\(served) / \(failed)"])
    t.rows.append(["reloads refused", String(refusedReloads)])
    t.rows.append(["first connection on each service: ok", "\(first.ok)/\(n)"])
    t.rows.append(["RSS kB: after one connection each → after \(reloads) reloads (min–max between)",
                   "\(before.rss) → \(after.rss) (\(rss.min() ?? 0)–\(rss.max() ?? 0))"])
    t.rows.append(["RSS kB: after the first reload → after the last", "\(afterFirst) → \(after.rss)"])
    t.rows.append(["anonymous kB: before → after the first reload → after the last", "\(before.anonymous) → \(anon.first ?? 0) → \(after.anonymous)"])
    results.tables.append(t)
    results.targets.append(Target(name: "reload refusals", goal: "0 connections refused during reloads", measured: String(failed), met: failed == 0))
    results.targets.append(Target(name: "reload time", goal: "SIGHUP → applied ≤ 2 × cold parse", measured: ratio(reloadMs, parseMs),
                                  met: reloadMs.isNaN || parseMs.isNaN ? nil : reloadMs <= 2 * parseMs))
    results.targets.append(Target(name: "memory with \(n) services", goal: "RSS < 8 MiB (8192 kB) after one connection each",
                                  measured: "\(before.rss) kB", met: before.rss < 8192))
    results.targets.append(Target(name: "memory across reloads", goal: "no growth over \(reloads) reloads (within 5 %)",
                                  measured: "\(before.rss) → \(after.rss) kB", met: Double(after.rss) <= Double(before.rss) * 1.05))
    results.targets.append(Target(name: "memory per reload", goal: "no growth from the first reload to the last (within 2 %)",
                                  measured: "\(afterFirst) → \(after.rss) kB", met: Double(after.rss) <= Double(afterFirst) * 1.02))
}

/// The result of a load run on another thread, read after `done`.
final class LoadBox: @unchecked Sendable {
    var stats = ConnStats()
    let done = DispatchSemaphore(value: 0)
}
