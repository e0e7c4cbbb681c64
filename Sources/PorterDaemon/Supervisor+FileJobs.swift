import Glibc
import PorterCore
import PorterSys

/// Accept=yes path units: one job per file, as FileJobs decides.
extension Supervisor {
    func version(_ path: String) -> FileVersion? {
        guard let st = (try? Files.status(path, follow: false)) ?? nil, st.isRegular else { return nil }
        return FileVersion(inode: st.inode, modified: st.modified, size: st.size)
    }

    func fileSeen(_ p: Int, _ dir: String, _ name: String, now: Instant) {
        let rt = paths[p]
        guard rt.jobs != nil else { return }
        if let v = version(dir + "/" + name) {
            performJobs(p, rt.jobs!.handle(.seen(name, v), now: now))
        } else {
            performJobs(p, rt.jobs!.handle(.vanished(name), now: now))
        }
    }

    /// Every matching file present: at start-up, after an overflow, and
    /// when a watched directory appears or is replaced.
    func scan(_ p: Int, now: Instant) {
        let rt = paths[p]
        guard rt.jobs != nil, !rt.failed else { return }
        var present: [String: FileVersion] = [:]
        for c in rt.config.conditions {
            for name in Files.regularFiles(in: c.directory, matching: c.pattern ?? "*") {
                if let v = version(c.directory + "/" + name) { present[name] = v }
            }
        }
        performJobs(p, rt.jobs!.handle(.scanned(present), now: now))
    }

    /// Carries out what the job queue decided. A job that cannot start
    /// counts as failed at once; the loop (not recursion) keeps a burst of
    /// such failures from nesting.
    func performJobs(_ p: Int, _ actions: [FileJobs.Action]) {
        var work = actions
        defer {
            // The end of a burst: hand the heap it needed back.
            if paths[p].jobs?.isIdle ?? false, paths[p].jobsSinceTrim >= 1000 {
                paths[p].jobsSinceTrim = 0
                Processes.trimHeap()
            }
        }
        var next = 0
        while next < work.count {
            let action = work[next]
            next += 1
            switch action {
            case .start(let file):
                if let failed = startJob(p, file) { work += failed }
            case .moveToFailed(let file):
                moveToFailed(p, file)
            case .log(let level, let message):
                Log.write(level, message)
            }
        }
    }

    /// The directory of the condition that holds `file`.
    private func directory(_ rt: PathRuntime, of file: String) -> String {
        let conds = rt.config.conditions
        if conds.count > 1, let c = conds.first(where: { Self.isJobFile(file, $0) && version($0.directory + "/" + file) != nil }) {
            return c.directory
        }
        return conds[0].directory
    }

    /// Starts the job of one file; returns the queue's actions if it could
    /// not be started.
    private func startJob(_ p: Int, _ file: String) -> [FileJobs.Action]? {
        let rt = paths[p]
        guard let template = rt.template, rt.jobs != nil else { return nil }
        let now = MonotonicClock.now()
        if stopping { return nil }
        let path = directory(rt, of: file) + "/" + file
        let instanceName = UnitName.escape(file)
        let unitName = template.config.name.withInstance(instanceName).description
        // Opened (or looked at) now: a file removed since it was queued has no job.
        var input: FileDescriptor? = nil
        if template.config.standardInput == .fileTrigger {
            guard let fd = try? Files.open(path, flags: O_RDONLY | O_NOFOLLOW | O_NONBLOCK) else {
                return rt.jobs!.handle(.exited(file, success: true, now: nil), now: now)
            }
            input = fd
        } else if version(path) == nil {
            return rt.jobs!.handle(.exited(file, success: true, now: nil), now: now)
        }
        defer { input?.close() }
        let launch: Launch
        do {
            let instance = try template.instance(instanceName)
            launch = try Launch.make(template, instance: instance, socket: nil, listen: [], triggerFile: input,
                                     activation: [("TRIGGER_UNIT", rt.name), ("TRIGGER_PATH", path)],
                                     devNull: devNull, fileLimit: childFileLimit,
                                     journal: { () throws(SysError) in try journal(for: template) })
        } catch let error as ValueError {
            Log.error("\(unitName): \(error.message)")
            return rt.jobs!.handle(.exited(file, success: false, now: version(path)), now: now)
        } catch let error as Launch.Failure {
            Log.error("\(unitName): \(error.message)")
            return rt.jobs!.handle(.exited(file, success: false, now: version(path)), now: now)
        } catch {
            Log.error("\(unitName): \(error)")
            return rt.jobs!.handle(.exited(file, success: false, now: version(path)), now: now)
        }
        defer { launch.close() }
        switch spawner.spawnDetached(launch.plan) {
        case .success(let pid):
            var instance = Instance(owner: .path(p, file: file), unit: unitName, kill: template.kill,
                                    ignoreFailure: template.config.exec?.ignoreFailure ?? false, executable: launch.plan.path)
            instance.runtimeEnd = template.config.runtimeMax.map { now + $0 }
            instances[pid] = instance
            Log.debug("\(unitName): started pid \(pid) for \(path)")
            rt.jobsSinceTrim += 1
            return nil
        case .failure(let error):
            if let pid = error.pid { failedSpawns.insert(pid) }
            if error.isExecFailure { template.forgetExecutable(launch.plan.path) }
            Log.error("\(unitName): \(error)")
            return rt.jobs!.handle(.exited(file, success: false, now: version(path)), now: now)
        }
    }

    /// A job ended: its file's fate is the queue's to decide.
    func jobExited(_ p: Int, file: String, success: Bool) {
        let rt = paths[p]
        guard rt.jobs != nil else { return }
        let now = MonotonicClock.now()
        let after = version(directory(rt, of: file) + "/" + file)
        performJobs(p, rt.jobs!.handle(.exited(file, success: success, now: after), now: now))
    }

    private func moveToFailed(_ p: Int, _ file: String) {
        let rt = paths[p]
        guard let failed = rt.config.failedDirectory else { return }
        let from = directory(rt, of: file) + "/" + file
        do {
            try Files.makeParents(of: failed + "/" + file, mode: rt.config.directoryMode)
            try Files.rename(from, failed + "/" + file)
            Log.warning("\(rt.name): moved \(from) to \(failed)/ after its job failed")
        } catch {
            Log.error("\(rt.name): cannot move \(from) to FailedDirectory=\(failed): \(error); left in place")
        }
    }
}
