/// What porter knows of one version of a file: a new inode, new contents
/// or a new modification time is a new appearance; the same version seen
/// twice (an inotify event and a rescan, or a stale event read after the
/// job already ran) is one.
public struct FileVersion: Hashable, Sendable, Codable {
    public var inode: UInt64
    public var modified: Int64
    public var size: Int64

    public init(inode: UInt64, modified: Int64, size: Int64) {
        self.inode = inode
        self.modified = modified
        self.size = size
    }
}

/// The per-file jobs of one Accept=yes path unit: one job per file
/// appearance, at most `maxRunning` at once, the rest waiting in arrival
/// order. Memory is bounded by the files that exist: every table holds only
/// names of files present (or believed present until the next event).
///
///   event          | effect
///   ---------------+---------------------------------------------------------------
///   seen(f, v)     | a version not queued, running, done or retrying yet is queued;
///                  | a new version of a running file runs again after the job;
///                  | a new version of a done or retrying file is queued now
///   scanned(all)   | seen() for each present file (start-up, after the inotify
///                  | queue overflowed); files not present are forgotten
///   vanished(f)    | forgotten; a queued job not started yet is dropped
///   exited(f, ok)  | changed meanwhile (or gone): queued again (or forgotten);
///                  | ok: done; failed: FailedDirectory= set: [move], otherwise
///                  | retrying after a back-off (1 s doubling, capped), then queued
///   timer          | due retries are queued
///   hold(on)       | while on, nothing starts (files queue); off: starts resume
/// After every event, jobs start while fewer than `maxRunning` run.
public struct FileJobs: Sendable, Codable {
    public enum Event: Equatable, Sendable {
        case seen(String, FileVersion)
        case scanned([String: FileVersion])
        case vanished(String)
        /// `now` is the file's version after the job, nil if it is gone.
        case exited(String, success: Bool, now: FileVersion?)
        case timer
        /// `porter stop` / `porter start`: while held, files queue up and
        /// no job starts; running ones finish.
        case hold(Bool)
    }

    public enum Action: Equatable, Sendable {
        case start(String)
        /// Move the file of a failed job to FailedDirectory=.
        case moveToFailed(String)
        case log(LogLevel, String)
    }

    public let name: String
    public let maxRunning: Int
    public let moveFailed: Bool
    public var backoffBase = Duration.seconds(1)
    public var backoffCap = Duration.seconds(300)

    private var queue: [String] = []
    private var head = 0
    private var queued: [String: FileVersion] = [:]
    /// When each queued file was first seen, for the activation latency
    /// (event -> exec). Optional so that a state saved by an older porter,
    /// without it, still reads (its queued files are simply not measured).
    private var queuedSince: [String: Instant]? = [:]
    /// The version each running job was started for, and whether a newer
    /// one appeared meanwhile.
    private var running: [String: Run] = [:]
    struct Run: Codable, Sendable {
        var version: FileVersion
        var again: Bool
        /// When the file that this job runs for was seen (nil: unknown).
        var since: Instant?
    }
    private var done: [String: FileVersion] = [:]
    private var retrying: [String: Retry] = [:]
    struct Retry: Codable, Sendable {
        var version: FileVersion
        var at: Instant
    }
    /// The earliest retry: the loop asks on every wake-up, so it is kept at
    /// hand, and found again by a scan only when the earliest one went.
    private var nextRetry: Instant?
    private var nextRetryGone = false
    /// Failed attempts so far of files that have not succeeded yet.
    private var failures: [String: Int] = [:]

    public init(name: String, maxRunning: Int, moveFailed: Bool) {
        self.name = name
        self.maxRunning = maxRunning
        self.moveFailed = moveFailed
    }

    public private(set) var held = false
    /// Files taken into the queue so far (a count for the metrics).
    public private(set) var enqueued: UInt64 = 0
    public var waiting: Int { queued.count }
    public var runningCount: Int { running.count }
    /// Entries held in every table: bounded by the files present.
    public var remembered: Int {
        queued.count + (queuedSince?.count ?? 0) + running.count + done.count + retrying.count + failures.count
    }

    /// The next retry, if any.
    public var deadline: Instant? { nextRetry }

    public mutating func handle(_ event: Event, now: Instant) -> [Action] {
        var actions: [Action] = []
        switch event {
        case .seen(let file, let version):
            see(file, version, now: now)
        case .scanned(let present):
            done = done.filter { present[$0.key] != nil }
            for file in retrying.keys where present[file] == nil { dropRetry(file) }
            failures = failures.filter { present[$0.key] != nil || running[$0.key] != nil }
            for file in queued.keys where present[file] == nil { unqueue(file) }
            for file in present.keys.sorted() { see(file, present[file]!, now: now) }
        case .vanished(let file):
            forget(file)
            unqueue(file)  // left in `queue`, skipped by dequeue()
        case .exited(let file, let success, let after):
            guard let run = running.removeValue(forKey: file) else { break }
            guard let after else {
                forget(file)
                break
            }
            if run.again || after != run.version {
                // Written again while its job ran: that version needs a job too.
                enqueue(file, after, now: now)
            } else if success {
                failures[file] = nil
                done[file] = after
            } else if moveFailed {
                failures[file] = nil
                actions.append(.moveToFailed(file))
            } else {
                let attempts = (failures[file] ?? 0) + 1
                failures[file] = attempts
                var wait = backoffBase
                for _ in 1..<min(attempts, 30) { wait = min(wait * 2, backoffCap) }
                retrying[file] = Retry(version: after, at: now + wait)
                nextRetry = min(nextRetry ?? now + wait, now + wait)
                actions.append(.log(.warning, "\(name): \(file) left in place, trying again in \(wait.porterDescription) (attempt \(attempts + 1))"))
            }
        case .timer:
            for (file, r) in retrying where r.at <= now {
                dropRetry(file)
                enqueue(file, r.version, now: now)
            }
        case .hold(let h):
            held = h
        }
        while !held, running.count < maxRunning, let (next, version, since) = dequeue() {
            running[next] = Run(version: version, again: false, since: since)
            actions.append(.start(next))
        }
        if nextRetryGone {
            nextRetry = retrying.values.map(\.at).min()
            nextRetryGone = false
        }
        shrink()
        return actions
    }

    /// Tables keep the capacity of their largest size; after a burst,
    /// give it back so memory follows what is pending, not the record.
    private mutating func shrink() {
        if queued.isEmpty && queued.capacity > 256 { queued = [:] }
        if queued.isEmpty && (queuedSince?.capacity ?? 0) > 256 { queuedSince = [:] }
        if running.isEmpty && running.capacity > 256 { running = [:] }
        if done.isEmpty && done.capacity > 256 { done = [:] }
        if retrying.isEmpty && retrying.capacity > 256 { retrying = [:] }
        if failures.isEmpty && failures.capacity > 256 { failures = [:] }
    }

    /// Nothing queued or running.
    public var isIdle: Bool { queued.isEmpty && running.isEmpty }

    /// When the running job for `file` had its file seen (its wait in the
    /// queue included): the start of its activation latency.
    public func seenAt(_ file: String) -> Instant? { running[file]?.since }

    private mutating func see(_ file: String, _ version: FileVersion, now: Instant) {
        if let run = running[file] {
            if run.version != version { running[file]!.again = true }
            return
        }
        if done[file] == version || retrying[file]?.version == version || queued[file] == version { return }
        done[file] = nil
        dropRetry(file)
        failures[file] = nil
        enqueue(file, version, now: now)
    }

    private mutating func forget(_ file: String) {
        done[file] = nil
        dropRetry(file)
        failures[file] = nil
    }

    private mutating func dropRetry(_ file: String) {
        if let r = retrying.removeValue(forKey: file), r.at == nextRetry { nextRetryGone = true }
    }

    private mutating func enqueue(_ file: String, _ version: FileVersion, now: Instant) {
        if queued.updateValue(version, forKey: file) == nil {
            queue.append(file)
            enqueued &+= 1
            // A newer version of a file already queued waited since the first.
            if queuedSince == nil { queuedSince = [:] }
            queuedSince![file] = now
        }
    }

    private mutating func unqueue(_ file: String) {
        queued[file] = nil
        queuedSince?[file] = nil
    }

    private mutating func dequeue() -> (String, FileVersion, Instant?)? {
        while head < queue.count {
            let f = queue[head]
            head += 1
            if head > 1024 && head * 2 > queue.count {
                // Keep the array no larger than what waits.
                queue.removeFirst(head)
                head = 0
            }
            if let v = queued.removeValue(forKey: f) { return (f, v, queuedSince?.removeValue(forKey: f)) }
        }
        if head > 0 {
            queue.removeAll(keepingCapacity: false)
            head = 0
        }
        return nil
    }
}
