/// What `porter import` made of an xinetd or inetd configuration: unit
/// files, and a report of every attribute that does not map exactly, with
/// why, besides the table of the access attributes. Pure: the command
/// writes the files and prints the report.
public struct ImportResult: Sendable {
    /// File name (`echo-stream.socket`) and text.
    public var units: [(name: String, text: String)] = []
    public var rows: [ImportRow] = []
    /// Problems with the input itself (a line that does not parse).
    public var diagnostics: [Diagnostic] = []
    /// Services converted, and skipped (disabled or not convertible).
    public var converted: [String] = []
    public var skipped: [String] = []

    public init() {}

    public var unitNames: [String] { units.map(\.name) }

    /// One service's conversion, either importer's: its units and rows, or
    /// the row that says why it was skipped. True when it was converted.
    @discardableResult
    mutating func add(_ outcome: Result<([(name: String, text: String)], [ImportRow]), ImportRow>, service label: String) -> Bool {
        switch outcome {
        case .success(let (units, rows)):
            self.units += units
            self.rows += rows
            converted.append(label)
            return true
        case .failure(let row):
            rows.append(row)
            skipped.append("\(label) (\(row.attribute))")
            return false
        }
    }

    /// The report as text: the rows that are not exact, then the access
    /// table, then a summary line.
    public func render() -> String {
        var out = ""
        let notes = rows.filter { $0.kind != .exact && !$0.isAccess }
        if !notes.isEmpty {
            out += "Attributes that do not map exactly:\n"
            out += TextTable.render(header: ["SERVICE", "ATTRIBUTE", "VALUE", "MAPPING", "PORTER", "WHY"],
                                    rows: notes.map { [$0.service, $0.attribute, $0.value, $0.kind.rawValue, $0.becomes, $0.note] })
            out += "\n"
        }
        let access = rows.filter(\.isAccess)
        if !access.isEmpty {
            out += "Access attributes:\n"
            out += TextTable.render(header: ["SERVICE", "ATTRIBUTE", "VALUE", "MAPPING", "PORTER", "NOTE"],
                                    rows: access.map { [$0.service, $0.attribute, $0.value, $0.kind.rawValue, $0.becomes, $0.note] })
            out += "\n"
        }
        out += "\(converted.count) service\(converted.count == 1 ? "" : "s") converted into \(units.count) unit file\(units.count == 1 ? "" : "s")"
        out += skipped.isEmpty ? "\n" : "; \(skipped.count) skipped: \(skipped.joined(separator: ", "))\n"
        return out
    }
}

public struct ImportRow: Error, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// Means the same under porter.
        case exact
        /// Close, with a stated difference.
        case approximate
        /// Not carried over; the note says what to do instead.
        case unsupported
        /// The service itself was not converted (disabled, or it could not be).
        case skipped
    }
    public var service: String
    public var attribute: String
    public var value: String
    public var kind: Kind
    /// The porter keys it became (`IPAddressAllow=10.0.0.0/8`), or "-".
    public var becomes: String
    public var note: String
    /// only_from, no_access, per_source, cps, instances and the like: always
    /// listed, in their own table.
    public var isAccess = false
}

/// Building a unit file's text: sections, keys, and command lines quoted as
/// systemd reads them back.
struct UnitWriter {
    private var sections: [(String, [String])] = []
    let header: [String]

    init(header: [String]) { self.header = header }

    mutating func set(_ section: String, _ key: String, _ value: String) {
        if let i = sections.firstIndex(where: { $0.0 == section }) {
            sections[i].1.append("\(key)=\(value)")
        } else {
            sections.append((section, ["\(key)=\(value)"]))
        }
    }

    var text: String {
        var out = header.map { "# " + $0 }.joined(separator: "\n") + "\n"
        for (name, lines) in sections { out += "\n[\(name)]\n" + lines.joined(separator: "\n") + "\n" }
        return out
    }

    /// One word of a command line, quoted so systemd's splitting, `$`
    /// expansion and `%` specifiers give it back unchanged.
    static func word(_ w: String) -> String {
        var s = w.replacing("%", with: "%%").replacing("$", with: "$$")
        let plain = !s.isEmpty && !s.contains(where: { " \t\"'\\;".contains($0) })
        if plain { return s }
        s = s.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"")
        return "\"\(s)\""
    }

    /// Environment=: `"NAME=value"` with the same quoting.
    static func command(_ words: [String]) -> String { words.map(word).joined(separator: " ") }
}
