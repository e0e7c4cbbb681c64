/// `Condition*=` and `Assert*=` of systemd.unit(5). A unit's conditions are
/// checked before it starts (a service at every start, a socket or path
/// unit before it listens or watches): a failed condition skips it, a
/// failed assert fails it. `|` makes a condition a trigger (any one of the
/// triggers suffices, all the others must hold), `!` negates it. Porter
/// evaluates them against its own host, user and environment, as systemd
/// does against the manager's.
public struct UnitCondition: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case pathExists = "PathExists", pathExistsGlob = "PathExistsGlob", pathIsDirectory = "PathIsDirectory"
        case pathIsSymbolicLink = "PathIsSymbolicLink", pathIsMountPoint = "PathIsMountPoint"
        case pathIsReadWrite = "PathIsReadWrite", directoryNotEmpty = "DirectoryNotEmpty"
        case fileNotEmpty = "FileNotEmpty", fileIsExecutable = "FileIsExecutable"
        case user = "User", group = "Group", host = "Host", kernelCommandLine = "KernelCommandLine"
        case kernelVersion = "KernelVersion", virtualization = "Virtualization", architecture = "Architecture"
        case environment = "Environment", capability = "Capability", cpus = "CPUs", memory = "Memory"
        case osRelease = "OSRelease", firstBoot = "FirstBoot", needsUpdate = "NeedsUpdate", acPower = "ACPower"
        case security = "Security", kernelModuleLoaded = "KernelModuleLoaded"

        var takesPath: Bool {
            switch self {
            case .pathExists, .pathExistsGlob, .pathIsDirectory, .pathIsSymbolicLink, .pathIsMountPoint,
                 .pathIsReadWrite, .directoryNotEmpty, .fileNotEmpty, .fileIsExecutable, .needsUpdate:
                return true
            default:
                return false
            }
        }
    }

    /// systemd conditions porter does not evaluate, and why: a unit using
    /// one is refused rather than started when it should not be.
    static let notEvaluated: [String: String] = [
        "PathIsEncrypted": "porter cannot tell yet whether a path's block device is encrypted",
        "ControlGroupController": "porter does not use cgroups",
        "Credential": "porter passes no credentials",
        "MemoryPressure": "porter does not read pressure stall information yet",
        "CPUPressure": "porter does not read pressure stall information yet",
        "IOPressure": "porter does not read pressure stall information yet",
    ]

    public var kind: Kind
    public var isAssert: Bool
    public var trigger: Bool
    public var negate: Bool
    public var value: String
    public var line: Int

    public init(kind: Kind, isAssert: Bool, trigger: Bool, negate: Bool, value: String, line: Int) {
        self.kind = kind
        self.isAssert = isAssert
        self.trigger = trigger
        self.negate = negate
        self.value = value
        self.line = line
    }

    public var description: String {
        "\(isAssert ? "Assert" : "Condition")\(kind.rawValue)=\(trigger ? "|" : "")\(negate ? "!" : "")\(value)"
    }

    /// Reads one `ConditionX=`/`AssertX=` assignment; nil for an empty one
    /// (which resets the list: the caller's job).
    public static func parse(key: String, value raw: String, line: Int) throws(ValueError) -> UnitCondition? {
        let isAssert = key.hasPrefix("Assert")
        let name = String(key.dropFirst(isAssert ? 6 : 9))
        guard let kind = Kind(rawValue: name) else {
            if let why = notEvaluated[name] { throw ValueError("not supported: \(why); the unit is refused rather than started when it should not be") }
            throw ValueError("unknown \(isAssert ? "assert" : "condition"); porter evaluates \(Kind.allCases.map { (isAssert ? "Assert" : "Condition") + $0.rawValue + "=" }.joined(separator: ", "))")
        }
        var v = Substring(raw.trimmingWhitespace())
        if v.isEmpty { return nil }
        var trigger = false, negate = false
        if v.first == "|" { trigger = true; v = v.dropFirst().drop(while: { $0 == " " }) }
        if v.first == "!" { negate = true; v = v.dropFirst().drop(while: { $0 == " " }) }
        let value = String(v)
        guard !value.isEmpty else { throw ValueError("empty condition after the prefix, expected a value") }
        if kind.takesPath && !value.hasPrefix("/") {
            throw ValueError("\(Quote.value(value)) is not an absolute path, expected /path")
        }
        switch kind {
        case .kernelVersion, .cpus, .memory:
            for w in Values.words(value) { _ = try Comparison.parse(w, defaultOperator: kind == .kernelVersion ? nil : .equal) }
        case .acPower, .firstBoot:
            _ = try Values.boolean(value)
        default:
            break
        }
        return UnitCondition(kind: kind, isAssert: isAssert, trigger: trigger, negate: negate, value: value, line: line)
    }

    /// The verdict on a unit's conditions (or asserts), given each one's
    /// raw result: nil when they hold, otherwise the ones that decided.
    public static func failing(_ results: [(UnitCondition, Bool)]) -> [UnitCondition]? {
        var failedPlain: [UnitCondition] = []
        var triggers: [UnitCondition] = []
        var anyTrigger = false
        for (c, raw) in results {
            let ok = raw != c.negate
            if c.trigger {
                triggers.append(c)
                if ok { anyTrigger = true }
            } else if !ok {
                failedPlain.append(c)
            }
        }
        if !failedPlain.isEmpty { return failedPlain }
        if !triggers.isEmpty && !anyTrigger { return triggers }
        return nil
    }
}

/// `>=5.10`, `<2G`, `!=4` in KernelVersion=, CPUs=, Memory=, OSRelease=.
public struct Comparison: Equatable, Sendable {
    public init(op: Operator?, operand: String) {
        self.op = op
        self.operand = operand
    }

    public enum Operator: String, Sendable, CaseIterable {
        case lessOrEqual = "<=", greaterOrEqual = ">=", notEqual = "!=", equal = "=", less = "<", greater = ">"
    }
    public var op: Operator?
    public var operand: String

    /// Operators as systemd spells them (also `==`); nil `op`: a pattern.
    public static func parse(_ s: String, defaultOperator: Operator?) throws(ValueError) -> Comparison {
        var t = Substring(s)
        var op: Operator? = nil
        if t.hasPrefix("==") { op = .equal; t = t.dropFirst(2) }
        else if let o = Operator.allCases.first(where: { t.hasPrefix($0.rawValue) }) { op = o; t = t.dropFirst(o.rawValue.count) }
        t = t.drop(while: { $0 == " " })
        guard !t.isEmpty else { throw ValueError("\(Quote.value(s)) has nothing to compare with, expected OPERATOR VALUE such as >=2") }
        return Comparison(op: op ?? defaultOperator, operand: String(t))
    }

    public func holds(_ order: Int) -> Bool {
        switch op ?? .equal {
        case .less: return order < 0
        case .lessOrEqual: return order <= 0
        case .equal: return order == 0
        case .notEqual: return order != 0
        case .greaterOrEqual: return order >= 0
        case .greater: return order > 0
        }
    }

    /// strverscmp(3)-like order of version strings: digit runs compare as
    /// numbers, everything else byte by byte ("5.10" > "5.9").
    public static func compareVersions(_ a: String, _ b: String) -> Int {
        let x = Array(a.utf8), y = Array(b.utf8)
        var i = 0, j = 0
        func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
        while i < x.count && j < y.count {
            if isDigit(x[i]) && isDigit(y[j]) {
                var ni = i, nj = j
                while ni < x.count && isDigit(x[ni]) { ni += 1 }
                while nj < y.count && isDigit(y[nj]) { nj += 1 }
                let da = x[i..<ni].drop(while: { $0 == 0x30 }), db = y[j..<nj].drop(while: { $0 == 0x30 })
                if da.count != db.count { return da.count < db.count ? -1 : 1 }
                for (p, q) in zip(da, db) where p != q { return p < q ? -1 : 1 }
                i = ni
                j = nj
            } else {
                if x[i] != y[j] { return x[i] < y[j] ? -1 : 1 }
                i += 1
                j += 1
            }
        }
        return x.count - i == y.count - j ? 0 : (x.count - i < y.count - j ? -1 : 1)
    }
}

/// The checks of conditions that need no system call: over words and
/// tables the daemon read.
public enum ConditionMatch {
    /// KernelCommandLine=: `WORD` matches a word or `WORD=...`; `WORD=VALUE`
    /// matches that word exactly.
    public static func kernelCommandLine(_ wanted: String, _ cmdline: String) -> Bool {
        let words = Values.words(cmdline)
        if wanted.contains("=") { return words.contains(wanted) }
        return words.contains { $0 == wanted || $0.hasPrefix(wanted + "=") }
    }

    /// Environment=: `NAME` set at all, or `NAME=VALUE` exactly.
    public static func environment(_ wanted: String, _ env: [String: String]) -> Bool {
        guard let eq = wanted.firstIndex(of: "=") else { return env[wanted] != nil }
        return env[String(wanted[..<eq])] == String(wanted[wanted.index(after: eq)...])
    }

    /// OSRelease=: `KEY=VALUE`, `KEY!=VALUE`, `KEY>=VERSION` ... against
    /// os-release(5), all of the space-separated ones.
    public static func osRelease(_ wanted: String, _ fields: [String: String]) throws(ValueError) -> Bool {
        for w in Values.words(wanted) {
            guard let r = w.firstRange(where: { "<>=!".contains($0) }) else {
                throw ValueError("invalid OSRelease= term \(Quote.value(w)), expected KEY=VALUE or KEY>=VERSION")
            }
            let key = String(w[..<r.lowerBound])
            let c = try Comparison.parse(String(w[r.lowerBound...]), defaultOperator: .equal)
            let have = fields[key] ?? ""
            let order = c.op == .equal || c.op == .notEqual ? (have == c.operand ? 0 : 1) : Comparison.compareVersions(have, c.operand)
            if !c.holds(order) { return false }
        }
        return true
    }
}

extension StringProtocol {
    func firstRange(where predicate: (Character) -> Bool) -> Range<Index>? {
        guard let i = firstIndex(where: predicate) else { return nil }
        return i..<index(after: i)
    }
}
