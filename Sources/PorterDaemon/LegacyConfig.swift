import Glibc
import PorterCore
import PorterSys

/// Reads an xinetd or inetd configuration where it lies (following
/// xinetd's `includedir` and `includefile`) and converts it into units:
/// what `porter import` writes out and `porter run --xinetd/--inetd-conf`
/// serves in place. The conversion is PorterCore's; this does the reading.
public enum LegacyConfig {
    public enum Kind: String, Sendable { case xinetd, inetd }

    /// /etc/services, or the file given; porter's own small table fills
    /// the names it lacks (the importers say so when they use it).
    public static func services(_ path: String?) -> (ServicesFile, Diagnostic?) {
        let file = path ?? "/etc/services"
        do {
            return (ServicesFile(text: String(decoding: try Files.readBytes(file), as: UTF8.self)), nil)
        } catch {
            if path == nil, case .system(let e) = error, e.errno == ENOENT { return (ServicesFile(), nil) }
            return (ServicesFile(), Diagnostic(.error, file: file, "cannot read: \(error)"))
        }
    }

    /// Reads and converts. Errors in the input (a line that does not
    /// parse, a file that cannot be read) come back as diagnostics.
    /// hosts.allow and hosts.deny in `dir`, each read whole; a missing one
    /// is empty, as for libwrap.
    public static func hostsAccess(_ dir: String) -> (HostsAccess, [Diagnostic]) {
        var problems: [Diagnostic] = []
        func read(_ name: String) -> (file: String, text: String)? {
            let file = (dir.hasSuffix("/") ? dir : dir + "/") + name
            do {
                return (file, String(decoding: try Files.readBytes(file), as: UTF8.self))
            } catch {
                if case .system(let e) = error, e.errno == ENOENT { return nil }
                problems.append(Diagnostic(.error, file: file, "cannot read: \(error)"))
                return nil
            }
        }
        let rules = HostsAccess(allow: read("hosts.allow"), deny: read("hosts.deny"))
        return (rules, problems)
    }

    public static func load(_ kind: Kind, _ path: String, servicesFile: String? = nil, hostsAccess dir: String? = nil) -> ImportResult {
        let (services, problem) = services(servicesFile)
        var result: ImportResult
        switch kind {
        case .inetd:
            let text: String
            do { text = String(decoding: try Files.readBytes(path), as: UTF8.self) } catch {
                var r = ImportResult()
                r.diagnostics.append(Diagnostic(.error, file: path, "cannot read: \(error)"))
                return r
            }
            let parsed = InetdText(file: path, text: text)
            var importer = InetdImport(services: services)
            importer.resolve = Resolver.addresses
            result = importer.convert(parsed.entries)
            result.diagnostics += parsed.diagnostics
        case .xinetd:
            var reader = XinetdReader()
            reader.read(path, depth: 0, asDirectory: nil)
            let merged = reader.services.map {
                XinetdService(name: $0.name, file: $0.file, line: $0.line, defaults: reader.defaults, attributes: $0.attributes)
            }
            var importer = XinetdImport(services: services, source: path)
            importer.resolve = Resolver.addresses
            var unreadable: [Diagnostic] = []
            if let dir {
                let (rules, problems) = hostsAccess(dir)
                importer.hostsAccess = (rules, "\(dir)/hosts.allow, \(dir)/hosts.deny")
                unreadable = problems
            }
            result = importer.convert(merged, defaults: reader.defaults)
            result.diagnostics += reader.diagnostics + unreadable
        }
        if let problem { result.diagnostics.insert(problem, at: 0) }
        return result
    }

    /// Follows includes: at most 8 deep and 1000 files, each read whole.
    struct XinetdReader {
        var defaults: [XinetdText.Attribute] = []
        var services: [(name: String, attributes: [XinetdText.Attribute], file: String, line: Int)] = []
        var diagnostics: [Diagnostic] = []
        var filesRead = 0

        mutating func read(_ path: String, depth: Int, asDirectory: Bool?) {
            guard depth <= 8, filesRead < 1000 else {
                diagnostics.append(Diagnostic(.error, file: path, "includes nested too deep (more than 8) or too many files (1000); not read"))
                return
            }
            let isDirectory = asDirectory ?? ((try? Files.status(path))??.isDirectory ?? false)
            if isDirectory {
                let names: [String]
                do { names = try Files.list(path).filter(XinetdText.includedFileName).sorted() } catch {
                    diagnostics.append(Diagnostic(.error, file: path, "cannot read the directory: \(error.reason)"))
                    return
                }
                for n in names { read(path + "/" + n, depth: depth + 1, asDirectory: false) }
                return
            }
            filesRead += 1
            let text: String
            do { text = String(decoding: try Files.readBytes(path), as: UTF8.self) } catch {
                diagnostics.append(Diagnostic(.error, file: path, "cannot read: \(error)"))
                return
            }
            let parsed = XinetdText(file: path, text: text)
            diagnostics += parsed.diagnostics
            for item in parsed.items {
                switch item {
                case .defaults(let attrs): defaults += attrs
                case .service(let name, let attrs, let file, let line): services.append((name, attrs, file, line))
                case .includeDir(let dir, _): read(dir, depth: depth + 1, asDirectory: true)
                case .includeFile(let file, _): read(file, depth: depth + 1, asDirectory: false)
                }
            }
        }
    }

    /// Adds the converted units to a unit set, after the configuration
    /// directories' own: a unit of the same name there wins (and the
    /// converted one is left out with a note). The report's rows that do
    /// not map exactly are logged, unsupported ones as warnings.
    static func add(_ result: ImportResult, from path: String, to units: inout UnitSet, besides existing: Set<UnitName>,
                    host: HostFacts, log: Bool) {
        for d in result.diagnostics { units.report(d) }
        for (name, text) in result.units {
            guard let unit = UnitName.parse(name) else { continue }
            if existing.contains(unit) {
                units.note("\(name): from \(path), left out: the configuration directory has its own \(name)")
                continue
            }
            units.add(unit, files: [("\(name) (from \(path))", Array(text.utf8))], host: host)
        }
        guard log else { return }
        for r in result.rows where r.kind != .exact {
            // A service left out for a reason other than being switched off
            // is something the admin must see.
            let off = r.kind == .skipped && (r.attribute == "disable" || r.attribute == "#<off>#")
            let level: LogLevel = r.kind == .unsupported || (r.kind == .skipped && !off) ? .warning : .info
            Log.write(level, "\(path): \(r.service): \(r.attribute)\(r.value.isEmpty ? "" : " = \(r.value)"): \(r.note)")
        }
        Log.info("\(path): \(result.converted.count) service\(result.converted.count == 1 ? "" : "s") served"
            + (result.skipped.isEmpty ? "" : "; skipped: \(result.skipped.joined(separator: ", "))"))
    }
}

extension Commands.Place {
    /// The xinetd and inetd configurations to read in place, converted.
    func legacyResults() -> [(path: String, result: ImportResult)] {
        var out: [(String, ImportResult)] = []
        if let x = xinetd { out.append((x, LegacyConfig.load(.xinetd, x, servicesFile: servicesFile, hostsAccess: hostsAccess))) }
        if let i = inetdConf { out.append((i, LegacyConfig.load(.inetd, i, servicesFile: servicesFile))) }
        return out
    }

    /// Adds them to `units` (the directories' units win on a name).
    func addLegacy(to units: inout UnitSet, besides existing: [UnitName], host: HostFacts, log: Bool) {
        let names = Set(existing)
        for (path, result) in legacyResults() {
            LegacyConfig.add(result, from: path, to: &units, besides: names, host: host, log: log)
        }
    }
}
