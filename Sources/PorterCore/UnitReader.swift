/// Walks a unit file's assignments for one unit type: hands each implemented
/// key to the builder, classifies the rest (KnownKeys), and turns value
/// errors into `file:line: Key: message` diagnostics.
public struct UnitReader {
    public var diagnostics: Diagnostics
    let file: UnitFile
    /// Condition*= and Assert*= of [Unit], in order.
    public var conditions: [UnitCondition] = []

    public init(file: UnitFile, diagnostics: Diagnostics) {
        self.file = file
        self.diagnostics = diagnostics
    }

    /// Calls `handle` for every assignment in `section` whose key is in
    /// `implemented`; sections other than `section`, [Unit] and [Install]
    /// are reported once. `handle` returns false for a key it does not take
    /// after all (then the key is classified like an unknown one).
    public mutating func read(section wanted: String, implemented: KeySet, unitKeys: KeySet = KeySet([]),
                              _ handle: (inout UnitReader, UnitFile.Assignment) -> Void) {
        let known = implemented.set
        let knownUnit = unitKeys.set
        var sawMain = false
        for section in file.sections {
            let name = section.name
            if name == wanted { sawMain = true }
            if name != wanted && name != "Unit" && name != "Install" {
                if !name.hasPrefix("X-") {
                    diagnostics.warning(section.line, nil, "unknown section [\(name)] ignored, expected [Unit], [\(wanted)] or [Install]")
                }
                continue
            }
            for a in section.assignments {
                if a.key.hasPrefix("X-") { continue }
                if name == "Unit" && (a.key.hasPrefix("Condition") || a.key.hasPrefix("Assert")) {
                    do {
                        if let c = try UnitCondition.parse(key: a.key, value: a.value, line: a.line) { conditions.append(c) }
                        else { conditions.removeAll() }  // an empty assignment resets the list
                    } catch {
                        diagnostics.error(a.line, a.key, error.message)
                    }
                    continue
                }
                if (name == wanted && known.contains(a.key)) || (name == "Unit" && knownUnit.contains(a.key)) {
                    handle(&self, a)
                    continue
                }
                classify(section: name, a, implemented: name == "Unit" ? unitKeys.list : implemented.list)
            }
        }
        if !sawMain {
            diagnostics.error(nil, nil, "no [\(wanted)] section")
        }
        if let first = sandboxKeys.first {
            // One message naming every such key, so an admin sees the whole
            // list at once instead of one key per attempt.
            let list = sandboxKeys.map { "\($0.key)= (\(diagnostics.sources.at($0.line)))" }.joined(separator: ", ")
            diagnostics.error(first.line, nil, "needs \(list): porter cannot provide it yet and will not run the unit less safely than it asks (these need namespaces, cgroups, capabilities or seccomp)")
        }
    }

    /// Keys that need a sandbox, in the order met.
    var sandboxKeys: [(key: String, line: Int)] = []

    mutating func classify(section: String, _ a: UnitFile.Assignment, implemented: [String]) {
        switch KnownKeys.classify(section: section, key: a.key, implemented: implemented) {
        case .silent:
            break
        case .ignored(let why):
            diagnostics.warning(a.line, a.key, "ignored: \(why)")
        case .refused(let why):
            diagnostics.error(a.line, a.key, "not supported: \(why)")
        case .sandbox:
            if !sandboxKeys.contains(where: { $0.key == a.key }) { sandboxKeys.append((a.key, a.line)) }
        case .unknown(let suggestion):
            if let suggestion {
                diagnostics.warning(a.line, a.key, "unknown key in [\(section)] ignored; did you mean \(suggestion)=?")
            } else {
                diagnostics.warning(a.line, a.key, "unknown key in [\(section)] ignored")
            }
        }
    }

    /// Parses a value, or records the error and returns nil.
    public mutating func value<T>(_ a: UnitFile.Assignment, _ parse: (String) throws(ValueError) -> T) -> T? {
        do {
            return try parse(a.value)
        } catch {
            diagnostics.error(a.line, a.key, error.message)
            return nil
        }
    }

    public mutating func error(_ a: UnitFile.Assignment, _ message: String) {
        diagnostics.error(a.line, a.key, message)
    }

    public mutating func warning(_ a: UnitFile.Assignment, _ message: String) {
        diagnostics.warning(a.line, a.key, message)
    }
}

/// The keys a unit type implements, as a list (for suggestions) and a set
/// (for lookups), built once per unit type rather than per file.
public struct KeySet: Sendable {
    public let list: [String]
    public let set: Set<String>
    public init(_ list: [String]) {
        self.list = list
        set = Set(list)
    }
}
