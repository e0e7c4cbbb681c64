import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Monotonic time in nanoseconds.
func nowNS() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func sleepSeconds(_ s: Double) { usleep(UInt32(max(0, s) * 1_000_000)) }

func readText(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

func writeText(_ path: String, _ text: String) { try? text.write(toFile: path, atomically: false, encoding: .utf8) }

/// Starts `argv` in the background with stdout and stderr appended to `log`,
/// in a process group of its own so a stop reaches its children too.
func startProcess(_ argv: [String], log: String, environment: [String: String] = [:]) -> pid_t? {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var mask = sigset_t()
    sigemptyset(&mask)
    posix_spawnattr_setsigmask(&attr, &mask)
    posix_spawnattr_setpgroup(&attr, 0)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    let envStrings = env.map { "\($0.key)=\($0.value)" }
    let cArgs = argv.map { strdup($0) } + [nil]
    let cEnv = envStrings.map { strdup($0) } + [nil]
    defer {
        for a in cArgs { free(a) }
        for e in cEnv { free(e) }
    }
    var pid: pid_t = 0
    guard posix_spawnp(&pid, argv[0], &actions, &attr, cArgs, cEnv) == 0 else { return nil }
    appendLine(Bench.commandsLog, argv.joined(separator: " "))
    return pid
}

func appendLine(_ path: String, _ line: String) {
    guard let h = FileHandle(forWritingAtPath: path) ?? {
        FileManager.default.createFile(atPath: path, contents: nil)
        return FileHandle(forWritingAtPath: path)
    }() else { return }
    h.seekToEndOfFile()
    h.write((line + "\n").data(using: .utf8)!)
    try? h.close()
}

/// Whether the process exists and is not a zombie (reaps it if it is ours).
func alive(_ pid: pid_t) -> Bool {
    var status: Int32 = 0
    if waitpid(pid, &status, WNOHANG) == pid { return false }
    let stat = readText("/proc/\(pid)/stat")
    guard let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}

/// SIGTERM to the process group, SIGKILL after 3 s, reap.
func stopProcess(_ pid: pid_t) {
    kill(-pid, SIGTERM)
    kill(pid, SIGTERM)
    let deadline = nowNS() + 3_000_000_000
    while nowNS() < deadline && alive(pid) { usleep(5_000) }
    if alive(pid) {
        kill(-pid, SIGKILL)
        kill(pid, SIGKILL)
    }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
}

/// Memory of a process as the kernel accounts it (/proc/PID/smaps_rollup), in kB.
struct Memory {
    var rss = 0, pss = 0, anonymous = 0

    static func of(_ pids: [pid_t]) -> Memory {
        var m = Memory()
        for pid in pids {
            for line in readText("/proc/\(pid)/smaps_rollup").split(separator: "\n") {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count >= 2, let v = Int(f[1]) else { continue }
                switch f[0] {
                case "Rss:": m.rss += v
                case "Pss:": m.pss += v
                case "Anonymous:": m.anonymous += v
                default: break
                }
            }
        }
        return m
    }

    /// RSS and PSS of the mappings of `binary`'s executable code in `pid`.
    static func text(of pid: pid_t) -> (rss: Int, pss: Int) {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? ""
        var inText = false, rss = 0, pss = 0
        for line in readText("/proc/\(pid)/smaps").split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 6, f[0].contains("-"), f[1].count == 4 {
                inText = f[1].contains("x") && String(f[5]) == exe
            } else if inText, f.count >= 2 {
                if f[0] == "Rss:" { rss += Int(f[1]) ?? 0 }
                if f[0] == "Pss:" { pss += Int(f[1]) ?? 0 }
            }
        }
        return (rss, pss)
    }
}

/// Context switches (all threads) and CPU ticks of processes.
func activity(_ pids: [pid_t]) -> (switches: Int, ticks: Int) {
    var switches = 0, ticks = 0
    for pid in pids {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        for t in tasks {
            for line in readText("/proc/\(pid)/task/\(t)/status").split(separator: "\n") where line.contains("ctxt_switches") {
                switches += Int(line.split(separator: "\t").last?.trimmingCharacters(in: .whitespaces) ?? "") ?? 0
            }
        }
        let stat = readText("/proc/\(pid)/stat")
        if let close = stat.lastIndex(of: ")") {
            let f = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
            if f.count > 12 { ticks += (Int(f[11]) ?? 0) + (Int(f[12]) ?? 0) }
        }
    }
    return (switches, ticks)
}

/// Runs a command to completion and returns its output (for versions, builds).
@discardableResult
func runCommand(_ argv: [String], cwd: String? = nil) -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = argv
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    do { try p.run() } catch { return (127, "\(error)") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

func which(_ name: String) -> String? {
    let path: [String] = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
    for dir in path + ["/usr/sbin", "/sbin", "/usr/lib/systemd"] {
        let p = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}
