import Glibc
import PorterCore

/// porter's log: one line per event on stderr, each written with a single
/// write(2) so lines from porter and from services never interleave
/// mid-line: `porter: info: echo.service: started pid 4242 with 1 fd`.
public enum Log {
    nonisolated(unsafe) public static var threshold = LogLevel.info

    public static func write(_ level: LogLevel, _ message: String) {
        guard level >= threshold else { return }
        var line = "porter: \(level.name): \(message)\n"
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
