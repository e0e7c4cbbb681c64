import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import PorterTestSupport
import Testing

/// Issue 12: ProxyTo=, the built-in activation proxy.
extension EndToEnd {
    @Suite("proxy", .timeLimit(.minutes(4)))
    struct Proxy {
        /// porter with `web.socket` on a free port relaying to a handler
        /// `backend` on another; `service` adds lines to web.service.
        static func start(_ tag: String, backend: [String] = [], service: String = "", socket: String = "",
                          udp: Bool = false) throws -> (PorterRun, UInt16, UInt16) {
            let (port, back) = (freePort(), freePort())
            let porter = try PorterRun(tag, units: [
                "web.socket": "[Socket]\n\(udp ? "ListenDatagram" : "ListenStream")=127.0.0.1:\(port)\n\(socket)",
                "web.service": "[Service]\nExecStart=\(handlerBinary) backend 127.0.0.1:\(back) \(backend.joined(separator: " "))\(udp ? " --udp" : "")\nProxyTo=127.0.0.1:\(back)\n\(service)",
            ])
            return (porter, port, back)
        }

        /// One exchange: the command line, then `data`, then end of file
        /// (the half-close passes through), then everything the backend says.
        static func ask(_ port: UInt16, _ command: String, _ data: [UInt8] = [], seconds: Double = 20) throws -> String {
            let c = try Client.tcp(port)
            defer { c.close() }
            try c.send(command + "\n")
            if !data.isEmpty { try data.withUnsafeBytes { _ = try c.fd.write($0) } }
            c.shutdownWrite()
            return try c.readAll(seconds: seconds)
        }

        /// Closed by porter without a byte: an end of file, or a reset when
        /// what the client sent was never read.
        static func closedWithoutAnswer(_ c: Client, seconds: Int32 = 10) -> Bool {
            defer { c.close() }
            var p = pollfd(fd: c.fd.rawValue, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, seconds * 1000) == 1 else { return false }
            var b = [UInt8](repeating: 0, count: 16)
            let n = read(c.fd.rawValue, &b, b.count)
            return n == 0 || (n < 0 && errno == ECONNRESET)
        }

        @Test func aSlowBackendIsWaitedForAndEveryEarlyClientServed() throws {
            let (porter, port, _) = try Self.start("proxy-slow", backend: ["--delay", "700"])
            // Five clients before the backend binds: held, not refused.
            let clients = try (0..<5).map { i -> Client in
                let c = try Client.tcp(port)
                try c.send("echo\nclient \(i)")
                c.shutdownWrite()
                return c
            }
            for (i, c) in clients.enumerated() {
                #expect(try c.readAll() == "client \(i)")
                c.close()
            }
            let log = try porter.waitForLog("web.service: ready after")
            #expect(log.contains("web.service: started pid"))
            #expect(porter.count("started pid") == 1, "one backend for all of them")
            #expect(try porter.stop() == 0)
        }

        @Test func aBackendThatNeverListensFailsItsClientsWithAReason() throws {
            let (porter, port, back) = try Self.start("proxy-never", backend: ["--delay", "60000"], service: "TimeoutStartSec=1\n")
            let started = now()
            let c = try Client.tcp(port)
            try c.send("echo\nhi")
            #expect(Self.closedWithoutAnswer(c))
            #expect(now() - started < .seconds(8))
            let log = try porter.waitForLog("closed: web.service ended before 127.0.0.1:\(back) was ready")
            #expect(log.contains("not ready after"), "\(log)")
            #expect(try porter.stop() == 0)
        }

        @Test func aUnixSocketBackend() throws {
            let port = freePort()
            let dir = makeTempDirectory("proxy-unix")
            defer { _ = system("rm -rf '\(dir)'") }
            let porter = try PorterRun("proxy-unix", units: [
                "web.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "web.service": "[Service]\nExecStart=\(handlerBinary) backend \(dir)/app.sock --delay 200\nProxyTo=\(dir)/app.sock\n",
            ])
            #expect(try Self.ask(port, "echo", Array("over unix".utf8)) == "over unix")
            #expect(try porter.stop() == 0)
        }

        @Test func halfCloseAndResetsPassThrough() throws {
            let (porter, port, _) = try Self.start("proxy-half")
            // The client is done writing and still reads the whole answer.
            let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            var expected = WordSum()
            data.withUnsafeBytes { expected.add($0) }
            #expect(try Self.ask(port, "sum", data) == expected.text + "\n")
            // The backend resets: so does porter, towards the client.
            let c = try Client.tcp(port)
            try c.send("reset\n")
            var buf = [UInt8](repeating: 0, count: 16)
            var p = pollfd(fd: c.fd.rawValue, events: Int16(POLLIN), revents: 0)
            #expect(poll(&p, 1, 10_000) == 1)
            let n = read(c.fd.rawValue, &buf, buf.count)
            #expect(n < 0 && errno == ECONNRESET, "read \(n)")
            c.close()
            #expect(try porter.stop() == 0)
        }

        @Test func oneGibibyteEachWayKeepsItsChecksum() throws {
            let (porter, port, _) = try Self.start("proxy-bulk")
            let total = 1 << 30
            // Up: 1 GiB into the backend's sum.
            let c = try Client.tcp(port)
            try c.send("sum\n")
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            for i in chunk.indices { chunk[i] = UInt8(truncatingIfNeeded: i &* 131 &+ 17) }
            // The sum of k copies of one chunk, from the chunk's own sums
            // (a debug build would take a minute to sum a gibibyte).
            var one = WordSum()
            chunk.withUnsafeBytes { one.add($0) }
            let k = UInt64(total / chunk.count), words = UInt64(chunk.count / 8)
            let s1 = one.s1 &* k, s2 = one.s2 &* k &+ one.s1 &* words &* (k &* (k &- 1) / 2)
            let expected = "bytes \(total) sum \(s1):\(s2)"
            for _ in 0..<k { try chunk.withUnsafeBytes { _ = try c.fd.write($0) } }
            c.shutdownWrite()
            #expect(try c.readAll(seconds: 120) == expected + "\n")
            c.close()
            // Down: 1 GiB of the backend's pattern.
            let d = try Client.tcp(port)
            try d.send("send \(total)\n")
            d.shutdownWrite()
            var got = 0
            var ok = true
            var buf = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = read(d.fd.rawValue, &buf, buf.count)
                if n <= 0 { break }
                // Spot checks: the first and last byte of each read.
                if buf[0] != UInt8(truncatingIfNeeded: got &* 31 &+ 7) || buf[n - 1] != UInt8(truncatingIfNeeded: (got + n - 1) &* 31 &+ 7) { ok = false }
                got += n
            }
            d.close()
            #expect(got == total && ok)
            let r = try JSONCoding.decode(StatusReport.self, from: Array(try runPorter(["status", "--json", "--control", porter.dir + "/control"]).1.utf8))
            let web = r.units.first { $0.name == "web.service" }
            #expect(web?.bytesToBackend ?? 0 >= UInt64(total) && web?.bytesToClient ?? 0 >= UInt64(total))
            #expect(try porter.stop() == 0)
        }

        @Test func twoHundredAtOnce() throws {
            let (porter, port, _) = try Self.start("proxy-200", socket: "MaxConnections=256\nBacklog=512\n")
            let clients = try (0..<200).map { i -> Client in
                let c = try Client.tcp(port)
                try c.send("echo\nclient \(i)")
                return c
            }
            for c in clients { c.shutdownWrite() }
            var served = 0
            for (i, c) in clients.enumerated() {
                if try c.readAll(seconds: 30) == "client \(i)" { served += 1 }
                c.close()
            }
            #expect(served == 200)
            try waitUntil(10, "every relay closed") {
                (try? JSONCoding.decode(StatusReport.self, from: Array(try runPorter(["status", "--json", "web.service", "--control", porter.dir + "/control"]).1.utf8)))?
                    .units.first?.connectionsNow == 0
            }
            #expect(try porter.stop() == 0)
        }

        /// Idle is exact: the backend stops a second after the last
        /// connection ended, and the next burst starts it again, losing none.
        @Test func idleStopAndRestartBetweenBursts() throws {
            let (porter, port, _) = try Self.start("proxy-idle", service: "IdleTimeoutSec=1\n", socket: "MaxConnections=64\n")
            func burst() throws -> Int {
                var ok = 0
                for i in 0..<50 where try Self.ask(port, "echo", Array("b\(i)".utf8)) == "b\(i)" { ok += 1 }
                return ok
            }
            #expect(try burst() == 50)
            let first = try Self.ask(port, "pid")
            try porter.waitForLog("web.service: idle for 1s, stopping pid")
            try waitUntil(10, "the backend gone") { porter.children.isEmpty }
            #expect(try burst() == 50)
            #expect(try Self.ask(port, "pid") != first, "a new backend")
            #expect(porter.count("web.service: started pid") == 2)
            #expect(!porter.log.contains("closed:"), "no connection failed")
            #expect(try porter.stop() == 0)
        }

        @Test(arguments: ["v1", "v2"])
        func proxyProtocolHeader(_ version: String) throws {
            let (porter, port, _) = try Self.start("proxy-pp", service: "ProxyProtocol=\(version)\n")
            let c = try Client.tcp(port)
            let local = try Socket.localAddress(c.fd).port!
            try c.send("header\n")
            c.shutdownWrite()
            let hex = try c.readAll().trimmingWhitespace().split(separator: " ").compactMap { UInt8($0, radix: 16) }
            if version == "v1" {
                #expect(String(decoding: hex, as: UTF8.self) == "PROXY TCP4 127.0.0.1 127.0.0.1 \(local) \(port)\r\n")
            } else {
                #expect(Array(hex.prefix(12)) == ProxyHeader.signature)
                #expect(hex.count >= 28 && hex[12] == 0x21 && hex[13] == 0x11)
                #expect(hex.count >= 28 && UInt16(hex[24]) << 8 | UInt16(hex[25]) == local)
            }
            #expect(try porter.stop() == 0)
        }

        @Test func aQuietConnectionIsClosedAfterProxyIdleTimeoutSec() throws {
            let (porter, port, _) = try Self.start("proxy-quiet", service: "ProxyIdleTimeoutSec=1\n")
            let c = try Client.tcp(port)
            try c.send("echo\n")  // a relay that then carries nothing
            let started = now()
            #expect(try c.readAll(seconds: 10) == "")
            #expect(now() - started < .seconds(5))
            try porter.waitForLog("no traffic for 1s (ProxyIdleTimeoutSec=)", seconds: 5)
            #expect(try porter.stop() == 0)
        }

        @Test func maxConnectionsHoldsTheRestInTheBacklog() throws {
            let (porter, port, _) = try Self.start("proxy-max", socket: "MaxConnections=2\n")
            let held = try (0..<2).map { _ -> Client in
                let c = try Client.tcp(port)
                try c.send("echo\nx")
                return c
            }
            for c in held {
                // Echoed: relayed, and still open.
                var p = pollfd(fd: c.fd.rawValue, events: Int16(POLLIN), revents: 0)
                #expect(poll(&p, 1, 10_000) == 1)
                var b = [UInt8](repeating: 0, count: 8)
                #expect(read(c.fd.rawValue, &b, b.count) == 1 && b[0] == UInt8(ascii: "x"))
            }
            let third = try Client.tcp(port)
            try third.send("echo\nthird")
            third.shutdownWrite()
            var p = pollfd(fd: third.fd.rawValue, events: Int16(POLLIN), revents: 0)
            #expect(poll(&p, 1, 500) == 0, "waits while two are relayed")
            held[0].shutdownWrite()
            held[0].close()
            #expect(try third.readAll() == "third")
            held[1].close()
            #expect(try porter.stop() == 0)
        }

        @Test func unresolvableAndRefusingBackendsCloseClientsWithAReason() throws {
            let port = freePort()
            let porter = try PorterRun("proxy-bad", units: [
                "web.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "web.service": "[Service]\nExecStart=\(handlerBinary) sleep\nProxyTo=nonexistent.invalid:80\n",
            ])
            #expect(porter.log.contains("ProxyTo: cannot resolve 'nonexistent.invalid'"))
            let c = try Client.tcp(port)
            try c.send("echo\nx")
            #expect(Self.closedWithoutAnswer(c))
            try porter.waitForLog("closed: ProxyTo=nonexistent.invalid:80: cannot resolve")
            // The socket keeps listening.
            let d = try Client.tcp(port)
            #expect(Self.closedWithoutAnswer(d))
            #expect(try porter.stop() == 0)
            let (check, out, _) = try runPorter(["check", "--config-dir", porter.units])
            #expect(check == 0 && out.contains("proxied to nonexistent.invalid:80"))
        }

        @Test func udpFlowsPerClient() throws {
            let (porter, port, _) = try Self.start("proxy-udp", udp: true)
            let a = try Client.udp(port), b = try Client.udp(port)
            try a.send("from a")
            // The first datagram starts the backend and is delivered once it is bound.
            let ra = try a.readAll(datagram: true)
            try b.send("from b")
            let rb = try b.readAll(datagram: true)
            #expect(ra.hasSuffix(": from a") && rb.hasSuffix(": from b"))
            #expect(ra.split(separator: ":").first == rb.split(separator: ":").first, "one backend")
            try a.send("again")
            #expect(try a.readAll(datagram: true).hasSuffix(": again"))
            let r = try JSONCoding.decode(StatusReport.self, from: Array(try runPorter(["status", "--json", "web.service", "--control", porter.dir + "/control"]).1.utf8))
            #expect(r.units.first?.connectionsNow == 2 && r.units.first?.connectionsTotal == 2)
            #expect(try porter.stop() == 0)
        }

        /// `porter upgrade` keeps relayed connections (their pipes and what
        /// is in them) and UDP flows going; a relay from before it still
        /// counts for MaxConnectionsPerSource=.
        @Test func relaysSurviveAnUpgrade() throws {
            let (porter, port, _) = try Self.start("proxy-upgrade", socket: "MaxConnectionsPerSource=1\n")
            let c = try Client.tcp(port)
            try c.send("echo\nbefore")
            func readSome() throws -> String {
                var p = pollfd(fd: c.fd.rawValue, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 10_000) == 1 else { throw TestFailure("nothing to read") }
                var b = [UInt8](repeating: 0, count: 64)
                let n = read(c.fd.rawValue, &b, b.count)
                return n > 0 ? String(decoding: b[0..<n], as: UTF8.self) : ""
            }
            #expect(try readSome() == "before")
            let (code, out, err) = try runPorter(["upgrade", "--control", porter.dir + "/control"])
            #expect(code == 0, "\(out)\(err)")
            #expect(try Client.tcp(port).readAll() == "", "the relay from before the upgrade still counts")
            try porter.waitForLog("1 open from this address, MaxConnectionsPerSource=1")
            try c.send("after")
            #expect(try readSome() == "after")
            c.shutdownWrite()
            #expect(try c.readAll() == "")
            let log = try porter.waitForLog("relayed, 16 bytes in, 11 out")
            #expect(log.contains("upgrade: upgraded from"))
            #expect(try porter.stop() == 0)
        }

        @Test func statusAndMetricsShowTheProxy() throws {
            let mp = freePort()
            let (porter, port, back) = try Self.start("proxy-metrics", socket: "")
            writeFile(porter.units + "/porter.conf", "[Porter]\nMetricsListen=127.0.0.1:\(mp)\n")
            kill(porter.pid, SIGHUP)
            try porter.waitForLog("metrics: serving")
            for i in 0..<3 { #expect(try Self.ask(port, "echo", Array("m\(i)".utf8)) == "m\(i)") }
            let body = try http(mp, "GET /metrics HTTP/1.0\r\n\r\n").body
            #expect(body.contains("porter_proxy_connections_total{unit=\"web.service\"} 3"))
            #expect(body.contains("porter_proxy_bytes_total{unit=\"web.service\",direction=\"to_client\"} 6"))
            #expect(body.contains("porter_proxy_bytes_total{unit=\"web.service\",direction=\"to_backend\"} 21"))
            #expect(body.contains("porter_activations_total{unit=\"web.service\"} 1"))
            let (_, table, _) = try runPorter(["status", "--control", porter.dir + "/control"])
            #expect(table.contains("web.service") && table.contains("0/3"))
            let r = try JSONCoding.decode(StatusReport.self, from: Array(try runPorter(["status", "--json", "--control", porter.dir + "/control"]).1.utf8))
            #expect(r.units.first { $0.name == "web.service" }?.proxyTo == "127.0.0.1:\(back)")
            #expect(r.units.first { $0.name == "web.socket" }?.mode == "proxy")
            #expect(try porter.stop() == 0)
        }
    }
}
