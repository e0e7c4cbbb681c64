/// What systemd.exec(5) sets on a service's process besides credentials
/// and streams, and that needs no sandbox: resource limits, priorities,
/// affinity, timer slack, personality, SIGPIPE. The C child applies them
/// with raw system calls before it drops privileges (raising a hard limit
/// or lowering the nice value needs them); a value the kernel refuses fails
/// that start with the errno named.
public struct ProcessSettings: Equatable, Sendable {
    public var limits: [ResourceLimit] = []
    public var nice: Int32? = nil
    public var oomScoreAdjust: Int32? = nil
    /// ioprio_set(2)'s value: class << 13 | level.
    public var ioPriority: Int32? = nil
    public var cpuScheduling: CPUScheduling? = nil
    /// sched_setaffinity(2)'s mask, one bit per CPU; nil leaves it.
    public var cpuAffinity: [UInt8]? = nil
    public var timerSlackNanoseconds: UInt64? = nil
    public var personality: UInt32? = nil
    /// systemd's default: SIGPIPE ignored in the service.
    public var ignoreSIGPIPE = true

    public init() {}

    public struct CPUScheduling: Equatable, Sendable {
        public var policy: Int32
        public var priority: Int32
        public var resetOnFork: Bool
        public init(policy: Int32, priority: Int32, resetOnFork: Bool) {
            self.policy = policy
            self.priority = priority
            self.resetOnFork = resetOnFork
        }
    }

    public func limit(_ resource: Int32) -> ResourceLimit? { limits.first { $0.resource == resource } }

    /// Set as the keys are read: IOSchedulingClass= and IOSchedulingPriority=
    /// (and the CPU pair) combine whichever comes last.
    var ioClass: Int32? = nil
    var ioLevel: Int32? = nil
    var schedPolicy: Int32? = nil
    var schedPriority: Int32? = nil
    var schedResetOnFork = false

    static let keys = [
        "Nice", "OOMScoreAdjust", "IOSchedulingClass", "IOSchedulingPriority", "CPUSchedulingPolicy",
        "CPUSchedulingPriority", "CPUSchedulingResetOnFork", "CPUAffinity", "TimerSlackNSec", "Personality",
        "IgnoreSIGPIPE",
    ] + ResourceLimit.kinds.map(\.key)

    /// Applies one assignment; false when `key` is not one of these.
    mutating func apply(_ key: String, _ value: String) throws(ValueError) -> Bool {
        if let kind = ResourceLimit.kinds.first(where: { $0.key == key }) {
            limits.removeAll { $0.resource == kind.resource }
            if !value.isEmpty { limits.append(try ResourceLimit.parse(value, kind)) }
            return true
        }
        switch key {
        case "Nice":
            nice = value.isEmpty ? nil : Int32(try Values.integer(value, in: -20...19))
        case "OOMScoreAdjust":
            oomScoreAdjust = value.isEmpty ? nil : Int32(try Values.integer(value, in: -1000...1000))
        case "IOSchedulingClass":
            let classes: [String: Int32] = ["none": 0, "realtime": 1, "best-effort": 2, "idle": 3, "0": 0, "1": 1, "2": 2, "3": 3]
            guard value.isEmpty || classes[value] != nil else {
                throw ValueError("invalid value \(Quote.value(value)), expected realtime, best-effort, idle or none")
            }
            ioClass = value.isEmpty ? nil : classes[value]
        case "IOSchedulingPriority":
            ioLevel = value.isEmpty ? nil : Int32(try Values.integer(value, in: 0...7))
        case "CPUSchedulingPolicy":
            let policies: [String: Int32] = ["other": 0, "fifo": 1, "rr": 2, "batch": 3, "idle": 5]
            guard value.isEmpty || policies[value] != nil else {
                throw ValueError("invalid value \(Quote.value(value)), expected other, batch, idle, fifo or rr")
            }
            schedPolicy = value.isEmpty ? nil : policies[value]
        case "CPUSchedulingPriority":
            schedPriority = value.isEmpty ? nil : Int32(try Values.integer(value, in: 0...99))
        case "CPUSchedulingResetOnFork":
            schedResetOnFork = try Values.boolean(value)
        case "CPUAffinity":
            cpuAffinity = try Self.cpuSet(value)
        case "TimerSlackNSec":
            guard !value.isEmpty else { timerSlackNanoseconds = nil; return true }
            guard let d = try Values.timeSpan(value, defaultUnitNanoseconds: 1).duration else {
                throw ValueError("TimerSlackNSec= cannot be infinity, expected a time span such as 50us")
            }
            timerSlackNanoseconds = UInt64(max(d.nanoseconds, 1))
        case "Personality":
            personality = value.isEmpty ? nil : try Self.personality(value)
        case "IgnoreSIGPIPE":
            ignoreSIGPIPE = try Values.boolean(value)
        default:
            return false
        }
        return true
    }

    /// Combines the pairs once every key is read.
    mutating func finish() throws(ValueError) {
        if ioClass != nil || ioLevel != nil {
            // systemd: a level alone means best-effort; a class alone, level 4.
            let c = ioClass ?? 2
            ioPriority = c == 0 ? nil : c << 13 | (c == 3 ? 0 : ioLevel ?? 4)
        }
        if schedPolicy != nil || schedPriority != nil || schedResetOnFork {
            let policy = schedPolicy ?? 0
            let realtime = policy == 1 || policy == 2
            var priority = schedPriority ?? (realtime ? 1 : 0)
            if realtime && priority == 0 { priority = 1 }
            if !realtime && priority != 0 {
                throw ValueError("CPUSchedulingPriority=\(priority) needs CPUSchedulingPolicy=fifo or rr; other, batch and idle take 0")
            }
            cpuScheduling = CPUScheduling(policy: policy, priority: priority, resetOnFork: schedResetOnFork)
        }
    }

    /// `0-3 5,7`: CPU numbers and ranges, space or comma separated.
    static func cpuSet(_ s: String) throws(ValueError) -> [UInt8]? {
        let words = s.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" })
        guard !words.isEmpty else { return nil }
        var mask = [UInt8](repeating: 0, count: 128)
        for w in words {
            let bounds = w.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count <= 2, let lo = Int(bounds[0]), let hi = Int(bounds.last!), lo >= 0, lo <= hi, hi < 1024 else {
                throw ValueError("invalid CPU \(Quote.value(String(w))), expected CPU numbers or ranges 0-1023 such as 0-3 5")
            }
            for cpu in lo...hi { mask[cpu / 8] |= 1 << UInt8(cpu % 8) }
        }
        return mask
    }

    /// The native architecture runs as itself, its 32-bit sibling as
    /// PER_LINUX32 (systemd's personality names).
    static func personality(_ s: String) throws(ValueError) -> UInt32 {
        #if arch(x86_64)
        let native = "x86-64", compat = "x86"
        #elseif arch(arm64)
        let native = "arm64", compat = "arm"
        #else
        let native = "", compat = ""
        #endif
        if s == native { return 0 }
        if s == compat { return 0x0008 }
        throw ValueError("personality \(Quote.value(s)) is not available on this machine, expected \(native) or \(compat)")
    }
}

/// One `Limit*=` of systemd.exec(5): `soft:hard` or one value for both,
/// `infinity`, sizes with K, M, G, T, P, E (base 1024), times for CPU
/// (seconds) and RTTIME (microseconds), NICE as a nice value (`-5`, `+10`)
/// or the raw limit 0-40.
public struct ResourceLimit: Equatable, Sendable {
    public var resource: Int32
    public var soft: UInt64
    public var hard: UInt64
    public static let infinity = UInt64.max

    public init(resource: Int32, soft: UInt64, hard: UInt64) {
        self.resource = resource
        self.soft = soft
        self.hard = hard
    }

    enum Unit { case count, bytes, seconds, microseconds, nice }

    /// Linux's RLIMIT_ numbers, the same on every architecture porter runs
    /// on (a test checks them against Glibc).
    static let kinds: [(key: String, resource: Int32, unit: Unit)] = [
        ("LimitCPU", 0, .seconds), ("LimitFSIZE", 1, .bytes), ("LimitDATA", 2, .bytes), ("LimitSTACK", 3, .bytes),
        ("LimitCORE", 4, .bytes), ("LimitRSS", 5, .bytes), ("LimitNPROC", 6, .count), ("LimitNOFILE", 7, .count),
        ("LimitMEMLOCK", 8, .bytes), ("LimitAS", 9, .bytes), ("LimitLOCKS", 10, .count), ("LimitSIGPENDING", 11, .count),
        ("LimitMSGQUEUE", 12, .bytes), ("LimitNICE", 13, .nice), ("LimitRTPRIO", 14, .count), ("LimitRTTIME", 15, .microseconds),
    ]
    /// A size as Limit*= takes it (K, M, G, T, P, E: base 1024).
    public static func parseSize(_ s: String) throws(ValueError) -> UInt64 { try value(s, .bytes) }

    public static func resource(named key: String) -> Int32? { kinds.first { $0.key == key }?.resource }
    public static var names: [String] { kinds.map(\.key) }

    static func parse(_ s: String, _ kind: (key: String, resource: Int32, unit: Unit)) throws(ValueError) -> ResourceLimit {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { throw ValueError("invalid limit \(Quote.value(s)), expected VALUE or SOFT:HARD") }
        let soft = try value(String(parts[0]), kind.unit)
        let hard = parts.count == 2 ? try value(String(parts[1]), kind.unit) : soft
        guard soft <= hard else {
            throw ValueError("soft limit \(parts[0]) is above the hard limit \(parts[1]), expected SOFT:HARD with SOFT <= HARD")
        }
        return ResourceLimit(resource: kind.resource, soft: soft, hard: hard)
    }

    static func value(_ s: String, _ unit: Unit) throws(ValueError) -> UInt64 {
        if s == "infinity" { return infinity }
        switch unit {
        case .count:
            guard let n = UInt64(s) else { throw ValueError("invalid limit \(Quote.value(s)), expected a number or infinity") }
            return n
        case .bytes:
            let factors: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60]
            var digits = Substring(s)
            var factor: UInt64 = 1
            if let last = s.last, let f = factors[last] { factor = f; digits = digits.dropLast() }
            else if s.last == "B" { digits = digits.dropLast() }
            guard let n = UInt64(digits) else {
                throw ValueError("invalid size \(Quote.value(s)), expected bytes with an optional K, M, G, T, P or E suffix (base 1024), or infinity")
            }
            let (v, overflow) = n.multipliedReportingOverflow(by: factor)
            guard !overflow else { throw ValueError("size \(Quote.value(s)) too large") }
            return v
        case .seconds, .microseconds:
            let perUnit: Int64 = unit == .seconds ? 1_000_000_000 : 1_000
            guard let d = try Values.timeSpan(s, defaultUnitNanoseconds: perUnit).duration else { return infinity }
            let ns = d.nanoseconds
            return UInt64((ns + perUnit - 1) / perUnit)  // rounded up, as systemd does
        case .nice:
            if s.hasPrefix("+") || s.hasPrefix("-") {
                guard let n = Int(s), (-20...19).contains(n) else {
                    throw ValueError("invalid nice value \(Quote.value(s)), expected -20 to +19 or the raw limit 0-40")
                }
                return UInt64(20 - n)
            }
            guard let n = UInt64(s), n <= 40 else {
                throw ValueError("invalid limit \(Quote.value(s)), expected the raw limit 0-40 or a nice value such as -5 or +10")
            }
            return n
        }
    }
}
