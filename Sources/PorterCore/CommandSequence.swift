/// How a process ended, as Core sees it (PorterSys reads it from waitpid).
public enum ProcessExit: Equatable, Sendable, Codable {
    case exited(Int32)
    case signaled(Int32, core: Bool)

    /// `$EXIT_CODE` of systemd.exec(5): exited, killed or dumped.
    public var exitCode: String {
        switch self {
        case .exited: return "exited"
        case .signaled(_, let core): return core ? "dumped" : "killed"
        }
    }

    /// `$EXIT_STATUS`: the exit status, or the signal's name without SIG.
    public var exitStatus: String {
        switch self {
        case .exited(let n): return String(n)
        case .signaled(let s, _): return String(Values.signalName(s).dropFirst(3))
        }
    }

    public var result: RunResult {
        switch self {
        case .exited(0): return .success
        case .exited: return .exitCode
        case .signaled(_, let core): return core ? .coreDump : .signal
        }
    }
}

/// SuccessExitStatus=, RestartPreventExitStatus=, RestartForceExitStatus=:
/// exit statuses (0-255) and signal names, space separated; an empty
/// assignment resets the list.
public struct ExitStatusSet: Equatable, Sendable, Codable {
    public var codes: Set<Int32> = []
    public var signals: Set<Int32> = []
    public init() {}

    public var isEmpty: Bool { codes.isEmpty && signals.isEmpty }

    public func contains(_ e: ProcessExit) -> Bool {
        switch e {
        case .exited(let n): return codes.contains(n)
        case .signaled(let s, _): return signals.contains(s)
        }
    }

    /// Adds the words of one assignment; "" resets.
    public mutating func add(_ s: String) throws(ValueError) {
        let words = Values.words(s)
        if words.isEmpty {
            self = ExitStatusSet()
            return
        }
        for w in words {
            if let n = Int32(w) {
                guard (0...255).contains(n) else { throw ValueError("exit status \(n) out of range 0-255") }
                codes.insert(n)
            } else if let sig = try? Values.signal(w) {
                signals.insert(sig)
            } else {
                throw ValueError("invalid exit status \(Quote.value(w)), expected a number 0-255 or a signal name such as SIGTERM")
            }
        }
    }
}

/// The commands of one run, one after another, in systemd.service(5)'s
/// order: ExecCondition=, ExecStartPre=, ExecStart= (several for
/// Type=oneshot), ExecStartPost=, ExecStop=, ExecStopPost=. Pure: the
/// supervisor spawns each step it is given and reports its exit; the
/// sequence says what comes next and how the run went.
///
/// Rules (systemd's, without its sandbox):
///   - ExecCondition=: exit 0 goes on; 1-254 skips the start (not a
///     failure); 255 or a signal fails it.
///   - ExecStartPre=, ExecStart=, ExecStartPost=: a failure (non-zero exit,
///     a signal; not with the `-` prefix; ExecStart= also honours
///     SuccessExitStatus=) ends the start.
///   - Once the start ended, by success, skip or failure: ExecStop= runs
///     only if the start succeeded, ExecStopPost= always. Their failures
///     count, but do not stop the ones after them.
///   - `timedOut()`: the step was killed at its deadline; the same as a
///     failure with result "timeout".
public struct CommandSequence: Sendable, Codable {
    public enum Phase: String, Sendable, CaseIterable, Codable {
        case condition = "ExecCondition", startPre = "ExecStartPre", start = "ExecStart"
        case startPost = "ExecStartPost", stop = "ExecStop", stopPost = "ExecStopPost"
        /// `porter reload UNIT`: never part of a run.
        case reload = "ExecReload"

        /// The phases of a run, in order (ExecReload= is not one).
        public static let run: [Phase] = [.condition, .startPre, .start, .startPost, .stop, .stopPost]

        var isStart: Bool { self == .condition || self == .startPre || self == .start || self == .startPost }
    }

    public struct Step: Equatable, Sendable, Codable {
        public var phase: Phase
        public var index: Int
        public var command: ExecCommand
        /// "ExecStartPre[2]" for messages.
        public var label: String { "\(phase.rawValue)=" + (index > 0 ? "[\(index + 1)]" : "") }
    }

    public enum Outcome: Equatable, Sendable, Codable {
        case success
        /// ExecCondition= said no: nothing is wrong, the start is skipped.
        case skipped(String)
        case failed(RunResult, String)

        /// `$SERVICE_RESULT`.
        public var serviceResult: String {
            switch self {
            case .success: return "success"
            case .skipped: return "exec-condition"
            case .failed(let r, _):
                switch r {
                case .success, .noProgress: return "success"
                case .exitCode: return "exit-code"
                case .signal: return "signal"
                case .coreDump: return "core-dump"
                case .timeout: return "timeout"
                case .watchdog: return "watchdog"
                case .startFailure: return "resources"
                case .protocolError: return "protocol"
                }
            }
        }
    }

    let steps: [Step]
    var position = -1
    public private(set) var outcome = Outcome.success
    /// How the last ExecStart= command ended: `$EXIT_CODE`, `$EXIT_STATUS`.
    public private(set) var mainExit: ProcessExit? = nil
    let success: ExitStatusSet

    /// The steps of `phases` from `commands` (phase → its command lines).
    public init(_ commands: [Phase: [ExecCommand]], phases: [Phase], success: ExitStatusSet = ExitStatusSet()) {
        var steps: [Step] = []
        for phase in phases {
            for (i, c) in (commands[phase] ?? []).enumerated() { steps.append(Step(phase: phase, index: i, command: c)) }
        }
        self.steps = steps
        self.success = success
    }

    /// For the stop commands after a run that ended as `outcome` with its
    /// main process's `exit`: what `$SERVICE_RESULT`, `$EXIT_CODE` and
    /// `$EXIT_STATUS` say.
    public mutating func setResult(_ outcome: Outcome, mainExit: ProcessExit?) {
        self.outcome = outcome
        self.mainExit = mainExit
    }

    /// The current step could not go on (a later ExecStart= of a oneshot
    /// that could not be spawned): the start failed.
    public mutating func fail(_ result: RunResult, _ why: String) {
        startAborted = true
        if outcome == .success { outcome = .failed(result, why) }
    }

    public var isEmpty: Bool { steps.isEmpty }
    /// Whether the current step is the first.
    public var isFirst: Bool { position == 0 }
    public var current: Step? { steps.indices.contains(position) ? steps[position] : nil }

    /// The first step, or nil when there is none.
    public mutating func start() -> Step? {
        position = -1
        return advance()
    }

    /// The current step exited; the next step to run, or nil when the
    /// sequence is over (see `outcome`).
    public mutating func exited(_ e: ProcessExit) -> Step? {
        guard let step = current else { return nil }
        if step.phase == .start { mainExit = e }
        let ok = e == .exited(0) || step.command.ignoreFailure || (step.phase == .start && success.contains(e))
        if ok { return advance() }
        if step.phase == .condition, case .exited(let n) = e, (1...254).contains(n) {
            return end(.skipped("\(step.label)\(step.command.path) exited \(n)"))
        }
        let why = "\(step.label)\(step.command.path) \(e.exitCode == "exited" ? "exited \(e.exitStatus)" : "killed by SIG\(e.exitStatus)")"
        return end(.failed(e.result, why))
    }

    /// The current step ran past its deadline and was killed.
    public mutating func timedOut() -> Step? {
        guard let step = current else { return nil }
        return end(.failed(.timeout, "\(step.label)\(step.command.path) timed out"))
    }

    /// The current step could not be started at all.
    public mutating func couldNotStart(_ why: String) -> Step? {
        guard let step = current else { return nil }
        if step.command.ignoreFailure { return advance() }
        return end(.failed(.startFailure, "\(step.label)\(step.command.path): \(why)"))
    }

    /// Whether the start phases all succeeded so far.
    public var startSucceeded: Bool { !startAborted }

    /// Set when the start failed or was skipped: what is left of the
    /// start and ExecStop= are passed over, ExecStopPost= still runs.
    var startAborted = false

    private mutating func advance() -> Step? {
        position += 1
        while let s = current, startAborted, s.phase != .stopPost { _ = s; position += 1 }
        return current
    }

    private mutating func end(_ o: Outcome) -> Step? {
        if current!.phase.isStart { startAborted = true }
        if outcome == .success { outcome = o }
        return advance()
    }
}
