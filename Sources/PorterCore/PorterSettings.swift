/// porter's own settings: the `[Porter]` section of `porter.conf` in the
/// configuration directory (the first directory that has one, in the
/// units' precedence). Every key is porter's own; the README lists them.
/// A missing file means the defaults; an invalid value is an error naming
/// file, line and what was expected, and the default stays for that key.
public struct PorterSettings: Equatable, Sendable {
    /// Where the control socket is: a path, the default (porter's runtime
    /// directory), or none at all.
    public enum ControlSocket: Equatable, Sendable {
        case standard
        case path(String)
        case disabled
    }

    public enum LogTarget: String, Equatable, Sendable {
        /// journald's priority prefixes when JOURNAL_STREAM names stderr, plain lines otherwise.
        case auto
        case stderr
        /// `<N>` prefixes on stderr whatever JOURNAL_STREAM says.
        case journal
        /// Datagrams to /dev/log (syslog(3)'s socket).
        case syslog
    }

    public enum SyslogFormat: String, Equatable, Sendable {
        case rfc3164, rfc5424
    }

    public var controlSocket = ControlSocket.standard
    /// `MetricsListen=`: where the Prometheus endpoint listens; nothing does unless set.
    public var metricsListen: ListenAddress? = nil
    public var logTarget = LogTarget.auto
    public var logLevel: LogLevel? = nil
    public var syslogFacility = SyslogLine.Facility.daemon
    public var syslogFormat = SyslogFormat.rfc3164
    /// `SyslogSocket=`: where syslog lines go (tests point it elsewhere).
    public var syslogSocket = "/dev/log"
    /// Where the values came from, for messages: `porter.conf:3`.
    public var lines: [String: Int] = [:]

    public init() {}

    public static let fileName = "porter.conf"
    static let keys = KeySet(["ControlSocket", "MetricsListen", "LogTarget", "LogLevel", "SyslogFacility",
                              "SyslogFormat", "SyslogSocket"])

    /// Reads the text of porter.conf (`file` names it in messages).
    public static func parse(file: String, bytes: [UInt8]) -> (PorterSettings, [Diagnostic]) {
        var diagnostics = Diagnostics(file: file)
        let unit = UnitFile.parse(fileName: file, bytes: bytes, diagnostics: &diagnostics)
        var r = UnitReader(file: unit, diagnostics: diagnostics)
        var s = PorterSettings()
        r.read(section: "Porter", implemented: keys) { r, a in
            s.lines[a.key] = a.line
            switch a.key {
            case "ControlSocket":
                switch a.value {
                case "": s.controlSocket = .standard
                case "none", "no": s.controlSocket = .disabled
                case let p where p.hasPrefix("/"):
                    guard p.utf8.count <= ListenAddress.maxUnixPathBytes else {
                        r.error(a, "path too long (\(p.utf8.count) bytes), at most \(ListenAddress.maxUnixPathBytes) for a Unix socket")
                        return
                    }
                    s.controlSocket = .path(p)
                default:
                    r.error(a, "invalid value \(Quote.value(a.value)), expected an absolute path, none, or empty for the default")
                }
            case "MetricsListen":
                if a.value.isEmpty || a.value == "none" {
                    s.metricsListen = nil
                    return
                }
                guard let address = r.value(a, { v throws(ValueError) in try ListenAddress.parse(v, kind: .stream) }) else { return }
                guard address.isInet else {
                    r.error(a, "\(Quote.value(a.value)) is not a TCP address, expected IPv4:port, [IPv6]:port or a port")
                    return
                }
                s.metricsListen = address
            case "LogTarget":
                guard let t = LogTarget(rawValue: a.value) else {
                    r.error(a, "invalid value \(Quote.value(a.value)), expected auto, stderr, journal or syslog")
                    return
                }
                s.logTarget = t
            case "LogLevel":
                switch a.value {
                case "debug": s.logLevel = .debug
                case "info": s.logLevel = .info
                case "warning": s.logLevel = .warning
                case "error": s.logLevel = .error
                default: r.error(a, "invalid value \(Quote.value(a.value)), expected debug, info, warning or error")
                }
            case "SyslogFacility":
                guard let f = SyslogLine.Facility(name: a.value) else {
                    r.error(a, "invalid value \(Quote.value(a.value)), expected one of \(SyslogLine.Facility.names.joined(separator: ", "))")
                    return
                }
                s.syslogFacility = f
            case "SyslogFormat":
                guard let f = SyslogFormat(rawValue: a.value) else {
                    r.error(a, "invalid value \(Quote.value(a.value)), expected rfc3164 or rfc5424")
                    return
                }
                s.syslogFormat = f
            case "SyslogSocket":
                guard a.value.hasPrefix("/"), a.value.utf8.count <= ListenAddress.maxUnixPathBytes else {
                    r.error(a, "invalid value \(Quote.value(a.value)), expected an absolute path of a Unix datagram socket")
                    return
                }
                s.syslogSocket = a.value
            default:
                break
            }
        }
        return (s, r.diagnostics.all)
    }

    /// `file:line` of a key, for messages about its value at run time.
    public func at(_ key: String) -> String {
        lines[key].map { "\(Self.fileName):\($0): \(key)" } ?? key
    }
}
