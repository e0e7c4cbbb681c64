/// One log line as syslog takes it on /dev/log: RFC 3164 (what glibc's
/// syslog(3) sends, and what every syslog daemon and journald read) or
/// RFC 5424. Pure: the clock's reading and the host name come in.
public enum SyslogLine {
    public struct Facility: Equatable, Sendable {
        public let code: Int
        public static let daemon = Facility(code: 3)

        static let table: [(String, Int)] = [
            ("kern", 0), ("user", 1), ("mail", 2), ("daemon", 3), ("auth", 4), ("syslog", 5), ("lpr", 6),
            ("news", 7), ("uucp", 8), ("cron", 9), ("authpriv", 10), ("ftp", 11),
            ("local0", 16), ("local1", 17), ("local2", 18), ("local3", 19), ("local4", 20), ("local5", 21),
            ("local6", 22), ("local7", 23),
        ]
        public static var names: [String] { table.map(\.0) }

        public init?(name: String) {
            guard let c = Self.table.first(where: { $0.0 == name })?.1 else { return nil }
            code = c
        }

        init(code: Int) { self.code = code }
    }

    /// A wall-clock reading, broken down (localtime_r(3) for RFC 3164's
    /// local time, the UTC offset for RFC 5424's timestamp).
    public struct WallTime: Sendable {
        public var year, month, day, hour, minute, second, microsecond: Int
        public var utcOffsetMinutes: Int
        public init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, microsecond: Int, utcOffsetMinutes: Int) {
            (self.year, self.month, self.day, self.hour, self.minute, self.second) = (year, month, day, hour, minute, second)
            self.microsecond = microsecond
            self.utcOffsetMinutes = utcOffsetMinutes
        }
    }

    /// syslog(3) severities for porter's levels.
    public static func severity(_ level: LogLevel) -> Int {
        switch level {
        case .debug: return 7
        case .info: return 6
        case .warning: return 4
        case .error: return 3
        }
    }

    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func pad(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    /// The datagram for `message`. Line breaks inside a message would
    /// start what looks like another entry: they become spaces.
    public static func format(_ level: LogLevel, _ message: String, facility: Facility, rfc5424: Bool,
                              time t: WallTime, hostname: String, tag: String, pid: Int32) -> String {
        let pri = "<\(facility.code * 8 + severity(level))>"
        let text = message.contains("\n") ? message.replacingNewlines() : message
        if rfc5424 {
            let sign = t.utcOffsetMinutes < 0 ? "-" : "+"
            let off = abs(t.utcOffsetMinutes)
            let stamp = "\(pad(t.year, 4))-\(pad(t.month, 2))-\(pad(t.day, 2))T\(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2)).\(pad(t.microsecond, 6))\(sign)\(pad(off / 60, 2)):\(pad(off % 60, 2))"
            let host = hostname.isEmpty ? "-" : hostname
            return "\(pri)1 \(stamp) \(host) \(tag) \(pid) - - \(text)"
        }
        // RFC 3164 as glibc writes it to /dev/log: no host name (the local
        // daemon adds its own), the day padded with a space.
        let day = t.day < 10 ? " \(t.day)" : String(t.day)
        let stamp = "\(months[max(0, min(11, t.month - 1))]) \(day) \(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2))"
        return "\(pri)\(stamp) \(tag)[\(pid)]: \(text)"
    }
}

extension String {
    func replacingNewlines() -> String {
        String(unicodeScalars.map { $0 == "\n" || $0 == "\r" ? " " : Character($0) })
    }
}
