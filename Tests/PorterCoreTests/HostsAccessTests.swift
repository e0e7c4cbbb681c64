import PorterCore
import Testing

/// hosts.allow/hosts.deny as IPAddressAllow=/IPAddressDeny=: the lists
/// must let in exactly whom libwrap lets in, checked against a direct
/// reading of hosts_access(5) on random rules and addresses.
@Suite("tcp_wrappers rules")
struct HostsAccessTests {
    /// libwrap itself: the first matching rule of hosts.allow grants, of
    /// hosts.deny refuses (an `allow`/`deny` option decides instead);
    /// no match lets the client in.
    static func libwrap(_ h: HostsAccess, daemon: String, _ a: [UInt8]) -> Bool {
        func matches(_ words: [String], _ one: (String) -> Bool) -> Bool {
            if let i = words.firstIndex(of: "EXCEPT") {
                return matches(Array(words[..<i]), one) && !matches(Array(words[(i + 1)...]), one)
            }
            return words.contains(where: one)
        }
        func client(_ w: String) -> Bool {
            if w == "ALL" { return true }
            if w.hasSuffix(".") {
                let parts = w.dropLast().split(separator: ".").map { UInt8($0)! }
                return Array(a.prefix(parts.count)) == parts
            }
            if let slash = w.firstIndex(of: "/") {
                let net = w[..<slash].split(separator: ".").map { UInt8($0)! }
                let bits = Int(w[w.index(after: slash)...])!
                return IPPrefix(bytes: net, length: bits).contains(a)
            }
            return w.split(separator: ".").map { UInt8($0)! } == a
        }
        for r in h.rules where matches(r.daemons, { $0 == "ALL" || $0 == daemon }) && matches(r.clients, client) {
            if r.options.contains("deny") { return false }
            if r.options.contains("allow") { return true }
            return r.grants
        }
        return true
    }

    static func randomRules(_ rng: inout SplitMix) -> (String, String) {
        func pick<T>(_ a: [T]) -> T { a[Int(rng.next() % UInt64(a.count))] }
        func pattern() -> String {
            switch rng.next() % 5 {
            case 0: return "ALL"
            case 1: return "10.\(rng.next() % 3)."
            case 2: return "10.\(rng.next() % 3).\(rng.next() % 3).\(rng.next() % 4)"
            case 3: return "10.\(rng.next() % 3).0.0/\(pick([14, 15, 16, 24, 30]))"
            default: return "10."
            }
        }
        func rule() -> String {
            let daemons = pick(["ALL", "svc", "other", "ALL EXCEPT other", "ALL EXCEPT svc", "svc, other"])
            var clients = (0..<(1 + Int(rng.next() % 2))).map { _ in pattern() }.joined(separator: " ")
            if rng.next() % 3 == 0 { clients += " EXCEPT " + pattern() }
            let option = pick(["", "", "", " : allow", " : deny"])
            return "\(daemons) : \(clients)\(option)"
        }
        let allow = (0..<Int(rng.next() % 4)).map { _ in rule() }.joined(separator: "\n")
        let deny = (0..<Int(rng.next() % 4)).map { _ in rule() }.joined(separator: "\n")
        return (allow, deny)
    }

    @Test func listsLetInWhomLibwrapLetsIn() throws {
        var rng = SplitMix(seed: 23)
        for _ in 0..<300 {
            let (allow, deny) = Self.randomRules(&rng)
            let h = HostsAccess(allow: ("hosts.allow", allow), deny: ("hosts.deny", deny))
            #expect(h.diagnostics.isEmpty)
            let o = h.outcome(for: "svc")
            #expect(o.refusal == nil)
            for _ in 0..<40 {
                let a: [UInt8] = [10, UInt8(rng.next() % 3), UInt8(rng.next() % 3), UInt8(rng.next() % 5)]
                let lists = o.access.check(a) == .allowed
                #expect(lists == Self.libwrap(h, daemon: "svc", a), "\(a) with\n\(allow)\n--\n\(deny)\nas \(o.access)")
            }
        }
    }

    /// xinetd's own lists and libwrap's together: both must let a client in.
    @Test func intersectingTwoPairsOfLists() throws {
        var rng = SplitMix(seed: 5)
        func randomAccess() -> AddressAccess {
            func prefixes() -> [IPPrefix] {
                (0..<Int(rng.next() % 3)).map { _ in
                    IPPrefix(bytes: [10, UInt8(rng.next() % 3), UInt8(rng.next() % 3), 0], length: [8, 16, 24, 30][Int(rng.next() % 4)])
                }
            }
            let deny = rng.next() % 3 == 0 ? IPPrefix.symbolic["any"]! : prefixes()
            return AddressAccess(allow: prefixes(), deny: deny)
        }
        for _ in 0..<300 {
            let x = randomAccess(), l = randomAccess()
            let both = x.intersecting(l)
            for _ in 0..<40 {
                let a: [UInt8] = [10, UInt8(rng.next() % 3), UInt8(rng.next() % 3), UInt8(rng.next() % 5)]
                #expect((both.check(a) == .allowed) == (x.check(a) == .allowed && l.check(a) == .allowed), "\(a): \(x) and \(l) gave \(both)")
            }
        }
    }

    @Test func whatPorterCannotCheckIsNeverLetIn() {
        let h = HostsAccess(allow: ("hosts.allow", "svc: LOCAL 10.1.\nsvc: ALL EXCEPT .example.com\n"), deny: ("hosts.deny", "ALL: ALL\n"))
        let o = h.outcome(for: "svc")
        #expect(o.refusal == nil)
        #expect(o.access.check([10, 1, 2, 3]) == .allowed)
        #expect(o.access.check([10, 2, 2, 3]) != .allowed, "LOCAL and the uncheckable EXCEPT rule are left out: stricter")
        #expect(o.notes.contains { $0.contains("LOCAL cannot be checked") })
        let refusing = HostsAccess(allow: nil, deny: ("hosts.deny", "ALL: PARANOID\n"))
        #expect(refusing.outcome(for: "svc").refusal?.contains("PARANOID cannot be checked by porter") == true)
        // Once every address is decided, what follows cannot matter.
        let decided = HostsAccess(allow: ("hosts.allow", "svc: 10.\n"), deny: ("hosts.deny", "ALL: ALL\nALL: PARANOID\n"))
        #expect(decided.outcome(for: "svc").refusal == nil)
        #expect(decided.outcome(for: "svc").access.check([10, 1, 1, 1]) == .allowed && decided.outcome(for: "svc").access.check([11, 1, 1, 1]) != .allowed)
        // Another daemon's rules change nothing; a host name resolves.
        let other = HostsAccess(allow: ("a", "in.fingerd: 10.0.0.1\n"), deny: ("d", "in.fingerd: ALL\nsvc: gateway\n"))
        #expect(other.outcome(for: "nobody").access.allowsEveryone)
        let named = other.outcome(for: "svc", resolve: { $0 == "gateway" ? [[10, 0, 0, 9]] : nil })
        #expect(named.access.check([10, 0, 0, 9]) != .allowed && named.access.check([10, 0, 0, 8]) == .allowed)
    }

    @Test func syntax() {
        let h = HostsAccess(allow: ("hosts.allow", "# comment\n\nsvc,other :\\\n 10.0.0.1 , 10.0.0.2 : spawn (echo %a) & \nbroken line\n"),
                            deny: nil)
        #expect(h.rules.count == 1)
        #expect(h.rules.first?.daemons == ["svc", "other"] && h.rules.first?.clients == ["10.0.0.1", "10.0.0.2"])
        #expect(h.rules.first?.line == 3)
        #expect(h.diagnostics.map(\.description) == ["hosts.allow:5: expected DAEMONS : CLIENTS [: OPTIONS], got 'broken line'"])
        #expect(h.outcome(for: "svc").notes.contains { $0.contains("is not run by porter") })
        #expect(HostsAccess(allow: nil, deny: ("d", "ALL: 10.0.0.0/255.255.255.0 [::1] [fe80::]/10\n")).outcome(for: "x").access.deny.count == 3)
    }
}
