import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

/// Whether Python's prometheus_client can be imported, installing it from
/// PyPI once if it is missing (the test that needs it is skipped otherwise).
let prometheusClient: Bool = {
    guard access("/usr/bin/python3", X_OK) == 0 || access("/usr/local/bin/python3", X_OK) == 0 else { return false }
    if system("python3 -c 'import prometheus_client' 2>/dev/null") == 0 { return true }
    _ = system("python3 -m pip install --quiet prometheus_client >/dev/null 2>&1")
    return system("python3 -c 'import prometheus_client' 2>/dev/null") == 0
}()

/// One HTTP exchange over a raw socket: what porter's endpoint answered.
func http(_ port: UInt16, _ request: String) throws -> (status: Int, headers: String, body: String) {
    let c = try Client.tcp(port)
    defer { c.close() }
    try c.send(request)
    let text = try c.readAll()
    guard let split = text.firstRange(of: "\r\n\r\n") else { return (0, text, "") }
    let head = String(text[..<split.lowerBound])
    let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
    return (status, head, String(text[split.upperBound...]))
}

extension EndToEnd {
    @Suite("metrics and logs", .timeLimit(.minutes(3)))
    struct MetricsAndLogs {
        static func value(_ metrics: String, _ sample: String) -> Double? {
            metrics.split(separator: "\n").first { $0.hasPrefix(sample + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }

        @Test func prometheusEndpoint() throws {
            let (p1, p2, mp) = (freePort(), freePort(), freePort())
            let inbox = makeTempDirectory("metrics-inbox")
            defer { _ = system("rm -rf '\(inbox)'") }
            let porter = try PorterRun("metrics", units: [
                "porter.conf": "[Porter]\nMetricsListen=127.0.0.1:\(mp)\n",
                "e.socket": "[Socket]\nListenStream=127.0.0.1:\(p1)\nAccept=yes\n",
                "e@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
                "h.socket": "[Socket]\nListenStream=127.0.0.1:\(p2)\n",
                "h.service": "[Service]\nExecStart=\(handlerBinary) serve 1\n",
                "j.path": "[Path]\nDirectoryNotEmpty=\(inbox)\nAccept=yes\n",
                "j@.service": "[Service]\nExecStart=/bin/sh -c 'rm \"$TRIGGER_PATH\"'\n",
            ])
            try porter.waitForLog("metrics: serving GET /metrics on 127.0.0.1:\(mp)")
            for _ in 0..<3 { _ = try Client.tcp(p1).readAll() }
            _ = try Client.tcp(p2).readAll()
            writeFile(inbox + "/a", "x")
            try waitUntil(10, "the job") { porter.log.contains("j@a.service: pid") || access(inbox + "/a", F_OK) != 0 }
            try waitUntil(10, "every process reaped") { porter.children.isEmpty && porter.count("exited") >= 5 }
            let (status, headers, body) = try http(mp, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(status == 200)
            #expect(headers.contains("Content-Type: \(MetricsText.contentType)"))
            #expect(Self.value(body, "porter_activations_total{unit=\"e@.service\"}") == 3)
            #expect(Self.value(body, "porter_connections_accepted_total{unit=\"e.socket\"}") == 3)
            #expect(Self.value(body, "porter_activations_total{unit=\"h.service\"}") == 1)
            #expect(Self.value(body, "porter_activation_latency_seconds_count{unit=\"h.service\"}") == 1)
            #expect(Self.value(body, "porter_activation_latency_seconds_bucket{unit=\"e@.service\",le=\"+Inf\"}") == 3)
            #expect(Self.value(body, "porter_jobs_queued_total{unit=\"j.path\"}") == 1)
            #expect(Self.value(body, "porter_activation_latency_seconds_count{unit=\"j@.service\"}") == 1, "per-file jobs are measured too")
            #expect(Self.value(body, "porter_jobs_done_total{unit=\"j.path\"}") == 1)
            #expect(Self.value(body, "porter_running{unit=\"e@.service\"}") == 0)
            #expect(Self.value(body, "porter_reloads_total{result=\"ok\"}") == 0)
            #expect((Self.value(body, "process_resident_memory_bytes") ?? 0) > 1_000_000)
            let fds = Self.value(body, "process_open_fds") ?? 0
            #expect(fds > 5 && abs(fds - Double(porter.fdCount)) <= 2, "\(fds) vs \(porter.fdCount)")
            #expect((Self.value(body, "process_start_time_seconds") ?? 0) > Double(time(nil) - 600))
            kill(porter.pid, SIGHUP)
            try porter.waitForLog("SIGHUP: configuration reloaded")
            #expect(Self.value(try http(mp, "GET /metrics HTTP/1.0\r\n\r\n").body, "porter_reloads_total{result=\"ok\"}") == 1)

            // HEAD, other paths, other methods, garbage, too much.
            let head = try http(mp, "HEAD /metrics HTTP/1.1\r\n\r\n")
            #expect(head.status == 200 && head.body.isEmpty)
            #expect(try http(mp, "GET /nope HTTP/1.1\r\n\r\n").status == 404)
            #expect(try http(mp, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").status == 405)
            #expect(try http(mp, "\u{1}\u{2}garbage\r\n\r\n").status == 400)
            #expect(try http(mp, "GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 10000)).status == 431)
            // A client that never finishes its request holds nothing for long,
            // and the loop serves others meanwhile.
            let slow = try Client.tcp(mp)
            try slow.send("GET /metr")
            #expect(try http(mp, "GET /metrics HTTP/1.1\r\n\r\n").status == 200)
            #expect(try slow.readAll(seconds: 8).isEmpty)
            slow.close()
            #expect(try porter.stop() == 0)
        }

        /// The exposition text read by Prometheus's own Python parser.
        @Test(.enabled(if: prometheusClient, "needs python3 with prometheus_client (pip install prometheus_client)"))
        func readByPrometheusClient() throws {
            let (p1, mp) = (freePort(), freePort())
            let porter = try PorterRun("promclient", units: [
                "porter.conf": "[Porter]\nMetricsListen=127.0.0.1:\(mp)\n",
                "e.socket": "[Socket]\nListenStream=127.0.0.1:\(p1)\nAccept=yes\n",
                "e@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
            ])
            for _ in 0..<2 { _ = try Client.tcp(p1).readAll() }
            try waitUntil(10, "two exits") { porter.count("exited") == 2 }
            writeFile(porter.dir + "/metrics.txt", try http(mp, "GET /metrics HTTP/1.1\r\n\r\n").body)
            writeFile(porter.dir + "/parse.py", """
                import sys
                from prometheus_client.parser import text_string_to_metric_families
                fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
                s = {(x.name, tuple(sorted(x.labels.items()))): x.value for f in fams.values() for x in f.samples}
                assert fams['porter_activation_latency_seconds'].type == 'histogram'
                assert fams['porter_activations'].type == 'counter'
                assert fams['process_resident_memory_bytes'].type == 'gauge'
                print(int(s[('porter_activations_total', (('unit', 'e@.service'),))]))
                print(int(s[('porter_activation_latency_seconds_count', (('unit', 'e@.service'),))]))
                """)
            let pid = spawnProgram(["/usr/bin/env", "python3", porter.dir + "/parse.py", porter.dir + "/metrics.txt"],
                                   stdout: porter.dir + "/py.out", stderr: porter.dir + "/py.out")
            #expect(try waitExit(pid, seconds: 60) == 0, "\(readFile(porter.dir + "/py.out"))")
            #expect(readFile(porter.dir + "/py.out") == "2\n2\n")
            #expect(try porter.stop() == 0)
        }

        /// LogTarget=syslog: one datagram per line on the syslog socket, with
        /// the facility and level in its priority; RFC 5424 when asked.
        @Test func syslogLines() throws {
            for rfc5424 in [false, true] {
                let dir = makeTempDirectory("syslog")
                defer { _ = system("rm -rf '\(dir)'") }
                let sink = try Socket.open(family: AF_UNIX, type: Int32(SOCK_DGRAM.rawValue), nonBlocking: true)
                defer { sink.close() }
                try Socket.bind(sink, SocketAddress(unix: Array((dir + "/log").utf8), abstract: false))
                let port = freePort()
                let porter = try PorterRun("syslog", units: [
                    "porter.conf": "[Porter]\nLogTarget=syslog\nSyslogSocket=\(dir)/log\nSyslogFacility=local1\n" + (rfc5424 ? "SyslogFormat=rfc5424\n" : ""),
                    "f.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n",
                    "f@.service": "[Service]\nExecStart=/bin/false\nStandardInput=socket\n",
                ], waitReady: false)
                var lines: [String] = []
                func drain() {
                    var buf = [UInt8](repeating: 0, count: 8192)
                    while true {
                        let n = recv(sink.rawValue, &buf, buf.count, 0)
                        if n <= 0 { break }
                        lines.append(String(decoding: buf[..<n], as: UTF8.self))
                    }
                }
                try waitUntil(10, "ready on the syslog socket; got \(lines)") { drain(); return lines.contains { $0.contains("ready: 1 socket") } }
                _ = try Client.tcp(port).readAll()
                try waitUntil(10, "the failure line; got \(lines)") { drain(); return lines.contains { $0.contains("exited, status 1") } }
                let ready = lines.first { $0.contains("ready: 1 socket") }!
                let failed = lines.first { $0.contains("exited, status 1") }!
                // local1 = 17: info 17*8+6 = 142, warning 17*8+4 = 140.
                if rfc5424 {
                    #expect(ready.hasPrefix("<142>1 ") && ready.contains(" porter \(porter.pid) - - ready: "), "\(ready)")
                } else {
                    #expect(ready.hasPrefix("<142>") && ready.contains(" porter[\(porter.pid)]: ready: "), "\(ready)")
                }
                #expect(failed.hasPrefix("<140>"), "\(failed)")
                // Nothing went to stderr meanwhile.
                #expect(!porter.log.contains("ready:"))
                #expect(try porter.stop() == 0)
            }
        }

        /// No syslog daemon at the socket: lines go to stderr instead of nowhere.
        @Test func syslogUnreachableFallsBackToStderr() throws {
            let porter = try PorterRun("nosyslog", units: [
                "porter.conf": "[Porter]\nLogTarget=syslog\nSyslogSocket=/nonexistent/log\n",
                "x.socket": "[Socket]\nListenStream=127.0.0.1:\(freePort())\n",
                "x.service": "[Service]\nExecStart=/bin/true\n",
            ])
            #expect(porter.log.contains("porter: info: ready: 1 socket"))
            #expect(try porter.stop() == 0)
        }

        /// LogConnections=: xinetd's log_on_success / log_on_failure, per socket.
        @Test func perConnectionLinesAreSwitchable() throws {
            let (ok1, ok2, bad) = (freePort(), freePort(), freePort())
            let porter = try PorterRun("logconn", units: [
                "quiet.socket": "[Socket]\nListenStream=127.0.0.1:\(ok1)\nAccept=yes\nLogConnections=no\n",
                "quiet@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
                "fail.socket": "[Socket]\nListenStream=127.0.0.1:\(ok2)\nAccept=yes\nLogConnections=failures\n",
                "fail@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
                "bad.socket": "[Socket]\nListenStream=127.0.0.1:\(bad)\nAccept=yes\nLogConnections=failures\n",
                "bad@.service": "[Service]\nExecStart=/bin/false\nStandardInput=socket\n",
            ])
            _ = try Client.tcp(ok1).readAll()
            _ = try Client.tcp(ok2).readAll()
            _ = try Client.tcp(bad).readAll()
            try porter.waitForLog("exited, status 1")
            try waitUntil(10, "all reaped") { porter.children.isEmpty }
            let log = porter.log
            #expect(!log.contains("quiet@") && !log.contains("fail@"), "\(log)")
            #expect(log.contains("porter: warning: bad@") && log.contains("from 127.0.0.1:"))
            let (_, _, err) = try runPorter(["check", "--config-dir", porter.units])
            #expect(!err.contains("LogConnections"))
            writeFile(porter.units + "/x.socket", "[Socket]\nListenStream=1\nAccept=yes\nLogConnections=sometimes\n")
            let (code, out, _) = try runPorter(["check", "--config-dir", porter.units])
            #expect(code == 1 && out.contains("x.socket:4: LogConnections: invalid value 'sometimes', expected yes, failures or no"))
            #expect(try porter.stop() == 0)
        }
    }
}

let prometheusServer: String? = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"].first { (p: String) in access(p, X_OK) == 0 }

extension EndToEnd.MetricsAndLogs {
    /// A real Prometheus server (Debian's `prometheus`) scrapes porter and
    /// answers a query with porter's count.
    @Test(.enabled(if: prometheusServer != nil, "needs a Prometheus server (apt-get install prometheus)"), .timeLimit(.minutes(2)))
    func scrapedByPrometheus() throws {
        let (p1, mp, pp) = (freePort(), freePort(), freePort())
        let porter = try PorterRun("prometheus", units: [
            "porter.conf": "[Porter]\nMetricsListen=127.0.0.1:\(mp)\n",
            "e.socket": "[Socket]\nListenStream=127.0.0.1:\(p1)\nAccept=yes\n",
            "e@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
        ])
        for _ in 0..<3 { _ = try Client.tcp(p1).readAll() }
        let dir = porter.dir
        writeFile(dir + "/prometheus.yml", """
            global:
              scrape_interval: 1s
            scrape_configs:
              - job_name: porter
                static_configs:
                  - targets: ['127.0.0.1:\(mp)']
            """)
        let prom = spawnProgram([prometheusServer!, "--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/tsdb",
                                 "--web.listen-address=127.0.0.1:\(pp)"], stdout: dir + "/prom.log", stderr: dir + "/prom.log")
        defer {
            kill(prom, SIGTERM)
            _ = try? waitExit(prom, seconds: 20)
        }
        var answer = ""
        try waitUntil(60, "Prometheus to have porter's count; last answer \(answer)") {
            guard let r = try? http(pp, "GET /api/v1/query?query=porter_activations_total HTTP/1.0\r\n\r\n"), r.status == 200 else { return false }
            answer = r.body
            guard let json = try? JSON.parse(answer), let results = json["data"]?["result"]?.array else { return false }
            return results.contains { $0["metric"]?["unit"]?.string == "e@.service" && $0["value"]?.array?.last?.string == "3" }
        }
        let up = try http(pp, "GET /api/v1/query?query=up%7Bjob%3D%22porter%22%7D HTTP/1.0\r\n\r\n")
        #expect(up.body.contains("\"value\":[") && up.body.contains("\"1\"]"), "\(up.body)")
        #expect(try porter.stop() == 0)
    }
}
