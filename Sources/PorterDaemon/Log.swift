import Glibc
import PorterCore
import PorterSys

/// porter's log: one line per event, each written with a single write(2)
/// (or one datagram), so lines from porter and from services never
/// interleave mid-line: `porter: info: echo.service: started pid 4242`.
///
/// Where lines go (`LogTarget=` in porter.conf):
/// - stderr: `porter: LEVEL: message`;
/// - journal: `<N>message` on stderr, the priority prefix journald keeps
///   as the entry's level (auto picks it when JOURNAL_STREAM names stderr);
/// - syslog: one RFC 3164 or 5424 datagram per line to /dev/log, with
///   `SyslogFacility=`; while the socket cannot be reached, stderr.
public enum Log {
    nonisolated(unsafe) public static var threshold = LogLevel.info
    /// Under systemd (JOURNAL_STREAM names porter's stderr): each line
    /// starts with its syslog priority, `<6>`, which journald keeps as the
    /// entry's level, and without the `porter: info:` journald shows anyway.
    nonisolated(unsafe) public static var journald = false
    /// Whether JOURNAL_STREAM named stderr when porter started.
    nonisolated(unsafe) public static var journalStream = false
    nonisolated(unsafe) static var syslog: SyslogSink?

    /// Whether JOURNAL_STREAM ("device:inode") is the stream on fd 2, as
    /// sd_journal_stream_fd(3) asks a program to check: a porter whose
    /// stderr was redirected elsewhere must not write prefixes there.
    public static func stderrIsJournal(_ value: String?) -> Bool {
        guard let value else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return false }
        var st = stat()
        return fstat(2, &st) == 0 && UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
    }

    /// porter.conf's LogTarget=, LogLevel= and syslog settings; a level
    /// given on the command line wins.
    static func configure(_ s: PorterSettings, levelOverride: LogLevel?) {
        threshold = levelOverride ?? s.logLevel ?? .info
        journald = s.logTarget == .journal || (s.logTarget == .auto && journalStream)
        if s.logTarget == .syslog {
            if syslog?.path != s.syslogSocket { syslog?.close(); syslog = SyslogSink(path: s.syslogSocket) }
            syslog?.facility = s.syslogFacility
            syslog?.rfc5424 = s.syslogFormat == .rfc5424
        } else {
            syslog?.close()
            syslog = nil
        }
    }

    public static func write(_ level: LogLevel, _ message: String) {
        guard level >= threshold else { return }
        if let sink = syslog, sink.send(level, message) { return }
        var line = journald ? "<\(SyslogLine.severity(level))>\(message)\n" : "porter: \(level.name): \(message)\n"
        line.withUTF8 { buffer in
            var done = 0
            while done < buffer.count {
                let n = Glibc.write(2, buffer.baseAddress! + done, buffer.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    return  // nowhere left to report to
                }
                done += n
            }
        }
    }

    public static func debug(_ m: @autoclosure () -> String) { if threshold <= .debug { write(.debug, m()) } }
    public static func info(_ m: @autoclosure () -> String) { if threshold <= .info { write(.info, m()) } }
    public static func warning(_ m: String) { write(.warning, m) }
    public static func error(_ m: String) { write(.error, m) }
}

/// syslog's socket: a non-blocking datagram socket connected to /dev/log
/// (or SyslogSocket=). A syslog daemon that is gone or full does not stall
/// porter: the line goes to stderr instead, and the socket is connected
/// again at the next line.
final class SyslogSink {
    let path: String
    var facility = SyslogLine.Facility.daemon
    var rfc5424 = false
    private var fd: FileDescriptor?
    private let hostname: String

    init(path: String) {
        self.path = path
        var name = [CChar](repeating: 0, count: 256)
        hostname = gethostname(&name, name.count) == 0 ? String(cString: name) : ""
    }

    func close() {
        fd?.close()
        fd = nil
    }

    /// False when the line could not be handed over (the caller writes it to stderr).
    func send(_ level: LogLevel, _ message: String) -> Bool {
        var tv = timespec()
        clock_gettime(CLOCK_REALTIME, &tv)
        var t = time_t(tv.tv_sec)
        var tm = Glibc.tm()
        localtime_r(&t, &tm)
        let wall = SyslogLine.WallTime(year: Int(tm.tm_year) + 1900, month: Int(tm.tm_mon) + 1, day: Int(tm.tm_mday),
                                       hour: Int(tm.tm_hour), minute: Int(tm.tm_min), second: Int(tm.tm_sec),
                                       microsecond: Int(tv.tv_nsec / 1000), utcOffsetMinutes: Int(tm.tm_gmtoff / 60))
        let line = SyslogLine.format(level, message, facility: facility, rfc5424: rfc5424, time: wall,
                                     hostname: hostname, tag: "porter", pid: getpid())
        for _ in 0..<2 {
            if fd == nil {
                guard let s = try? Socket.open(family: AF_UNIX, type: Int32(SOCK_DGRAM.rawValue), nonBlocking: true) else { return false }
                guard (try? Socket.connect(s, SocketAddress(unix: Array(path.utf8), abstract: false))) != nil else {
                    s.close()
                    return false
                }
                fd = s
            }
            if (try? fd!.write(line)) == line.utf8.count { return true }
            close()  // a restarted syslog daemon has a new socket at the same path
        }
        return false
    }
}
