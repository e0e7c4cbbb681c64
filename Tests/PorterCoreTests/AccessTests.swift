import PorterCore
import Testing

@Suite("who may connect")
struct AccessTests {
    func prefixes(_ s: String) throws -> [IPPrefix] { try #require(try AddressAccess.parseList(s)) }
    func ip(_ s: String) -> [UInt8] { IPAddress.parseIPv4(s) ?? IPAddress.parseIPv6(s)! }

    @Test func prefixesParseAsSystemdWritesThem() throws {
        #expect(try prefixes("10.0.0.0/8 ::1 192.168.1.7").map(\.description) == ["10.0.0.0/8", "::1", "192.168.1.7"])
        #expect(try prefixes("10.1.2.3/8").map(\.description) == ["10.0.0.0/8"], "host bits past the prefix are cleared")
        #expect(try prefixes("localhost").map(\.description) == ["127.0.0.0/8", "::1"])
        #expect(try prefixes("any").map(\.description) == ["0.0.0.0/0", "::/0"])
        #expect(try prefixes("link-local multicast").map(\.description) == ["169.254.0.0/16", "fe80::/64", "224.0.0.0/4", "ff00::/8"])
        #expect(throws: ValueError.self) { try AddressAccess.parseList("10.0.0.0/33") }
        #expect(throws: ValueError.self) { try AddressAccess.parseList("example.com") }
        #expect(throws: ValueError.self) { try AddressAccess.parseList("10.0.0.0/") }
        #expect(throws: ValueError.self) { try AddressAccess.parseList("::1/129") }
        #expect(try AddressAccess.parseList("  ") == nil)
    }

    @Test func systemdsOrderAllowThenDenyThenAllow() throws {
        let onlyTen = AddressAccess(allow: try prefixes("10.0.0.0/8"), deny: try prefixes("any"))
        #expect(onlyTen.check(ip("10.9.8.7")) == .allowed)
        #expect(onlyTen.check(ip("192.168.0.1")) == .denied(try prefixes("0.0.0.0/0")[0]))
        #expect(onlyTen.check(ip("::1")) != .allowed)
        let denyOne = AddressAccess(deny: try prefixes("127.0.0.2"))
        #expect(denyOne.check(ip("127.0.0.1")) == .allowed)
        #expect(denyOne.check(ip("127.0.0.2")) != .allowed)
        // An allow entry wins over a deny entry inside it, as systemd documents.
        let hole = AddressAccess(allow: try prefixes("10.0.0.0/8"), deny: try prefixes("10.1.0.0/16"))
        #expect(hole.check(ip("10.1.2.3")) == .allowed)
        #expect(AddressAccess().allowsEveryone)
    }

    @Test func subtractingAHoleLeavesTheRest() throws {
        let ten = try prefixes("10.0.0.0/8")[0]
        let rest = ten.subtracting(try prefixes("10.1.0.0/16")[0])
        #expect(rest.count == 8)
        #expect(!rest.contains { $0.contains(ip("10.1.2.3")) })
        for probe in ["10.0.0.1", "10.2.0.1", "10.128.0.1", "10.255.255.255", "10.0.255.1"] {
            #expect(rest.contains { $0.contains(ip(probe)) }, "\(probe)")
        }
        #expect(ten.subtracting(try prefixes("11.0.0.0/8")[0]) == [ten])
        #expect(ten.subtracting(try prefixes("0.0.0.0/0")[0]).isEmpty)
    }

    /// The kernel filter and porter's own check must agree on every address.
    @Test func theSocketFilterDecidesAsTheCheck() throws {
        var rng = SplitMix(seed: 7)
        let pool = ["10.0.0.0/8", "127.0.0.2", "127.0.0.0/8", "192.168.1.0/24", "0.0.0.0/0", "::1", "fe80::/64",
                    "2001:db8::/32", "2001:db8:0:1::/64", "::/0", "172.16.0.0/12", "2001:db8::5/128", "10.1.0.0/16"]
        for _ in 0..<300 {
            func pick() throws -> [IPPrefix] {
                try (0..<Int(rng.next() % 4)).flatMap { _ in try prefixes(pool[Int(rng.next() % UInt64(pool.count))]) }
            }
            let access = AddressAccess(allow: try pick(), deny: try pick())
            guard let program = SocketFilter.program(access) else {
                #expect(access.allowsEveryone)
                continue
            }
            for _ in 0..<40 {
                let v6 = rng.next() % 2 == 0
                var addr: [UInt8] = (0..<(v6 ? 16 : 4)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                // Addresses near the rules, so they match some.
                if rng.next() % 2 == 0, let near = (access.allow + access.deny).filter({ $0.bytes.count == addr.count }).first {
                    addr = near.bytes
                    addr[addr.count - 1] ^= UInt8(truncatingIfNeeded: rng.next() % 4)
                }
                let header = v6 ? [0x60, 0, 0, 0, 0, 0, 6, 64] + addr + Array(repeating: 0, count: 16)
                    : [0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0] + addr + [127, 0, 0, 1]
                let kernel = SocketFilter.run(program, networkHeader: header)
                #expect(kernel == (access.check(addr) == .allowed ? SocketFilter.accept : SocketFilter.drop),
                        "\(access.description) on \(addr)")
            }
        }
        #expect(SocketFilter.program(AddressAccess(allow: try prefixes("any"))) == nil, "nothing denied: no filter")
    }

    @Test func sourceTableCountsOpenConnectionsAndRate() throws {
        var t = try #require(SourceTable(maxOpen: 2, rate: nil))
        let a: [UInt8] = [127, 0, 0, 1], b: [UInt8] = [127, 0, 0, 2]
        let now = Instant(nanoseconds: 1_000_000_000)
        #expect(t.admit(a, now: now) == .admitted)
        #expect(t.admit(a, now: now) == .admitted)
        #expect(t.admit(a, now: now) == .tooMany(2))
        #expect(t.admit(b, now: now) == .admitted, "another source is not limited by a's")
        t.release(a, now: now)
        #expect(t.admit(a, now: now) == .admitted)
        t.release(a, now: now); t.release(a, now: now); t.release(b, now: now)
        #expect(t.count == 0, "sources with nothing open are dropped")

        var r = try #require(SourceTable(maxOpen: nil, rate: RateWindow(interval: .seconds(1), burst: 3)))
        for _ in 0..<3 { #expect(r.admit(a, now: now) == .admitted) }
        #expect(r.admit(a, now: now) == .tooFast(until: now + .seconds(1)))
        #expect(r.admit(b, now: now) == .admitted)
        #expect(r.admit(a, now: now + .seconds(1)) == .admitted, "the window closed: recovered")
        #expect(SourceTable(maxOpen: nil, rate: nil) == nil)
    }

    @Test func sourceTableStaysBounded() throws {
        var t = try #require(SourceTable(maxOpen: nil, rate: RateWindow(interval: .seconds(1), burst: 5), capacity: 2000))
        var now = Instant(nanoseconds: 1_000_000_000)
        for i in 0..<50_000 {
            let src: [UInt8] = [10, UInt8(i >> 16 & 0xFF), UInt8(i >> 8 & 0xFF), UInt8(i & 0xFF)]
            #expect(t.admit(src, now: now) == .admitted)
            t.release(src, now: now)
            if i % 1000 == 0 { now = now + .seconds(2) }
        }
        #expect(t.count <= 2000)
    }

    @Test func socketKeysParse() throws {
        let c = Configuration.load(files: [("e.socket", """
            [Socket]
            ListenStream=7
            Accept=yes
            IPAddressAllow=127.0.0.1 10.0.0.0/8
            IPAddressDeny=any
            MaxConnectionsPerSource=3
            PerSourceLimitIntervalSec=10s
            PerSourceLimitBurst=4
            TriggerLimitIntervalSec=1s
            TriggerLimitBurst=50
            TriggerLimitPauseSec=10s
            """), ("e@.service", "[Service]\nExecStart=/bin/cat\n")], host: HostFacts())
        #expect(!c.hasErrors, "\(c.diagnostics)")
        let s = try #require(c.sockets.first)
        #expect(s.access.allow.map(\.description) == ["127.0.0.1", "10.0.0.0/8"])
        #expect(s.access.deny.count == 2)
        #expect(s.maxConnectionsPerSource == 3)
        #expect(s.sourceTable?.rate == RateWindow(interval: .seconds(10), burst: 4))
        #expect(s.triggerLimitPause == .seconds(10))

        let bad = Configuration.load(files: [("e.socket", "[Socket]\nListenStream=7\nIPAddressDeny=10.0.0.0/40\nInternalService=qotd\n")], host: HostFacts())
        let text = bad.diagnostics.map(\.description).joined(separator: "\n")
        #expect(text.contains("e.socket:3: IPAddressDeny: prefix length 40 in '10.0.0.0/40' is longer than the address (32 bits)"), "\(text)")
        #expect(text.contains("e.socket:4: InternalService: invalid value 'qotd', expected echo, discard, daytime, chargen or time"), "\(text)")
    }

    @Test func internalSocketsNeedNoService() throws {
        let c = Configuration.load(files: [("echo.socket", "[Socket]\nListenStream=7\nListenDatagram=7\nInternalService=echo\n")], host: HostFacts())
        #expect(!c.hasErrors, "\(c.diagnostics)")
        #expect(c.pairings == ["echo.socket -> internal echo (served by porter, at most 64 connections): ListenStream=7 ListenDatagram=7"])
        let withService = Configuration.load(files: [("e.socket", "[Socket]\nListenStream=7\nInternalService=echo\nService=x.service\n")], host: HostFacts())
        #expect(withService.hasErrors)
    }

    @Test func internalReplies() {
        // 2026-12-03 14:52:07 UTC, a Thursday.
        #expect(String(decoding: InternalService.daytime(unixSeconds: 1_796_309_527), as: UTF8.self) == "Thu Dec  3 14:52:07 2026\r\n")
        #expect(String(decoding: InternalService.daytime(unixSeconds: 0), as: UTF8.self) == "Thu Jan  1 00:00:00 1970\r\n")
        #expect(String(decoding: InternalService.daytime(unixSeconds: 951_782_400), as: UTF8.self) == "Tue Feb 29 00:00:00 2000\r\n")
        #expect(InternalService.time(unixSeconds: 0) == [0x83, 0xAA, 0x7E, 0x80], "2208988800 seconds from 1900 to 1970")
        let p = InternalService.chargenPattern
        #expect(p.count == 95 * 74)
        #expect(String(decoding: p[0..<74], as: UTF8.self) == String(decoding: (32..<104).map { UInt8($0) }, as: UTF8.self) + "\r\n")
        #expect(p[74] == 33, "the second line starts one character later")
        #expect(InternalService.echo.datagramReplySize(request: 1400) == 1400)
        #expect(InternalService.chargen.datagramReplySize(request: 10) == 10, "never more than asked for")
        #expect(InternalService.chargen.datagramReplySize(request: 9000) == 512)
        #expect(InternalService.discard.datagramReplySize(request: 10) == nil)
        #expect(InternalService.replyRefused(address: [127, 0, 0, 1], port: 7) != nil)
        #expect(InternalService.replyRefused(address: [127, 0, 0, 1], port: 2049) != nil)
        #expect(InternalService.replyRefused(address: [224, 0, 0, 1], port: 40000) != nil)
        #expect(InternalService.replyRefused(address: [127, 0, 0, 1], port: 40000) == nil)
    }
}

/// A small deterministic generator for the property tests.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
