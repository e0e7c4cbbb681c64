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
        parse(fileName: fileName, bytes: Array(text.utf8), diagnostics: &diagnostics)
    }

    /// The same on raw bytes. Porter reads thousands of unit files at start;
    /// working on UTF-8 bytes instead of Characters keeps that to a few
    /// microseconds each (grapheme breaking is neither needed nor cheap).
    /// `firstLine`: the number of the line before the first, for the
    /// drop-ins of a unit (see `SourceNames`).
    public static func parse(fileName: String, bytes: [UInt8], firstLine: Int = 0, diagnostics: inout Diagnostics) -> UnitFile {
        var sections: [Section] = []
        var pending: [UInt8] = []
        var pendingLine = 0
        var continuing = false

        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0A }

        func finish(_ logical: ArraySlice<UInt8>, _ lineNumber: Int) {
            var l = logical
            while let f = l.first, isSpace(f) { l = l.dropFirst() }
            while let b = l.last, isSpace(b) { l = l.dropLast() }
            // Refused whole, never repaired: a NUL would cut the value where
            // it reaches C (an argument, a path), and decoding invalid UTF-8
            // would replace bytes with U+FFFD. Refusing the line makes the
            // unit an error, so a dropped User= cannot leave it running as root.
            if let problem = TextCheck.problem(l) {
                var key: String? = nil
                if let eq = l.firstIndex(of: UInt8(ascii: "=")), TextCheck.problem(l[..<eq]) == nil {
                    key = String(decoding: l[..<eq], as: UTF8.self).trimmingWhitespace()
                }
                diagnostics.error(lineNumber, key?.isEmpty == false ? key : nil, "\(problem) in this line, refused (expected UTF-8 text without NUL)")
                return
            }
            if l.first == UInt8(ascii: "[") {
                guard l.last == UInt8(ascii: "]"), l.count >= 3 else {
                    diagnostics.error(lineNumber, nil, "invalid section header \(Quote.value(String(decoding: l, as: UTF8.self))), expected [Name]")
                    return
                }
                sections.append(Section(name: String(decoding: l.dropFirst().dropLast(), as: UTF8.self), line: lineNumber, assignments: []))
                return
            }
            guard let eq = l.firstIndex(of: UInt8(ascii: "=")) else {
                diagnostics.error(lineNumber, nil, "missing '=', expected Key=Value")
                return
            }
            var k = l[..<eq], v = l[(eq + 1)...]
            while let b = k.last, isSpace(b) { k = k.dropLast() }
            while let f = v.first, isSpace(f) { v = v.dropFirst() }
            let key = String(decoding: k, as: UTF8.self)
            guard !key.isEmpty else {
                diagnostics.error(lineNumber, nil, "missing key before '='")
                return
            }
            guard !sections.isEmpty else {
                diagnostics.error(lineNumber, key, "assignment outside of any section, expected a [Section] header first")
                return
            }
            sections[sections.count - 1].assignments.append(Assignment(key: key, value: String(decoding: v, as: UTF8.self), line: lineNumber))
        }

        var lineNumber = firstLine
        var start = 0
        let n = bytes.count
        while start <= n {
            var end = start
            while end < n && bytes[end] != 0x0A { end += 1 }
            if start == n && end == n { break }
            lineNumber += 1
            var a = start, b = end
            start = end + 1
            while a < b && isSpace(bytes[a]) { a += 1 }
            while b > a && isSpace(bytes[b - 1]) { b -= 1 }
            let first: UInt8? = a < b ? bytes[a] : nil
            let isComment = first == UInt8(ascii: "#") || first == UInt8(ascii: ";")
            if continuing && isComment { continue }  // a comment inside a continuation is skipped
            if !continuing && (first == nil || isComment) { continue }

            // An odd number of trailing backslashes continues the line.
            var backslashes = 0
            while b - backslashes > a && bytes[b - 1 - backslashes] == UInt8(ascii: "\\") { backslashes += 1 }
            let continues = backslashes % 2 == 1
            if !continuing {
                pending.removeAll(keepingCapacity: true)
                pendingLine = lineNumber
            }
            pending += bytes[a..<(continues ? b - 1 : b)]
            if continues {
                pending.append(0x20)
                continuing = true
            } else {
                finish(pending[...], pendingLine)
                continuing = false
            }
        }
        if continuing {
            // A continuation at the end of the file: take what there is.
            finish(pending[...], pendingLine)
        }
        return UnitFile(fileName: fileName, sections: sections)
    }

    /// A unit file with its drop-ins applied: their sections follow the
    /// unit's, so each assignment comes later than what it overrides, and
    /// an empty one resets a list, as systemd.unit(5) says.
    public static func merging(_ files: [UnitFile]) -> UnitFile {
        var merged = UnitFile(fileName: files.first?.fileName ?? "", sections: [])
        for f in files { merged.sections += f.sections }
        return merged
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
