/// Value syntaxes shared by every unit type, as systemd.syntax(7) and
/// systemd.time(7) define them. Each parser returns nil or throws a message
/// that says what was expected; the caller adds file, line and key.
public struct ValueError: Error, Equatable, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// A timeout that may be disabled ("infinity", or 0 for the stop timeouts).
public enum Timeout: Equatable, Sendable, Codable {
    case never
    case after(Duration)

    public var duration: Duration? {
        if case .after(let d) = self { return d }
        return nil
    }
}

public enum Values {
    /// systemd's parse_boolean: 1/yes/y/true/t/on and 0/no/n/false/f/off, any case.
    public static func boolean(_ s: String) throws(ValueError) -> Bool {
        switch s {
        case "yes", "true", "on", "1": return true
        case "no", "false", "off", "0": return false
        default: break
        }
        switch s.lowercased() {
        case "1", "yes", "y", "true", "t", "on": return true
        case "0", "no", "n", "false", "f", "off": return false
        default: throw ValueError("invalid boolean \(Quote.value(s)), expected yes/no, true/false, on/off or 1/0")
        }
    }

    private static let timeUnits: [(String, Int64)] = [
        ("usec", 1_000), ("us", 1_000), ("µs", 1_000), ("μs", 1_000),
        ("msec", 1_000_000), ("ms", 1_000_000),
        ("seconds", 1_000_000_000), ("second", 1_000_000_000), ("sec", 1_000_000_000), ("s", 1_000_000_000),
        ("minutes", 60_000_000_000), ("minute", 60_000_000_000), ("min", 60_000_000_000), ("m", 60_000_000_000),
        ("hours", 3_600_000_000_000), ("hour", 3_600_000_000_000), ("hr", 3_600_000_000_000), ("h", 3_600_000_000_000),
        ("days", 86_400_000_000_000), ("day", 86_400_000_000_000), ("d", 86_400_000_000_000),
        ("weeks", 604_800_000_000_000), ("week", 604_800_000_000_000), ("w", 604_800_000_000_000),
        ("months", 2_629_800_000_000_000), ("month", 2_629_800_000_000_000), ("M", 2_629_800_000_000_000),
        ("years", 31_557_600_000_000_000), ("year", 31_557_600_000_000_000), ("y", 31_557_600_000_000_000),
    ]

    /// A time span as systemd.time(7) writes it: "5s", "2min", "500ms",
    /// "1h 30min", "1.5s", a bare number in `defaultUnitNanoseconds`
    /// (seconds for *Sec= keys), or "infinity".
    public static func timeSpan(_ s: String, defaultUnitNanoseconds: Int64 = 1_000_000_000) throws(ValueError) -> Timeout {
        let text = s.trimmingWhitespace()
        if text == "infinity" { return .never }
        let expected = "invalid time span \(Quote.value(s)), expected a number with an optional unit (us, ms, s, min, h, d), e.g. 5s, 2min, 500ms, or infinity"
        guard !text.isEmpty else { throw ValueError(expected) }
        var total: Double = 0
        var rest = Substring(text)
        while true {
            rest = rest.drop(while: { $0 == " " || $0 == "\t" })
            if rest.isEmpty { break }
            let number = rest.prefix(while: { $0.isASCII && ($0.isNumber || $0 == ".") })
            guard !number.isEmpty, let value = Double(number) else { throw ValueError(expected) }
            rest = rest.dropFirst(number.count).drop(while: { $0 == " " || $0 == "\t" })
            let unitText = rest.prefix(while: { $0.isLetter || $0 == "µ" || $0 == "μ" })
            var factor = defaultUnitNanoseconds
            if !unitText.isEmpty {
                guard let unit = timeUnits.first(where: { $0.0 == String(unitText) }) else {
                    throw ValueError(expected)
                }
                factor = unit.1
                rest = rest.dropFirst(unitText.count)
            }
            total += value * Double(factor)
        }
        guard total < 9.2e18 else { throw ValueError("time span \(Quote.value(s)) too large") }
        return .after(.nanoseconds(Int64(total.rounded())))
    }

    /// A byte size with an optional K, M, G, T suffix (base 1024), as
    /// ReceiveBuffer= and SendBuffer= take it.
    public static func size(_ s: String) throws(ValueError) -> Int {
        let text = s.trimmingWhitespace()
        let expected = "invalid size \(Quote.value(s)), expected bytes with an optional K, M or G suffix (base 1024)"
        var digits = Substring(text)
        var factor: Double = 1
        if let last = text.last, last.isLetter {
            digits = digits.dropLast()
            switch last {
            case "K", "k": factor = 1024
            case "M", "m": factor = 1024 * 1024
            case "G", "g": factor = 1024 * 1024 * 1024
            case "T", "t": factor = 1024 * 1024 * 1024 * 1024
            case "B", "b": factor = 1
            default: throw ValueError(expected)
            }
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let value = Double(digits) else { throw ValueError(expected) }
        let bytes = value * factor
        guard bytes <= Double(Int32.max) else { throw ValueError("size \(Quote.value(s)) too large, at most 2G") }
        return Int(bytes)
    }

    /// An octal access mode such as 0666.
    public static func mode(_ s: String) throws(ValueError) -> UInt32 {
        guard !s.isEmpty, s.allSatisfy({ ("0"..."7").contains($0) }), let v = UInt32(s, radix: 8), v <= 0o7777 else {
            throw ValueError("invalid mode \(Quote.value(s)), expected an octal access mode such as 0666")
        }
        return v
    }

    /// A decimal integer in `range`.
    public static func integer(_ s: String, in range: ClosedRange<Int>) throws(ValueError) -> Int {
        guard let v = Int(s) else {
            throw ValueError("invalid number \(Quote.value(s)), expected an integer \(range.lowerBound)-\(range.upperBound)")
        }
        guard range.contains(v) else {
            throw ValueError("\(v) out of range \(range.lowerBound)-\(range.upperBound)")
        }
        return v
    }

    /// Linux signal numbers (the same on x86_64 and aarch64): the only
    /// place PorterCore spells one out. The daemon's tests compare them
    /// with Glibc's.
    public static let signalNames: [(String, Int32)] = [
        ("HUP", 1), ("INT", 2), ("QUIT", 3), ("ILL", 4), ("TRAP", 5), ("ABRT", 6), ("BUS", 7),
        ("FPE", 8), ("KILL", 9), ("USR1", 10), ("SEGV", 11), ("USR2", 12), ("PIPE", 13),
        ("ALRM", 14), ("TERM", 15), ("STKFLT", 16), ("CHLD", 17), ("CONT", 18), ("STOP", 19),
        ("TSTP", 20), ("TTIN", 21), ("TTOU", 22), ("URG", 23), ("XCPU", 24), ("XFSZ", 25),
        ("VTALRM", 26), ("PROF", 27), ("WINCH", 28), ("IO", 29), ("POLL", 29), ("PWR", 30), ("SYS", 31),
    ]
    public static let realtimeMinimum: Int32 = 34
    public static let realtimeMaximum: Int32 = 64

    /// A signal by name ("SIGTERM", "TERM"), number, or "SIGRTMIN+n".
    public static func signal(_ s: String) throws(ValueError) -> Int32 {
        let expected = "invalid signal \(Quote.value(s)), expected a name such as SIGTERM or a number 1-64"
        if let n = Int32(s) {
            guard (1...realtimeMaximum).contains(n) else { throw ValueError(expected) }
            return n
        }
        var name = s.uppercased()
        if name.hasPrefix("SIG") { name.removeFirst(3) }
        if let found = signalNames.first(where: { $0.0 == name }) { return found.1 }
        if name.hasPrefix("RTMIN") {
            let offset = name.dropFirst(5)
            if offset.isEmpty { return realtimeMinimum }
            if offset.first == "+", let k = Int32(offset.dropFirst()), realtimeMinimum + k <= realtimeMaximum {
                return realtimeMinimum + k
            }
        }
        if name.hasPrefix("RTMAX") {
            let offset = name.dropFirst(5)
            if offset.isEmpty { return realtimeMaximum }
            if offset.first == "-", let k = Int32(offset.dropFirst()), realtimeMaximum - k >= realtimeMinimum {
                return realtimeMaximum - k
            }
        }
        throw ValueError(expected)
    }

    /// "SIGTERM" for 15, "SIGRTMIN+2" for 36.
    public static func signalName(_ n: Int32) -> String {
        if let found = signalNames.first(where: { $0.1 == n }) { return "SIG" + found.0 }
        if n >= realtimeMinimum && n <= realtimeMaximum { return "SIGRTMIN+\(n - realtimeMinimum)" }
        return "signal \(n)"
    }

    /// Words separated by whitespace, as list-valued keys take them.
    public static func words(_ s: String) -> [String] {
        s.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
    }
}

/// The signals porter's machines send, by name.
public enum Sig {
    public static let hangup = Values.number(of: "HUP")
    public static let abort = Values.number(of: "ABRT")
    public static let kill = Values.number(of: "KILL")
    public static let terminate = Values.number(of: "TERM")
    public static let `continue` = Values.number(of: "CONT")
}

extension Values {
    static func number(of name: String) -> Int32 { signalNames.first { $0.0 == name }!.1 }
}
