import Glibc
import PorterCore
import Testing

/// Deterministic random-input tests of the pure parsers (issue 9: "a fuzz
/// entry point ... that runs for a bounded time in CI"). A fixed seed makes
/// a failure reproducible; PORTER_FUZZ_ITERATIONS runs longer by hand.
/// The inputs are built from the tokens the grammars care about, so most
/// of them get past the first character.

let fuzzIterations: Int = getenv("PORTER_FUZZ_ITERATIONS").flatMap { Int(String(cString: $0)) } ?? 3000

let fuzzTokens: [[UInt8]] = [
    "[Socket]", "[Service]", "[Path]", "[Unit]", "[Install]", "[", "]", "\n", "\n", "\n", "\r\n", "=", "==", " ", "\t",
    "#", ";", "\\", "\\\n", "\"", "'", "$", "${", "}", "%", "%i", "%n", "%%", "@", "/", "-", "+", ":", "!",
    "ListenStream", "ListenDatagram", "Accept", "yes", "no", "ExecStart", "User", "Environment", "PathExists",
    "DirectoryNotEmpty", "MaxConnections", "Backlog", "SocketMode", "0777", "127.0.0.1", "[::1]", "80", "70000",
    "/tmp/x", "@abstract", "5s", "infinity", "1min", "SIGTERM", "x", "é", "Grüße",
].map { Array($0.utf8) } + [[0], [0xFF], [0xC3], [0xE2, 0x82], [0xF0, 0x9F, 0x98, 0x80], [0x1B]]

func fuzzInput(_ rng: inout SplitMix, maxTokens: Int = 40) -> [UInt8] {
    var out: [UInt8] = []
    for _ in 0..<Int.random(in: 0...maxTokens, using: &rng) {
        if Int.random(in: 0..<10, using: &rng) == 0 {
            out.append(UInt8.random(in: 0...255, using: &rng))
        } else {
            out += fuzzTokens[Int.random(in: 0..<fuzzTokens.count, using: &rng)]
        }
    }
    return out
}

@Suite("fuzzing the pure parsers")
struct FuzzTests {
    /// Unit files: never a crash; every diagnostic names the file; at most
    /// the capped number per file; nothing parsed keeps a NUL or U+FFFD.
    @Test func unitFiles() {
        var rng = SplitMix(seed: 0x5eed_0001)
        for i in 0..<fuzzIterations {
            let bytes = fuzzInput(&rng, maxTokens: 60)
            let name = ["a.socket", "a@.service", "a.service", "a.path"][i % 4]
            var d = Diagnostics(file: name)
            let file = UnitFile.parse(fileName: name, bytes: bytes, diagnostics: &d)
            #expect(d.all.allSatisfy { $0.file == name })
            #expect(d.all.count <= Diagnostics.maxShown + 1)
            let hadReplacement = bytes.count >= 3 && (0..<(bytes.count - 2)).contains { bytes[$0] == 0xEF && bytes[$0 + 1] == 0xBF && bytes[$0 + 2] == 0xBD }
            for section in file.sections {
                for a in section.assignments {
                    #expect(!a.value.utf8.contains(0) && !a.key.utf8.contains(0), "\(bytes)")
                    if !hadReplacement { #expect(!a.value.contains("\u{FFFD}"), "\(bytes)") }
                }
            }
            // The whole pipeline, with the partner units present.
            let text = String(decoding: bytes, as: UTF8.self)
            _ = Configuration.load(files: [(name: name, text: text), (name: "b.socket", text: "[Socket]\nListenStream=9\n"),
                                           (name: "b.service", text: "[Service]\nExecStart=/bin/true\n")], host: HostFacts())
        }
    }

    /// xinetd and inetd configurations: never a crash; whatever the
    /// converters write parses as units porter accepts or refuses with a
    /// diagnostic, never with a crash.
    @Test func legacyConfigurations() {
        var rng = SplitMix(seed: 0x5eed_0013)
        let xinetdTokens: [[UInt8]] = ["service ", "defaults", "{", "}", "\n", " = ", " += ", " -= ", "socket_type", "stream", "dgram",
            "wait", "yes", "no", "server", "/bin/x", "server_args", "only_from", "no_access", "10.0.0.0", "10.1.0.0/16", "::1",
            "redirect", "127.0.0.1 80", "type", "INTERNAL", "UNLISTED", "echo", "port", "70000", "7", "flags", "IPv6", "NAMEINARGS",
            "cps", "50 10", "instances", "per_source", "includedir", "/x", "#", "\t", "\"", "%", "$", ";", "{1,2}"].map { Array($0.utf8) }
        let inetdTokens: [[UInt8]] = ["echo", "tftp", "stream", "dgram", "tcp", "udp", "tcp6", "rpc/tcp", "wait", "nowait", "nowait.400",
            "root", "nobody:nogroup", "a.b", "internal", "/usr/sbin/x", "x", " ", "\t", "\n", "\n ", "#", "#<off># ", "127.0.0.1:",
            "*:", "[::1]:", ":"].map { Array($0.utf8) }
        let hostsTokens: [[UInt8]] = ["ALL", "EXCEPT", "svc", " : ", ":", ", ", " ", "\n", "\\\n", "#", "10.", "10.0.0.1", "10.0.0.0/8",
            "10.0.0.0/255.0.0.0", "[::1]", "[fe80::]/10", "[", "]", "LOCAL", "PARANOID", ".example.com", "@group", "a@b", "*", "allow",
            "deny", "twist /bin/x", "spawn (x)"].map { Array($0.utf8) }
        func input(_ tokens: [[UInt8]]) -> String {
            var out: [UInt8] = []
            for _ in 0..<Int.random(in: 0...50, using: &rng) {
                if Int.random(in: 0..<12, using: &rng) == 0 { out.append(UInt8.random(in: 0...255, using: &rng)) } else {
                    out += tokens[Int.random(in: 0..<tokens.count, using: &rng)]
                }
            }
            return String(decoding: out, as: UTF8.self)
        }
        for _ in 0..<fuzzIterations {
            let x = XinetdText(file: "x", text: input(xinetdTokens))
            var defs: [XinetdText.Attribute] = []
            var services: [XinetdService] = []
            for item in x.items {
                switch item {
                case .defaults(let a): defs += a
                case .service(let n, let a, let f, let l): services.append(XinetdService(name: n, file: f, line: l, defaults: defs, attributes: a))
                case .includeDir, .includeFile: break
                }
            }
            var importer = XinetdImport(services: ServicesFile.builtin, source: "x")
            let h = HostsAccess(allow: ("a", input(hostsTokens)), deny: ("d", input(hostsTokens)))
            importer.hostsAccess = (h, "a, d")
            let o = h.outcome(for: "svc")
            if o.refusal == nil { _ = o.access.intersecting(AddressAccess(allow: [], deny: IPPrefix.symbolic["any"]!)) }
            let r1 = importer.convert(services, defaults: defs)
            let i = InetdText(file: "i", text: input(inetdTokens))
            let r2 = InetdImport(services: ServicesFile.builtin).convert(i.entries)
            for r in [r1, r2] {
                _ = r.render()
                _ = Configuration.load(files: r.units.map { (name: $0.name, text: $0.text) }, host: HostFacts())
            }
        }
    }

    @Test func environmentFiles() {
        var rng = SplitMix(seed: 0x5eed_0002)
        for _ in 0..<fuzzIterations {
            let text = String(decoding: fuzzInput(&rng), as: UTF8.self)
            var warned = 0
            let pairs = EnvironmentParsing.file(text) { _, _ in warned += 1 }
            #expect(pairs.allSatisfy { !$0.0.isEmpty && !$0.0.contains("=") })
        }
    }

    @Test func valuesAndAddresses() {
        var rng = SplitMix(seed: 0x5eed_0003)
        for _ in 0..<fuzzIterations {
            let s = String(decoding: fuzzInput(&rng, maxTokens: 8), as: UTF8.self)
            _ = try? Quoting.split(s)
            _ = try? Values.timeSpan(s)
            _ = try? Values.size(s)
            _ = try? Values.mode(s)
            _ = try? Values.boolean(s)
            _ = try? Values.signal(s)
            _ = try? Values.integer(s, in: 0...1000)
            if let f = try? OpenFile.parse("/" + s) {
                #expect(f.path.hasPrefix("/") && !f.name.isEmpty && !f.name.contains(":"), "\(s) -> \(f)")
            }
            for kind in [SocketKind.stream, .datagram, .sequentialPacket] {
                if let a = try? ListenAddress.parse(s, kind: kind) {
                    // What parses prints back as something that parses to the same.
                    #expect((try? ListenAddress.parse(a.description, kind: kind)) == a, "\(s) -> \(a)")
                }
            }
            #expect(Quote.value(s).utf8.count <= Quote.maxBytes + 40)
        }
    }
}

@Suite("wire formats")
struct WireFormatTests {
    static func record(_ wd: Int32, _ mask: UInt32, _ name: [UInt8], pad: Int = 0) -> [UInt8] {
        var out: [UInt8] = []
        func put(_ v: UInt32) { withUnsafeBytes(of: v) { out += $0 } }
        let len = name.isEmpty && pad == 0 ? 0 : name.count + 1 + pad
        put(UInt32(bitPattern: wd)); put(mask); put(0); put(UInt32(len))
        if len > 0 { out += name + [UInt8](repeating: 0, count: 1 + pad) }
        return out
    }

    @Test func inotifyRecords() {
        let bytes = Self.record(1, 0x100, Array("new.txt".utf8), pad: 8) + Self.record(2, 0x400, []) + Self.record(3, 0x8, [0x62, 0xFF])
        #expect(InotifyRecords.parse(bytes) == [
            .init(wd: 1, mask: 0x100, name: "new.txt"),
            .init(wd: 2, mask: 0x400, name: ""),
            .init(wd: 3, mask: 0x8, name: nil),
        ])
        // A cut record is dropped, not read past the end.
        #expect(InotifyRecords.parse(Array(bytes.dropLast(3))).count == 2)
    }

    @Test func notifyDatagrams() throws {
        let f = try NotifyDatagram.parse(Array("READY=1\nSTATUS=a=b\nnoequals\n\nFDNAME=x".utf8))
        #expect(f.map(\.key) == ["READY", "STATUS", "FDNAME"] && f[1].value == "a=b")
        #expect(throws: NotifyDatagram.Problem.nulByte) { try NotifyDatagram.parse(Array("READY=1\0".utf8)) }
        #expect(throws: NotifyDatagram.Problem.invalidUTF8) { try NotifyDatagram.parse([0x53, 0x3D, 0xFF]) }
    }

    @Test func fuzzInotifyAndNotify() {
        var rng = SplitMix(seed: 0x5eed_0004)
        for _ in 0..<fuzzIterations {
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 0...6, using: &rng) {
                let name = fuzzInput(&rng, maxTokens: 3)
                bytes += Self.record(Int32.random(in: -2...9, using: &rng), UInt32.random(in: 0...UInt32.max, using: &rng), name,
                                     pad: Int.random(in: 0...7, using: &rng))
            }
            if Bool.random(using: &rng), !bytes.isEmpty { bytes.removeLast(Int.random(in: 0...min(bytes.count, 20), using: &rng)) }
            if Int.random(in: 0..<4, using: &rng) == 0 { bytes = fuzzInput(&rng, maxTokens: 30) }
            let records = InotifyRecords.parse(bytes)
            #expect(records.count <= bytes.count / InotifyRecords.headerSize)
            _ = try? NotifyDatagram.parse(fuzzInput(&rng))
        }
    }
}

@Suite("deadline heap")
struct DeadlineHeapTests {
    static func t(_ s: Int64) -> Instant { Instant(nanoseconds: s * 1_000_000_000) }

    @Test func earliestDueAndMovedDeadlines() {
        var deadlines: [String: Instant] = ["a": Self.t(5), "b": Self.t(2), "c": Self.t(9)]
        var h = DeadlineHeap<String>()
        for k in deadlines.keys { h.touch(k) }
        h.flush { deadlines[$0] }
        #expect(h.earliest() == Self.t(2))
        // b moves later, a goes away: the old entries are stale.
        deadlines["b"] = Self.t(7)
        deadlines["a"] = nil
        h.touch("b"); h.touch("a")
        h.flush { deadlines[$0] }
        #expect(h.earliest() == Self.t(7))
        #expect(h.due(now: Self.t(6)).isEmpty)
        #expect(h.due(now: Self.t(9)) == ["b", "c"])
        #expect(h.isEmpty && h.earliest() == nil)
    }

    /// Against a plain scan, on random moves: the same earliest deadline and
    /// the same due keys; stale entries stay bounded.
    @Test func agreesWithAScan() {
        var rng = SplitMix(seed: 0x5eed_0005)
        var deadlines: [Int: Instant] = [:]
        var h = DeadlineHeap<Int>()
        var now = Self.t(0)
        for _ in 0..<20_000 {
            let k = Int.random(in: 0..<50, using: &rng)
            deadlines[k] = Bool.random(using: &rng) ? now + .milliseconds(Int64.random(in: 0...5000, using: &rng)) : nil
            h.touch(k)
            h.flush { deadlines[$0] }
            #expect(h.earliest() == deadlines.values.min())
            if Int.random(in: 0..<5, using: &rng) == 0 {
                now = now + .milliseconds(Int64.random(in: 0...2000, using: &rng))
                let due = Set(h.due(now: now))
                let expected = Set(deadlines.filter { $0.value <= now }.keys)
                #expect(due == expected)
                for k in due { deadlines[k] = nil }
            }
            #expect(h.entries <= max(64, 4 * deadlines.count) + 1)
        }
    }
}

/// PorterCore's own inet_pton/inet_ntop against glibc's.
@Suite("IP address text")
struct IPAddressTests {
    static func glibcParse(_ s: String, _ family: Int32) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 16)
        let ok = buf.withUnsafeMutableBytes { inet_pton(family, s, $0.baseAddress) }
        return ok == 1 ? Array(buf.prefix(family == AF_INET ? 4 : 16)) : nil
    }

    static func glibcFormat(_ b: [UInt8], _ family: Int32) -> String {
        var out = [CChar](repeating: 0, count: 64)
        _ = b.withUnsafeBytes { src in out.withUnsafeMutableBufferPointer { inet_ntop(family, src.baseAddress, $0.baseAddress, 64) } }
        return String(cString: out)
    }

    static let samples = ["::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "fe80::1", "FE80::a:B",
                          "::ffff:1.2.3.4", "::1.2.3.4", "1:0:0:2:0:0:0:3", "0:0:1:0:0:1:0:0", "2001:db8::1:0:0:1", ":::", "1::2::3",
                          ":1::", "1:2:3:4:5:6:7:8:9", "12345::", "::g", "1.2.3.4", "255.255.255.255", "256.1.1.1", "01.2.3.4",
                          "1.2.3", "1.2.3.4.5", "0.0.0.0", "", "::ffff:1.2.3", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4"]

    @Test func parsesAsGlibc() {
        for s in Self.samples {
            #expect(IPAddress.parseIPv6(s) == Self.glibcParse(s, AF_INET6), "\(s)")
            #expect(IPAddress.parseIPv4(s) == Self.glibcParse(s, AF_INET), "\(s)")
        }
    }

    @Test func formatsAsGlibc() {
        var rng = SplitMix(seed: 0x5eed_0006)
        for _ in 0..<5000 {
            // Mostly zero groups, so compression cases come up often.
            var b = [UInt8](repeating: 0, count: 16)
            for w in 0..<8 where Int.random(in: 0..<3, using: &rng) == 0 {
                let v = UInt16.random(in: 0...UInt16.max, using: &rng) >> (Int.random(in: 0...12, using: &rng))
                b[2 * w] = UInt8(v >> 8)
                b[2 * w + 1] = UInt8(v & 0xff)
            }
            if Int.random(in: 0..<8, using: &rng) == 0 { b[10] = 0xff; b[11] = 0xff }
            #expect(IPAddress.formatIPv6(b) == Self.glibcFormat(b, AF_INET6), "\(b)")
            #expect(IPAddress.parseIPv6(IPAddress.formatIPv6(b)) == b)
            let v4 = Array(b.prefix(4))
            #expect(IPAddress.formatIPv4(v4) == Self.glibcFormat(v4, AF_INET))
        }
    }
}

@Suite("sock_diag bytes")
struct SockDiagTests {
    static func message(type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        var m = [UInt8](repeating: 0, count: 16)
        let len = UInt32(16 + payload.count)
        for i in 0..<4 { m[i] = UInt8((len >> (8 * UInt32(i))) & 0xff) }
        m[4] = UInt8(type & 0xff); m[5] = UInt8(type >> 8)
        return m + payload + [UInt8](repeating: 0, count: (4 - payload.count % 4) % 4)
    }

    @Test func requestsHaveTheKernelsLayout() {
        let r = SockDiag.inetDump(family: SockDiag.afInet, proto: SockDiag.tcp, states: SockDiag.established, sourcePort: 0x1F90)
        #expect(r.count == 72 && r[0] == 72 && r[4] == 20 && r[6] == 0x01 && r[7] == 0x03)
        #expect(r[16] == 2 && r[17] == 6 && r[20] == 2 && r[24] == 0x1F && r[25] == 0x90)
        let u = SockDiag.unixRequest(states: SockDiag.listen, show: SockDiag.showRQLen, inode: 0x01020304)
        #expect(u.count == 40 && u[7] == 0 && u[24] == 4 && u[27] == 1 && u[28] == 0x10)
    }

    @Test func repliesAndAttributes() {
        // inet_diag_msg with source port 8080 (big-endian at 4...5).
        var inet = [UInt8](repeating: 0, count: 72)
        inet[4] = 0x1F; inet[5] = 0x90
        // unix_diag_msg and a UNIX_DIAG_NAME attribute "/s" plus a RQLEN of 7.
        var unix = [UInt8](repeating: 0, count: 16)
        unix += [6, 0, 0, 0, 0x2F, 0x73, 0, 0] + [12, 0, 4, 0, 7, 0, 0, 0, 0, 0, 0, 0]
        let bytes = Self.message(type: 20, inet) + Self.message(type: 20, unix) + Self.message(type: 3, [0, 0, 0, 0])
        let reply = SockDiag.parse(bytes)
        #expect(reply.done && !reply.failed && reply.payloads.count == 2)
        #expect(SockDiag.inetSourcePort(bytes, reply.payloads[0]) == 8080)
        let attrs = SockDiag.unixAttributes(bytes, reply.payloads[1])
        #expect(attrs.map(\.type) == [0, 4])
        #expect(Array(attrs[0].value) == [0x2F, 0x73] && SockDiag.u32(attrs[1].value) == 7)
        #expect(SockDiag.parse(Self.message(type: 2, [0xEF, 0xFF, 0xFF, 0xFF])).failed)
    }

    @Test func fuzzReplies() {
        var rng = SplitMix(seed: 0x5eed_0007)
        for _ in 0..<fuzzIterations {
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                bytes += Self.message(type: [20, 20, 3, 2, UInt16.random(in: 0...30, using: &rng)][Int.random(in: 0..<5, using: &rng)],
                                      (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            }
            if Bool.random(using: &rng), !bytes.isEmpty { bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            let reply = SockDiag.parse(bytes)
            for p in reply.payloads {
                #expect(p.upperBound <= bytes.count)
                _ = SockDiag.inetSourcePort(bytes, p)
                for a in SockDiag.unixAttributes(bytes, p) { _ = SockDiag.u32(a.value) }
            }
        }
    }
}

@Suite("unix_diag names")
struct UnixDiagNameTests {
    @Test func pathsCarryTheirNULAbstractNamesTheirLeadingOne() {
        let path = Array("/run/x.sock".utf8)
        #expect(SockDiag.unixName(ArraySlice(path + [0]), is: "/run/x.sock"))
        #expect(SockDiag.unixName(ArraySlice(path), is: "/run/x.sock"))
        #expect(!SockDiag.unixName(ArraySlice(path + [0]), is: "/run/x.soc"))
        #expect(SockDiag.unixName(ArraySlice([0] + Array("porter".utf8)), is: "@porter"))
        #expect(!SockDiag.unixName(ArraySlice(Array("porter".utf8)), is: "@porter"))
    }
}

/// The wire formats of porter's own sockets and the JSON that carries its
/// state: random input never crashes them, what they accept is whole, and
/// what the JSON printer writes the parser reads back equal.
@Suite("fuzzing porter's own wire formats")
struct OwnWireFuzzTests {
    static let jsonTokens: [[UInt8]] = [
        "{", "}", "[", "]", ",", ":", "\"", "\"a\"", "\"\\u00e9\"", "\"\\ud83d\\ude00\"", "\\", "\\u", "true", "false", "null",
        "0", "-1", "1.5e3", "18446744073709551616", " ", "\n", "\"k\":", "é",
    ].map { Array($0.utf8) } + [[0], [0xFF], [0xC3], [0x1F]]

    static func input(_ rng: inout SplitMix, _ tokens: [[UInt8]], max: Int) -> [UInt8] {
        var out: [UInt8] = []
        for _ in 0..<Int.random(in: 0...max, using: &rng) {
            if Int.random(in: 0..<12, using: &rng) == 0 { out.append(UInt8.random(in: 0...255, using: &rng)) }
            else { out += tokens[Int.random(in: 0..<tokens.count, using: &rng)] }
        }
        return out
    }

    @Test func json() throws {
        var rng = SplitMix(seed: 0x5eed_0010)
        for _ in 0..<fuzzIterations {
            let bytes = Self.input(&rng, Self.jsonTokens, max: 30)
            guard let v = try? JSON.parse(bytes) else { continue }
            // Accepted: it prints as something that parses back to itself.
            #expect(try JSON.parse(v.text) == v, "\(bytes)")
        }
    }

    @Test func controlRequests() {
        var rng = SplitMix(seed: 0x5eed_0011)
        let tokens: [[UInt8]] = ["porter/1", "porter/2", "porter/", " ", "\t", "\r", "\n", "status", "stop", "start", "reload",
                                 "upgrade", "version", "echo.socket", "a@.service", "x.path", "../x", "@", "é"].map { Array($0.utf8) } + [[0], [0xFF]]
        for _ in 0..<fuzzIterations {
            let bytes = Self.input(&rng, tokens, max: 8)
            _ = try? ControlRequest.lineEnd(bytes)
            guard let r = try? ControlRequest.parse(bytes) else { continue }
            // What parses names real units and says the same when sent again.
            #expect(r.units.allSatisfy { UnitName.parse($0) != nil })
            #expect((try? ControlRequest.parse(Array(r.line.utf8.dropLast()))) == r)
        }
    }

    @Test func httpRequests() {
        var rng = SplitMix(seed: 0x5eed_0012)
        let tokens: [[UInt8]] = ["GET", "HEAD", "POST", " ", "/metrics", "/", "?a", "HTTP/1.1", "HTTP/1.0", "\r\n", "\n",
                                 "Host: x", ":", "\t", "é"].map { Array($0.utf8) } + [[0], [0x7F], [0xFF]]
        for _ in 0..<fuzzIterations {
            let bytes = Self.input(&rng, tokens, max: 14)
            _ = try? HTTPRequest.headEnd(bytes)
            if let r = try? HTTPRequest.parse(bytes) {
                #expect(r.method == "GET" || r.method == "HEAD")
                #expect(r.path.hasPrefix("/") && !r.path.contains("?"))
            }
        }
    }

    @Test func porterConf() {
        var rng = SplitMix(seed: 0x5eed_0013)
        let tokens = fuzzTokens + ["[Porter]", "ControlSocket", "MetricsListen", "LogTarget", "syslog", "SyslogFacility", "local7"].map { Array($0.utf8) }
        for _ in 0..<fuzzIterations {
            let (_, d) = PorterSettings.parse(file: "porter.conf", bytes: Self.input(&rng, tokens, max: 30))
            #expect(d.allSatisfy { $0.file == "porter.conf" })
        }
    }
}
