import Glibc
import PorterCore
import PorterSys

/// The client side of the control socket: `porter status`, `start`,
/// `stop`, `reload`, `upgrade`. One request, one answer, with a deadline
/// on every step (a porter that hangs must not hang its caller).
public enum ControlClient {
    public enum Failure: Error, CustomStringConvertible {
        /// porter is not running there (no socket, nothing listening).
        case unreachable(String)
        /// It answered, but not with something porter's client can read.
        case garbled(String)
        public var description: String {
            switch self {
            case .unreachable(let s), .garbled(let s): return s
            }
        }
    }

    /// Where the running porter's control socket is: `--control`, the
    /// `ControlSocket=` of the porter.conf in `--config-dir`, or the default.
    public static func locate(control: String?, place: Commands.Place?) -> String? {
        if let control { return control }
        let env = Commands.environment()
        let settings = place.map { Commands.loadSettings($0).settings } ?? PorterSettings()
        return OwnSockets.controlPath(settings, override: nil, environment: env)
    }

    public static func send(_ request: ControlRequest, to path: String, timeout: Duration) throws(Failure) -> ControlReply {
        let fd: FileDescriptor
        do { fd = try Socket.open(family: AF_UNIX, type: Int32(SOCK_STREAM.rawValue), nonBlocking: false) } catch {
            throw .unreachable("\(path): \(error)")
        }
        defer { fd.close() }
        var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        _ = setsockopt(fd.rawValue, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd.rawValue, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        do { try Socket.connect(fd, SocketAddress(unix: Array(path.utf8), abstract: false)) } catch {
            let why = error.errno == ENOENT || error.errno == ECONNREFUSED ? "porter is not running here (\(error.reason))" : error.reason
            throw .unreachable("\(path): \(why)")
        }
        do { try fd.write(request.line) } catch { throw .unreachable("\(path): sending: \(error.reason)") }
        _ = shutdown(fd.rawValue, Int32(SHUT_WR))
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd.rawValue, &buffer, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                throw .unreachable(e == EAGAIN ? "\(path): no answer within \(timeout.porterDescription)" : "\(path): reading: \(SysError.describe(e))")
            }
            if n == 0 { break }
            data += buffer[0..<n]
            if data.count > 256 << 20 { throw .garbled("\(path): answer larger than 256 MiB") }
        }
        do { return try ControlReply.parse(data) } catch {
            throw .garbled("\(path): \(data.isEmpty ? "porter closed the connection without an answer" : "unreadable answer: \(error)")")
        }
    }

    /// Runs one client command; the exit status: 0 done, 1 porter said no,
    /// 3 porter could not be reached (as `systemctl is-active` says 3).
    public static func run(_ request: ControlRequest, control: String?, place: Commands.Place?, json: Bool) -> Int32 {
        guard let path = locate(control: control, place: place) else {
            complain("the control socket is disabled (ControlSocket=none); give --control PATH")
            return 3
        }
        let timeout: Duration
        switch request.verb {
        case .reload where !request.units.isEmpty: timeout = .seconds(300)  // TimeoutStartSec= of ExecReload=
        case .reload, .upgrade: timeout = .seconds(120)
        default: timeout = .seconds(15)
        }
        let reply: ControlReply
        do { reply = try send(request, to: path, timeout: timeout) } catch {
            complain(error.description)
            if case .garbled = error { return 1 }
            return 3
        }
        if json {
            let out = reply.ok ? (reply.result ?? .null) : reply.json
            _ = try? FileDescriptor.standardOutput.write(out.text + "\n")
            return reply.ok ? 0 : 1
        }
        var out = ""
        switch request.verb {
        case .status:
            if let r = reply.result, let report = try? JSONCoding.decode(StatusReport.self, from: r) {
                out = report.table(colour: useColour())
            }
        case .start, .stop:
            if let m = reply.result?["message"]?.string { out = "\(request.units[0]): \(m)\n" }
        case .reload:
            if let m = reply.result?["summary"]?.string { out = m + "\n" }
            if let m = reply.result?["message"]?.string { out = "\(request.units.first ?? ""): \(m)\n" }
            for p in reply.result?["problems"]?.array ?? [] { if let s = p.string { out += s + "\n" } }
        case .upgrade, .version:
            if let r = reply.result {
                out = (r["message"]?.string ?? r.text) + "\n"
            }
        }
        _ = try? FileDescriptor.standardOutput.write(out)
        if !reply.ok {
            complain(reply.error ?? "failed")
            return 1
        }
        return 0
    }

    static func complain(_ s: String) {
        _ = try? FileDescriptor.standardError.write("porter: \(s)\n")
    }

    /// Colour only on a terminal that wants it (NO_COLOR, TERM=dumb).
    static func useColour() -> Bool {
        guard isatty(1) == 1, getenv("NO_COLOR") == nil else { return false }
        if let t = getenv("TERM"), String(cString: t) == "dumb" { return false }
        return true
    }
}
