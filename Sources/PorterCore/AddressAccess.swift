/// IPAddressAllow=/IPAddressDeny= of a socket unit: who may connect.
///
/// The rule is systemd.resource-control(5)'s, applied in turn: an address
/// on the allow list is allowed; otherwise one on the deny list is denied;
/// otherwise it is allowed. So `IPAddressDeny=any` with
/// `IPAddressAllow=10.0.0.0/8` lets only 10/8 in: the specific allow wins
/// over the catch-all deny. (A deny entry inside an allowed range does not
/// cut a hole in it, as systemd; the xinetd importer writes the allowed
/// range minus the hole instead, see `IPPrefix.subtracting`.)
public struct AddressAccess: Equatable, Sendable {
    public var allow: [IPPrefix] = []
    public var deny: [IPPrefix] = []

    public init(allow: [IPPrefix] = [], deny: [IPPrefix] = []) {
        self.allow = allow
        self.deny = deny
    }

    /// Nothing is denied: no check, no filter.
    public var allowsEveryone: Bool { deny.isEmpty }

    public enum Verdict: Equatable, Sendable {
        case allowed
        /// The deny entry that matched, for the log.
        case denied(IPPrefix)
    }

    /// `address`: 4 bytes (IPv4, or the IPv4 of a mapped IPv6 address) or 16.
    public func check(_ address: [UInt8]) -> Verdict {
        if allow.contains(where: { $0.contains(address) }) { return .allowed }
        if let d = deny.first(where: { $0.contains(address) }) { return .denied(d) }
        return .allowed
    }

    /// An IPAddressAllow=/IPAddressDeny= value: words separated by spaces;
    /// an empty value resets the list (systemd's rule for both keys).
    public static func parseList(_ value: String) throws(ValueError) -> [IPPrefix]? {
        let words = Values.words(value)
        if words.isEmpty { return nil }
        var out: [IPPrefix] = []
        for w in words { out += try IPPrefix.parse(w) }
        return out
    }

    /// For status and the import report.
    public var description: String {
        var parts: [String] = []
        if !allow.isEmpty { parts.append("allow " + allow.map(\.description).joined(separator: " ")) }
        if !deny.isEmpty { parts.append("deny " + deny.map(\.description).joined(separator: " ")) }
        return parts.joined(separator: "; ")
    }
}
