import Glibc
import PorterCore
import PorterSys

/// Accept=yes path units: one job per file, as FileJobs decides.
extension Supervisor {
    /// What a job's file is now, looked up in the verified directory
    /// without following a symlink: only regular files become jobs.
    func version(_ dir: FileDescriptor?, _ name: String) -> FileVersion? {
        guard let dir, let st = Files.status(at: dir, name), st.isRegular else { return nil }
        return FileVersion(inode: st.inode, modified: st.modified, size: st.size)
    }

    func fileSeen(_ rt: PathRuntime, _ q: PathRuntime.JobQueue, _ c: Int, _ name: String, now: Instant) {
        if let v = version(rt.directories[c], name) {
            performJobs(rt, q, q.jobs.handle(.seen(name, v), now: now))
        } else {
            performJobs(rt, q, q.jobs.handle(.vanished(name), now: now))
        }
    }

    /// Every matching file present: at start-up, after an overflow, and
    /// when a watched directory appears or is replaced.
    func scan(_ rt: PathRuntime, now: Instant) {
        guard let q = rt.queue else { return }
        var present: [String: FileVersion] = [:]
        for (c, cond) in rt.config.conditions.enumerated() {
            guard let dir = rt.directories[c] else { continue }
            var notText = 0
            for name in Files.regularFiles(in: dir, matching: cond.pattern ?? "*", notText: &notText) {
                if let v = version(dir, name) { present[name] = v }
            }
            if notText > 0 {
                failure(.path(rt.id, file: ""), "\(rt.name): \(notText) file\(notText == 1 ? "" : "s") in \(cond.directory) with a name that is not UTF-8; not jobs (rename them)", level: .warning)
            }
        }
        performJobs(rt, q, q.jobs.handle(.scanned(present), now: now))
    }

    /// Carries out what the job queue decided. A job that cannot start
    /// counts as failed at once; the loop (not recursion) keeps a burst of
    /// such failures from nesting.
    func performJobs(_ rt: PathRuntime, _ q: PathRuntime.JobQueue, _ actions: [FileJobs.Action]) {
        if q.jobs.enqueued != q.counted {
            let n = q.jobs.enqueued &- q.counted
            q.counted = q.jobs.enqueued
            stats.count(rt.name) {
                $0.jobsQueued += n
                $0.pathTriggers += n
            }
        }
        var work = actions
        defer {
            // The end of a burst: hand the heap it needed back.
            if q.jobs.isIdle, q.sinceTrim >= 1000 {
                q.sinceTrim = 0
                Processes.trimHeap()
            }
        }
        var next = 0
        while next < work.count {
            let action = work[next]
            next += 1
            switch action {
            case .start(let file):
                if let failed = startJob(rt, q, file) { work += failed }
            case .moveToFailed(let file):
                moveToFailed(rt, file)
            case .log(let level, let message):
                Log.write(level, message)
            }
        }
    }

    /// The condition whose directory holds `file`.
    private func condition(_ rt: PathRuntime, of file: String) -> Int {
        let conds = rt.config.conditions
        if conds.count > 1, let c = conds.indices.first(where: { Self.isJobFile(file, conds[$0]) && version(rt.directories[$0], file) != nil }) {
            return c
        }
        return 0
    }

    /// Starts the job of one file; returns the queue's actions if it could
    /// not be started.
    private func startJob(_ rt: PathRuntime, _ q: PathRuntime.JobQueue, _ file: String) -> [FileJobs.Action]? {
        if let verdict = conditionCheck.verdict(q.template.config.unitConditions) {
            let unit = q.template.config.name.withInstance(UnitName.escape(file)).description
            let dir = rt.directories[condition(rt, of: file)]
            switch verdict {
            case .skip(let why):
                // Done, as a unit whose condition failed is: the file waits for its next change.
                failure(rt, "\(unit): skipped: \(why)", level: .info)
                return q.jobs.handle(.exited(file, success: true, now: version(dir, file)), now: MonotonicClock.now())
            case .fail(let why):
                failure(rt, "\(unit): failed: \(why)", level: .warning)
                return q.jobs.handle(.exited(file, success: false, now: version(dir, file)), now: MonotonicClock.now())
            }
        }
        guard q.template.config.hasExtraCommands else { return startJob(rt, q, file, sequence: nil) }
        // ExecCondition= ... ExecStopPost=, one process at a time.
        let c = q.template.config
        var seq = CommandSequence(c.commands, phases: CommandSequence.Phase.run, success: c.successExitStatus)
        guard seq.start() != nil else { return startJob(rt, q, file, sequence: nil) }
        return startJob(rt, q, file, sequence: seq)
    }

    /// Starts `sequence`'s current step (or the one ExecStart= without one).
    private func startJob(_ rt: PathRuntime, _ q: PathRuntime.JobQueue, _ file: String,
                          sequence: CommandSequence?) -> [FileJobs.Action]? {
        let template = q.template
        let now = MonotonicClock.now()
        if stopping { return nil }
        var sequence = sequence
        let step = sequence?.current
        let c = condition(rt, of: file)
        let dir = rt.directories[c]
        let path = rt.config.conditions[c].directory + "/" + file
        let instanceName = UnitName.escape(file)
        let unitName = template.config.name.withInstance(instanceName).description
        // Opened (or looked at) now, in the verified directory and without
        // following a symlink: a file removed since it was queued has no job.
        var input: FileDescriptor? = nil
        let first = sequence?.isFirst ?? true
        if template.config.standardInput == .fileTrigger && step.map({ $0.phase == .start }) ?? true {
            guard let dir, let fd = try? Files.open(at: dir, file, flags: O_RDONLY | O_NONBLOCK) else {
                // A later command of a job whose file an earlier one removed
                // reads nothing; the first one has no job.
                if !first { return stepFailed(rt, q, file, &sequence, unitName, "\(path): gone, nothing to read") }
                return q.jobs.handle(.exited(file, success: true, now: nil), now: now)
            }
            input = fd
        } else if first && version(dir, file) == nil {
            return q.jobs.handle(.exited(file, success: true, now: nil), now: now)
        }
        defer { input?.close() }
        let launch: Launch
        do {
            let instance = try template.instance(instanceName)
            var activation = [("TRIGGER_UNIT", rt.name), ("TRIGGER_PATH", path)]
            if let seq = sequence, let step, step.phase == .stop || step.phase == .stopPost {
                activation += Self.stopVariables(seq, mainPID: nil)
            }
            launch = try Launch.make(template, instance: instance, socket: nil, listen: [], triggerFile: input,
                                     activation: activation, devNull: devNull, fileLimit: childFileLimit, step: step,
                                     journal: { () throws(SysError) in try journal(for: template) })
        } catch let error as ValueError {
            return stepFailed(rt, q, file, &sequence, unitName, error.message)
        } catch let error as Launch.Failure {
            return stepFailed(rt, q, file, &sequence, unitName, error.message)
        } catch {
            return stepFailed(rt, q, file, &sequence, unitName, "\(error)")
        }
        defer { launch.close() }
        switch spawner.spawnDetached(launch.plan) {
        case .success(let pid):
            let machine = InstanceMachine(pid: pid, unit: unitName, kill: template.kill, started: now,
                                          runtimeMax: Self.timeLimit(of: step, template.config), idleTimeout: nil, measured: false)
            var inst = Instance(owner: .path(rt.id, file: file), ignoreFailure: template.config.exec?.ignoreFailure ?? false,
                                executable: launch.plan.path, journal: template.journal, machine: machine)
            inst.sequence = sequence
            inst.template = template.config.name.description
            if first {
                let since = q.jobs.seenAt(file)
                stats.count(inst.template) {
                    $0.activations += 1
                    // Event -> exec, the wait behind MaxRunning= included.
                    if let since { $0.latency.observe(nanoseconds: (MonotonicClock.now() - since).nanoseconds) }
                }
            }
            instances[pid] = inst
            Log.debug("\(unitName): started pid \(pid)\(step.map { " (\($0.label))" } ?? "") for \(path)")
            if sequence?.isFirst ?? true { q.sinceTrim += 1 }
            return nil
        case .failure(let error):
            if let pid = error.pid { failedSpawns.insert(pid) }
            if error.isExecFailure { template.forgetExecutable(launch.plan.path) }
            stats.count(template.config.name.description) { $0.spawnFailures += 1 }
            return stepFailed(rt, q, file, &sequence, unitName, "\(error)")
        }
    }

    /// A step (or the one command) could not be started: the next step of
    /// the sequence (ExecStopPost= still runs), or the job failed.
    private func stepFailed(_ rt: PathRuntime, _ q: PathRuntime.JobQueue, _ file: String,
                            _ sequence: inout CommandSequence?, _ unit: String, _ why: String) -> [FileJobs.Action]? {
        Log.error("\(unit): \(why)")
        if var seq = sequence, seq.couldNotStart(why) != nil {
            return startJob(rt, q, file, sequence: seq)
        }
        let c = condition(rt, of: file)
        return q.jobs.handle(.exited(file, success: sequence.map { $0.outcome == .success } ?? false,
                                     now: version(rt.directories[c], file)), now: MonotonicClock.now())
    }

    /// One step of a per-file job exited: the next one, or the job's end.
    /// True when the job goes on.
    func jobStepExited(_ rt: PathRuntime, _ inst: Instance, file: String, _ status: ExitStatus) -> Bool {
        guard var seq = inst.sequence, let q = rt.queue else { return false }
        if seq.exited(ProcessExit(status)) != nil {
            if let actions = startJob(rt, q, file, sequence: seq) { performJobs(rt, q, actions) }
            return true
        }
        // A skipped job is done, as a unit whose condition failed is not
        // run: the file waits for its next change.
        let success: Bool
        switch seq.outcome {
        case .success: success = true
        case .skipped(let why):
            Log.info("\(inst.unit): skipped: \(why)")
            success = true
        case .failed(_, let why):
            Log.warning("\(inst.unit): failed: \(why)")
            success = false
        }
        stats.exited(inst.template, instance: inst.unit, pid: inst.machine.pid, status, success: success, now: MonotonicClock.now())
        jobExited(rt, file: file, success: success)
        return true
    }

    /// A step's time limit: RuntimeMaxSec= for ExecStart=, the start
    /// timeout for the others before it, TimeoutStopSec= after it.
    static func timeLimit(of step: CommandSequence.Step?, _ c: ServiceConfig) -> Duration? {
        // RuntimeMaxSec=, with an even draw of RuntimeRandomizedExtraSec= for each process.
        let runtime = c.runtimeMax.map { $0 + .nanoseconds(Int64.random(in: 0...(c.runtimeRandomizedExtra?.nanoseconds ?? 0))) }
        guard let step else { return runtime }
        switch step.phase {
        case .start: return runtime
        case .condition, .startPre, .startPost, .reload: return c.startTimeout
        case .stop, .stopPost: return c.timeoutStop.duration
        }
    }

    /// $SERVICE_RESULT, $EXIT_CODE, $EXIT_STATUS (and $MAINPID while the
    /// main process runs) for ExecStop= and ExecStopPost=.
    static func stopVariables(_ seq: CommandSequence, mainPID: Int32?) -> [(String, String)] {
        var v = [("SERVICE_RESULT", seq.outcome.serviceResult)]
        if let e = seq.mainExit {
            v.append(("EXIT_CODE", e.exitCode))
            v.append(("EXIT_STATUS", e.exitStatus))
        }
        if let mainPID { v.append(("MAINPID", String(mainPID))) }
        return v
    }

    /// A job ended: its file's fate is the queue's to decide.
    func jobExited(_ rt: PathRuntime, file: String, success: Bool) {
        stats.count(rt.name) { if success { $0.jobsDone += 1 } else { $0.jobsFailed += 1 } }
        guard let q = rt.queue else { return }
        let now = MonotonicClock.now()
        let after = version(rt.directories[condition(rt, of: file)], file)
        performJobs(rt, q, q.jobs.handle(.exited(file, success: success, now: after), now: now))
    }

    /// FailedDirectory= is resolved (and made) like a watched directory,
    /// and the file moved between the two verified directory fds: neither
    /// a symlinked inbox nor a symlinked failed/ can make porter move
    /// someone else's file.
    private func moveToFailed(_ rt: PathRuntime, _ file: String) {
        guard let failed = rt.config.failedDirectory else { return }
        let c = condition(rt, of: file)
        let from = rt.config.conditions[c].directory + "/" + file
        guard let dir = rt.directories[c] else {
            Log.error("\(rt.name): cannot move \(from) to FailedDirectory=\(failed): its directory is not watched any more; left in place")
            return
        }
        do {
            let target = try SafePath.directory(failed, trust: .porter, create: rt.config.directoryMode)
            defer { target.close() }
            do { try Files.rename(at: dir, file, to: target, file) } catch {
                throw SafePath.Problem(description: error.description)
            }
            Log.warning("\(rt.name): moved \(from) to \(failed)/ after its job failed")
        } catch {
            Log.error("\(rt.name): cannot move \(from) to FailedDirectory=\(failed): \(error); left in place")
        }
    }
}
