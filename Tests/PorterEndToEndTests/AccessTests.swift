import Glibc
import PorterCore
import PorterSys
import Testing

/// IPAddressAllow=/IPAddressDeny=, the per-source limits and the trigger
/// limit's pause, on loopback: clients bound to 127.0.0.2 are told apart
/// from 127.0.0.1 (Linux routes all of 127/8 to lo).
@Suite("who may connect", .serialized)
struct AccessEndToEndTests {
    static let other: [UInt8] = [127, 0, 0, 2]
    static let me: [UInt8] = [127, 0, 0, 1]

    /// An Accept=yes socket: porter checks each peer at accept.
    @Test func acceptYesClosesADeniedPeerAndLogsIt() throws {
        let port = freePort()
        let porter = try PorterRun("access-accept", units: [
            "r.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\nIPAddressDeny=127.0.0.2\n",
            "r@.service": "[Service]\nExecStart=\(handlerBinary) say served\nStandardInput=socket\n",
        ])
        #expect(try Client.tcp(port).readAll().contains("served"))
        let denied = try Client.tcp(port, from: Self.other)
        #expect(try denied.readAll() == "", "closed at once, nothing served")
        try porter.waitForLog("r.socket: connection from 127.0.0.2:")
        #expect(porter.log.contains("denied by IPAddressDeny=127.0.0.2; closed"))
        #expect(porter.count("started pid") == 0 || porter.count("r@") >= 1)
        #expect(try Client.tcp(port).readAll().contains("served"), "others are still served")
        let status = try runPorter(["status", "--json", "--control", porter.dir + "/control"]).1
        let report = try JSONCoding.decode(StatusReport.self, from: Array(status.utf8))
        #expect(report.units.first { $0.name == "r.socket" }?.refused == 1)
        #expect(try porter.stop() == 0)
    }

    /// The allow list wins over a catch-all deny, as systemd documents.
    @Test func allowListWithDenyAny() throws {
        let port = freePort()
        let porter = try PorterRun("access-allow", units: [
            "r.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\nIPAddressAllow=127.0.0.1\nIPAddressDeny=any\n",
            "r@.service": "[Service]\nExecStart=\(handlerBinary) say served\nStandardInput=socket\n",
        ])
        #expect(try Client.tcp(port).readAll().contains("served"))
        #expect(try Client.tcp(port, from: Self.other).readAll() == "")
        try porter.waitForLog("not in IPAddressAllow=")
        #expect(try porter.stop() == 0)
    }

    /// Accept=no: the service accepts, so the kernel drops a denied SYN
    /// and the service never learns of the peer.
    @Test func acceptNoTheServiceNeverSeesADeniedPeer() throws {
        let port = freePort()
        let dir = makeTempDirectory("access-peers")
        let porter = try PorterRun("access-acceptno", units: [
            "p.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nIPAddressDeny=127.0.0.2\n",
            "p.service": "[Service]\nExecStart=\(handlerBinary) peers \(dir)/peers\n",
        ])
        #expect(!(try Client.handshakeCompletes(port, from: Self.other, seconds: 1.5)), "the SYN was dropped")
        #expect(try Client.tcp(port).readAll() == "hello")
        #expect(!(try Client.handshakeCompletes(port, from: Self.other, seconds: 1.0)), "still dropped while the service runs")
        #expect(try Client.tcp(port).readAll() == "hello")
        let peers = readFile(dir + "/peers")
        #expect(peers.components("peer 127.0.0.1:").count - 1 == 2, "\(peers)")
        #expect(!peers.contains("127.0.0.2"), "\(peers)")
        #expect(porter.count("started pid") == 1, "the denied SYN started nothing")
        #expect(try porter.stop() == 0)
    }

    /// Datagrams: the kernel drops the denied sender's before they wake
    /// porter or reach the service.
    @Test func datagramsFromADeniedPeerNeverArrive() throws {
        let port = freePort()
        let dir = makeTempDirectory("access-udp")
        let porter = try PorterRun("access-udp", units: [
            "u.socket": "[Socket]\nListenDatagram=127.0.0.1:\(port)\nIPAddressDeny=127.0.0.2\n",
            "u.service": "[Service]\nExecStart=\(handlerBinary) peers \(dir)/peers\n",
        ])
        let denied = try Client.udp(port, from: Self.other)
        try denied.send("x")
        #expect(denied.datagram(seconds: 1.0) == nil)
        #expect(porter.count("started pid") == 0, "a denied datagram starts nothing")
        let ok = try Client.udp(port, from: Self.me)
        try ok.send("y")
        #expect(ok.datagram(seconds: 10).map { String(decoding: $0, as: UTF8.self) } == "hello")
        try denied.send("x")
        #expect(denied.datagram(seconds: 1.0) == nil)
        #expect(!readFile(dir + "/peers").contains("127.0.0.2"))
        #expect(try porter.stop() == 0)
    }

    /// ProxyTo=: checked at accept like Accept=yes.
    @Test func aProxiedSocketRefusesADeniedPeer() throws {
        let port = freePort(), back = freePort()
        let porter = try PorterRun("access-proxy", units: [
            "w.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nIPAddressDeny=127.0.0.2\n",
            "w.service": "[Service]\nExecStart=\(handlerBinary) backend 127.0.0.1:\(back)\nProxyTo=127.0.0.1:\(back)\n",
        ])
        // (Nothing sent first: a close with unread bytes is a reset.)
        let denied = try Client.tcp(port, from: Self.other)
        #expect(try denied.readAll() == "")
        try porter.waitForLog("denied by IPAddressDeny=127.0.0.2")
        #expect(porter.count("started pid") == 0, "a denied peer does not start the backend")
        let c = try Client.tcp(port)
        try c.send("pid\n")
        c.shutdownWrite()
        #expect(!(try c.readAll()).isEmpty)
        #expect(try porter.stop() == 0)
    }

    /// MaxConnectionsPerSource=: the extra connection from one address is
    /// closed, another address is served, and the first recovers once one
    /// of its connections ends.
    @Test func maxConnectionsPerSource() throws {
        let port = freePort()
        let porter = try PorterRun("access-persource", units: [
            "h.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\nMaxConnectionsPerSource=2\n",
            "h@.service": "[Service]\nExecStart=\(handlerBinary) hold-conn 1500\nStandardInput=socket\n",
        ])
        let a = try Client.tcp(port), b = try Client.tcp(port)
        for c in [a, b] { _ = try readSome(c) }
        let third = try Client.tcp(port)
        #expect(try third.readAll() == "", "a third from 127.0.0.1 is closed")
        try porter.waitForLog("2 open from this address, MaxConnectionsPerSource=2")
        let fromOther = try Client.tcp(port, from: Self.other)
        #expect(try readSome(fromOther).hasPrefix("held"), "127.0.0.2 has its own count")
        // The held ones end after 1.5 s: 127.0.0.1 may connect again.
        _ = try a.readAll()
        _ = try b.readAll()
        try waitUntil(5, "127.0.0.1 served again") {
            let c = try Client.tcp(port)
            defer { c.close() }
            return (try? c.readAll())?.hasPrefix("held") ?? false
        }
        #expect(try porter.stop() == 0)
    }

    /// MaxConnectionsPerSource= holds across `porter upgrade`: a connection
    /// open before it still counts after it, and its end releases it.
    @Test func maxConnectionsPerSourceHoldsAcrossAnUpgrade() throws {
        let port = freePort()
        let porter = try PorterRun("access-persource-upgrade", units: [
            "h.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\nMaxConnectionsPerSource=1\n",
            "h@.service": "[Service]\nExecStart=\(handlerBinary) hold-conn 2000\nStandardInput=socket\n",
        ])
        let a = try Client.tcp(port)
        #expect(try readSome(a).hasPrefix("held"))
        let (code, out, err) = try runPorter(["upgrade", "--control", porter.dir + "/control"])
        #expect(code == 0, "\(out)\(err)")
        #expect(try Client.tcp(port).readAll() == "", "the connection from before the upgrade still counts")
        try porter.waitForLog("1 open from this address, MaxConnectionsPerSource=1")
        _ = try a.readAll()
        try waitUntil(5, "127.0.0.1 served again") {
            let c = try Client.tcp(port)
            defer { c.close() }
            return (try? c.readAll())?.hasPrefix("held") ?? false
        }
        #expect(try porter.stop() == 0)
    }

    /// PerSourceLimit*=: a source over its rate is refused until its
    /// window closes; others are not held back.
    @Test func perSourceRateRefusesAndRecovers() throws {
        let port = freePort()
        let porter = try PorterRun("access-rate", units: [
            "r.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\nPerSourceLimitIntervalSec=2s\nPerSourceLimitBurst=3\n",
            "r@.service": "[Service]\nExecStart=\(handlerBinary) say served\nStandardInput=socket\n",
        ])
        let started = now()
        for _ in 0..<3 { #expect(try Client.tcp(port).readAll().contains("served")) }
        #expect(try Client.tcp(port).readAll() == "", "the fourth within 2 s is refused")
        #expect(try Client.tcp(port, from: Self.other).readAll().contains("served"))
        try porter.waitForLog("more than PerSourceLimitBurst=3 in 2s from this address")
        try waitUntil(6, "127.0.0.1 recovers when its window closes") {
            (try? Client.tcp(port).readAll())?.contains("served") ?? false
        }
        #expect(now() - started >= .milliseconds(1900))
        #expect(try porter.stop() == 0)
    }

    /// xinetd's cps: past the rate the socket pauses for
    /// TriggerLimitPauseSec=; clients that come meanwhile wait in the
    /// backlog and are served after it, not refused.
    @Test func triggerLimitPausesAndRecovers() throws {
        let port = freePort()
        let porter = try PorterRun("access-cps", units: [
            "c.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\nTriggerLimitIntervalSec=1s\nTriggerLimitBurst=3\nTriggerLimitPauseSec=2s\n",
            "c@.service": "[Service]\nExecStart=\(handlerBinary) say served\nStandardInput=socket\n",
        ])
        for _ in 0..<4 { #expect(try Client.tcp(port).readAll().contains("served")) }
        try porter.waitForLog("trigger limit (TriggerLimitBurst=3 connections in 1s) hit; paused for 2s")
        let waiting = now()
        let late = try Client.tcp(port)
        #expect(try late.readAll(seconds: 10).contains("served"), "served after the pause, not refused")
        #expect(now() - waiting >= .milliseconds(1200), "it waited for the pause")
        #expect(try porter.stop() == 0)
    }

    /// Banner=, BannerSuccess=, BannerFail= (xinetd's banners): the text
    /// before the service's, to a served and to a refused peer; a symlink
    /// in a directory anyone can write is not followed; a reload reads the
    /// files again.
    @Test func bannersGreetServedAndRefusedPeers() throws {
        let dir = makeTempDirectory("access-banner")
        defer { _ = system("rm -rf '\(dir)'") }
        writeFile(dir + "/banner", "porter test host\n")
        writeFile(dir + "/welcome", "welcome\n")
        writeFile(dir + "/goaway", "not from there\n")
        let open = dir + "/open"
        mkdir(open, 0o1777)
        chmod(open, 0o1777)
        symlink(dir + "/banner", open + "/link")
        let (port, echoPort) = (freePort(), freePort())
        let porter = try PorterRun("access-banner", units: [
            "b.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\nIPAddressDeny=127.0.0.2\n"
                + "Banner=\(dir)/banner\nBannerSuccess=\(dir)/welcome\nBannerFail=\(dir)/goaway\n",
            "b@.service": "[Service]\nExecStart=\(handlerBinary) say served\nStandardInput=socket\nStandardError=null\n",
            "e.socket": "[Socket]\nListenStream=127.0.0.1:\(echoPort)\nInternalService=echo\nBanner=\(open)/link\n",
        ])
        #expect(try Client.tcp(port).readAll() == "porter test host\nwelcome\nserved\n")
        #expect(try Client.tcp(port, from: Self.other).readAll() == "porter test host\nnot from there\n")
        try porter.waitForLog("e.socket: Banner: \(open)/link: \(open)/link is a symlink in a directory that others can write (anyone can write it)")
        #expect(porter.log.contains("no banner is sent"))
        let e = try Client.tcp(echoPort)
        try e.send("x")
        e.shutdownWrite()
        #expect(try e.readAll() == "x", "no banner from a file porter would not follow")
        writeFile(dir + "/welcome", "welcome back\n")
        kill(porter.pid, SIGHUP)
        try porter.waitForLog("SIGHUP: configuration reloaded")
        #expect(try Client.tcp(port).readAll() == "porter test host\nwelcome back\nserved\n")
        #expect(try porter.stop() == 0)
    }

    func readSome(_ c: Client) throws -> String {
        var p = pollfd(fd: c.fd.rawValue, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 10_000) == 1 else { throw TestFailure("nothing to read") }
        var b = [UInt8](repeating: 0, count: 256)
        let n = read(c.fd.rawValue, &b, b.count)
        return n > 0 ? String(decoding: b[0..<n], as: UTF8.self) : ""
    }
}
