import Glibc
import PorterCore
import PorterSys

/// sd_notify(3) for Accept=no services: READY=1, STATUS=, STOPPING=1,
/// ERRNO=, MAINPID=, EXTEND_TIMEOUT_USEC=, WATCHDOG=1, FDSTORE=1 with
/// FDNAME=, FDSTOREREMOVE=1. A message counts only when its sender (the
/// kernel's SCM_CREDENTIALS, not anything the message says) is allowed by
/// the service's NotifyAccess=.
extension Supervisor {
    func notificationsArrived() {
        guard let notify else { return }
        while let message = notify.receive() {
            var fds = message.fds
            defer { for fd in fds { fd.close() } }  // whatever was not stored
            guard let s = service(of: message.pid) else {
                Log.debug("notification from pid \(message.pid), which belongs to no service; ignored")
                continue
            }
            if let why = message.truncation {
                Log.warning("\(s.name): notification from pid \(message.pid) rejected: \(why); \(message.fds.count) fd\(message.fds.count == 1 ? "" : "s") closed")
                continue
            }
            let fields: [(key: String, value: String)]
            do { fields = try NotifyDatagram.parse(message.text) } catch {
                Log.warning("\(s.name): notification from pid \(message.pid) rejected: \(error)")
                continue
            }
            let access = s.prepared.config.effectiveNotifyAccess
            let fromMain = message.pid == s.machine.pid
            guard access == .all || access == .exec && (fromMain || Processes.group(of: message.pid) == s.group) || access == .main && fromMain else {
                Log.warning("\(s.name): notification from pid \(message.pid) refused (NotifyAccess=\(access.rawValue))")
                continue
            }
            let now = MonotonicClock.now()
            let name = fields.last { $0.key == "FDNAME" }?.value ?? "stored"
            let stamp = fields.last { $0.key == "MONOTONIC_USEC" }.flatMap { Int64($0.value) }
            for (key, value) in fields {
                switch (key, value) {
                case ("READY", "1"):
                    perform(s.machine.handle(.ready, now: now), service: s, now: now)
                    if s.reload != nil { reloadEvent(s, .ready) } else if s.reloading {
                        s.reloading = false
                        Log.info("\(s.name): reloaded (by itself)")
                    }
                case ("RELOADING", "1"):
                    if s.reload != nil {
                        reloadEvent(s, .reloading(monotonicMicroseconds: stamp))
                    } else if s.machine.state.isReady {
                        // A reload the service began by itself, as systemd
                        // tracks it: "reloading" until READY=1.
                        s.reloading = true
                        Log.info("\(s.name): reloading (by itself)")
                    }
                case ("WATCHDOG", "1"):
                    perform(s.machine.handle(.watchdogPing, now: now), service: s, now: now)
                case ("STATUS", _):
                    s.status = value
                    Log.info("\(s.name): status: \(value)")
                case ("STOPPING", "1"):
                    Log.info("\(s.name): stopping")
                case ("ERRNO", _):
                    Log.info("\(s.name): errno \(value)" + (Int32(value).map { " (\(SysError.describe($0)))" } ?? ""))
                case ("EXTEND_TIMEOUT_USEC", _):
                    if let us = Int64(value) { perform(s.machine.handle(.extendTimeout(.microseconds(us)), now: now), service: s, now: now) }
                case ("MAINPID", _):
                    if let pid = Int32(value) { moveMain(s, to: pid, now: now) }
                case ("FDSTORE", "1"):
                    store(s, &fds, name: name)
                case ("FDSTOREREMOVE", "1"):
                    let removed = s.stored.filter { $0.name == name }
                    for r in removed { r.fd.close() }
                    s.stored.removeAll { $0.name == name }
                    Log.info("\(s.name): removed \(removed.count) stored fd\(removed.count == 1 ? "" : "s") named \(name)")
                default:
                    break
                }
            }
        }
    }

    /// The service a sender belongs to: its main process, or a process in
    /// the process group of a running service.
    private func service(of pid: Int32) -> ServiceRuntime? {
        if let id = servicePIDs[pid] { return services[id] }
        if let s = services.first(where: { $0.mainWatch?.pid == pid }) { return s }
        let g = Processes.group(of: pid)
        return services.first { $0.group != nil && $0.group == g && $0.machine.pid != nil }
    }

    private func store(_ s: ServiceRuntime, _ fds: inout [FileDescriptor], name: String) {
        let room = s.prepared.config.fdStoreMax - s.stored.count
        guard room > 0 else {
            Log.warning("\(s.name): FDSTORE=1 with \(fds.count) fd\(fds.count == 1 ? "" : "s") refused: FileDescriptorStoreMax=\(s.prepared.config.fdStoreMax) is full")
            return
        }
        let taken = fds.prefix(room)
        s.stored += taken.map { ($0, name) }
        fds.removeFirst(taken.count)
        Log.info("\(s.name): stored \(taken.count) fd\(taken.count == 1 ? "" : "s") named \(name) (\(s.stored.count) of \(s.prepared.config.fdStoreMax))")
    }

    /// A run ended: FileDescriptorStorePreserve= says whether the stored
    /// fds wait for the next one.
    func releaseStore(_ s: ServiceRuntime) {
        guard !s.stored.isEmpty else { return }
        let restarting: Bool
        if case .waitingRestart = s.machine.state { restarting = true } else { restarting = false }
        switch s.prepared.config.fdStorePreserve {
        case .yes: return
        case .restart where restarting: return
        case .restart, .no: break
        }
        for r in s.stored { r.fd.close() }
        Log.info("\(s.name): released \(s.stored.count) stored fd\(s.stored.count == 1 ? "" : "s") (FileDescriptorStorePreserve=\(s.prepared.config.fdStorePreserve.rawValue))")
        s.stored.removeAll()
    }

    /// MAINPID=: the service's main process is now `pid`. porter can wait
    /// only for its own children, so another process is followed through a
    /// pidfd, which becomes readable when it exits.
    private func moveMain(_ s: ServiceRuntime, to pid: Int32, now: Instant) {
        guard pid > 0, let old = s.machine.pid, pid != old else { return }
        guard Processes.group(of: pid) == s.group else {
            Log.warning("\(s.name): MAINPID=\(pid) refused: not in the service's process group")
            return
        }
        guard let fd = Processes.pidfd(pid) else {
            Log.warning("\(s.name): MAINPID=\(pid) refused: cannot follow it (pidfd_open)")
            return
        }
        do {
            let token = try register(fd, .mainExit(service: s.id))
            if let w = s.mainWatch { unregister(w.fd, token: w.token); w.fd.close() }
            s.mainWatch = (pid, fd, token)
            servicePIDs[old] = nil
            perform(s.machine.handle(.mainPID(pid), now: now), service: s, now: now)
        } catch {
            fd.close()
            Log.warning("\(s.name): MAINPID=\(pid) refused: \(error.reason)")
        }
    }

    /// The followed main process is gone. Its exit status is its parent's
    /// to collect, not porter's: the run counts as a clean end.
    func mainProcessExited(_ s: ServiceRuntime) {
        guard let w = s.mainWatch else { return }
        unregister(w.fd, token: w.token)
        w.fd.close()
        s.mainWatch = nil
        Log.info("\(s.name): main pid \(w.pid) exited")
        mainExited(s, pid: w.pid, result: .success, progress: true)
    }
}
