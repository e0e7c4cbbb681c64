/// An `ExecStart=` command line, split as systemd.service(5) "Command lines"
/// describes: words are unquoted and unescaped when the unit is read;
/// specifiers are resolved per unit (or per instance); `$VAR`/`${VAR}` are
/// resolved against the service's environment when it starts.
public struct ExecCommand: Equatable, Sendable, Codable {
    /// The executable as written (specifiers unresolved): an absolute path or
    /// a plain name looked up in the fixed search path.
    public var path: String
    /// argv, argv[0] included, specifiers unresolved.
    public var arguments: [String]
    /// `-`: a failing exit status is not counted as a failure.
    public var ignoreFailure = false
    /// `+`: runs with porter's own privileges, ignoring User=/Group=.
    public var fullPrivileges = false
    /// Cleared by `:`: no environment variable substitution.
    public var expandEnvironment = true

    public init(path: String, arguments: [String]) {
        self.path = path
        self.arguments = arguments
    }

    /// Parses one `ExecStart=` value; a bare `;` separates several commands.
    public static func parse(_ value: String) throws(ValueError) -> [ExecCommand] {
        let words = try Quoting.split(value)
        var commands: [ExecCommand] = []
        var group: [String] = []
        for w in words {
            if w.isSeparator {
                if !group.isEmpty { commands.append(try command(from: group, value)) }
                group = []
            } else {
                group.append(w.text)
            }
        }
        if !group.isEmpty { commands.append(try command(from: group, value)) }
        guard !commands.isEmpty else { throw ValueError("empty command line, expected /path/to/program [arguments]") }
        return commands
    }

    private static func command(from words: [String], _ whole: String) throws(ValueError) -> ExecCommand {
        var first = Substring(words[0])
        var separateArgv0 = false, ignoreFailure = false, fullPrivileges = false, noExpand = false
        prefixes: while let c = first.first {
            switch c {
            case "@": separateArgv0 = true
            case "-": ignoreFailure = true
            case "+": fullPrivileges = true
            case ":": noExpand = true
            case "!":
                // systemd: `!` lifts User=/Group= (and its sandbox, which
                // porter has none of); `!!` does so only where ambient
                // capabilities are missing, and porter grants none: it runs
                // the command as User= says.
                if first.dropFirst().first == "!" { first = first.dropFirst() } else { fullPrivileges = true }
            case "|":
                throw ValueError("the '|' command prefix (run through the user's shell) is not supported by porter; write the shell out: /bin/sh -c '...'")
            default: break prefixes
            }
            first = first.dropFirst()
        }
        let path = String(first)
        guard !path.isEmpty else { throw ValueError("\(Quote.value(whole)) has no executable, expected /path/to/program") }
        var arguments: [String]
        if separateArgv0 {
            guard words.count >= 2 else {
                throw ValueError("'@' needs the argv[0] word after the executable in \(Quote.value(whole))")
            }
            arguments = Array(words[1...])
        } else {
            arguments = [path] + words.dropFirst()
        }
        var cmd = ExecCommand(path: path, arguments: arguments)
        cmd.ignoreFailure = ignoreFailure
        cmd.fullPrivileges = fullPrivileges
        cmd.expandEnvironment = !noExpand
        return cmd
    }
}

/// `$VAR` and `${VAR}` substitution in command lines.
public enum EnvironmentExpansion {
    public static func isValidName(_ s: Substring) -> Bool {
        guard let f = s.first, f == "_" || (f.isASCII && f.isLetter) else { return false }
        return s.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
    }

    /// Expands one argument. `$FOO` as a whole word is replaced by the value
    /// split at whitespace (quotes respected and removed), so it can become
    /// zero or more arguments; `${FOO}` anywhere is replaced by the exact
    /// value and stays one argument; `$$` is a literal `$`.
    public static func expand(_ word: String, _ lookup: (Substring) -> String?) -> [String] {
        if word.hasPrefix("$"), word.count > 1 {
            let next = word[word.index(after: word.startIndex)]
            if next != "{" && next != "$" {
                guard let value = lookup(word.dropFirst()) else { return [] }
                let words = (try? Quoting.split(value)) ?? Values.words(value).map { Word(text: $0, isSeparator: false) }
                return words.map(\.text)
            }
        }
        return [expandInline(word, lookup)]
    }

    /// `${FOO}`, `${FOO:-default}`, `${FOO:+alternative}` and `$$` inside a word.
    public static func expandInline(_ word: String, _ lookup: (Substring) -> String?) -> String {
        guard word.contains("$") else { return word }
        var out = ""
        var i = word.startIndex
        while i < word.endIndex {
            let c = word[i]
            let next = word.index(after: i)
            guard c == "$", next < word.endIndex else {
                out.append(c)
                i = next
                continue
            }
            if word[next] == "$" {
                out.append("$")
                i = word.index(after: next)
            } else if word[next] == "{", let close = word[next...].firstIndex(of: "}") {
                let inner = word[word.index(after: next)..<close]
                if let op = inner.firstRange(of: ":-") {
                    let v = lookup(inner[..<op.lowerBound]) ?? ""
                    out += v.isEmpty ? String(inner[op.upperBound...]) : v
                } else if let op = inner.firstRange(of: ":+") {
                    let v = lookup(inner[..<op.lowerBound]) ?? ""
                    out += v.isEmpty ? "" : String(inner[op.upperBound...])
                } else {
                    out += lookup(inner) ?? ""
                }
                i = word.index(after: close)
            } else {
                out.append(c)
                i = next
            }
        }
        return out
    }
}
