// porter-bench: runs porter and every installed peer (xinetd, openbsd-inetd,
// tcpserver, systemd-socket-activate, socat) on the same scenarios in one
// run, beside floors built here (the cheapest programs that do each job),
// and prints medians and ratios. Loopback only; every load is bounded in
// count and time. See tools/bench/README.md.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Options {
    var scenarios = ["spawn", "cold", "idle", "scale", "path", "path-overflow", "log-flood", "idle-measure", "reload", "operate", "proxy", "migrate"]
    var reps = 3
    var spawnN = 3000
    var coldTrials = 200
    var idleServices = 20
    var idleSeconds = 20.0
    var scaleServices = 1000
    var pathFiles = 2000
    var proxyBytes = 1 << 30
    var maxSeconds = 90.0
    var porter: String? = nil
    var markdown: String? = nil
    var svg: String? = nil
    var keep = false
}

enum Bench {
    nonisolated(unsafe) static var work = ""
    nonisolated(unsafe) static var build = ""
    nonisolated(unsafe) static var porter = ""
    nonisolated(unsafe) static var commandsLog = "/dev/null"
    nonisolated(unsafe) private static var id = 0
    nonisolated(unsafe) private static var port: UInt16 = 20000

    static func nextID() -> Int {
        id += 1
        return id
    }

    /// `n` fresh consecutive ports, below the ephemeral range.
    static func ports(_ n: Int) -> UInt16 {
        if Int(port) + n > 32000 { port = 20000 }
        defer { port += UInt16(n) }
        return port
    }
}

func log(_ s: String) {
    FileHandle.standardError.write("[\(String(format: "%.1f", Double(nowNS()) / 1e9))] \(s)\n".data(using: .utf8)!)
}

let usage = """
    usage: porter-bench [SCENARIO...] [--porter PATH] [--reps N] [--markdown FILE] [--svg FILE] [--keep]
                        [--spawn-n N] [--cold-trials N] [--idle-seconds S] [--scale-services N] [--path-files N]
      scenarios: spawn cold idle scale path path-overflow log-flood idle-measure reload operate proxy migrate (default: all)
      --proxy-bytes N  bytes of the proxy scenario's bulk transfer (default 1 GiB)
      --porter PATH  the porter to measure (default: build the recommended one,
                     swift build -c release --static-swift-stdlib, in the repository)
    """

var o = Options()
var args = Array(CommandLine.arguments.dropFirst())
var chosen: [String] = []
while let a = args.first {
    args.removeFirst()
    func value() -> String {
        guard let v = args.first else { print(usage); exit(2) }
        args.removeFirst()
        return v
    }
    switch a {
    case "--porter": o.porter = value()
    case "--reps": o.reps = Int(value()) ?? 3
    case "--markdown": o.markdown = value()
    case "--svg": o.svg = value()
    case "--keep": o.keep = true
    case "--spawn-n": o.spawnN = Int(value()) ?? 3000
    case "--cold-trials": o.coldTrials = Int(value()) ?? 200
    case "--idle-seconds": o.idleSeconds = Double(value()) ?? 20
    case "--scale-services": o.scaleServices = Int(value()) ?? 1000
    case "--path-files": o.pathFiles = Int(value()) ?? 2000
    case "-h", "--help": print(usage); exit(0)
    case "--proxy-bytes": o.proxyBytes = Int(value()) ?? (1 << 30)
    case "spawn", "cold", "idle", "scale", "path", "path-overflow", "log-flood", "idle-measure", "reload", "operate", "proxy", "migrate": chosen.append(a)
    default: print("unknown argument \(a)\n" + usage); exit(2)
    }
}
if !chosen.isEmpty { o.scenarios = chosen }
signal(SIGPIPE, SIG_IGN)

// Where the repository is: tools/bench/Sources/porter-bench/main.swift → root.
let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

Bench.work = FileManager.default.temporaryDirectory.appendingPathComponent("porter-bench-\(getpid())").path
try? FileManager.default.createDirectory(atPath: Bench.work, withIntermediateDirectories: true)
Bench.build = Bench.work + "/build"
try? FileManager.default.createDirectory(atPath: Bench.build, withIntermediateDirectories: true)
Bench.commandsLog = Bench.work + "/commands.log"
defer { if !o.keep { try? FileManager.default.removeItem(atPath: Bench.work) } }

// The floors and service programs, built for this run.
for name in ["hello", "fdwait", "holdconn", "limit-spawn", "limit-inproc", "limit-inotify", "stamp", "sink"] {
    let r = runCommand(["cc", "-O2", "-o", "\(Bench.build)/\(name)", "\(repo)/tools/bench/floors/\(name).c"])
    if r.status != 0 {
        log("cannot build \(name): \(r.output)")
        exit(1)
    }
}
if let p = o.porter {
    Bench.porter = p
} else {
    log("building porter: swift build -c release --static-swift-stdlib")
    let r = runCommand(["swift", "build", "-c", "release", "--static-swift-stdlib"], cwd: repo)
    if r.status != 0 {
        log(r.output)
        exit(1)
    }
    Bench.porter = repo + "/.build/release/porter"
}

var limit = rlimit()
getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
limit.rlim_cur = limit.rlim_max
setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)

let results = Results()
let started = Date()
for s in o.scenarios {
    let t0 = nowNS()
    switch s {
    case "spawn": scenarioSpawn(o, results)
    case "cold": scenarioCold(o, results)
    case "idle": scenarioIdle(o, results)
    case "scale": scenarioScale(o, results)
    case "path": scenarioPath(o, results)
    case "path-overflow": scenarioPath(o, results, queue: 256)
    case "log-flood": scenarioLogFlood(o, results)
    case "idle-measure": scenarioIdleMeasure(o, results)
    case "reload": scenarioReload(o, results)
    case "operate": scenarioOperate(o, results)
    case "proxy": scenarioProxy(o, results)
    case "migrate": scenarioMigrate(o, results)
    default: break
    }
    log("\(s) took \(fmt(Double(nowNS() - t0) / 1e9, 0)) s")
}

// The report.
var cpu = readText("/proc/cpuinfo").split(separator: "\n").first { $0.hasPrefix("model name") }.map { String($0.split(separator: ":").last ?? "").trimmingCharacters(in: .whitespaces) } ?? "?"
if cpu.isEmpty { cpu = "?" }
var uts = utsname()
uname(&uts)
let kernel = withUnsafeBytes(of: uts.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
let machine = "Linux \(kernel), \(ProcessInfo.processInfo.activeProcessorCount) CPUs (\(cpu)), \(ProcessInfo.processInfo.physicalMemory / (1 << 30)) GiB"
var md = "## porter-bench, \(ISO8601DateFormatter().string(from: started))\n\n"
md += "Machine: \(machine).  \nCommand: `porter-bench \(CommandLine.arguments.dropFirst().joined(separator: " "))`\n\n"
md += "Systems:\n\n"
for s in Systems.all {
    if let why = s.unavailable() {
        md += "- \(s.name): skipped, \(why)\n"
    } else {
        md += "- \(s.name): \(s.version())\n"
    }
}
md += "\nThe floor is the cheapest program that does each job (`tools/bench/floors/limit-spawn.c` for sockets, `limit-inotify.c` for files); ratios are to it, or to porter where a column says so. Medians; the machine is shared, so compare ratios within one run, not absolute numbers across runs.\n\n"
for t in results.tables { md += t.markdown + "\n" }
if !results.notes.isEmpty { md += results.notes.map { "- \($0)" }.joined(separator: "\n") + "\n\n" }
md += "### targets\n\n| target | goal | measured | met |\n|---|---|---|---|\n"
for t in results.targets {
    md += "| \(t.name) | \(t.goal) | \(t.measured) | \(t.met.map { $0 ? "yes" : "**no**" } ?? "-") |\n"
}
print(md)
if let path = o.markdown { writeText(path, md) }
if let path = o.svg { writeText(path, Chart.svg(results.panels, caption: "porter-bench on \(machine)")) }
