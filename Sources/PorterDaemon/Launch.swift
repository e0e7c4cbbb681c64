import Glibc
import PorterCore
import PorterSys

/// Turns a prepared service and one activation into a SpawnPlan: the
/// standard streams (systemd.exec(5) "Logging and Standard Input/Output"),
/// the fds from 3 on with LISTEN_FDS/LISTEN_FDNAMES (sd_listen_fds(3)), the
/// environment, argv, credentials and working directory.
struct Launch {
    var plan: SpawnPlan
    /// Files opened for this start only (file:, append:), closed after spawning.
    var opened: [FileDescriptor] = []

    struct Failure: Error {
        var message: String
        init(message: String) { self.message = message }
        init(_ message: String) { self.message = message }
    }

    /// - socket: the connection (Accept=yes) or the single listening socket
    ///   (Accept=no) for StandardInput/Output/Error=socket.
    /// - listen: fds for 3... with their names; ignored when the socket is on stdio.
    /// - stored: fds from the service's fd store, passed after `listen`.
    /// - activation: per-start variables (REMOTE_ADDR, TCP*, NOTIFY_SOCKET, ...).
    static func make(_ p: PreparedService, instance: ServiceInstance, socket: FileDescriptor?,
                     listen: [(fd: FileDescriptor, name: String)], stored: [(fd: FileDescriptor, name: String)] = [],
                     triggerFile: FileDescriptor? = nil,
                     activation: [(String, String)],
                     devNull: FileDescriptor, fileLimit: (soft: UInt64, hard: UInt64)?,
                     step: CommandSequence.Step? = nil,
                     journal: () throws(SysError) -> FileDescriptor) throws(Failure) -> Launch {
        let c = p.config
        // A control command (ExecCondition=, ExecStartPre=, ...): no socket
        // and no listening fds, stdin from /dev/null, output to the log
        // unless a file is configured. Only ExecStart= gets the activation.
        let control = step.map { $0.phase != .start } ?? false
        var instance = instance
        if let step {
            do {
                let sp = Specifiers(unit: instance.unit, host: p.host, user: c.user)
                instance.executable = try sp.expand(step.command.path)
                instance.arguments = try step.command.arguments.map { (a) throws(ValueError) in try sp.expand(a) }
                instance.expandEnvironment = step.command.expandEnvironment
            } catch {
                throw Failure("\(step.label): \(error.message)")
            }
        }
        let socket = control ? nil : socket
        let listen = control ? [] : listen
        let stored = control ? [] : stored
        var launch = Launch(plan: SpawnPlan(path: "", arguments: [], environment: [], fds: []))
        do throws(SysError) {
            let input: Int32
            switch control ? StandardInput.null : c.standardInput {
            case .null: input = devNull.rawValue
            case .socket: input = socket!.rawValue
            case .file(let path):
                let fd = try Files.open(path, flags: O_RDONLY)
                launch.opened.append(fd)
                input = fd.rawValue
            case .fileTrigger:
                input = triggerFile?.rawValue ?? devNull.rawValue
            }
            let outputKind = control && c.standardOutput == .socket ? .journal : c.standardOutput
            let errorKind = control && c.standardError == .socket ? .journal : c.standardError
            let output = try stream(control && outputKind == .inherit ? .journal : outputKind, inherit: input, &launch, devNull, socket, journal)
            let error = try stream(errorKind, inherit: output, &launch, devNull, socket, journal)
            launch.plan.fds = [input, output, error]
        } catch {
            launch.close()
            throw Failure(message: "standard streams: \(error)")
        }

        var activationEnv = activation
        if !c.directories.isEmpty {
            do { activationEnv += try DirectoryMaker.make(p, unit: instance.unit) } catch {
                launch.close()
                throw error
            }
        }
        let socketIO = c.standardInput == .socket || c.standardOutput == .socket || c.standardError == .socket
        // OpenFile=: opened now, with porter's privileges, after the sockets and stored fds.
        var files: [(fd: FileDescriptor, name: String)] = []
        if !control {
            for f in c.openFiles {
                do {
                    let fd = try Self.open(f)
                    launch.opened.append(fd)
                    files.append((fd, f.name))
                } catch {
                    if f.graceful {
                        Log.debug("\(instance.unit): OpenFile=\(f.path): \(error); left out (graceful)")
                        continue
                    }
                    launch.close()
                    throw Failure(message: "OpenFile=\(f.path): \(error)")
                }
            }
        }
        let passed = (socketIO ? [] : listen) + stored + files
        if !passed.isEmpty {
            launch.plan.fds += passed.map(\.fd.rawValue)
            activationEnv.append(("LISTEN_FDS", String(passed.count)))
            activationEnv.append(("LISTEN_FDNAMES", passed.map(\.name).joined(separator: ":")))
            launch.plan.setListenPID = true
        }
        if let w = c.watchdog {
            activationEnv.append(("WATCHDOG_USEC", String(w.nanoseconds / 1000)))
            launch.plan.setWatchdogPID = true
        }

        var env: [String]
        do { env = try p.environment(for: instance) } catch {
            launch.close()
            throw error
        }
        if !activationEnv.isEmpty {
            // Activation variables win over configured ones of the same name;
            // most services configure none, so look only when one could clash.
            if env.contains(where: Launch.mayClash) {
                let names = Set(activationEnv.map(\.0) + ["LISTEN_PID", "LISTEN_PIDFDID", "WATCHDOG_PID"])
                env.removeAll { e in e.firstIndex(of: "=").map { names.contains(String(e[..<$0])) } ?? false }
            }
            env.reserveCapacity(env.count + activationEnv.count)
            for (k, v) in activationEnv { env.append(k + "=" + v) }
        }
        launch.plan.environment = env
        launch.plan.arguments = p.arguments(instance, environment: env)
        guard let path = p.executable(instance.executable) else {
            launch.close()
            throw Failure(message: "exec \(instance.executable): not found in \(Files.searchPath.joined(separator: ":"))")
        }
        launch.plan.path = path
        if let step {
            if !step.command.fullPrivileges, let ids = p.accountIDs { launch.plan.ids = ids }
        } else if let ids = p.ids {
            launch.plan.ids = ids
        }
        if let wd = instance.workingDirectory {
            launch.plan.workingDirectory = wd.path ?? p.home
            launch.plan.workingDirectoryOptional = wd.optional
        } else {
            // systemd.exec(5): the root directory for a system manager, the
            // user's home for a user manager; never porter's own cwd.
            launch.plan.workingDirectory = p.defaultWorkingDirectory
            launch.plan.workingDirectoryOptional = true
        }
        launch.plan.umask = Int32(c.umask)
        launch.plan.noNewPrivileges = c.noNewPrivileges
        // LimitNOFILE= replaces the limit porter restores from its start.
        launch.plan.fileLimit = c.process.limit(7) == nil ? fileLimit : nil
        launch.plan.settings = Self.settings(c.process)
        return launch
    }

    /// Core's settings as the spawner's plain values. Always some: the
    /// default ignores SIGPIPE, as systemd's IgnoreSIGPIPE=yes does.
    static func settings(_ p: ProcessSettings) -> SpawnPlan.Settings? {
        var s = SpawnPlan.Settings()
        s.limits = p.limits.map { ($0.resource, $0.soft, $0.hard) }
        s.nice = p.nice
        s.oomScoreAdjust = p.oomScoreAdjust
        s.ioPriority = p.ioPriority
        // SCHED_RESET_ON_FORK is or'ed into the policy.
        s.scheduler = p.cpuScheduling.map { ($0.policy | ($0.resetOnFork ? 0x4000_0000 : 0), $0.priority) }
        s.affinity = p.cpuAffinity
        s.timerSlack = p.timerSlackNanoseconds
        s.personality = p.personality
        s.ignoreSIGPIPE = p.ignoreSIGPIPE
        return s
    }

    /// Whether the plan's strings were large enough (a 100 000-argument
    /// ExecStart=, a huge %i) that the heap they needed should go back to
    /// the kernel once the child has its copy.
    var isLarge: Bool {
        var total = 0
        for a in plan.arguments { total += a.utf8.count; if total > 1 << 20 { return true } }
        for e in plan.environment { total += e.utf8.count; if total > 1 << 20 { return true } }
        return false
    }

    private static func stream(_ kind: StandardOutput, inherit: Int32, _ launch: inout Launch, _ devNull: FileDescriptor,
                               _ socket: FileDescriptor?, _ journal: () throws(SysError) -> FileDescriptor) throws(SysError) -> Int32 {
        switch kind {
        case .inherit: return inherit
        case .null: return devNull.rawValue
        case .socket: return socket!.rawValue
        case .journal: return try journal().rawValue
        case .file(let path), .append(let path), .truncate(let path):
            var flags = O_WRONLY | O_CREAT
            if case .append = kind { flags |= O_APPEND }
            if case .truncate = kind { flags |= O_TRUNC }
            let fd = try Files.open(path, flags: flags)
            launch.opened.append(fd)
            return fd.rawValue
        }
    }

    func close() {
        for fd in opened { fd.close() }
    }

    /// Whether a configured NAME=value could be one porter sets per start.
    static func mayClash(_ entry: String) -> Bool {
        let u = entry.utf8
        guard let f = u.first else { return false }
        switch f {
        case UInt8(ascii: "N"), UInt8(ascii: "W"):
            return entry.hasPrefix("NOTIFY_SOCKET=") || entry.hasPrefix("WATCHDOG_")
        case UInt8(ascii: "L"), UInt8(ascii: "R"), UInt8(ascii: "P"), UInt8(ascii: "T"), UInt8(ascii: "U"):
            return entry.hasPrefix("LISTEN_") || entry.hasPrefix("REMOTE_") || entry.hasPrefix("PROTO=")
                || entry.hasPrefix("TCP") || entry.hasPrefix("UNIXREMOTE")
        default:
            return false
        }
    }
}

extension ProcessExit {
    init(_ s: ExitStatus) {
        switch s {
        case .exited(let n): self = .exited(n)
        case .signaled(let sig, let core): self = .signaled(sig, core: core)
        }
    }
}
