import Glibc
import PorterCore

/// porter's log: one line per event on stderr, each written with a single
/// write(2) so lines from porter and from services never interleave
/// mid-line: `porter: info: echo.service: started pid 4242 with 1 fd`.
public enum Log {
    nonisolated(unsafe) public static var threshold = LogLevel.info
    /// Under systemd (JOURNAL_STREAM names porter's stderr): each line
    /// starts with its syslog priority, `<6>`, which journald keeps as the
    /// entry's level, and without the `porter: info:` journald shows anyway.
    nonisolated(unsafe) public static var journald = false

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

    /// syslog(3) priorities.
    static func priority(_ level: LogLevel) -> Int {
        switch level {
        case .debug: return 7
        case .info: return 6
        case .warning: return 4
        case .error: return 3
        }
    }

    public static func write(_ level: LogLevel, _ message: String) {
        guard level >= threshold else { return }
        var line = journald ? "<\(priority(level))>\(message)\n" : "porter: \(level.name): \(message)\n"
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
