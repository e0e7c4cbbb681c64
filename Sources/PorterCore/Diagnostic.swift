/// One problem found in the configuration. Its description names the file,
/// the line, the key and what was expected:
/// `echo.socket:3: ListenStream: port 70000 out of range 1-65535`.
public struct Diagnostic: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }

    public var severity: Severity
    public var file: String
    public var line: Int?
    public var key: String?
    public var message: String

    public init(_ severity: Severity, file: String, line: Int? = nil, key: String? = nil, _ message: String) {
        self.severity = severity
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        s += ": "
        if let key { s += "\(key): " }
        return s + message
    }
}

/// Collects diagnostics while one file is read. At most `maxShown` are
/// kept; the rest are counted in one closing line, so a binary file read
/// by mistake gives a screenful, not thousands of lines.
public struct Diagnostics: Sendable {
    public static let maxShown = 20
    private var shown: [Diagnostic] = []
    private var suppressed = 0
    private var suppressedError = false
    public let file: String
    /// The unit file and its drop-ins: a line says which one it is in.
    public let sources: SourceNames

    public init(file: String) {
        self.file = file
        sources = SourceNames(file)
    }

    public init(sources: SourceNames) {
        self.file = sources.unit
        self.sources = sources
    }

    public var all: [Diagnostic] {
        guard suppressed > 0 else { return shown }
        return shown + [Diagnostic(suppressedError ? .error : .warning, file: file,
                                   "\(suppressed) more problem\(suppressed == 1 ? "" : "s") in this file not shown")]
    }

    private mutating func add(_ d: Diagnostic) {
        if shown.count < Self.maxShown {
            shown.append(d)
        } else {
            suppressed += 1
            if d.severity == .error { suppressedError = true }
        }
    }

    public mutating func error(_ line: Int?, _ key: String?, _ message: String) {
        add(Diagnostic(.error, in: sources, line: line, key: key, message))
    }

    public mutating func warning(_ line: Int?, _ key: String?, _ message: String) {
        add(Diagnostic(.warning, in: sources, line: line, key: key, message))
    }

    public var hasErrors: Bool { suppressedError || shown.contains { $0.severity == .error } }
}
