/// A set of IP addresses as a list of prefixes, with the operations that
/// rule systems with different orders (xinetd's, tcp_wrappers', systemd's)
/// need to be written as one another: union, intersection, difference.
/// Kept normalized: no prefix covers another, so sizes stay small.
public struct PrefixSet: Equatable, Sendable {
    public private(set) var prefixes: [IPPrefix] = []

    public init(_ prefixes: [IPPrefix] = []) {
        for p in prefixes { insert(p) }
    }

    public static let everything = PrefixSet(IPPrefix.symbolic["any"]!)

    public var isEmpty: Bool { prefixes.isEmpty }

    public func contains(_ address: [UInt8]) -> Bool { prefixes.contains { $0.contains(address) } }

    mutating func insert(_ p: IPPrefix) {
        if prefixes.contains(where: { $0.covers(p) }) { return }
        prefixes.removeAll { p.covers($0) }
        // Two halves make their parent: everything minus a hole, given its
        // hole back, is everything again, not 33 pieces.
        if p.length > 0 {
            var b = p.bytes
            b[(p.length - 1) / 8] ^= UInt8(0x80 >> ((p.length - 1) % 8))
            let sibling = IPPrefix(bytes: b, length: p.length)
            if let i = prefixes.firstIndex(of: sibling) {
                prefixes.remove(at: i)
                insert(IPPrefix(bytes: p.bytes, length: p.length - 1))
                return
            }
        }
        prefixes.append(p)
    }

    public func union(_ other: PrefixSet) -> PrefixSet {
        var out = self
        for p in other.prefixes { out.insert(p) }
        return out
    }

    /// Prefixes nest or are disjoint: the intersection of two is the
    /// smaller one or nothing.
    public func intersection(_ other: PrefixSet) -> PrefixSet {
        var out = PrefixSet()
        for a in prefixes {
            for b in other.prefixes {
                if a.covers(b) { out.insert(b) } else if b.covers(a) { out.insert(a) }
            }
        }
        return out
    }

    public func subtracting(_ other: PrefixSet) -> PrefixSet {
        var pieces = prefixes
        for hole in other.prefixes {
            pieces = pieces.flatMap { $0.subtracting(hole) }
        }
        return PrefixSet(pieces)
    }

    /// Everything not in the set.
    public var complement: PrefixSet { PrefixSet.everything.subtracting(self) }
}

extension AddressAccess {
    /// The addresses this pair of lists lets in (systemd's rule: allowed,
    /// or not denied).
    public var allowedSet: PrefixSet { PrefixSet(allow).union(PrefixSet(deny).complement) }

    /// The lists that let in exactly what both `self` and `other` let in:
    /// deny what either denies, then allow back what both let in.
    public func intersecting(_ other: AddressAccess) -> AddressAccess {
        if other.allowsEveryone { return self }
        if allowsEveryone { return other }
        let deny = PrefixSet(self.deny).union(PrefixSet(other.deny))
        let allow = deny.intersection(allowedSet).intersection(other.allowedSet)
        return AddressAccess(allow: allow.prefixes, deny: deny.prefixes)
    }
}
