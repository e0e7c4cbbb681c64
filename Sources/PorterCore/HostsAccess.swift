/// tcp_wrappers' /etc/hosts.allow and /etc/hosts.deny (hosts_access(5)),
/// which a libwrap xinetd (Debian's) checks for every service, as the
/// IPAddressAllow=/IPAddressDeny= lists that let in the same addresses.
///
/// libwrap's rule: the first hosts.allow rule that matches grants, else the
/// first hosts.deny rule that matches refuses, else the client is let in;
/// with hosts_options(5) a rule's last option `allow` or `deny` gives its
/// verdict, so the first matching rule of both files decides. Read in that
/// order, rule by rule, each rule takes the addresses it matches that no
/// earlier rule decided: the decided set is the deny list, the part of it
/// let in the allow list, which systemd's rule (allowed, or not denied)
/// reads back exactly.
///
/// What porter cannot check — host names without an address, `.domain`,
/// LOCAL, KNOWN, UNKNOWN, PARANOID, netgroups, patterns with wildcards —
/// is never let in by mistake: a rule that grants with such a word takes
/// only what it surely matches (or nothing), and a rule that refuses with
/// one cannot be converted, so the service is not either.
public struct HostsAccess: Sendable {
    public struct Rule: Equatable, Sendable {
        public var file: String
        public var line: Int
        public var daemons: [String]
        public var clients: [String]
        /// The fields after the client list (a shell command, or
        /// hosts_options(5) options), as written.
        public var options: [String]
        /// From hosts.allow: grants unless an option says `deny`.
        public var grants: Bool
    }

    public private(set) var rules: [Rule] = []
    public private(set) var diagnostics: [Diagnostic] = []

    /// The two files' texts (nil: the file does not exist, as for libwrap
    /// an empty one).
    public init(allow: (file: String, text: String)?, deny: (file: String, text: String)?) {
        if let allow { read(allow.file, allow.text, grants: true) }
        if let deny { read(deny.file, deny.text, grants: false) }
    }

    private mutating func read(_ file: String, _ text: String, grants: Bool) {
        var pending = "", startLine = 0
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = String(raw)
            if pending.isEmpty {
                startLine = i + 1
                if line.trimmingWhitespace().hasPrefix("#") { continue }
            }
            if line.hasSuffix("\\") {
                line.removeLast()
                pending += line + " "
                continue
            }
            let whole = (pending + line).trimmingWhitespace()
            pending = ""
            if whole.isEmpty { continue }
            let fields = Self.fields(whole)
            guard fields.count >= 2 else {
                diagnostics.append(Diagnostic(.error, file: file, line: startLine, "expected DAEMONS : CLIENTS [: OPTIONS], got \(Quote.value(whole))"))
                continue
            }
            rules.append(Rule(file: file, line: startLine, daemons: Self.words(fields[0]), clients: Self.words(fields[1]),
                              options: Array(fields.dropFirst(2)), grants: grants))
        }
        if !pending.isEmpty {
            diagnostics.append(Diagnostic(.error, file: file, line: startLine, "the last line ends with a backslash"))
        }
    }

    /// The colon-separated fields of a rule; a colon inside `[...]` (an
    /// IPv6 address) separates nothing.
    static func fields(_ line: String) -> [String] {
        var out: [String] = [], current = "", depth = 0
        for c in line {
            switch c {
            case "[": depth += 1; current.append(c)
            case "]": depth = max(0, depth - 1); current.append(c)
            case ":" where depth == 0:
                out.append(current.trimmingWhitespace())
                current = ""
            default: current.append(c)
            }
        }
        out.append(current.trimmingWhitespace())
        return out
    }

    /// List words: separated by blanks and commas.
    static func words(_ s: String) -> [String] {
        s.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," }).map(String.init)
    }

    public var isEmpty: Bool { rules.isEmpty }

    /// What the rules make of one daemon (xinetd's libwrap name of the
    /// service): the lists, or why they cannot be converted; and notes on
    /// what was approximated.
    public struct Outcome: Equatable, Sendable {
        public var access = AddressAccess()
        public var refusal: String?
        public var notes: [String] = []
        /// The rules that named this daemon (for the report).
        public var matched: [String] = []
    }

    public func outcome(for daemon: String, resolve: XinetdAccess.HostResolver? = nil) -> Outcome {
        var out = Outcome()
        var decided = PrefixSet(), allowed = PrefixSet()
        for rule in rules {
            // Every address decided: later rules cannot change anything.
            if PrefixSet.everything.subtracting(decided).isEmpty { break }
            let at = "\(rule.file):\(rule.line)"
            let name = Self.daemonMatch(rule.daemons, daemon)
            if name == .no { continue }
            var grants = rule.grants
            var twist = false
            for option in rule.options {
                let word = option.split(separator: " ").first.map { $0.lowercased() } ?? ""
                switch word {
                case "allow": grants = true
                case "deny": grants = false
                case "twist":
                    // Another program answers instead of the service: for
                    // porter, the service is refused to these clients.
                    twist = true
                case "": break
                default:
                    out.notes.append("\(at): option \(Quote.value(option)) is not run by porter")
                }
            }
            if twist {
                grants = false
                out.notes.append("\(at): twist: porter refuses these clients instead of running another program")
            }
            if name == .unknown {
                if !grants {
                    out.refusal = "\(at): the daemon list \(Quote.value(rule.daemons.joined(separator: " "))) may name \(daemon) in a way porter cannot check (name@host, wildcards), and the rule refuses"
                    return out
                }
                out.notes.append("\(at): the daemon list may name \(daemon) in a way porter cannot check; left out (stricter)")
                continue
            }
            out.matched.append(at)
            let clients = Self.clientSet(rule.clients, resolve: resolve)
            var match: PrefixSet
            if grants {
                // Only what the rule surely matches.
                guard !clients.exceptUncertain else {
                    out.notes.append("\(at): the EXCEPT list has words porter cannot check; the rule is left out (stricter)")
                    continue
                }
                match = clients.surely
                if !clients.unsupported.isEmpty {
                    out.notes.append("\(at): \(clients.unsupported.joined(separator: " ")) cannot be checked by porter; left out (stricter)")
                }
            } else {
                // At least what the rule matches.
                guard clients.unsupported.isEmpty else {
                    out.refusal = "\(at): \(clients.unsupported.joined(separator: " ")) cannot be checked by porter, and the rule refuses them: without it the service would admit clients libwrap refused"
                    return out
                }
                match = clients.atMost
                if clients.exceptUncertain {
                    out.notes.append("\(at): the EXCEPT list has words porter cannot check; the rule refuses without them (stricter)")
                }
            }
            for r in clients.resolved { out.notes.append("\(at): \(r.name) is \(r.prefixes.map(\.description).joined(separator: " ")) (resolved when porter read the files)") }
            match = match.subtracting(decided)
            if grants { allowed = allowed.union(match) }
            decided = decided.union(match)
        }
        if !decided.isEmpty { out.access = AddressAccess(allow: allowed.prefixes, deny: decided.prefixes) }
        return out
    }

    enum Tri { case yes, no, unknown }

    /// `list [EXCEPT list ...]`: EXCEPT binds to the right, as libwrap reads it.
    static func daemonMatch(_ words: [String], _ daemon: String) -> Tri {
        if let i = words.firstIndex(where: { $0.uppercased() == "EXCEPT" }) {
            let head = daemonMatch(Array(words[..<i]), daemon)
            let tail = daemonMatch(Array(words[(i + 1)...]), daemon)
            switch (head, tail) {
            case (.no, _), (_, .yes): return .no
            case (.yes, .no): return .yes
            default: return .unknown
            }
        }
        var result = Tri.no
        for w in words {
            if w.uppercased() == "ALL" || w.lowercased() == daemon.lowercased() { return .yes }
            if w.contains("@") || w.contains("*") || w.contains("?") || w.hasPrefix("/") { result = .unknown }
        }
        return result
    }

    struct Clients {
        /// Addresses the list surely matches.
        var surely = PrefixSet()
        /// Addresses it may match, at most (valid when `unsupported` is empty).
        var atMost = PrefixSet()
        var unsupported: [String] = []
        var exceptUncertain = false
        var resolved: [XinetdAccess.Resolved] = []
    }

    static func clientSet(_ words: [String], resolve: XinetdAccess.HostResolver?) -> Clients {
        var out = Clients()
        let split = words.firstIndex { $0.uppercased() == "EXCEPT" }
        let head = split.map { Array(words[..<$0]) } ?? words
        var main = PrefixSet()
        for w in head {
            if let p = pattern(w, resolve: resolve, resolved: &out.resolved) { main = main.union(p) } else { out.unsupported.append(w) }
        }
        var except = PrefixSet()
        var nested = false
        if let split {
            var tail = Array(words[(split + 1)...])
            if let next = tail.firstIndex(where: { $0.uppercased() == "EXCEPT" }) {
                // A EXCEPT B EXCEPT C is A EXCEPT (B EXCEPT C): not worked
                // out; a refusing rule takes all of A (at least what it
                // matches), a granting one nothing.
                tail = Array(tail[..<next])
                nested = true
                out.exceptUncertain = true
            }
            for w in tail {
                if let p = pattern(w, resolve: resolve, resolved: &out.resolved) { except = except.union(p) } else { out.exceptUncertain = true }
            }
        }
        out.surely = main.subtracting(except)
        // Exceptions porter cannot check only shrink the true match, so
        // A minus the known ones is still at least it; nested ones may
        // give addresses back, so then only A is.
        out.atMost = nested ? main : main.subtracting(except)
        return out
    }

    /// One client pattern as addresses; nil for what porter cannot check.
    static func pattern(_ w: String, resolve: XinetdAccess.HostResolver?, resolved: inout [XinetdAccess.Resolved]) -> PrefixSet? {
        if w.uppercased() == "ALL" { return .everything }
        // n.n.n. : a network by its leading bytes.
        if w.hasSuffix("."), w.first?.isASCIIDigit == true {
            let parts = w.dropLast().split(separator: ".", omittingEmptySubsequences: false)
            guard (1...3).contains(parts.count) else { return nil }
            var bytes: [UInt8] = []
            for p in parts {
                guard !p.isEmpty, p.count <= 3, p.allSatisfy(\.isASCIIDigit), let v = UInt8(p) else { return nil }
                bytes.append(v)
            }
            return PrefixSet([IPPrefix(bytes: bytes + Array(repeating: 0, count: 4 - bytes.count), length: bytes.count * 8)])
        }
        // [v6] or [v6]/len
        if w.hasPrefix("[") {
            guard let close = w.firstIndex(of: "]"), let v6 = IPAddress.parseIPv6(w[w.index(after: w.startIndex)..<close]) else { return nil }
            let rest = w[w.index(after: close)...]
            if rest.isEmpty { return PrefixSet([IPPrefix(bytes: v6, length: 128)]) }
            guard rest.hasPrefix("/"), let n = Int(rest.dropFirst()), (0...128).contains(n) else { return nil }
            return PrefixSet([IPPrefix(bytes: v6, length: n)])
        }
        // n.n.n.n, n.n.n.n/m.m.m.m, n.n.n.n/len
        if let slash = w.firstIndex(of: "/") {
            guard let net = IPAddress.parseIPv4(w[..<slash]) else { return nil }
            let mask = w[w.index(after: slash)...]
            if let m = IPAddress.parseIPv4(mask) {
                let bits = m.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                let length = bits.nonzeroBitCount
                // Only a contiguous mask is a prefix.
                guard length == 32 || bits == ~(UInt32.max >> length) else { return nil }
                return PrefixSet([IPPrefix(bytes: net, length: length)])
            }
            guard mask.allSatisfy(\.isASCIIDigit), let n = Int(mask), (0...32).contains(n) else { return nil }
            return PrefixSet([IPPrefix(bytes: net, length: n)])
        }
        if let v4 = IPAddress.parseIPv4(w) { return PrefixSet([IPPrefix(bytes: v4, length: 32)]) }
        // A host name, resolved once (KNOWN, LOCAL, PARANOID, UNKNOWN and
        // .domain are not names).
        if ["KNOWN", "LOCAL", "PARANOID", "UNKNOWN"].contains(w.uppercased()) { return nil }
        guard let resolve, XinetdAccess.isHostName(w), let addresses = resolve(w), !addresses.isEmpty else { return nil }
        let p = addresses.filter { $0.count == 4 || $0.count == 16 }.map { IPPrefix(bytes: $0, length: $0.count * 8) }
        if !resolved.contains(where: { $0.name == w }) { resolved.append(XinetdAccess.Resolved(name: w, prefixes: p)) }
        return PrefixSet(p)
    }
}
