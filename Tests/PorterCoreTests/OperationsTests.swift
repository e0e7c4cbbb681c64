import PorterCore
import Testing

@Suite("control requests")
struct ControlRequestTests {
    @Test(arguments: [
        ("porter/1 status", ControlRequest(.status)),
        ("porter/1 status echo.socket hello.service\r", ControlRequest(.status, ["echo.socket", "hello.service"])),
        ("porter/1\tstop  echo@.service", ControlRequest(.stop, ["echo@.service"])),
        ("porter/1 reload", ControlRequest(.reload)),
        ("porter/1 reload hello.service", ControlRequest(.reload, ["hello.service"])),
        ("porter/1 upgrade", ControlRequest(.upgrade)),
    ])
    func parses(_ line: String, _ expected: ControlRequest) throws {
        #expect(try ControlRequest.parse(Array(line.utf8)) == expected)
        #expect(try ControlRequest.parse(Array(expected.line.utf8.dropLast())) == expected)
    }

    @Test(arguments: [
        ("GET / HTTP/1.0", "not a porter control request"),
        ("porter/2 status", "protocol version 2 is not spoken here; this porter speaks 1"),
        ("porter/x status", "not a porter control request"),
        ("porter/1 restart echo.socket", "unknown request 'restart'"),
        ("porter/1 stop", "stop takes exactly one unit"),
        ("porter/1 stop a.socket b.socket", "stop takes exactly one unit"),
        ("porter/1 upgrade now.service", "upgrade takes no unit"),
        ("porter/1 status ../etc", "is not a unit name"),
        ("porter/1 status a\u{7}.socket", "a control character"),
        ("porter/1", "missing request"),
    ])
    func refuses(_ line: String, _ reason: String) {
        do {
            _ = try ControlRequest.parse(Array(line.utf8))
            Issue.record("parsed \(line)")
        } catch {
            #expect(error.description.contains(reason), "\(error)")
        }
    }

    @Test func refusesBytesThatAreNotText() {
        #expect(throws: ControlRequest.Problem.self) { try ControlRequest.parse([0x70, 0x00, 0x31]) }
        #expect(throws: ControlRequest.Problem.self) { try ControlRequest.parse([0x70, 0xFF]) }
        #expect(throws: ControlRequest.Problem.self) { try ControlRequest.parse([UInt8](repeating: 0x61, count: 5000)) }
    }

    @Test func framing() throws {
        #expect(try ControlRequest.lineEnd(Array("porter/1 st".utf8)) == nil)
        #expect(try ControlRequest.lineEnd(Array("porter/1 status\nrest".utf8)) == 15)
        #expect(throws: ControlRequest.Problem.tooLong) { try ControlRequest.lineEnd([UInt8](repeating: 0x61, count: 4096)) }
    }

    @Test func replyRoundTrip() throws {
        let ok = ControlReply(result: .object(["a": .int(1)]))
        let back = try ControlReply.parse(Array(ok.json.text.utf8))
        #expect(back.ok && back.result == .object(["a": .int(1)]))
        let no = try ControlReply.parse(Array(ControlReply(error: "no such unit: x.socket").json.text.utf8))
        #expect(!no.ok && no.error == "no such unit: x.socket")
        #expect(throws: (any Error).self) { try ControlReply.parse(Array("{}".utf8)) }
    }
}

@Suite("HTTP requests")
struct HTTPRequestTests {
    @Test func parsesAGetAndItsEnd() throws {
        let text = "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"
        let bytes = Array(text.utf8)
        #expect(try HTTPRequest.headEnd(Array(bytes.dropLast(2))) == nil)
        let end = try #require(try HTTPRequest.headEnd(bytes))
        #expect(end == bytes.count)
        #expect(try HTTPRequest.parse(bytes[..<end]) == HTTPRequest(method: "GET", path: "/metrics"))
        #expect(try HTTPRequest.parse(Array("HEAD / HTTP/1.0\n\n".utf8)) == HTTPRequest(method: "HEAD", path: "/"))
    }

    @Test(arguments: [
        ("POST /metrics HTTP/1.1\r\n\r\n", 405), ("GET /metrics HTTP/2\r\n\r\n", 505), ("GET metrics HTTP/1.1\r\n\r\n", 400),
        ("GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", 400), ("GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", 400),
        ("GET  /metrics HTTP/1.1\r\n\r\n", 400), ("\r\n\r\n", 400), ("get /metrics HTTP/1.1\r\n\r\n", 400),
    ])
    func refuses(_ text: String, _ status: Int) {
        do {
            _ = try HTTPRequest.parse(Array(text.utf8))
            Issue.record("parsed \(text)")
        } catch {
            #expect(error.status == status, "\(text): \(error)")
        }
    }

    @Test func tooLongIsRefusedBeforeItEnds() {
        #expect(throws: HTTPRequest.Refusal.self) { try HTTPRequest.headEnd([UInt8](repeating: 0x41, count: HTTPRequest.maxHead)) }
    }

    @Test func response() {
        let r = String(decoding: HTTPRequest.response(status: 200, reason: "OK", contentType: "text/plain", body: "hé\n"), as: UTF8.self)
        #expect(r == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\nhé\n")
        let head = HTTPRequest.response(status: 200, reason: "OK", contentType: "text/plain", body: "abc", head: true)
        #expect(String(decoding: head, as: UTF8.self).hasSuffix("Content-Length: 3\r\nConnection: close\r\n\r\n"))
    }
}

@Suite("porter.conf")
struct PorterSettingsTests {
    @Test func readsEveryKey() {
        let (s, d) = PorterSettings.parse(file: "porter.conf", bytes: Array("""
            [Porter]
            ControlSocket=/run/x/control
            MetricsListen=127.0.0.1:9464
            LogTarget=syslog
            LogLevel=debug
            SyslogFacility=local3
            SyslogFormat=rfc5424
            SyslogSocket=/tmp/log.sock
            """.utf8))
        #expect(d.isEmpty, "\(d)")
        #expect(s.controlSocket == .path("/run/x/control"))
        #expect(s.metricsListen == .ipv4(address: [127, 0, 0, 1], port: 9464))
        #expect(s.logTarget == .syslog && s.logLevel == .debug && s.syslogFormat == .rfc5424)
        #expect(s.syslogFacility.code == 19 && s.syslogSocket == "/tmp/log.sock")
        #expect(s.at("MetricsListen") == "porter.conf:3: MetricsListen")
    }

    @Test func errorsNameFileLineAndWhatWasExpected() {
        let (s, d) = PorterSettings.parse(file: "porter.conf", bytes: Array("""
            [Porter]
            MetricsListen=/run/metrics.sock
            ControlSokcet=/x
            LogTarget=journald
            ControlSocket=relative
            MetricsListen=127.0.0.1:70000
            """.utf8))
        #expect(d.map(\.description) == [
            "porter.conf:2: MetricsListen: '/run/metrics.sock' is not a TCP address, expected IPv4:port, [IPv6]:port or a port",
            "porter.conf:3: ControlSokcet: unknown key in [Porter] ignored; did you mean ControlSocket=?",
            "porter.conf:4: LogTarget: invalid value 'journald', expected auto, stderr, journal or syslog",
            "porter.conf:5: ControlSocket: invalid value 'relative', expected an absolute path, none, or empty for the default",
            "porter.conf:6: MetricsListen: port 70000 out of range 1-65535",
        ])
        #expect(s == PorterSettings() || s.lines.count > 0)
        #expect(s.metricsListen == nil && s.controlSocket == .standard && s.logTarget == .auto)
        let (off, _) = PorterSettings.parse(file: "porter.conf", bytes: Array("[Porter]\nControlSocket=none\n".utf8))
        #expect(off.controlSocket == .disabled)
    }
}

@Suite("syslog lines")
struct SyslogLineTests {
    let t = SyslogLine.WallTime(year: 2026, month: 12, day: 3, hour: 9, minute: 5, second: 7, microsecond: 42, utcOffsetMinutes: 60)

    @Test func rfc3164AsGlibcWritesIt() {
        let line = SyslogLine.format(.warning, "echo.socket: hi\nthere", facility: .daemon, rfc5424: false, time: t,
                                     hostname: "h", tag: "porter", pid: 7)
        #expect(line == "<28>Dec  3 09:05:07 porter[7]: echo.socket: hi there")
    }

    @Test func rfc5424() {
        let line = SyslogLine.format(.error, "x", facility: SyslogLine.Facility(name: "local0")!, rfc5424: true, time: t,
                                     hostname: "host", tag: "porter", pid: 7)
        #expect(line == "<131>1 2026-12-03T09:05:07.000042+01:00 host porter 7 - - x")
        #expect(SyslogLine.Facility(name: "nope") == nil)
    }
}

@Suite("metrics text")
struct MetricsTextTests {
    @Test func rendersCountersGaugesAndHistograms() {
        var c = UnitCounters()
        c.activations = 3
        c.latency.observe(nanoseconds: 300_000)
        c.latency.observe(nanoseconds: 2_000_000)
        c.latency.observe(nanoseconds: 20_000_000_000)
        var sock = UnitCounters()
        sock.accepted = 5
        sock.refused["condition"] = 2
        let text = MetricsText.render(units: ["e@.service": c, "e.socket": sock],
                                      gauges: ["e@.service": UnitGauges(kind: "template", running: 1),
                                               "e.socket": UnitGauges(kind: "socket", running: 1),
                                               "odd\"name.service": UnitGauges(kind: "service", running: 0)],
                                      porter: PorterCounters(), process: ProcessFacts(cpuSeconds: 1.5, residentBytes: 4096, virtualBytes: 8192, openFDs: 9, maxFDs: 1024, startTimeSeconds: 1_700_000_000),
                                      version: "0.1.0")
        let lines = Set(text.split(separator: "\n").map(String.init))
        #expect(lines.contains("porter_activations_total{unit=\"e@.service\"} 3"))
        #expect(lines.contains("porter_connections_accepted_total{unit=\"e.socket\"} 5"))
        #expect(!lines.contains("porter_connections_accepted_total{unit=\"e@.service\"} 0"))
        #expect(lines.contains("porter_connections_refused_total{unit=\"e.socket\",reason=\"condition\"} 2"))
        #expect(lines.contains("porter_activation_latency_seconds_bucket{unit=\"e@.service\",le=\"0.0005\"} 1"))
        #expect(lines.contains("porter_activation_latency_seconds_bucket{unit=\"e@.service\",le=\"0.0025\"} 2"))
        #expect(lines.contains("porter_activation_latency_seconds_bucket{unit=\"e@.service\",le=\"10.0\"} 2"))
        #expect(lines.contains("porter_activation_latency_seconds_bucket{unit=\"e@.service\",le=\"+Inf\"} 3"))
        #expect(lines.contains("porter_activation_latency_seconds_count{unit=\"e@.service\"} 3"))
        #expect(lines.contains("porter_activations_total{unit=\"odd\\\"name.service\"} 0"))
        #expect(lines.contains("process_cpu_seconds_total 1.5") && lines.contains("process_start_time_seconds 1700000000"))
        // Every sample belongs to a family announced with TYPE before it.
        var typed = Set<String>()
        for l in text.split(separator: "\n") {
            if l.hasPrefix("# TYPE ") { typed.insert(String(l.split(separator: " ")[2])) ; continue }
            if l.hasPrefix("#") { continue }
            let name = String(l.prefix { $0 != "{" && $0 != " " })
            let family = ["_bucket", "_sum", "_count"].reduce(name) { n, s in n.hasSuffix(s) && typed.contains(String(n.dropLast(s.count))) ? String(n.dropLast(s.count)) : n }
            #expect(typed.contains(family), "\(l)")
        }
    }
}

@Suite("status table")
struct StatusTableTests {
    @Test func ages() {
        #expect(StatusReport.age(0.25) == "250ms")
        #expect(StatusReport.age(12.7) == "12s")
        #expect(StatusReport.age(250) == "4m10s")
        #expect(StatusReport.age(3 * 3600 + 125) == "3h2m")
        #expect(StatusReport.age(2 * 86400 + 5 * 3600) == "2d5h")
    }

    @Test func tableHasARowPerUnitAndColourOnlyWhenAsked() {
        var u = StatusReport.Unit(name: "e.socket", kind: "socket", state: "listening")
        u.connectionsNow = 1
        u.connectionsTotal = 7
        u.maxConnections = 16
        var f = StatusReport.Unit(name: "h.service", kind: "service", state: "holding-off")
        f.failures = 3
        f.backoffFor = 4
        f.lastExit = StatusReport.Exit(pid: 9, unit: "h.service", status: "status 1", success: false, secondsAgo: 2)
        let r = StatusReport(porter: .init(version: "0.1.0", pid: 1, uptimeSeconds: 5, configDirectories: [], controlSocket: nil,
                                           metricsListen: nil, counters: PorterCounters()), units: [u, f])
        let plain = r.table(colour: false)
        #expect(!plain.contains("\u{1B}"))
        #expect(plain.contains("1/7 (max 16)") && plain.contains("status 1 2s ago") && plain.contains("3, back-off 4s"))
        #expect(plain.split(separator: "\n").count == 4)
        let coloured = r.table(colour: true)
        #expect(coloured.contains("\u{1B}[32mlistening\u{1B}[0m") && coloured.contains("\u{1B}[33mholding-off\u{1B}[0m"))
    }
}

@Suite("file jobs held")
struct FileJobsHoldTests {
    @Test func heldQueueStartsNothingUntilReleased() {
        var j = FileJobs(name: "p.path", maxRunning: 2, moveFailed: false)
        let t = Instant(nanoseconds: 0)
        #expect(j.handle(.hold(true), now: t) == [])
        #expect(j.handle(.seen("a", FileVersion(inode: 1, modified: 0, size: 1)), now: t) == [])
        #expect(j.handle(.seen("b", FileVersion(inode: 2, modified: 0, size: 1)), now: t) == [])
        #expect(j.waiting == 2 && j.enqueued == 2)
        #expect(j.handle(.hold(false), now: t) == [.start("a"), .start("b")])
        #expect(j.runningCount == 2)
    }
}

@Suite("proxy configuration")
struct ProxyConfigTests {
    @Test(arguments: [
        ("127.0.0.1:8080", ProxyTarget.address(.ipv4(address: [127, 0, 0, 1], port: 8080))),
        ("[::1]:80", .address(.ipv6(address: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], port: 80, scope: nil))),
        ("/run/app.sock", .address(.unixPath("/run/app.sock"))),
        ("@app", .address(.abstract("app"))),
        ("db.internal:5432", .host("db.internal", port: 5432)),
        ("localhost:1", .host("localhost", port: 1)),
    ])
    func targets(_ text: String, _ expected: ProxyTarget) throws {
        #expect(try ProxyTarget.parse(text) == expected)
        #expect(expected.description == text)
    }

    @Test(arguments: [("8080", "has no port"), ("host:70000", "out of range"), ("::1:80", "needs brackets"),
                      ("bad_host:80", "invalid host"), ("-x:80", "invalid host"), ("", "empty address")])
    func badTargets(_ text: String, _ reason: String) {
        do {
            _ = try ProxyTarget.parse(text)
            Issue.record("parsed \(text)")
        } catch {
            #expect(error.message.contains(reason), "\(error.message)")
        }
    }

    @Test func headers() {
        let s = ProxyHeader.Endpoint(address: [192, 0, 2, 1], port: 56324), d = ProxyHeader.Endpoint(address: [127, 0, 0, 1], port: 443)
        #expect(String(decoding: ProxyHeader.make(.v1, source: s, destination: d), as: UTF8.self) == "PROXY TCP4 192.0.2.1 127.0.0.1 56324 443\r\n")
        #expect(String(decoding: ProxyHeader.make(.v1, source: nil, destination: nil), as: UTF8.self) == "PROXY UNKNOWN\r\n")
        let v2 = ProxyHeader.make(.v2, source: s, destination: d)
        #expect(v2 == ProxyHeader.signature + [0x21, 0x11, 0x00, 0x0C, 192, 0, 2, 1, 127, 0, 0, 1, 0xDC, 0x04, 0x01, 0xBB])
        #expect(ProxyHeader.make(.v2, source: s, destination: d, udp: true)[13] == 0x12)
        let six = ProxyHeader.Endpoint(address: [UInt8](repeating: 0, count: 15) + [1], port: 1)
        let v26 = ProxyHeader.make(.v2, source: six, destination: six)
        #expect(v26[13] == 0x21 && v26[14] == 0 && v26[15] == 36 && v26.count == 16 + 36)
        #expect(ProxyHeader.make(.v2, source: nil, destination: nil) == ProxyHeader.signature + [0x20, 0x00, 0x00, 0x00])
        let v6 = String(decoding: ProxyHeader.make(.v1, source: six, destination: six), as: UTF8.self)
        #expect(v6 == "PROXY TCP6 ::1 ::1 1 1\r\n")
    }

    @Test func unitKeys() {
        var units = UnitSet()
        units.add(fileName: "web.service", bytes: Array("""
            [Service]
            ExecStart=/usr/bin/app
            ProxyTo=127.0.0.1:3000
            ProxyProtocol=v2
            ProxyIdleTimeoutSec=5min
            IdleTimeoutSec=10min
            """.utf8), host: HostFacts())
        let s = units.services.values.first!
        #expect(s.proxyTo == .address(.ipv4(address: [127, 0, 0, 1], port: 3000)))
        #expect(s.proxyProtocol == .v2 && s.proxyIdleTimeout == .seconds(300) && s.policy.proxied && s.policy.awaitsReadiness)
        var bad = UnitSet()
        bad.add(fileName: "web@.service", bytes: Array("[Service]\nExecStart=/bin/app\nProxyTo=127.0.0.1:1\nStandardInput=socket\n".utf8), host: HostFacts())
        #expect(bad.diagnostics.map(\.description).contains("web@.service:3: ProxyTo: is for NAME.service (Accept=no): porter relays to one backend; a per-connection instance gets its connection itself"))
        var stray = UnitSet()
        stray.add(fileName: "x.service", bytes: Array("[Service]\nExecStart=/bin/app\nProxyProtocol=v3\nProxyIdleTimeoutSec=1\n".utf8), host: HostFacts())
        #expect(stray.diagnostics.map(\.description) == ["x.service:3: ProxyProtocol: invalid value 'v3', expected v1, v2 or no",
                                                         "x.service: ProxyIdleTimeoutSec: ignored without ProxyTo="])
    }
}
