/// A unit file split into sections and assignments, in the syntax of
/// systemd.syntax(7): `[Section]` headers, `Key=Value` lines, `#` and `;`
/// comment lines, and a trailing backslash that joins the next line (the
/// backslash becomes a space; comment lines inside a continuation are
/// skipped). Nothing is interpreted here: values stay strings, keys are
/// checked by the unit builders.
public struct UnitFile: Sendable {
    public struct Assignment: Equatable, Sendable {
        public var key: String
        public var value: String
        /// The line the assignment starts on (1-based).
        public var line: Int
    }

    public struct Section: Sendable {
        public var name: String
        public var line: Int
        public var assignments: [Assignment]
    }

    public var fileName: String
    public var sections: [Section]

    /// Parses `text`; syntax problems go to `diagnostics` and the offending
    /// line is skipped, as systemd does.
    public static func parse(fileName: String, text: String, diagnostics: inout Diagnostics) -> UnitFile {
        var sections: [Section] = []
        var pending: (text: String, line: Int)? = nil

        func finish(_ logical: String, _ lineNumber: Int) {
            if logical.first == "[" {
                guard logical.last == "]", logical.count >= 3 else {
                    diagnostics.error(lineNumber, nil, "invalid section header '\(logical)', expected [Name]")
                    return
                }
                let name = String(logical.dropFirst().dropLast())
                sections.append(Section(name: name, line: lineNumber, assignments: []))
                return
            }
            guard let eq = logical.firstIndex(of: "=") else {
                diagnostics.error(lineNumber, nil, "missing '=', expected Key=Value")
                return
            }
            let key = logical[..<eq].trimmingWhitespace()
            let value = logical[logical.index(after: eq)...].trimmingWhitespace()
            guard !key.isEmpty else {
                diagnostics.error(lineNumber, nil, "missing key before '='")
                return
            }
            guard !sections.isEmpty else {
                diagnostics.error(lineNumber, key, "assignment outside of any section, expected a [Section] header first")
                return
            }
            sections[sections.count - 1].assignments.append(Assignment(key: key, value: value, line: lineNumber))
        }

        var lineNumber = 0
        // "\r\n" is one Character in Swift, so it must be named as a separator.
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            var line = Substring(rawLine)
            if line.last == "\r" { line = line.dropLast() }
            let stripped = line.trimmingWhitespace()

            if pending != nil, stripped.first == "#" || stripped.first == ";" {
                continue  // a comment inside a continuation is skipped
            }
            if pending == nil, stripped.isEmpty || stripped.first == "#" || stripped.first == ";" {
                continue
            }

            let continues = endsWithUnescapedBackslash(stripped)
            let body = continues ? String(stripped.dropLast()) + " " : stripped
            if var p = pending {
                p.text += body
                pending = p
            } else {
                pending = (body, lineNumber)
            }
            if !continues, let p = pending {
                finish(p.text.trimmingWhitespace(), p.line)
                pending = nil
            }
        }
        if let p = pending {
            // A continuation at the end of the file: take what there is.
            finish(p.text.trimmingWhitespace(), p.line)
        }
        return UnitFile(fileName: fileName, sections: sections)
    }

    private static func endsWithUnescapedBackslash(_ s: String) -> Bool {
        var count = 0
        for c in s.reversed() {
            if c == "\\" { count += 1 } else { break }
        }
        return count % 2 == 1
    }
}

extension StringProtocol {
    /// The string without leading and trailing spaces, tabs, CR and LF.
    public func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let start = firstIndex(where: { !isSpace($0) }) else { return "" }
        let end = lastIndex(where: { !isSpace($0) })!
        return String(self[start...end])
    }
}
