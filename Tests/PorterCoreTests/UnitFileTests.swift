import PorterCore
import Testing

/// Reads a one-file configuration and returns every diagnostic as text.
func diagnostics(_ name: String, _ text: String, extra: [(String, String)] = []) -> [String] {
    let files = [(name, text)] + extra
    return Configuration.load(files: files.map { (name: $0.0, text: $0.1) }, host: HostFacts()).diagnostics.map {
        "\($0.severity.rawValue): \($0.description)"
    }
}

let okService = ("echo@.service", "[Service]\nExecStart=/bin/cat\nStandardInput=socket\n")
let okPlainService = ("echo.service", "[Service]\nExecStart=/bin/cat\n")

@Suite("unit file syntax")
struct UnitFileTests {
    @Test func sectionsAssignmentsCommentsAndContinuations() {
        var d = Diagnostics(file: "a.socket")
        let f = UnitFile.parse(fileName: "a.socket", text: """
            # comment
            ; also a comment
            [Socket]
              ListenStream = 127.0.0.1:80
            Accept=yes\\
            # comments inside a continuation are skipped
              no
            Empty=

            [Install]
            WantedBy=sockets.target
            """, diagnostics: &d)
        #expect(d.all.isEmpty)
        #expect(f.sections.map(\.name) == ["Socket", "Install"])
        let a = f.sections[0].assignments
        #expect(a.map(\.key) == ["ListenStream", "Accept", "Empty"])
        #expect(a[0].value == "127.0.0.1:80")
        #expect(a[1].value == "yes no")
        #expect(a[1].line == 5)
        #expect(a[2].value == "")
    }

    @Test func crlfLineEndings() {
        var d = Diagnostics(file: "a.socket")
        let f = UnitFile.parse(fileName: "a.socket", text: "[Socket]\r\nAccept=yes\r\n", diagnostics: &d)
        #expect(f.sections[0].assignments[0].value == "yes")
    }

    /// Malformed inputs and the exact message each one gets.
    static let malformed: [(String, String, String)] = [
        ("echo.socket", "ListenStream=80\n",
         "error: echo.socket:1: ListenStream: assignment outside of any section, expected a [Section] header first"),
        ("echo.socket", "[Socket\nListenStream=80\n",
         "error: echo.socket:1: invalid section header '[Socket', expected [Name]"),
        ("echo.socket", "[Socket]\nListenStream 80\n",
         "error: echo.socket:2: missing '=', expected Key=Value"),
        ("echo.socket", "[Socket]\n=80\n",
         "error: echo.socket:2: missing key before '='"),
        ("echo.socket", "[Socket]\nListenStream=70000\n",
         "error: echo.socket:2: ListenStream: port 70000 out of range 1-65535"),
        ("echo.socket", "[Socket]\nListenStream=0\n",
         "error: echo.socket:2: ListenStream: port 0 out of range 1-65535"),
        ("echo.socket", "[Socket]\nListenStream=127.0.0.1:http\n",
         "error: echo.socket:2: ListenStream: invalid port 'http', expected a number 1-65535"),
        ("echo.socket", "[Socket]\nListenStream=localhost:80\n",
         "error: echo.socket:2: ListenStream: invalid IPv4 address 'localhost' in 'localhost:80', expected a.b.c.d:port"),
        ("echo.socket", "[Socket]\nListenStream=::1:80\n",
         "error: echo.socket:2: ListenStream: '::1:80': an IPv6 address needs brackets, expected [IPv6]:port"),
        ("echo.socket", "[Socket]\nListenStream=[::1]\n",
         "error: echo.socket:2: ListenStream: '[::1]' has no port, expected [IPv6]:port"),
        ("echo.socket", "[Socket]\nListenStream=[::g]:80\n",
         "error: echo.socket:2: ListenStream: invalid IPv6 address '::g' in '[::g]:80'"),
        ("echo.socket", "[Socket]\nListenStream=relative/path\n",
         "error: echo.socket:2: ListenStream: invalid address 'relative/path', expected a port, IPv4:port, [IPv6]:port, /path or @abstract"),
        ("echo.socket", "[Socket]\nListenSequentialPacket=127.0.0.1:80\n",
         "error: echo.socket:2: ListenSequentialPacket: '127.0.0.1:80': sequential packet sockets are Unix only, expected /path or @abstract"),
        ("echo.socket", "[Socket]\nListenStream=80\nAccept=maybe\n",
         "error: echo.socket:3: Accept: invalid boolean 'maybe', expected yes/no, true/false, on/off or 1/0"),
        ("echo.socket", "[Socket]\nListenStream=80\nBacklog=-1\n",
         "error: echo.socket:3: Backlog: -1 out of range 0-2147483647"),
        ("echo.socket", "[Socket]\nListenStream=80\nSocketMode=0999\n",
         "error: echo.socket:3: SocketMode: invalid mode '0999', expected an octal access mode such as 0666"),
        ("echo.socket", "[Socket]\nListenStream=80\nReceiveBuffer=12Q\n",
         "error: echo.socket:3: ReceiveBuffer: invalid size '12Q', expected bytes with an optional K, M or G suffix (base 1024)"),
        ("echo.socket", "[Socket]\nListenStream=80\nBindIPv6Only=sometimes\n",
         "error: echo.socket:3: BindIPv6Only: invalid value 'sometimes', expected default, both or ipv6-only"),
        ("echo.socket", "[Socket]\nListenStream=80\nMaxConnections=0\n",
         "error: echo.socket:3: MaxConnections: 0 out of range 1-1000000"),
        ("echo.socket", "[Socket]\nListenStream=80\nFileDescriptorName=a:b\n",
         "error: echo.socket:3: FileDescriptorName: invalid name 'a:b', expected at most 255 printable ASCII characters without ':'"),
        ("echo.socket", "[Socket]\nListenStream=%t/x%\n",
         "error: echo.socket:2: ListenStream: '%t/x%' ends in a lone '%', write %% for a percent sign"),
        ("echo.socket", "[Socket]\nListenStream=%z/x\n",
         "error: echo.socket:2: ListenStream: unknown specifier '%z' in '%z/x', write %% for a percent sign"),
        ("echo.socket", "[Socket]\nAccept=yes\n",
         "error: echo.socket: no ListenStream=, ListenDatagram= or ListenSequentialPacket= line; nothing to listen on"),
        ("echo.socket", "[Socket]\nListenDatagram=127.0.0.1:69\nAccept=yes\n",
         "error: echo.socket:2: ListenDatagram: Accept=yes needs connection sockets; datagram sockets cannot be accepted, expected Accept=no"),
        ("echo.socket", "[Socket]\nListenStream=80\nListenFIFO=/run/fifo\n",
         "error: echo.socket:3: ListenFIFO: not supported: porter does not listen on FIFOs yet"),
    ]

    @Test(arguments: malformed)
    func malformedSocketInputs(_ file: String, _ text: String, _ expected: String) {
        let all = diagnostics(file, text, extra: [okPlainService])
        #expect(all.contains(expected), "got \(all)")
    }

    static let malformedServices: [(String, String)] = [
        ("[Service]\nExecStart=\n",
         "error: echo.service: no ExecStart= line; nothing to run"),
        ("[Service]\nExecStart=bin/cat\n",
         "error: echo.service:2: ExecStart: executable path 'bin/cat' is not absolute, expected /path/to/program or a plain name found in PATH"),
        ("[Service]\nExecStart=/bin/echo \"unterminated\n",
         "error: echo.service:2: ExecStart: unbalanced quoting in '/bin/echo \"unterminated', expected a closing \""),
        ("[Service]\nExecStart=/bin/echo \\q\n",
         "error: echo.service:2: ExecStart: invalid escape '\\q' in '/bin/echo \\q'"),
        ("[Service]\nExecStart=/bin/true\nExecStart=/bin/false\n",
         "error: echo.service:3: ExecStart: more than one command, which only Type=oneshot may have (systemd's rule); expected one ExecStart= or Type=oneshot"),
        ("[Service]\nExecStart=/bin/true ; /bin/false\n",
         "error: echo.service:2: ExecStart: more than one command, which only Type=oneshot may have (systemd's rule); expected one ExecStart= or Type=oneshot"),
        ("[Service]\nExecStart=|/bin/true\n",
         "error: echo.service:2: ExecStart: the '|' command prefix (run through the user's shell) is not supported by porter; write the shell out: /bin/sh -c '...'"),
        ("[Service]\nExecStart=/bin/true\nType=dbus\n",
         "error: echo.service:3: Type: Type=dbus needs a D-Bus bus name to appear, and porter has no bus; expected simple, exec, notify, notify-reload, oneshot or forking"),
        ("[Service]\nExecStart=/bin/true\nUser=no body\n",
         "error: echo.service:3: User: invalid user name 'no body', expected a name or a numeric id"),
        ("[Service]\nExecStart=/bin/true\nType=notify-reload\nReloadSignal=SIGNOPE\n",
         "error: echo.service:4: ReloadSignal: invalid signal 'SIGNOPE', expected a name such as SIGTERM or a number 1-64"),
        ("[Service]\nExecStart=/bin/true\nFileDescriptorStorePreserve=maybe\n",
         "error: echo.service:3: FileDescriptorStorePreserve: invalid value 'maybe', expected no, restart or yes"),
        ("[Service]\nExecStart=/bin/true\nRestartMode=sometimes\n",
         "error: echo.service:3: RestartMode: invalid value 'sometimes', expected normal, direct or debug"),
        ("[Service]\nExecStart=/bin/true\nKillSignal=SIGFOO\n",
         "error: echo.service:3: KillSignal: invalid signal 'SIGFOO', expected a name such as SIGTERM or a number 1-64"),
        ("[Service]\nExecStart=/bin/true\nTimeoutStopSec=5 parsecs\n",
         "error: echo.service:3: TimeoutStopSec: invalid time span '5 parsecs', expected a number with an optional unit (us, ms, s, min, h, d), e.g. 5s, 2min, 500ms, or infinity"),
        ("[Service]\nExecStart=/bin/true\nStandardOutput=tty\n",
         "error: echo.service:3: StandardOutput: 'tty' is not supported by porter, expected inherit, null, socket, journal, file:PATH, append:PATH or truncate:PATH"),
        ("[Service]\nExecStart=/bin/true\nStandardInput=tty\n",
         "error: echo.service:3: StandardInput: 'tty' is not supported by porter, expected null, socket, file:PATH or file-trigger"),
        ("[Service]\nExecStart=/bin/true\nPrivateTmp=yes\n",
         "error: echo.service:3: needs PrivateTmp= (echo.service:3): porter cannot provide it yet and will not run the unit less safely than it asks (these need namespaces, cgroups, capabilities or seccomp)"),
        // Every such key in one message, each with its line.
        ("[Service]\nExecStart=/bin/true\nMemoryMax=100M\nProtectSystem=strict\nPrivateTmp=yes\nMemoryMax=200M\n",
         "error: echo.service:3: needs MemoryMax= (echo.service:3), ProtectSystem= (echo.service:4), PrivateTmp= (echo.service:5): porter cannot provide it yet and will not run the unit less safely than it asks (these need namespaces, cgroups, capabilities or seccomp)"),
        ("[Service]\nExecStart=/bin/true\nType=forking\nPIDFile=/run/../x.pid\n",
         "error: echo.service:4: PIDFile: '/run/../x.pid' is not a file path, expected /run/NAME.pid or NAME.pid"),
        ("[Service]\nExecStart=/bin/true\nRestartSteps=many\n",
         "error: echo.service:3: RestartSteps: invalid value 'many', expected a number of restarts 0-3000"),
        ("[Unit]\nConditionPathIsEncrypted=/etc\n[Service]\nExecStart=/bin/true\n",
         "error: echo.service:2: ConditionPathIsEncrypted: not supported: porter cannot tell yet whether a path's block device is encrypted; the unit is refused rather than started when it should not be"),
        ("[Service]\nExecStart=/bin/true\nRestart=sometimes\n",
         "error: echo.service:3: Restart: invalid value 'sometimes', expected no, on-success, on-failure, on-abnormal, on-abort, on-watchdog or always"),
        ("[Service]\nExecStart=/bin/true\nIdleTimeoutSec=soon\n",
         "error: echo.service:3: IdleTimeoutSec: invalid time span 'soon', expected a number with an optional unit (us, ms, s, min, h, d), e.g. 5s, 2min, 500ms, or infinity"),
        ("[Service]\nExecStart=/bin/true\nNotifyAccess=some\n",
         "error: echo.service:3: NotifyAccess: invalid value 'some', expected none, main, exec or all"),
        ("[Service]\nExecStart=/bin/true\nWorkingDirectory=relative\n",
         "error: echo.service:3: WorkingDirectory: 'relative' is not an absolute path, expected /path, -/path or ~"),
        ("[Service]\nExecStart=/bin/true\nStandardOutput=file:relative\n",
         "error: echo.service:3: StandardOutput: 'relative' is not an absolute path, expected file:/path"),
    ]

    @Test(arguments: malformedServices)
    func malformedServiceInputs(_ text: String, _ expected: String) {
        let all = diagnostics("echo.service", text, extra: [("echo.socket", "[Socket]\nListenStream=80\n")])
        #expect(all.contains(expected), "got \(all)")
        #expect(all.contains("error: echo.socket: refused because echo.service has errors"))
    }

    static let warnings: [(String, String)] = [
        ("[Socket]\nListenStream=80\nListenStrem=81\n",
         "warning: echo.socket:3: ListenStrem: unknown key in [Socket] ignored; did you mean ListenStream=?"),
        ("[Socket]\nListenStream=80\nFrobnicate=yes\n",
         "warning: echo.socket:3: Frobnicate: unknown key in [Socket] ignored"),
        ("[Socket]\nListenStream=80\n[Sockets]\nAccept=yes\n",
         "warning: echo.socket:3: unknown section [Sockets] ignored, expected [Unit], [Socket] or [Install]"),
        ("[Unit]\nRequires=network.target\n[Socket]\nListenStream=80\n",
         "warning: echo.socket:2: Requires: ignored: porter starts each unit on its own activity"),
        ("[Socket]\nListenStream=80\nTCPCongestion=bbr\n",
         "warning: echo.socket:3: TCPCongestion: ignored: porter does not set it yet; the socket works with the kernel's default"),
    ]

    @Test(arguments: warnings)
    func harmlessUnknownKeysWarn(_ text: String, _ expected: String) {
        let all = diagnostics("echo.socket", text, extra: [okPlainService])
        #expect(all == [expected])
    }

    @Test func bannersNeedAConnectionPorterAccepts() {
        #expect(diagnostics("echo.socket", "[Socket]\nListenStream=80\nAccept=yes\nBanner=/etc/issue.net\nBannerFail=/etc/no\n", extra: [okService]).isEmpty)
        #expect(diagnostics("echo.socket", "[Socket]\nListenStream=80\nBanner=issue\n", extra: [okPlainService])
                .contains("error: echo.socket:3: Banner: 'issue' is not an absolute file path, expected /path/to/banner"))
        #expect(diagnostics("echo.socket", "[Socket]\nListenStream=80\nBannerSuccess=/etc/issue\n", extra: [okPlainService])
                == ["warning: echo.socket: BannerSuccess: has no effect with Accept=no: the service accepts the connections, porter writes banners only to those it accepts (Accept=yes, InternalService=, ProxyTo=)"])
        #expect(diagnostics("echo.socket", "[Socket]\nListenStream=80\nBanner=/etc/issue\n",
                            extra: [("echo.service", "[Service]\nProxyTo=127.0.0.1:8080\n")]).isEmpty, "a proxied socket is accepted by porter")
        #expect(diagnostics("echo.socket", "[Socket]\nListenDatagram=80\nInternalService=echo\nBanner=/etc/issue\n")
                == ["warning: echo.socket: Banner: has no effect: datagram sockets have no connection to write a banner to"])
    }

    @Test func knownHarmlessKeysAreSilent() {
        let all = diagnostics("echo.socket", """
            [Unit]
            Description=Echo
            Documentation=man:echo(1)
            After=network.target
            [Socket]
            ListenStream=80
            X-Custom=whatever
            [Install]
            WantedBy=sockets.target
            """, extra: [okPlainService])
        #expect(all.isEmpty)
    }
}

/// F9 (issue 8): bytes are refused, never repaired or cut.
@Suite("text checks and quoting")
struct TextCheckTests {
    static func parse(_ bytes: [UInt8]) -> [String] {
        var d = Diagnostics(file: "a.service")
        _ = UnitFile.parse(fileName: "a.service", bytes: bytes, diagnostics: &d)
        return d.all.map(\.description)
    }

    @Test func nulAndInvalidUTF8LinesAreRefused() {
        #expect(Self.parse(Array("[Service]\nExecStart=/bin/echo a".utf8) + [0] + Array("b\n".utf8))
                == ["a.service:2: ExecStart: NUL byte in this line, refused (expected UTF-8 text without NUL)"])
        #expect(Self.parse(Array("[Service]\nUser=nob".utf8) + [0xC3, 0x28] + Array("\n".utf8))
                == ["a.service:2: User: invalid UTF-8 in this line, refused (expected UTF-8 text without NUL)"])
        #expect(Self.parse(Array("[Service]\n".utf8) + [0xFF] + Array("=x\n".utf8))
                == ["a.service:2: invalid UTF-8 in this line, refused (expected UTF-8 text without NUL)"])
        // Valid UTF-8 and comments with any bytes are fine.
        #expect(Self.parse(Array("[Service]\n# \u{FF}".utf8) + [0xFF] + Array("\nDescription=Grüße\n".utf8)).isEmpty)
    }

    @Test func refusedLineMakesTheUnitAnError() {
        let c = Configuration.load(files: [(name: "a.service", text: "[Service]\nExecStart=/bin/true\nUser=\u{0}x\n")], host: HostFacts())
        #expect(c.refused.contains(UnitName.parse("a.service")!))
    }

    @Test func quotedValuesAreEscapedAndBounded() {
        #expect(Quote.value("plain") == "'plain'")
        #expect(Quote.value("a\u{1B}[31mb") == "'a\\x1b[31mb'")
        let long = Quote.value(String(repeating: "x", count: 100_000))
        #expect(long.utf8.count < 250)
        #expect(long.hasSuffix("…(100000 bytes)'"))
        #expect(Quote.escaped(bytes: Array("b".utf8) + [0xFF] + Array("é.socket".utf8)) == "b\\xffé.socket")
    }

    @Test func errorsPerFileAreCapped() {
        var d = Diagnostics(file: "junk.service")
        for i in 0..<100 { d.error(i + 1, nil, "bad") }
        #expect(d.all.count == Diagnostics.maxShown + 1)
        #expect(d.all.last?.description == "junk.service: 80 more problems in this file not shown")
        #expect(d.hasErrors)
    }

    @Test func longValueInAnErrorIsCut() {
        let out = diagnostics("a.socket", "[Socket]\nListenStream=" + String(repeating: "x", count: 100_000) + "\n")
        #expect(out.count == 1 && out[0].utf8.count < 400, "\(out.first?.utf8.count ?? 0) bytes")
    }
}

@Suite("abstract name length")
struct AbstractNameTests {
    /// Linux and systemd take 107 bytes of abstract name (sun_path less the leading NUL).
    @Test func abstractNamesUpTo107Bytes() throws {
        let ok = "@" + String(repeating: "a", count: 107)
        #expect(try ListenAddress.parse(ok, kind: .stream) == .abstract(String(repeating: "a", count: 107)))
        #expect(throws: ValueError.self) { try ListenAddress.parse(ok + "a", kind: .stream) }
    }
}

@Suite("log rate limit")
struct LogRateLimitTests {
    @Test func burstThenCountedThenSaid() {
        var limit = LogRateLimit(interval: .seconds(10), burst: 2)
        let t0 = Instant(nanoseconds: 1_000_000_000)
        #expect(limit.admit(now: t0) == "")
        #expect(limit.admit(now: t0) == "")
        #expect(limit.admit(now: t0) == nil)
        #expect(limit.admit(now: t0 + .seconds(5)) == nil)
        #expect(limit.admit(now: t0 + .seconds(10)) == " (2 similar lines left out)")
        #expect(limit.admit(now: t0 + .seconds(10)) == "")
    }
}
