/// xinetd.conf(5) text: `defaults { ... }`, `service NAME { ... }`,
/// `includedir DIR`, `includefile FILE`, attributes `name = values`,
/// `name += values`, `name -= values`, `#` comment lines. Pure: one file's
/// text in, its items out; the loader follows the includes.
public struct XinetdText: Sendable {
    public struct Attribute: Equatable, Sendable {
        public enum Op: String, Sendable { case set = "=", add = "+=", remove = "-=" }
        public var name: String
        public var op: Op
        public var values: [String]
        public var file: String
        public var line: Int
    }

    public enum Item: Sendable {
        case defaults([Attribute])
        case service(name: String, attributes: [Attribute], file: String, line: Int)
        case includeDir(String, line: Int)
        case includeFile(String, line: Int)
    }

    public private(set) var items: [Item] = []
    public private(set) var diagnostics: [Diagnostic] = []

    public init(file: String, text: String) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var open: (kind: String, name: String, line: Int, attributes: [Attribute])?
        var awaitingBrace: (kind: String, name: String, line: Int)?
        func error(_ line: Int, _ message: String) { diagnostics.append(Diagnostic(.error, file: file, line: line, message)) }
        for (i, raw) in lines.enumerated() {
            let number = i + 1
            let text = raw.trimmingWhitespace()
            if text.isEmpty || text.hasPrefix("#") { continue }
            var words = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if let pending = awaitingBrace {
                guard words.first == "{" else {
                    error(pending.line, "\(pending.kind) \(pending.name): expected '{' on the next line")
                    awaitingBrace = nil
                    continue
                }
                open = (pending.kind, pending.name, pending.line, [])
                awaitingBrace = nil
                words.removeFirst()
                if words.isEmpty { continue }
            }
            if open != nil {
                if words == ["}"] {
                    let o = open!
                    items.append(o.kind == "defaults" ? .defaults(o.attributes)
                                 : .service(name: o.name, attributes: o.attributes, file: file, line: o.line))
                    open = nil
                    continue
                }
                guard let parsed = Self.attribute(text, file: file, line: number) else {
                    error(number, "expected ATTRIBUTE = VALUE (or += or -=), got \(Quote.value(text))")
                    continue
                }
                open!.attributes.append(parsed)
                continue
            }
            switch words.first {
            case "defaults":
                if words.count == 1 {
                    awaitingBrace = ("defaults", "", number)
                } else if words.count == 2, words[1] == "{" {
                    open = ("defaults", "", number, [])
                } else {
                    error(number, "expected 'defaults' and '{'")
                }
            case "service":
                guard words.count >= 2 else { error(number, "service: expected a name"); continue }
                if words.count == 2 {
                    awaitingBrace = ("service", words[1], number)
                } else if words.count == 3, words[2] == "{" {
                    open = ("service", words[1], number, [])
                } else {
                    error(number, "service \(words[1]): expected '{' after the name")
                }
            case "includedir", "includefile":
                guard words.count == 2 else { error(number, "\(words[0]): expected one path"); continue }
                items.append(words[0] == "includedir" ? .includeDir(words[1], line: number) : .includeFile(words[1], line: number))
            default:
                error(number, "expected defaults, service NAME, includedir or includefile, got \(Quote.value(text))")
            }
        }
        if let o = open { error(o.line, "\(o.kind == "defaults" ? "defaults" : "service \(o.name)"): no closing '}'") }
        if let p = awaitingBrace { error(p.line, "\(p.kind) \(p.name): expected '{' on the next line") }
    }

    /// `name op values...`, with or without spaces around the operator.
    static func attribute(_ text: String, file: String, line: Int) -> Attribute? {
        guard let eq = text.firstIndex(of: "=") else { return nil }
        var name = text[..<eq].trimmingWhitespace()
        var op = Attribute.Op.set
        if name.hasSuffix("+") { op = .add; name.removeLast() } else if name.hasSuffix("-") { op = .remove; name.removeLast() }
        name = name.trimmingWhitespace()
        guard !name.isEmpty, !name.contains(" "), !name.contains("\t") else { return nil }
        let values = text[text.index(after: eq)...].split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        return Attribute(name: name, op: op, values: values, file: file, line: line)
    }

    /// xinetd's rule for `includedir`: files whose names contain a dot or
    /// end in `~` are skipped (editor backups, .rpmsave, .dpkg-old).
    public static func includedFileName(_ name: String) -> Bool {
        !name.contains(".") && !name.hasSuffix("~")
    }
}

/// One xinetd service with the defaults applied: each attribute's final
/// values, and where they were set.
public struct XinetdService: Sendable {
    public var name: String
    public var file: String
    public var line: Int
    public var values: [String: [String]] = [:]
    /// Where each attribute was last set, for the report.
    public var origin: [String: (file: String, line: Int)] = [:]

    /// The attributes `defaults` gives every service (xinetd.conf(5):
    /// the ones a service inherits unless it sets its own).
    static let inherited: Set<String> = [
        "log_type", "log_on_success", "log_on_failure", "only_from", "no_access", "passenv", "instances",
        "banner", "banner_success", "banner_fail", "per_source", "groups", "cps", "umask", "max_load",
        "bind", "interface", "v6only", "deny_time", "enabled", "disabled",
    ]

    /// Applies `attributes` (a service's) on top of the defaults' values:
    /// `=` replaces, `+=` adds to what the defaults gave, `-=` takes away.
    public init(name: String, file: String, line: Int, defaults: [XinetdText.Attribute], attributes: [XinetdText.Attribute]) {
        self.name = name
        self.file = file
        self.line = line
        for a in defaults where Self.inherited.contains(a.name) { apply(a) }
        for a in attributes { apply(a) }
    }

    mutating func apply(_ a: XinetdText.Attribute) {
        switch a.op {
        case .set: values[a.name] = a.values
        case .add: values[a.name, default: []] += a.values
        case .remove: values[a.name] = (values[a.name] ?? []).filter { !a.values.contains($0) }
        }
        origin[a.name] = (a.file, a.line)
    }

    public func value(_ name: String) -> String? { values[name].map { $0.joined(separator: " ") } }
    public var id: String { values["id"]?.first ?? name }
}
