/// An ordered set of environment variables: later assignments replace
/// earlier ones but keep their first position, so the child's environment
/// is stable from one start to the next.
public struct EnvironmentBlock: Equatable, Sendable {
    public private(set) var entries: [(name: String, value: String)] = []
    private var index: [String: Int] = [:]

    public init() {}

    public init(_ pairs: [(String, String)]) {
        for (k, v) in pairs { self[k] = v }
    }

    public subscript(name: String) -> String? {
        get { index[name].map { entries[$0].value } }
        set {
            if let v = newValue {
                if let i = index[name] {
                    entries[i].value = v
                } else {
                    index[name] = entries.count
                    entries.append((name, v))
                }
            } else if let i = index.removeValue(forKey: name) {
                entries.remove(at: i)
                for (k, j) in index where j > i { index[k] = j - 1 }
            }
        }
    }

    public mutating func merge(_ other: EnvironmentBlock) {
        for (k, v) in other.entries { self[k] = v }
    }

    /// `NAME=value` strings in order.
    public var strings: [String] { entries.map { "\($0.name)=\($0.value)" } }

    public static func == (a: EnvironmentBlock, b: EnvironmentBlock) -> Bool {
        a.strings == b.strings
    }
}

public enum EnvironmentParsing {
    /// One `Environment=` value: quoted words of the form NAME=value.
    /// Invalid words are reported (systemd warns and ignores them).
    public static func assignments(_ value: String, warn: (String) -> Void) throws(ValueError) -> [(String, String)] {
        var out: [(String, String)] = []
        for w in try Quoting.split(value) {
            guard let eq = w.text.firstIndex(of: "="), EnvironmentExpansion.isValidName(w.text[..<eq]) else {
                warn("invalid environment assignment \(Quote.value(w.text)), expected NAME=value; ignoring it")
                continue
            }
            out.append((String(w.text[..<eq]), String(w.text[w.text.index(after: eq)...])))
        }
        return out
    }

    /// The contents of an `EnvironmentFile=`, parsed as systemd's env-file
    /// parser does: `KEY=VALUE` lines, `#`/`;` comment lines, values in
    /// single quotes (literal) or double quotes (backslash escapes `"`, `\`,
    /// `` ` ``, `$` and newline), backslash-newline continuing an unquoted
    /// value, trailing whitespace of unquoted values dropped.
    /// Lines without a valid key are reported by line number and skipped.
    public static func file(_ text: String, warn: (Int, String) -> Void) -> [(String, String)] {
        enum State { case preKey, key, preValue, value, valueEscape, single, double, doubleEscape, comment, commentEscape }
        var state = State.preKey
        var out: [(String, String)] = []
        var key = "", value = ""
        var trailingSpaces = 0  // unquoted whitespace at the end of value, dropped at line end
        var line = 1, keyLine = 1

        func commit() {
            if !key.isEmpty {
                let v = trailingSpaces > 0 ? String(value.dropLast(trailingSpaces)) : value
                if EnvironmentExpansion.isValidName(Substring(key)) {
                    out.append((key, v))
                } else {
                    warn(keyLine, "invalid variable name \(Quote.value(key)), ignoring the line")
                }
            }
            key = ""
            value = ""
            trailingSpaces = 0
        }

        for var c in text {
            if c == "\r\n" { c = "\n" }  // one Character in Swift
            if c == "\n" { line += 1 }
            switch state {
            case .preKey:
                if c == "#" || c == ";" { state = .comment }
                else if c == " " || c == "\t" || c == "\n" || c == "\r" { }
                else { state = .key; key.append(c); keyLine = line }
            case .key:
                if c == "\n" {
                    warn(keyLine, "line without '=', expected KEY=VALUE; ignoring it")
                    key = ""
                    state = .preKey
                } else if c == "=" {
                    key = key.trimmingWhitespace()
                    state = .preValue
                } else {
                    key.append(c)
                }
            case .preValue:
                if c == "\n" { commit(); state = .preKey }
                else if c == " " || c == "\t" { }
                else if c == "'" { state = .single }
                else if c == "\"" { state = .double }
                else if c == "\\" { state = .valueEscape }
                else { value.append(c); state = .value }
            case .value:
                if c == "\n" { commit(); state = .preKey }
                else if c == "'" { trailingSpaces = 0; state = .single }
                else if c == "\"" { trailingSpaces = 0; state = .double }
                else if c == "\\" { trailingSpaces = 0; state = .valueEscape }
                else if c == " " || c == "\t" { value.append(c); trailingSpaces += 1 }
                else { value.append(c); trailingSpaces = 0 }
            case .valueEscape:
                if c != "\n" { value.append(c) }  // backslash-newline continues the value
                state = .value
            case .single:
                if c == "'" { state = .value } else { value.append(c) }
            case .double:
                if c == "\"" { state = .value }
                else if c == "\\" { state = .doubleEscape }
                else { value.append(c) }
            case .doubleEscape:
                if c == "\"" || c == "\\" || c == "`" || c == "$" { value.append(c) }
                else if c == "\n" { }
                else { value.append("\\"); value.append(c) }
                state = .double
            case .comment:
                if c == "\\" { state = .commentEscape } else if c == "\n" { state = .preKey }
            case .commentEscape:
                state = .comment
            }
        }
        switch state {
        case .key: warn(keyLine, "line without '=', expected KEY=VALUE; ignoring it")
        case .preValue, .value, .valueEscape, .single, .double, .doubleEscape: commit()
        default: break
        }
        return out
    }
}
