/// inetd's built-in services, served inside porter's loop without a
/// process: `InternalService=` in a socket unit, `type = INTERNAL` in
/// xinetd, `internal` in inetd.conf. What each sends is decided here; the
/// daemon moves the bytes.
public enum InternalService: String, CaseIterable, Sendable, Codable {
    /// RFC 862: what the client sends comes back.
    case echo
    /// RFC 863: what the client sends is thrown away.
    case discard
    /// RFC 867: the date and time as text, then the connection closes.
    case daytime
    /// RFC 864: a stream of lines until the client goes.
    case chargen
    /// RFC 868: seconds since 1900-01-01 as 32 bits, then the connection closes.
    case time

    /// Answers as soon as the connection opens, then closes it.
    public var answersAtOnce: Bool { self == .daytime || self == .time }

    /// RFC 867 leaves the format open; this is inetd's: ctime(3), "\r\n".
    public static func daytime(unixSeconds: Int64) -> [UInt8] {
        let t = CivilTime(unixSeconds: unixSeconds)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let day = t.day < 10 ? " \(t.day)" : "\(t.day)"
        return Array("\(days[t.weekday]) \(months[t.month - 1]) \(day) \(two(t.hour)):\(two(t.minute)):\(two(t.second)) \(t.year)\r\n".utf8)
    }

    /// RFC 868: seconds since 1900, big-endian, modulo 2^32 (the field
    /// wraps in 2036; clients know).
    public static func time(unixSeconds: Int64) -> [UInt8] {
        let v = UInt32(truncatingIfNeeded: unixSeconds + 2_208_988_800)
        return [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }

    /// RFC 864's pattern: 95 lines of 72 printable characters and CRLF,
    /// each starting one character later; a stream repeats it.
    public static let chargenPattern: [UInt8] = {
        var out: [UInt8] = []
        out.reserveCapacity(95 * 74)
        for line in 0..<95 {
            for i in 0..<72 { out.append(UInt8(32 + (line + i) % 95)) }
            out += [13, 10]
        }
        return out
    }()

    /// UDP: the datagram sent back for one of `size` bytes, as a length
    /// (echo: the same bytes; chargen: that many pattern bytes, at most
    /// 512 as RFC 864 says; discard: nothing). Never more than asked for,
    /// so porter cannot be used to amplify a spoofed request; daytime and
    /// time answer with their fixed, small reply.
    public func datagramReplySize(request size: Int) -> Int? {
        switch self {
        case .echo: return size
        case .discard: return nil
        case .chargen: return min(size, 512)
        case .daytime: return 26
        case .time: return 4
        }
    }

    /// inetd's `dg_badinput()`: a datagram from a privileged port (another
    /// service, perhaps one of these: two echo services would loop), from
    /// port 0 or NFS's 2049, or from an address no reply should go to
    /// (0/8, broadcast, multicast) gets no answer.
    public static func replyRefused(address: [UInt8], port: UInt16) -> String? {
        if port < 1024 { return "privileged source port \(port)" }
        if port == 2049 { return "source port 2049 (NFS)" }
        if address.count == 4 {
            if address[0] == 0 || address[0] == 255 || address == [255, 255, 255, 255] { return "source address \(IPAddress.formatIPv4(address))" }
            if address[0] >= 224 && address[0] <= 239 { return "multicast source address" }
        } else if address.count == 16 {
            if address[0] == 0xFF { return "multicast source address" }
            if address.allSatisfy({ $0 == 0 }) { return "unspecified source address" }
        }
        return nil
    }
}

/// Unix seconds as a UTC calendar date (Howard Hinnant's days_from_civil,
/// inverted), without the C library.
struct CivilTime {
    var year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, weekday: Int

    init(unixSeconds: Int64) {
        let s = Int(unixSeconds)
        var days = s / 86400
        var rest = s % 86400
        if rest < 0 { rest += 86400; days -= 1 }
        hour = rest / 3600
        minute = rest % 3600 / 60
        second = rest % 60
        weekday = ((days % 7) + 11) % 7  // 1970-01-01 was a Thursday
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        day = doy - (153 * mp + 2) / 5 + 1
        month = mp < 10 ? mp + 3 : mp - 9
        year = yoe + era * 400 + (month <= 2 ? 1 : 0)
    }
}
