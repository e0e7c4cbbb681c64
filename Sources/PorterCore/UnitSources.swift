/// Which files make up each unit, across several configuration directories,
/// as systemd.unit(5) describes it: the first directory (in the order given,
/// as /etc before /run before /lib) that holds a unit file wins; drop-ins
/// (`NAME.TYPE.d/*.conf`) from every directory are applied after it, in
/// lexical order of their file names. Pure: the daemon lists the
/// directories and reads the files; this decides.
///
/// Drop-in directories of a unit, least specific first:
///   `service.d/` (every unit of the type), `foo-.service.d/` and
///   `foo-bar-.service.d/` for `foo-bar-baz.service`, `foo@.service.d/` for
///   every instance of a template, then `foo-bar-baz.service.d/` itself
///   (for an instance: `foo@x.service.d/`).
/// A drop-in file name found in several places is taken once: from the most
/// specific directory, and between config directories from the first. A
/// drop-in symlinked to /dev/null masks the ones of that name below it.
///
/// Masking: a unit file that is empty or a symlink to /dev/null is masked,
/// in whichever directory wins; the unit is not loaded. Aliases: a symlink
/// whose target has another unit name makes its name an alias of that unit.
public struct UnitSources: Sendable {
    /// One entry of a configuration directory, as listed.
    public enum Entry: Equatable, Sendable {
        /// A regular file (or a symlink to one with the same name).
        case file
        /// A symlink; the target as readlink(2) gives it.
        case link(String)
        /// Empty, or a symlink to /dev/null.
        case masked
    }

    /// One configuration directory, as the daemon listed it.
    public struct Listing: Sendable {
        public var path: String
        /// Unit file names (`echo.socket`) and what they are.
        public var units: [String: Entry]
        /// Drop-in directories (`echo.socket.d`) and their `.conf` files.
        public var dropIns: [String: [String: Entry]]

        public init(path: String, units: [String: Entry] = [:], dropIns: [String: [String: Entry]] = [:]) {
            self.path = path
            self.units = units
            self.dropIns = dropIns
        }
    }

    /// One file a unit is made of.
    public struct Source: Equatable, Sendable {
        /// Index of the directory in the list given to `resolve`.
        public var directory: Int
        /// Relative to that directory: `echo.socket`, `echo.socket.d/port.conf`.
        public var name: String
        /// Where it is for people: the directory joined with the name, and
        /// for a symlink where it points.
        public var path: String
        public var linkTarget: String?

        /// For diagnostics: the bare name for the unit file itself, the
        /// drop-in directory and file for a drop-in (`echo.socket.d/port.conf`).
        public var displayName: String { name }
    }

    public struct Unit: Equatable, Sendable {
        public var name: UnitName
        public var file: Source
        public var dropIns: [Source]
        /// Other names that are symlinks to this unit.
        public var aliases: [String]
        public var sources: [Source] { [file] + dropIns }
    }

    public private(set) var units: [UnitName: Unit] = [:]
    /// Masked units, with the file that masks them.
    public private(set) var masked: [UnitName: String] = [:]
    /// Unit names that are not valid, and drop-ins for units that do not exist.
    public private(set) var diagnostics: [Diagnostic] = []
    /// One line per alias, for the log.
    public private(set) var notes: [String] = []

    /// File names porter reads as units.
    public static func isUnitFileName(_ name: String) -> Bool {
        name.hasSuffix(".socket") || name.hasSuffix(".service") || name.hasSuffix(".path")
    }

    /// Decides, for `listings` in precedence order (first wins).
    public static func resolve(_ listings: [Listing]) -> UnitSources {
        var r = UnitSources()
        // The winning entry of every name.
        var winner: [String: (dir: Int, entry: Entry)] = [:]
        for (i, l) in listings.enumerated() {
            for (name, entry) in l.units where winner[name] == nil { winner[name] = (i, entry) }
        }
        var aliasOf: [String: String] = [:]
        // `foo@bar.service -> foo@.service`: an instance of the template.
        var instanceOf: [String: (template: String, dir: Int, target: String)] = [:]
        for name in winner.keys.sorted() {
            let (dir, entry) = winner[name]!
            guard let unit = UnitName.parse(name) else {
                r.diagnostics.append(Diagnostic(.error, file: name, "invalid unit name, expected NAME.socket, NAME.service, NAME.path or NAME@.service with letters, digits and :-_.\\ only"))
                continue
            }
            let path = join(listings[dir].path, name)
            switch entry {
            case .masked:
                r.masked[unit] = path
            case .file:
                r.units[unit] = Unit(name: unit, file: Source(directory: dir, name: name, path: path), dropIns: [], aliases: [])
            case .link(let target):
                let base = target.split(separator: "/").last.map(String.init) ?? target
                if base != name, let targetName = UnitName.parse(base) {
                    if targetName.isTemplate, let i = unit.instance, !i.isEmpty, targetName == unit.withInstance("") {
                        instanceOf[name] = (base, dir, target)
                        continue
                    }
                    guard targetName.type == unit.type, targetName.isTemplate == unit.isTemplate else {
                        r.diagnostics.append(Diagnostic(.error, file: name, "an alias of \(base), which is not a unit of the same kind; expected a link to a .\(unit.type.rawValue)\(unit.isTemplate ? " template" : "") unit"))
                        continue
                    }
                    aliasOf[name] = base
                    continue
                }
                r.units[unit] = Unit(name: unit, file: Source(directory: dir, name: name, path: path, linkTarget: target), dropIns: [], aliases: [])
            }
        }
        // Aliases: the target's own file if there is one, else the link.
        for alias in aliasOf.keys.sorted() {
            let base = aliasOf[alias]!
            let targetName = UnitName.parse(base)!
            if r.masked[targetName] != nil { continue }
            let (dir, entry) = winner[alias]!
            if r.units[targetName] == nil, case .link(let target) = entry {
                r.units[targetName] = Unit(name: targetName, file: Source(directory: dir, name: alias, path: join(listings[dir].path, alias), linkTarget: target),
                                           dropIns: [], aliases: [])
            }
            r.units[targetName]?.aliases.append(alias)
            r.notes.append("\(alias): an alias of \(base)")
        }
        // Instances: the template's file (from whichever directory wins for
        // it), else the link's target; `foo@bar.socket` and `foo@bar.path`
        // bring `foo@bar.service` with them, as systemd instantiates it.
        for name in instanceOf.keys.sorted() {
            let (base, dir, target) = instanceOf[name]!
            let unit = UnitName.parse(name)!, template = UnitName.parse(base)!
            if r.masked[template] != nil { r.masked[unit] = r.masked[template]; continue }
            let file = r.units[template]?.file ?? Source(directory: dir, name: name, path: join(listings[dir].path, name), linkTarget: target)
            r.units[unit] = Unit(name: unit, file: file, dropIns: [], aliases: [])
            r.notes.append("\(name): an instance of \(base)")
        }
        for name in r.units.keys.sorted() where name.type != .service {
            guard let i = name.instance, !i.isEmpty else { continue }
            let service = name.withType(.service), template = service.withInstance("")
            guard r.units[service] == nil, r.masked[service] == nil, let t = r.units[template] else { continue }
            r.units[service] = Unit(name: service, file: t.file, dropIns: [], aliases: [])
        }
        // A socket or path template is never run itself, only its instances.
        for name in r.units.keys where name.isTemplate && name.type != .service { r.units[name] = nil }
        // Drop-ins, and the directories that belong to no unit.
        var used = Set<String>()
        for name in r.units.keys.sorted() {
            let dirs = dropInDirectories(of: name)
            used.formUnion(dirs)
            r.units[name]!.dropIns = dropIns(dirs, listings)
        }
        for a in aliasOf.keys { used.insert(a + ".d") }
        for m in r.masked.keys { used.insert(m.description + ".d") }
        var reported = Set<String>()
        for l in listings {
            for dir in l.dropIns.keys.sorted() where !used.contains(dir) && !reported.contains(dir) {
                guard dir.hasSuffix(".d") else { continue }
                let unit = String(dir.dropLast(2))
                // Type-wide and prefix directories need no unit of their name.
                if UnitName.UnitType(rawValue: unit) != nil { continue }
                if let u = UnitName.parse(unit), u.prefix.hasSuffix("-") && u.instance == nil { continue }
                if let u = UnitName.parse(unit), let i = u.instance, !i.isEmpty, r.units[u.withInstance("")] != nil { continue }
                reported.insert(dir)
                r.diagnostics.append(Diagnostic(.warning, file: join(l.path, dir), "a drop-in directory for \(unit), which does not exist; ignored"))
            }
        }
        return r
    }

    /// The drop-in directories that apply to `name`, least specific first.
    public static func dropInDirectories(of name: UnitName) -> [String] {
        var dirs = [name.type.rawValue + ".d"]
        // foo-bar-baz.service: foo-.service.d, foo-bar-.service.d. The
        // prefix of a template or instance is cut before its `@`.
        let parts = name.prefix.split(separator: "-", omittingEmptySubsequences: false)
        if parts.count > 1 {
            for n in 1..<parts.count {
                let p = parts[..<n].joined(separator: "-") + "-"
                guard !p.dropLast().isEmpty else { continue }
                dirs.append(p + "." + name.type.rawValue + ".d")
            }
        }
        if let i = name.instance, !i.isEmpty {
            dirs.append(name.withInstance("").description + ".d")
        }
        dirs.append(name.description + ".d")
        return dirs
    }

    /// The `.conf` files of `dirs` (least specific first) across
    /// `listings`: one per file name, in lexical order.
    static func dropIns(_ dirs: [String], _ listings: [Listing]) -> [Source] {
        var chosen: [String: (Source, masked: Bool)] = [:]
        // Most specific directory first, then config directories in order:
        // the first one seen of a name wins.
        for dir in dirs.reversed() {
            for (i, l) in listings.enumerated() {
                guard let files = l.dropIns[dir] else { continue }
                for (file, entry) in files where file.hasSuffix(".conf") && chosen[file] == nil {
                    let rel = dir + "/" + file
                    var target: String? = nil
                    if case .link(let t) = entry { target = t }
                    chosen[file] = (Source(directory: i, name: rel, path: join(l.path, rel), linkTarget: target), entry == .masked)
                }
            }
        }
        return chosen.keys.sorted().compactMap { chosen[$0]!.masked ? nil : chosen[$0]!.0 }
    }

    static func join(_ dir: String, _ name: String) -> String {
        dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }
}

/// Names for the files of one unit, so a line number can say which file it
/// is in. The lines of file k (0: the unit file, then its drop-ins) are
/// numbered from k × `stride`: every line a parser keeps (a key's line, the
/// line of ExecStart=) carries its file with it into the diagnostics.
public struct SourceNames: Equatable, Sendable {
    public static let stride = 1 << 24
    public var names: [String]

    public init(_ names: [String]) { self.names = names }
    public init(_ single: String) { names = [single] }

    /// The file and line within it of a line numbered as above.
    public func locate(_ line: Int?) -> (file: String, line: Int?) {
        guard let line else { return (names.first ?? "", nil) }
        let k = line / Self.stride
        return (k < names.count ? names[k] : names.first ?? "", line % Self.stride)
    }

    public var unit: String { names.first ?? "" }

    /// `file:line` for messages.
    public func at(_ line: Int?) -> String {
        let (f, l) = locate(line)
        return l.map { "\(f):\($0)" } ?? f
    }
}

extension Diagnostic {
    /// A diagnostic at a line of one of the unit's files.
    public init(_ severity: Severity, in sources: SourceNames, line: Int?, key: String? = nil, _ message: String) {
        let (file, l) = sources.locate(line)
        self.init(severity, file: file, line: l, key: key, message)
    }
}
