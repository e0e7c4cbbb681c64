import Glibc
import PorterCore
import PorterSys
import Testing

/// InternalService=: inetd's built-ins served inside porter, over TCP and
/// UDP, with bounded cost.
@Suite("built-in services", .serialized)
struct BuiltinEndToEndTests {
    static func start(_ tag: String, _ service: String, extra: String = "") throws -> (PorterRun, UInt16) {
        let port = freePort()
        let porter = try PorterRun(tag, units: [
            "\(service).socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nListenDatagram=127.0.0.1:\(port)\nInternalService=\(service)\n\(extra)",
        ])
        return (porter, port)
    }

    static func udpAsk(_ port: UInt16, _ bytes: [UInt8], from sourcePort: UInt16 = 0) throws -> [UInt8]? {
        let c = try Client.udp(port, from: [127, 0, 0, 1], port: sourcePort)
        defer { c.close() }
        _ = bytes.withUnsafeBytes { send(c.fd.rawValue, $0.baseAddress, $0.count, 0) }
        return c.datagram(seconds: 2)
    }

    @Test func echoOverTCPAndUDP() throws {
        let (porter, port) = try Self.start("builtin-echo", "echo")
        let c = try Client.tcp(port)
        try c.send("hello, echo")
        c.shutdownWrite()
        #expect(try c.readAll() == "hello, echo")
        #expect(try Self.udpAsk(port, Array("ping".utf8)) == Array("ping".utf8))
        // A large datagram comes back whole.
        let big = (0..<9000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        #expect(try Self.udpAsk(port, big) == big)
        try porter.waitForLog("echo.socket: echo connection from 127.0.0.1:")
        #expect(porter.log.contains("11 bytes in, 11 out"))
        #expect(porter.children.isEmpty, "no process was started")
        #expect(try porter.stop() == 0)
    }

    @Test func discardDaytimeAndTime() throws {
        let (p1, discard) = try Self.start("builtin-discard", "discard")
        let c = try Client.tcp(discard)
        try c.send(String(repeating: "x", count: 100_000))
        c.shutdownWrite()
        #expect(try c.readAll() == "")
        try p1.waitForLog("100000 bytes in, 0 out")
        #expect(try Self.udpAsk(discard, [1, 2, 3]) == nil, "discard answers nothing")
        #expect(try p1.stop() == 0)

        let (p2, daytime) = try Self.start("builtin-daytime", "daytime")
        let text = try Client.tcp(daytime).readAll()
        let year = String(InternalService.daytime(unixSeconds: Int64(Glibc.time(nil))).suffix(6).prefix(4).map { Character(UnicodeScalar($0)) })
        #expect(text.utf8.count == 26 && text.hasSuffix(" \(year)\r\n"), "\(text)")
        let udp = try #require(try Self.udpAsk(daytime, [0x0A]))
        #expect(udp.count == 26)
        #expect(try p2.stop() == 0)

        let (p3, timePort) = try Self.start("builtin-time", "time")
        let c3 = try Client.tcp(timePort)
        var b = [UInt8](repeating: 0, count: 8)
        var got: [UInt8] = []
        while true {
            let n = read(c3.fd.rawValue, &b, b.count)
            if n <= 0 { break }
            got += b[0..<n]
        }
        #expect(got.count == 4)
        let value = got.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let expected = UInt32(truncatingIfNeeded: Int64(Glibc.time(nil)) + 2_208_988_800)
        #expect(value &- expected < 5 || expected &- value < 5, "\(value) vs \(expected)")
        #expect(try Self.udpAsk(timePort, [])?.count == 4)
        #expect(try p3.stop() == 0)
    }

    /// Reflection: no answer to a privileged source port (another
    /// service's), and chargen never answers more than it was sent.
    @Test func noAmplificationNoReflection() throws {
        let (porter, port) = try Self.start("builtin-udp", "chargen")
        #expect(try Self.udpAsk(port, Array(repeating: 0x41, count: 10))?.count == 10, "no more than the request")
        #expect(try Self.udpAsk(port, Array(repeating: 0x41, count: 4000))?.count == 512, "RFC 864's 512 at most")
        #expect(try Self.udpAsk(port, [0x41], from: 700) == nil)
        try porter.waitForLog("not answered: privileged source port 700")
        #expect(try porter.stop() == 0)
    }

    /// chargen to a client that does not read: the socket buffers fill
    /// and porter waits; it keeps nothing of its own.
    @Test func chargenToASlowReaderHoldsNothing() throws {
        let (porter, port) = try Self.start("builtin-chargen", "chargen")
        // The first connection pages in the code and the pattern; the
        // twenty slow ones after it must add nothing of their own.
        let warm = try Client.tcp(port)
        #expect(warm.datagram(seconds: 5) != nil)
        warm.close()
        try porter.waitForLog("chargen connection from")
        let before = residentKB(porter.pid)
        let slow = try (0..<20).map { _ in try Client.tcp(port) }
        usleep(1_500_000)
        let during = residentKB(porter.pid)
        #expect(during - before < 512, "porter's memory grew by \(during - before) KiB with 20 clients that do not read")
        for s in slow.dropFirst() { s.close() }
        let c = slow[0]
        var buf = [UInt8](repeating: 0, count: 74 * 3)
        var got = 0
        while got < buf.count {
            let n = buf[got...].withUnsafeMutableBytes { read(c.fd.rawValue, $0.baseAddress, $0.count) }
            #expect(n > 0)
            if n <= 0 { break }
            got += n
        }
        #expect(Array(buf[0..<74]) == Array(InternalService.chargenPattern[0..<74]))
        #expect(Array(buf[74..<148]) == Array(InternalService.chargenPattern[74..<148]))
        c.close()
        try porter.waitForLog("chargen connection from 127.0.0.1:")
        #expect(try porter.stop() == 0)
    }

    /// echo to a client that writes without reading: porter stops reading
    /// once the client's side is full, holds at most one read, and every
    /// byte comes back in order once the client reads.
    @Test func echoToAClientThatDoesNotReadIsBoundedAndLosesNothing() throws {
        let (porter, port) = try Self.start("builtin-echo-slow", "echo")
        let warm = try Client.tcp(port)
        try warm.send(String(repeating: "w", count: 60000))
        warm.shutdownWrite()
        _ = try warm.readAll()
        let before = residentKB(porter.pid)
        let c = try Client.tcp(port)
        try c.fd.setNonBlocking(true)
        var sent: [UInt8] = []
        var chunk = (0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 5) }
        let deadline = now() + .seconds(2)
        var stalls = 0
        while now() < deadline && stalls < 20 {
            let n = chunk.withUnsafeBytes { write(c.fd.rawValue, $0.baseAddress, $0.count) }
            if n > 0 { sent += chunk[0..<n]; chunk = chunk.map { $0 &+ 1 }; stalls = 0 } else { stalls += 1; usleep(20_000) }
        }
        #expect(sent.count > 64 * 1024, "the buffers took \(sent.count) bytes before filling")
        let during = residentKB(porter.pid)
        #expect(during - before < 1024, "porter's memory grew by \(during - before) KiB")
        try c.fd.setNonBlocking(false)
        c.shutdownWrite()
        var back: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(c.fd.rawValue, &buf, buf.count)
            if n <= 0 { break }
            back += buf[0..<n]
        }
        #expect(back.count == sent.count)
        #expect(back == sent, "every byte back, in order")
        #expect(try porter.stop() == 0)
    }

    /// A flood of UDP echo requests is answered at the request rate; what
    /// the client does not read is dropped by the kernel, not kept by porter.
    @Test func udpFloodDoesNotGrowMemory() throws {
        let (porter, port) = try Self.start("builtin-flood", "echo")
        #expect(try Self.udpAsk(port, Array("warm".utf8)) != nil)
        let before = residentKB(porter.pid)
        let c = try Client.udp(port, from: [127, 0, 0, 1])
        let payload = [UInt8](repeating: 0x55, count: 512)
        for _ in 0..<30_000 { _ = payload.withUnsafeBytes { send(c.fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) } }
        usleep(300_000)
        let after = residentKB(porter.pid)
        #expect(after - before < 1024, "porter's memory grew by \(after - before) KiB")
        #expect(try Self.udpAsk(port, Array("still here".utf8)) == Array("still here".utf8))
        #expect(try porter.stop() == 0)
    }

    /// MaxConnections= holds the extra client in the backlog, served once
    /// a connection ends, while the UDP side keeps answering; idle, a
    /// built-in costs nothing.
    @Test func maxConnectionsAndIdleCost() throws {
        let (porter, port) = try Self.start("builtin-limit", "echo", extra: "MaxConnections=2\n")
        let a = try Client.tcp(port), b = try Client.tcp(port)
        for c in [a, b] {
            try c.send("x")
            #expect(c.datagram(seconds: 5) == Array("x".utf8))
        }
        let third = try Client.tcp(port)
        try third.send("third")
        #expect(third.datagram(seconds: 0.5) == nil, "waits in the backlog at the limit")
        #expect(try Self.udpAsk(port, Array("udp".utf8)) == Array("udp".utf8), "the limit holds back connections, not datagrams")
        a.close()
        #expect(third.datagram(seconds: 5) == Array("third".utf8))
        b.close()
        third.close()
        try waitUntil(5, "both ended") { porter.count("echo connection from") == 3 }
        func switches() -> Int {
            readFile("/proc/\(porter.pid)/status").split(separator: "\n")
                .filter { $0.contains("ctxt_switches") }
                .compactMap { Int($0.split(separator: "\t").last ?? "") }.reduce(0, +)
        }
        let s0 = switches()
        usleep(2_000_000)
        #expect(switches() - s0 == 0, "idle: porter does not wake up")
        #expect(try porter.stop() == 0)
    }

    /// `porter upgrade` keeps a built-in connection where it was.
    @Test func anUpgradeKeepsBuiltinConnections() throws {
        let (porter, port) = try Self.start("builtin-upgrade", "echo")
        let c = try Client.tcp(port)
        try c.send("before")
        #expect(c.datagram(seconds: 5) == Array("before".utf8))
        let (code, out, err) = try runPorter(["upgrade", "--control", porter.dir + "/control"])
        #expect(code == 0, "\(out)\(err)")
        try c.send("after")
        #expect(c.datagram(seconds: 5) == Array("after".utf8))
        c.shutdownWrite()
        #expect(try c.readAll() == "")
        try porter.waitForLog("11 bytes in, 11 out")
        #expect(try porter.stop() == 0)
    }
}
