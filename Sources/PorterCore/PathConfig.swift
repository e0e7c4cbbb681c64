/// One condition of a `.path` unit (systemd.path(5)).
public struct PathCondition: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case exists = "PathExists"
        case existsGlob = "PathExistsGlob"
        case changed = "PathChanged"
        case modified = "PathModified"
        case directoryNotEmpty = "DirectoryNotEmpty"
    }

    public var kind: Kind
    public var path: String
    public var line: Int

    public init(kind: Kind, path: String, line: Int) {
        self.kind = kind
        self.path = path
        self.line = line
    }

    /// Conditions that are a state (true or not now) rather than an event:
    /// checked at start-up and after each run, as systemd does.
    public var isState: Bool { kind == .exists || kind == .existsGlob || kind == .directoryNotEmpty }

    /// The directory that holds the files of a per-file unit: the glob's
    /// directory, or the directory itself.
    public var directory: String { kind == .existsGlob ? Self.parent(of: path) : path }

    /// The directory porter watches and looks into for this condition: the
    /// directory itself for DirectoryNotEmpty= and PathExistsGlob=, the
    /// parent of the path otherwise.
    public var watchedDirectory: String {
        kind == .directoryNotEmpty || kind == .existsGlob ? directory : Self.parent(of: path)
    }

    /// The file-name pattern of a PathExistsGlob= condition.
    public var pattern: String? { kind == .existsGlob ? Self.baseName(of: path) : nil }

    /// The directory part of a clean absolute path ("/" for "/x").
    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// The last component of a path.
    /// systemd's hidden_or_backup_file(): what DirectoryNotEmpty= (and
    /// ConditionDirectoryNotEmpty=) do not count — dot files (the temporary
    /// name of a file written then renamed into a spool), backups, package
    /// managers' leftovers.
    public static func isHiddenOrBackup(_ name: String) -> Bool {
        if name.hasPrefix(".") || name.hasSuffix("~") || ["lost+found", "aquota.user", "aquota.group"].contains(name) { return true }
        guard let dot = name.lastIndex(of: ".") else { return false }
        return Self.backupSuffixes.contains(String(name[name.index(after: dot)...]))
    }

    static let backupSuffixes: Set<String> = [
        "ignore", "rpmnew", "rpmsave", "rpmorig", "dpkg-old", "dpkg-new", "dpkg-tmp", "dpkg-dist", "dpkg-bak", "dpkg-backup",
        "dpkg-remove", "ucf-new", "ucf-old", "ucf-dist", "swp", "bak", "old", "new",
    ]

    public static func baseName(of path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    public var description: String { "\(kind.rawValue)=\(path)" }
}

/// A `.path` unit: systemd.path(5), plus porter's per-file jobs.
public struct PathConfig: Sendable {
    public var name: UnitName
    public var conditions: [PathCondition] = []
    /// Unit=: only with Accept=no.
    public var unit: UnitName?
    public var makeDirectory = false
    public var directoryMode: UInt32 = 0o755
    /// systemd.path(5) defaults: 200 activations in 2 s.
    public var triggerLimitInterval = Duration.seconds(2)
    public var triggerLimitBurst = 200
    /// porter's own: one `NAME@.service` instance per file (Accept=yes).
    public var accept = false
    /// Jobs at once with Accept=yes; the rest wait in arrival order.
    public var maxConnections = 64
    /// porter's own: where the file of a failed job is moved (Accept=yes).
    /// Without it a failed file is tried again after a back-off.
    public var failedDirectory: String?
    /// Of the unit file's bytes: whether a reload changed the unit.
    public var fingerprint: UInt64 = 0
    /// Condition*= and Assert*= of [Unit].
    public var unitConditions: [UnitCondition] = []
    /// The unit file and its drop-ins, for messages about its lines.
    public var sources = SourceNames("")

    public init(name: UnitName) {
        self.name = name
        sources = SourceNames(name.description)
    }

    static let keys = KeySet([
        "PathExists", "PathExistsGlob", "PathChanged", "PathModified", "DirectoryNotEmpty", "Unit",
        "MakeDirectory", "DirectoryMode", "TriggerLimitIntervalSec", "TriggerLimitBurst", "Accept",
        "MaxConnections", "FailedDirectory",
    ])

    /// The service it starts: Unit= or `NAME.service`; `NAME@.service` with Accept=yes.
    public var activates: UnitName {
        if accept { return UnitName(prefix: name.prefix, instance: "", type: .service) }
        return unit ?? name.withType(.service)
    }

    public static func read(_ file: UnitFile, name: UnitName, specifiers: Specifiers, diagnostics: inout Diagnostics) -> PathConfig? {
        var c = PathConfig(name: name)
        c.sources = diagnostics.sources
        var r = UnitReader(file: file, diagnostics: diagnostics)
        r.read(section: "Path", implemented: keys) { r, a in c.apply(a, &r, specifiers) }
        c.validate(&r)
        c.unitConditions = r.conditions
        diagnostics = r.diagnostics
        return diagnostics.hasErrors ? nil : c
    }

    mutating func apply(_ a: UnitFile.Assignment, _ r: inout UnitReader, _ specifiers: Specifiers) {
        func absolute(_ s: String) throws(ValueError) -> String {
            let p = try specifiers.expand(s)
            guard p.hasPrefix("/") else { throw ValueError("\(Quote.value(p)) is not an absolute path, expected /path") }
            // Trailing slashes name the same path; inotify wants it clean.
            var clean = p
            while clean.count > 1 && clean.hasSuffix("/") { clean.removeLast() }
            return clean
        }
        switch a.key {
        case "PathExists", "PathExistsGlob", "PathChanged", "PathModified", "DirectoryNotEmpty":
            if a.value.isEmpty {
                conditions.removeAll()  // an empty assignment resets the list
                return
            }
            guard let p = r.value(a, absolute) else { return }
            conditions.append(PathCondition(kind: PathCondition.Kind(rawValue: a.key)!, path: p, line: a.line))
        case "Unit":
            guard let v = r.value(a, specifiers.expand) else { return }
            guard let n = UnitName.parse(v), n.type == .service, n.instance == nil else {
                r.error(a, "invalid unit name \(Quote.value(v)), expected NAME.service")
                return
            }
            unit = n
        case "MakeDirectory": if let v = r.value(a, Values.boolean) { makeDirectory = v }
        case "DirectoryMode": if let v = r.value(a, Values.mode) { directoryMode = v }
        case "TriggerLimitIntervalSec":
            if let v = r.value(a, { (s) throws(ValueError) in try Values.timeSpan(s) }) { triggerLimitInterval = v.duration ?? .zero }
        case "TriggerLimitBurst":
            if let v = r.value(a, { (s) throws(ValueError) in try Values.integer(s, in: 0...1_000_000) }) { triggerLimitBurst = v }
        case "Accept": if let v = r.value(a, Values.boolean) { accept = v }
        case "MaxConnections":
            if let v = r.value(a, { (s) throws(ValueError) in try Values.integer(s, in: 1...1_000_000) }) { maxConnections = v }
        case "FailedDirectory":
            failedDirectory = a.value.isEmpty ? nil : r.value(a, absolute)
        default:
            break
        }
    }

    mutating func validate(_ r: inout UnitReader) {
        if name.isTemplate {
            r.diagnostics.error(nil, nil, "a path template is not run itself, expected NAME.path or an instance NAME@INSTANCE.path")
        }
        if conditions.isEmpty {
            r.diagnostics.error(nil, nil, "no PathExists=, PathExistsGlob=, PathChanged=, PathModified= or DirectoryNotEmpty= line; nothing to watch")
        }
        if accept {
            for c in conditions where c.kind != .directoryNotEmpty && c.kind != .existsGlob {
                r.diagnostics.error(c.line, c.kind.rawValue, "Accept=yes starts a job per file of a directory, expected DirectoryNotEmpty=DIR or PathExistsGlob=DIR/PATTERN")
            }
            if unit != nil {
                r.diagnostics.error(nil, "Unit", "not allowed with Accept=yes: each file starts an instance of \(name.prefix)@.service")
            }
        } else if failedDirectory != nil {
            r.diagnostics.error(nil, "FailedDirectory", "only with Accept=yes (per-file jobs)")
        }
        for c in conditions where c.kind == .existsGlob {
            if c.path.split(separator: "/").dropLast().contains(where: { $0.contains("*") || $0.contains("?") || $0.contains("[") }) {
                r.diagnostics.error(c.line, c.kind.rawValue, "only the last component of \(Quote.value(c.path)) may be a pattern, expected /dir/PATTERN")
            }
        }
    }
}
