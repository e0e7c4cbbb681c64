/// xinetd's only_from and no_access (xinetd.conf(5)) as systemd's
/// IPAddressAllow=/IPAddressDeny=.
///
/// xinetd's rule: an address matched by both lists goes to the more
/// specific match; one matched by neither is refused when only_from is set
/// (even empty), allowed otherwise. systemd's rule differs (an allow match
/// always wins), so a no_access entry inside an only_from range is written
/// as that range minus the hole, which makes the two rules agree.
public enum XinetdAccess {
    /// One value of only_from/no_access: prefixes, or nil for what porter
    /// cannot check (host, domain and network names).
    public static func prefixes(_ value: String) -> [IPPrefix]? {
        // Factorized: 128.138.{12,71}.0
        if let open = value.firstIndex(of: "{"), let close = value.firstIndex(of: "}"), open < close {
            let head = value[..<open], tail = value[value.index(after: close)...]
            var out: [IPPrefix] = []
            for part in value[value.index(after: open)..<close].split(separator: ",") {
                guard let p = prefixes(head + part.trimmingWhitespace() + tail) else { return nil }
                out += p
            }
            return out.isEmpty ? nil : out
        }
        if value.contains("/") { return try? IPPrefix.parse(value) }
        if let v4 = IPAddress.parseIPv4(value) {
            // Trailing zero parts are wildcards: 10.0.0.0 is 10/8, 0.0.0.0 everyone.
            var length = 32
            for b in v4.reversed() { if b == 0 { length -= 8 } else { break } }
            return [IPPrefix(bytes: v4, length: length)]
        }
        if let v6 = IPAddress.parseIPv6(value) {
            return [IPPrefix(bytes: v6, length: v6.allSatisfy { $0 == 0 } ? 0 : 128)]
        }
        return nil
    }

    /// A host name's addresses (4 or 16 bytes each), nil when it has none.
    public typealias HostResolver = (String) -> [[UInt8]]?

    /// A listen address for a host name, as inetd binds one: the first
    /// address of the family (IPv6 with `ipv6`), written for Listen*=
    /// (`[v6]` bracketed); nil when the name has none of that family.
    public static func listenHost(_ name: String, ipv6: Bool, resolve: HostResolver?) -> String? {
        guard let resolve, isHostName(name), let first = resolve(name)?.first(where: { $0.count == (ipv6 ? 16 : 4) }) else { return nil }
        let text = IPPrefix(bytes: first, length: first.count * 8).description
        return ipv6 ? "[\(text)]" : text
    }

    public struct Lists: Equatable, Sendable {
        public var access = AddressAccess()
        /// The no_access entries as prefixes (before `any` is added).
        public var denied: [IPPrefix] = []
        /// Host names and the addresses they had when the lists were read.
        public var resolved: [Resolved] = []
        /// Words porter cannot check (domain wildcards, network names,
        /// host names without an address), per attribute.
        public var unsupportedAllow: [String] = []
        public var unsupportedDeny: [String] = []
    }

    public struct Resolved: Equatable, Sendable {
        public var name: String
        public var prefixes: [IPPrefix]
    }

    /// Whether `word` can be a host name to resolve: letters, digits, dots
    /// and dashes with a letter in it, not a `.domain` wildcard.
    static func isHostName(_ word: String) -> Bool {
        !word.hasPrefix(".") && !word.isEmpty && word.utf8.count <= 253
            && word.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "-" }
            && word.unicodeScalars.contains { ("a"..."z").contains($0) || ("A"..."Z").contains($0) }
    }

    /// `onlyFrom` nil: not set (everyone may come); empty: set to nothing
    /// (nobody may). Host names are resolved with `resolve` (each address
    /// a /32 or /128), once, when the lists are read.
    public static func convert(onlyFrom: [String]?, noAccess: [String], resolve: HostResolver? = nil) -> Lists {
        var out = Lists()
        func entry(_ w: String) -> [IPPrefix]? {
            if let p = prefixes(w) { return p }
            guard let resolve, isHostName(w), let addresses = resolve(w), !addresses.isEmpty else { return nil }
            var seen = Set<[UInt8]>()
            let p = addresses.filter { ($0.count == 4 || $0.count == 16) && seen.insert($0).inserted }
                .map { IPPrefix(bytes: $0, length: $0.count * 8) }
            if !out.resolved.contains(where: { $0.name == w }) { out.resolved.append(Resolved(name: w, prefixes: p)) }
            return p
        }
        var allow: [IPPrefix] = []
        for w in onlyFrom ?? [] {
            if let p = entry(w) { allow += p } else { out.unsupportedAllow.append(w) }
        }
        var deny: [IPPrefix] = []
        for w in noAccess {
            if let p = entry(w) { deny += p } else { out.unsupportedDeny.append(w) }
        }
        out.denied = deny
        // The more specific match wins: holes that no_access cuts into an
        // allowed range are taken out of it; an allowed range inside a
        // denied one stays allowed (systemd's allow list wins too).
        var final: [IPPrefix] = []
        for a in allow {
            var pieces = [a]
            for d in deny where a.covers(d) && d.length > a.length {
                pieces = pieces.flatMap { $0.subtracting(d) }
            }
            // An entry denied exactly as allowed: xinetd takes it as denied.
            if deny.contains(a) { pieces = [] }
            final += pieces
        }
        out.access.allow = final
        out.access.deny = deny
        // only_from set: whoever it does not list is refused.
        if onlyFrom != nil { out.access.deny += IPPrefix.symbolic["any"]! }
        // Nothing allowed and nothing denied beyond `any`: keep it simple.
        if out.access.allow.contains(where: { $0.length == 0 }) && deny.isEmpty { out.access = AddressAccess() }
        return out
    }
}
