import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Wall-clock time in nanoseconds: the file names carry it and `stamp`
/// writes it, so creation → job start is a difference of the two.
func realNS() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// What one burst showed for one system.
struct PathRun {
    var created = 0
    var handled = 0
    var duplicates = 0
    var p50 = Double.nan, p99 = Double.nan  // ms, creation → job start
    var lastMs = Double.nan                 // burst start → last job start
    var jobsPerSecond = Double.nan
    var rss = 0
}

/// The `NAME START_NS` lines of burst files (names `b<seq>_<ns>`).
func stampedBurst(_ logf: String) -> [(name: Substring, nameNS: UInt64, startNS: UInt64)] {
    readText(logf).split(separator: "\n").compactMap { line in
        let parts = line.split(separator: " ")
        guard parts.count == 2, parts[0].hasPrefix("b"), let start = UInt64(parts[1]),
              let ns = parts[0].split(separator: "_").last.flatMap({ UInt64($0) }) else { return nil }
        return (parts[0], ns, start)
    }
}

let queueKnob = "/proc/sys/fs/inotify/max_queued_events"

/// A burst of files in one watched directory, closed after writing as fast
/// as one process can, and every system's trigger running `stamp` per file.
/// With `queue`, each system creates its inotify instance while
/// fs.inotify.max_queued_events is that small (the kernel reads the limit
/// then), so the burst overflows every queue: what is lost shows.
func scenarioPath(_ o: Options, _ results: Results, queue: Int? = nil) {
    let systems = usable({ $0.path != nil }, results: results)
    let savedQueue = readText(queueKnob).trimmingCharacters(in: .whitespacesAndNewlines)
    if queue != nil && (getuid() != 0 || savedQueue.isEmpty) {
        log("path-overflow: skipped, needs root to set \(queueKnob)")
        return
    }
    // tmpfs when there is one: creating files on a shared disk varies far more
    // than what is measured.
    let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : Bench.work
    var runs: [String: [PathRun]] = [:]
    var notes: [String: String] = [:]
    for rep in 0..<o.reps {
        for sys in rotated(systems, by: rep) {
            log("path: \(sys.name), repetition \(rep + 1)")
            let id = Bench.nextID()
            let dir = "\(base)/porter-bench-path-\(getpid())-\(id)"
            let logf = "\(base)/porter-bench-path-\(getpid())-\(id).stamps"
            mkdir(dir, 0o755)
            defer {
                _ = runCommand(["rm", "-rf", dir])
                unlink(logf)
            }
            if let queue { writeText(queueKnob, "\(queue)\n") }
            let started = sys.path!(dir, logf)
            defer { if queue != nil { writeText(queueKnob, savedQueue + "\n") } }
            guard let run = started else {
                notes[sys.name] = "did not start"
                continue
            }
            defer { run.stop() }
            // Ready once a probe file gets its job.
            var probes = 0
            let readyBy = nowNS() + 15_000_000_000
            while nowNS() < readyBy && !readText(logf).contains("probe") {
                let fd = open("\(dir)/probe\(probes)", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
                close(fd)
                probes += 1
                usleep(100_000)
            }
            guard readText(logf).contains("probe") else {
                notes[sys.name] = "never ran a job for a probe file"
                continue
            }
            if queue != nil { writeText(queueKnob, savedQueue + "\n") }
            sleepSeconds(0.5)

            var r = PathRun(created: o.pathFiles)
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, -10)
            let t0 = realNS()
            for i in 0..<o.pathFiles {
                let fd = open("\(dir)/b\(i)_\(realNS())", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
                _ = write(fd, "x", 1)
                close(fd)
            }
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 0)

            // Until every file has a job, or nothing happened for 5 s.
            var lines = -1
            var changed = nowNS()
            let giveUp = nowNS() + UInt64(o.maxSeconds * 1e9)
            while nowNS() < giveUp {
                let n = stampedBurst(logf).count
                if n >= o.pathFiles { break }
                if n != lines { lines = n; changed = nowNS() }
                if nowNS() - changed > 5_000_000_000 { break }
                usleep(50_000)
            }
            sleepSeconds(0.2)  // late duplicates
            r.rss = Memory.of(run.pids).rss
            let stamped = stampedBurst(logf)
            var seen = Set<Substring>()
            var latencies: [Double] = []
            var last: UInt64 = t0
            for s in stamped {
                if !seen.insert(s.name).inserted { r.duplicates += 1; continue }
                latencies.append(Double(Int64(s.startNS) - Int64(s.nameNS)) / 1e6)
                last = max(last, s.startNS)
            }
            r.handled = seen.count
            r.p50 = percentile(latencies, 0.5)
            r.p99 = percentile(latencies, 0.99)
            r.lastMs = Double(last - t0) / 1e6
            r.jobsPerSecond = r.lastMs > 0 ? Double(r.handled) / (r.lastMs / 1000) : .nan
            runs[sys.name, default: []].append(r)
            log("path: \(sys.name): \(r.handled)/\(r.created) handled, \(r.duplicates) duplicates, p50 \(fmt(r.p50)) ms, p99 \(fmt(r.p99)) ms, \(fmt(r.jobsPerSecond, 0)) jobs/s")
        }
    }

    let what = queue.map { "path, inotify queue of \($0) events: a burst of \(o.pathFiles) files" } ?? "path: a burst of \(o.pathFiles) files closed after writing in one watched directory"
    var t = Table(title: "\(what), \(o.reps) repetitions",
                  note: "Each file is created, written and closed by one process at nice −10 on \(base == "/dev/shm" ? "tmpfs" : "disk"); each trigger runs `stamp LOG NAME` per file. Handled and duplicates are summed over the repetitions; the rest are medians. Latency: file creation → job start (the name carries the creation time, `stamp` its start time). jobs/s: files handled ÷ time from the burst's start to the last job's start. porter runs per-file jobs (`Accept=yes`, at most 64 at once); the floor spawns without any limit.",
                  columns: ["system", "handled / created", "duplicates", "latency p50 ms", "p99 ms", "burst → last job ms", "jobs/s", "jobs/s ÷ floor", "RSS kB after"])
    let floorRate = median(runs["floor-inotify"]?.map(\.jobsPerSecond) ?? [])
    var rateBars: [(String, Double)] = []
    var latencyBars: [(String, Double)] = []
    let floorP50 = median(runs["floor-inotify"]?.map(\.p50) ?? [])
    for sys in systems {
        guard let rs = runs[sys.name], !rs.isEmpty else {
            t.rows.append([sys.name, notes[sys.name] ?? "-", "", "", "", "", "", "", ""])
            continue
        }
        let rate = median(rs.map(\.jobsPerSecond)), p50 = median(rs.map(\.p50))
        t.rows.append([sys.name, "\(rs.map(\.handled).reduce(0, +)) / \(rs.map(\.created).reduce(0, +))",
                       String(rs.map(\.duplicates).reduce(0, +)), fmt(p50), fmt(median(rs.map(\.p99))),
                       fmt(median(rs.map(\.lastMs)), 0), fmt(rate, 0), ratio(rate, floorRate),
                       String(Int(median(rs.map { Double($0.rss) })))])
        rateBars.append((sys.name, rate / floorRate))
        latencyBars.append((sys.name, p50 / floorP50))
    }
    if let queue {
        t.note = "As above, but every system created its inotify instance while fs.inotify.max_queued_events was \(queue) (restored once it was ready), so the burst overflows the queue. Events past the queue are dropped by the kernel; a trigger that does not rescan loses those files."
    }
    results.tables.append(t)
    if queue == nil {
        results.panels.append(Panel(title: "path: jobs/s in a \(o.pathFiles)-file burst", higherIsBetter: true, bars: rateBars))
        results.panels.append(Panel(title: "path: creation → job start, p50", higherIsBetter: false, bars: latencyBars))
    } else {
        results.panels.append(Panel(title: "path, queue of \(queue!): files handled ÷ created", higherIsBetter: true,
                                    bars: systems.compactMap { s in runs[s.name].map { rs in
                                        (s.name, Double(rs.map(\.handled).reduce(0, +)) / Double(max(1, rs.map(\.created).reduce(0, +)))) } }))
    }
    if let p = runs["porter"], !p.isEmpty {
        let handled = p.map(\.handled).reduce(0, +), created = p.map(\.created).reduce(0, +)
        let dups = p.map(\.duplicates).reduce(0, +)
        results.targets.append(Target(name: queue == nil ? "path: nothing lost" : "path, queue overflowing: nothing lost", goal: "every file handled, exactly once (issue #5)",
                                      measured: "\(handled) / \(created), \(dups) duplicates", met: handled == created && dups == 0))
        if queue == nil {
            let rate = median(p.map(\.jobsPerSecond))
            results.targets.append(Target(name: "path: jobs/s", goal: "≥ 0.9 × the inotify floor's (issue #3)",
                                          measured: ratio(rate, floorRate), met: rate.isNaN || floorRate.isNaN ? nil : rate / floorRate >= 0.9))
        }
    }
}
