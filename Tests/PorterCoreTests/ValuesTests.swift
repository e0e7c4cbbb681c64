import PorterCore
import Testing

@Suite("value syntaxes")
struct ValuesTests {
    @Test(arguments: ["1", "yes", "Y", "true", "t", "ON"]) func truthy(_ s: String) throws {
        #expect(try Values.boolean(s) == true)
    }

    @Test(arguments: ["0", "no", "N", "false", "f", "Off"]) func falsy(_ s: String) throws {
        #expect(try Values.boolean(s) == false)
    }

    static let spans: [(String, Int64?)] = [
        ("5s", 5_000_000_000), ("2min", 120_000_000_000), ("500ms", 500_000_000), ("90", 90_000_000_000),
        ("1h 30min", 5_400_000_000_000), ("1.5s", 1_500_000_000), ("10us", 10_000), ("2 min", 120_000_000_000),
        ("1d", 86_400_000_000_000), ("infinity", nil),
    ]

    @Test(arguments: spans) func timeSpans(_ text: String, _ ns: Int64?) throws {
        let t = try Values.timeSpan(text)
        #expect(t.duration?.nanoseconds == ns)
        #expect((t == .never) == (ns == nil))
    }

    @Test(arguments: ["", "s", "5x", "-1s"]) func badTimeSpans(_ text: String) {
        #expect(throws: ValueError.self) { try Values.timeSpan(text) }
    }

    @Test func sizes() throws {
        #expect(try Values.size("1024") == 1024)
        #expect(try Values.size("4K") == 4096)
        #expect(try Values.size("1.5M") == 1_572_864)
        #expect(try Values.size("1G") == 1_073_741_824)
        #expect(throws: ValueError("size '3G' too large, at most 2G")) { try Values.size("3G") }
        #expect(throws: ValueError.self) { try Values.size("4X") }
    }

    @Test func signals() throws {
        #expect(try Values.signal("SIGTERM") == 15)
        #expect(try Values.signal("HUP") == 1)
        #expect(try Values.signal("9") == 9)
        #expect(try Values.signal("SIGRTMIN+2") == 36)
        #expect(Values.signalName(15) == "SIGTERM")
        #expect(Values.signalName(36) == "SIGRTMIN+2")
        #expect(throws: ValueError.self) { try Values.signal("65") }
    }

    @Test func modes() throws {
        #expect(try Values.mode("0666") == 0o666)
        #expect(try Values.mode("755") == 0o755)
        #expect(throws: ValueError.self) { try Values.mode("rw") }
    }

    @Test func durationsPrint() {
        #expect(Duration.seconds(90).porterDescription == "90s")
        #expect(Duration.milliseconds(1500).porterDescription == "1.5s")
        #expect(Duration.milliseconds(250).porterDescription == "250ms")
        #expect(Duration.nanoseconds(9_996_761_207).porterDescription == "10.0s")
    }
}

@Suite("addresses")
struct ListenAddressTests {
    static let good: [(String, SocketKind, String)] = [
        ("80", .stream, "80"),
        ("127.0.0.1:8080", .stream, "127.0.0.1:8080"),
        ("0.0.0.0:53", .datagram, "0.0.0.0:53"),
        ("[::1]:8080", .stream, "[::1]:8080"),
        ("[::]:8080", .stream, "[::]:8080"),
        ("[fe80::1%lo]:8080", .stream, "[fe80::1%lo]:8080"),
        ("/run/echo.sock", .stream, "/run/echo.sock"),
        ("@porter-test", .sequentialPacket, "@porter-test"),
    ]

    @Test(arguments: good) func parses(_ text: String, _ kind: SocketKind, _ printed: String) throws {
        #expect(try ListenAddress.parse(text, kind: kind).description == printed)
    }

    @Test func unixPathLimit() {
        let long = "/" + String(repeating: "a", count: 107)
        #expect(throws: ValueError("path '\(long)' too long (108 bytes), at most 107 for a Unix socket")) {
            try ListenAddress.parse(long, kind: .stream)
        }
    }
}

@Suite("quoting and command lines")
struct QuotingTests {
    static let splits: [(String, [String])] = [
        ("a b  c", ["a", "b", "c"]),
        ("\"a b\" c", ["a b", "c"]),
        ("'a b' c", ["a b", "c"]),
        ("a\"b c\"d", ["ab cd"]),
        ("\"\" x", ["", "x"]),
        ("a\\tb", ["a\tb"]),
        ("a\\sb", ["a b"]),
        ("\\x41\\102\\u00e9", ["AB\u{e9}"]),
        ("\"say \\\"hi\\\"\"", ["say \"hi\""]),
    ]

    @Test(arguments: splits) func splitsWords(_ text: String, _ words: [String]) throws {
        #expect(try Quoting.split(text).map(\.text) == words)
    }

    @Test func execPrefixes() throws {
        let c = try ExecCommand.parse("-@/bin/sh sh -c 'echo $$'")[0]
        #expect(c.ignoreFailure)
        #expect(c.path == "/bin/sh")
        #expect(c.arguments == ["sh", "-c", "echo $$"])
        let plain = try ExecCommand.parse("/usr/bin/cat -n")[0]
        #expect(plain.arguments == ["/usr/bin/cat", "-n"])
        #expect(!plain.ignoreFailure && plain.expandEnvironment)
        #expect(try ExecCommand.parse(":/bin/echo $X")[0].expandEnvironment == false)
        #expect(try ExecCommand.parse("+/bin/id")[0].fullPrivileges)
        #expect(try ExecCommand.parse("/bin/echo \\;")[0].arguments == ["/bin/echo", ";"])
    }

    @Test func environmentSubstitution() {
        let env = ["FOO": "one two", "BAR": "x", "QUOTED": "'a b' c"]
        let lookup: (Substring) -> String? = { env[String($0)] }
        #expect(EnvironmentExpansion.expand("$FOO", lookup) == ["one", "two"])
        #expect(EnvironmentExpansion.expand("${FOO}", lookup) == ["one two"])
        #expect(EnvironmentExpansion.expand("--x=${BAR}y", lookup) == ["--x=xy"])
        #expect(EnvironmentExpansion.expand("--x=$BAR", lookup) == ["--x=$BAR"])
        #expect(EnvironmentExpansion.expand("$MISSING", lookup) == [])
        #expect(EnvironmentExpansion.expand("${MISSING}", lookup) == [""])
        #expect(EnvironmentExpansion.expand("$$BAR", lookup) == ["$BAR"])
        #expect(EnvironmentExpansion.expand("$QUOTED", lookup) == ["a b", "c"])
        #expect(EnvironmentExpansion.expand("${MISSING:-dflt}", lookup) == ["dflt"])
        #expect(EnvironmentExpansion.expand("${BAR:+alt}", lookup) == ["alt"])
    }

    @Test func environmentFiles() {
        var warnings: [String] = []
        let pairs = EnvironmentParsing.file("""
            # comment
            ; another
            A=1
              B = two words  
            C="quoted \\"x\\" \\$HOME"
            D='single $x'
            E=con\\
            tinued
            bad line
            1X=no
            F=
            """) { line, message in warnings.append("\(line): \(message)") }
        let d = Dictionary(pairs, uniquingKeysWith: { $1 })
        #expect(d["A"] == "1")
        #expect(d["B"] == "two words")
        #expect(d["C"] == "quoted \"x\" $HOME")
        #expect(d["D"] == "single $x")
        #expect(d["E"] == "continued")
        #expect(d["F"] == "")
        #expect(d.count == 6)
        #expect(warnings == ["9: line without '=', expected KEY=VALUE; ignoring it", "10: invalid variable name '1X', ignoring the line"])
    }

    @Test func environmentAssignments() throws {
        var warnings: [String] = []
        let pairs = try EnvironmentParsing.assignments("A=1 \"B=two words\" nonsense 'C=$x'") { warnings.append($0) }
        #expect(pairs.map { "\($0.0)=\($0.1)" } == ["A=1", "B=two words", "C=$x"])
        #expect(warnings == ["invalid environment assignment 'nonsense', expected NAME=value; ignoring it"])
    }
}

@Suite("specifiers and unit names")
struct SpecifierTests {
    let host = HostFacts(hostname: "box.example.org", userName: "root", uid: 0, home: "/root", runtimeDirectory: "/run")

    @Test func unitNames() {
        let t = UnitName.parse("echo@.service")!
        #expect(t.isTemplate && t.prefix == "echo" && t.type == .service)
        let i = UnitName.parse("echo@0-1-127.0.0.1:7-127.0.0.1:5.service")!
        #expect(i.instance == "0-1-127.0.0.1:7-127.0.0.1:5")
        #expect(UnitName.parse("bad name.socket") == nil)
        #expect(UnitName.parse("readme.txt") == nil)
        #expect(UnitName.unescape("a-b\\x2dc") == "a/b-c")
    }

    @Test func expands() throws {
        let unit = UnitName(prefix: "web-front", instance: "x-y", type: .service)
        let s = Specifiers(unit: unit, host: host)
        #expect(try s.expand("%n %N %p %P %i %I") == "web-front@x-y.service web-front@x-y web-front web/front x-y x/y")
        #expect(try s.expand("%t/%h/%H/%l/%u/%U/%%/%j") == "/run//root/box.example.org/box/root/0/%/front")
        #expect(try s.expand("%f") == "/x/y")
        #expect(Specifiers.dependsOnInstance("a%ib"))
        #expect(!Specifiers.dependsOnInstance("a%%ib %t"))
    }

    @Test func connectionNamesAndVariables() {
        let tcp = Connection(number: 3, cookie: 4097, peer: .ip(local: "127.0.0.1", localPort: 7, remote: "127.0.0.1", remotePort: 40000, ipv6: false))
        #expect(tcp.instanceName == "3-4097-127.0.0.1:7-127.0.0.1:40000")
        let env = Dictionary(tcp.environment, uniquingKeysWith: { $1 })
        #expect(env["REMOTE_ADDR"] == "127.0.0.1" && env["REMOTE_PORT"] == "40000")
        #expect(env["PROTO"] == "TCP" && env["TCPLOCALPORT"] == "7" && env["TCPREMOTEIP"] == "127.0.0.1")
        let v6 = Connection(number: 0, cookie: 1, peer: .ip(local: "::1", localPort: 7, remote: "::1", remotePort: 9, ipv6: true))
        #expect(v6.instanceName == "0-1-::1:7-::1:9")
        #expect(Dictionary(v6.environment, uniquingKeysWith: { $1 })["PROTO"] == "TCP6")
        let unix = Connection(number: 1, cookie: 2, peer: .unix(pid: 100, uid: 0, gid: 0, pidfdID: 555))
        #expect(unix.instanceName == "1-2-100_555-0")
        #expect(Connection(number: 1, cookie: 2, peer: .unix(pid: 100, uid: 5, gid: 5, pidfdID: nil)).instanceName == "1-2-100-5")
        #expect(Connection(number: 1, cookie: 2, peer: .unknown).instanceName == "1-2-unknown")
    }
}
