import Glibc
import PorterCore
import PorterSys
import Testing

/// The move from xinetd and inetd: Debian's xinetd.d files and a
/// realistic inetd.conf imported, then served and talked to with real
/// clients; the one-flag switch (--xinetd, --inetd-conf) and its reload.
@Suite("migrating from xinetd and inetd", .serialized)
struct MigrationTests {
    /// /etc/xinetd.d as Debian's xinetd 2.3.15 package ships it (comments trimmed).
    static func debianXinetdD(disable: String) -> [String: String] {
        func pair(_ name: String) -> String {
            """
            # default: off
            service \(name)
            {
            \tdisable\t\t= \(disable)
            \ttype\t\t= INTERNAL
            \tid\t\t= \(name)-stream
            \tsocket_type\t= stream
            \tprotocol\t= tcp
            \tuser\t\t= root
            \twait\t\t= no
            }

            # This is the udp version.
            service \(name)
            {
            \tdisable\t\t= \(disable)
            \ttype\t\t= INTERNAL
            \tid\t\t= \(name)-dgram
            \tsocket_type\t= dgram
            \tprotocol\t= udp
            \tuser\t\t= root
            \twait\t\t= yes
            }

            """
        }
        func udp(_ name: String, _ port: Int) -> String {
            """
            service \(name)
            {
            \ttype\t\t= INTERNAL UNLISTED
            \tid\t\t= \(name)-dgram
            \tsocket_type\t= dgram
            \tprotocol\t= udp
            \tuser\t\t= root
            \twait\t\t= yes
            \tdisable\t\t= \(disable)
            \tport\t\t= \(port)
            }

            """
        }
        func listing(_ name: String, _ port: Int) -> String {
            """
            service \(name)
            {
            \ttype\t\t= INTERNAL UNLISTED
            \tport\t\t= \(port)
            \tsocket_type\t= stream
            \tprotocol\t= tcp
            \twait\t\t= no
            \tdisable\t\t= \(disable)
            \tonly_from\t= 127.0.0.1
            }

            """
        }
        var files: [String: String] = [:]
        for (name, port) in [("chargen", 19), ("daytime", 13), ("discard", 9), ("echo", 7), ("time", 37)] {
            files[name] = pair(name)
            files[name + "-udp"] = udp(name, port)
        }
        files["servers"] = listing("servers", 9099)
        files["services"] = listing("services", 9098)
        return files
    }

    static let xinetdConf = """
        # Simple configuration file for xinetd
        defaults
        {
        }

        includedir XINETD_D
        """

    /// A services file with free ports for the built-ins' names.
    static func servicesFile(_ dir: String, _ names: [String]) -> (path: String, ports: [String: UInt16]) {
        var ports: [String: UInt16] = [:]
        var text = ""
        for n in names {
            let p = freePort()
            ports[n] = p
            text += "\(n)\t\(p)/tcp\n\(n)\t\(p)/udp\n"
        }
        writeFile(dir + "/services", text)
        return (dir + "/services", ports)
    }

    static func writeXinetd(_ dir: String, disable: String) -> String {
        mkdir(dir + "/xinetd.d", 0o755)
        for (name, text) in debianXinetdD(disable: disable) { writeFile(dir + "/xinetd.d/" + name, text) }
        // An editor's backup and a package manager's leftover: xinetd skips them.
        writeFile(dir + "/xinetd.d/echo~", "garbage {")
        writeFile(dir + "/xinetd.d/echo.dpkg-old", "garbage {")
        writeFile(dir + "/xinetd.conf", xinetdConf.replacing("XINETD_D", with: dir + "/xinetd.d"))
        return dir + "/xinetd.conf"
    }

    @Test func debiansXinetdFilesImportAndServe() throws {
        let dir = makeTempDirectory("migrate-xinetd")
        defer { _ = system("rm -rf '\(dir)'") }
        let (services, ports) = Self.servicesFile(dir, ["echo", "daytime", "chargen", "discard", "time"])
        // As shipped: everything disabled, nothing written, and the report says so.
        let shipped = Self.writeXinetd(dir + "/shipped", disable: "yes")
        let (code0, out0, err0) = try runPorter(["import", "xinetd", shipped, "--output", dir + "/none", "--services", services, "--hosts-access", dir])
        #expect(code0 == 0, "\(err0)")
        #expect(out0.contains("0 services converted into 0 unit files; 17 skipped"), "\(out0)")
        #expect(out0.contains("disabled in xinetd: not converted"))

        // Enabled: ten units, the duplicate ids and xinetd's own listings reported.
        let conf = Self.writeXinetd(dir + "/on", disable: "no")
        let (code, out, err) = try runPorter(["import", "xinetd", conf, "--output", dir + "/units", "--services", services, "--hosts-access", dir])
        #expect(code == 0, "\(out)\(err)")
        #expect(out.contains("10 services converted into 10 unit files"), "\(out)")
        #expect(out.contains("an earlier service has this id; xinetd ignores this one too"))
        #expect(out.contains("INTERNAL servers: porter's built-ins are echo, discard, daytime, chargen and time"))
        #expect(out.contains("libwrap"))
        let written = try Files.list(dir + "/units").sorted()
        #expect(written == ["chargen-dgram.socket", "chargen-stream.socket", "daytime-dgram.socket", "daytime-stream.socket",
                            "discard-dgram.socket", "discard-stream.socket", "echo-dgram.socket", "echo-stream.socket",
                            "time-dgram.socket", "time-stream.socket"])
        // A second import does not overwrite without --force.
        let (again, _, againErr) = try runPorter(["import", "xinetd", conf, "--output", dir + "/units", "--services", services, "--hosts-access", dir])
        #expect(again == 1 && againErr.contains("already exist"), "\(againErr)")
        #expect(try runPorter(["check", "--config-dir", dir + "/units"]).0 == 0)

        // Served from the written units, with real clients.
        let porter = try PorterRun("migrate-units", units: [:], arguments: ["--config-dir", dir + "/units"])
        try Self.talkToBuiltins(ports)
        #expect(porter.children.isEmpty, "built-ins start no process")
        #expect(try porter.stop() == 0)
    }

    static func talkToBuiltins(_ ports: [String: UInt16]) throws {
        let e = try Client.tcp(ports["echo"]!)
        try e.send("over tcp")
        e.shutdownWrite()
        #expect(try e.readAll() == "over tcp")
        let u = try Client.udp(ports["echo"]!)
        try u.send("over udp")
        #expect(u.datagram(seconds: 5) == Array("over udp".utf8))
        #expect(try Client.tcp(ports["daytime"]!).readAll().hasSuffix("\r\n"))
        let t = try Client.tcp(ports["time"]!)
        #expect(t.datagram(seconds: 5)?.count == 4, "RFC 868: four bytes")
        let ud = try Client.udp(ports["daytime"]!)
        try ud.send("?")
        #expect(ud.datagram(seconds: 5)?.count == 26)
        let c = try Client.tcp(ports["chargen"]!)
        #expect((c.datagram(seconds: 5)?.count ?? 0) > 0)
        c.close()
        let d = try Client.tcp(ports["discard"]!)
        try d.send("into the void")
        d.shutdownWrite()
        #expect(try d.readAll() == "")
    }

    /// The one-flag switch: porter reads xinetd's files where they are,
    /// alone (no --config-dir), and again on SIGHUP.
    @Test func runReadsXinetdInPlaceAndReloads() throws {
        let dir = makeTempDirectory("migrate-inplace")
        defer { _ = system("rm -rf '\(dir)'") }
        let (services, ports) = Self.servicesFile(dir, ["echo", "daytime", "chargen", "discard", "time", "myapp"])
        let conf = Self.writeXinetd(dir, disable: "no")
        let log = dir + "/porter.log"
        let pid = spawnProgram([porterBinary, "run", "--xinetd", conf, "--services", services, "--hosts-access", dir, "--control", dir + "/control"], stdout: log, stderr: log)
        var running = true
        defer { if running { kill(pid, SIGKILL); _ = try? waitExit(pid, seconds: 5) } }
        try waitUntil(10, "ready in\n\(readFile(log))") { readFile(log).contains("ready:") }
        #expect(readFile(log).contains("10 services served; skipped:"), "\(readFile(log))")
        try Self.talkToBuiltins(ports)
        // A new service in xinetd.d, with access control and a limit, then SIGHUP.
        writeFile(dir + "/xinetd.d/myapp", """
            service myapp
            {
                socket_type = stream
                wait        = no
                user        = root
                server      = \(handlerBinary)
                server_args = say hello-from-myapp
                only_from   = localhost
                per_source  = 3
                cps         = 100 2
                instances   = 20
            }
            """)
        kill(pid, SIGHUP)
        try waitUntil(10, "the reload in\n\(readFile(log))") { readFile(log).contains("11 services served") }
        try waitUntil(10, "myapp served") { (try? Client.tcp(ports["myapp"]!).readAll())?.contains("hello-from-myapp") ?? false }
        #expect(try Client.tcp(ports["myapp"]!, from: [127, 0, 0, 2]).readAll() == "", "only_from = localhost is 127.0.0.1 (and ::1), not 127.0.0.2")
        #expect(readFile(log).contains("host names resolved when porter read the configuration (localhost is 127.0.0.1"), "\(readFile(log))")
        try waitUntil(5, "the refusal logged") { readFile(log).contains("not in IPAddressAllow=") }
        kill(pid, SIGTERM)
        #expect(try waitExit(pid) == 0)
        running = false
    }

    /// xinetd's redirect: porter relays to a backend something else runs.
    @Test func redirectRelays() throws {
        let dir = makeTempDirectory("migrate-redirect")
        defer { _ = system("rm -rf '\(dir)'") }
        let port = freePort(), back = freePort()
        let backend = spawnProgram([handlerBinary, "backend", "127.0.0.1:\(back)"], stdout: dir + "/backend.log", stderr: dir + "/backend.log")
        defer { kill(backend, SIGKILL); _ = try? waitExit(backend, seconds: 5) }
        writeFile(dir + "/xinetd.conf", """
            service web
            {
                type        = UNLISTED
                port        = \(port)
                socket_type = stream
                wait        = no
                redirect    = 127.0.0.1 \(back)
            }
            """)
        let porter = try PorterRun("migrate-redirect", units: [:], arguments: ["--xinetd", dir + "/xinetd.conf", "--hosts-access", "none"])
        try waitUntil(5, "the backend bound") { readFile(dir + "/backend.log").contains("bound") }
        let c = try Client.tcp(port)
        try c.send("echo\nrelayed by porter")
        c.shutdownWrite()
        #expect(try c.readAll() == "relayed by porter")
        #expect(porter.count("started pid") == 0, "redirect starts nothing")
        #expect(try porter.stop() == 0)
    }

    /// Debian's xinetd asks libwrap too: porter reads hosts.allow and
    /// hosts.deny and lets in what both they and xinetd's attributes let
    /// in; a refusing rule it cannot check keeps the service out.
    @Test func hostsAllowAndDenyAreHonoured() throws {
        let dir = makeTempDirectory("migrate-libwrap")
        defer { _ = system("rm -rf '\(dir)'") }
        let (app, echo, skipped) = (freePort(), freePort(), freePort())
        writeFile(dir + "/xinetd.conf", """
            service myapp
            {
                type        = UNLISTED
                port        = \(app)
                socket_type = stream
                wait        = no
                user        = root
                server      = \(handlerBinary)
                server_args = say hello-from-myapp
            }
            service echo
            {
                type        = INTERNAL UNLISTED
                port        = \(echo)
                socket_type = stream
                wait        = no
                only_from   = 127.0.0.0/8
            }
            service paranoid
            {
                type        = UNLISTED
                port        = \(skipped)
                socket_type = stream
                wait        = no
                server      = /bin/cat
                libwrap     = guarded
            }
            """)
        writeFile(dir + "/hosts.allow", "# the daemon name is the server's base name\nporter-test-handler: 127.0.0.1\necho : 127.0.0. EXCEPT 127.0.0.2\n")
        writeFile(dir + "/hosts.deny", "guarded: PARANOID\nALL: ALL\n")
        let porter = try PorterRun("migrate-libwrap", units: [:], arguments: ["--xinetd", dir + "/xinetd.conf", "--hosts-access", dir])
        #expect(try Client.tcp(app).readAll().contains("hello-from-myapp"))
        #expect(try Client.tcp(app, from: [127, 0, 0, 2]).readAll() == "", "hosts.deny ALL: ALL, not in hosts.allow")
        let e = try Client.tcp(echo)
        try e.send("x")
        e.shutdownWrite()
        #expect(try e.readAll() == "x")
        #expect(try Client.tcp(echo, from: [127, 0, 0, 2]).readAll() == "", "EXCEPT 127.0.0.2")
        let third = try Client.tcp(echo, from: [127, 0, 0, 3])
        try third.send("y")
        third.shutdownWrite()
        #expect(try third.readAll() == "y", "127.0.0. lets in 127.0.0.3")
        #expect(porter.log.contains("paranoid: libwrap"), "\(porter.log)")
        #expect(porter.log.contains("PARANOID cannot be checked by porter"), "\(porter.log)")
        #expect((try? Client.tcp(skipped)) == nil, "a service whose refusing rule porter cannot check is not served")
        #expect(try porter.stop() == 0)
    }

    static func realisticInetdConf(_ handler: String, tftpRoot: String) -> String {
        """
        # /etc/inetd.conf: see inetd(8) for further information.
        #
        # <service_name> <sock_type> <proto> <flags> <user> <server_path> <args>
        #
        #:INTERNAL: Internal services
        echo            stream  tcp     nowait  root    internal
        echo            dgram   udp     wait    root    internal
        daytime         stream  tcp     nowait  root    internal

        #:BOOT: TFTP service is provided primarily for booting.
        tftp            dgram   udp     wait    root    /usr/sbin/in.tftpd in.tftpd -s \(tftpRoot) -t 2

        #:INFO: Info services
        finger          stream  tcp     nowait.400      nobody:nogroup  \(handler) porter-test-handler report
        #<off># telnet  stream  tcp     nowait  telnetd /usr/sbin/tcpd  /usr/sbin/in.telnetd
        127.0.0.1:ident stream  tcp     nowait  root    \(handler)
            identd say ident-here
        """
    }

    @Test func aRealisticInetdConfImportsAndServes() throws {
        let dir = makeTempDirectory("migrate-inetd")
        defer { _ = system("rm -rf '\(dir)'") }
        // The handler where nobody can run it.
        let handler = dir + "/handler"
        #expect(system("cp '\(handlerBinary)' '\(handler)' && chmod 755 '\(dir)' '\(handler)'") == 0)
        let (services, ports) = Self.servicesFile(dir, ["echo", "daytime", "tftp", "finger", "ident"])
        writeFile(dir + "/inetd.conf", Self.realisticInetdConf(handler, tftpRoot: dir + "/tftp"))
        let (code, out, err) = try runPorter(["import", "inetd", dir + "/inetd.conf", "--output", dir + "/units", "--services", services])
        #expect(code == 0, "\(out)\(err)")
        #expect(out.contains("telnet/tcp (disabled)"))
        #expect(out.contains("TriggerLimitBurst=400"), "nowait.400 in the access table")
        let finger = readFile(dir + "/units/finger@.service")
        #expect(finger.contains("User=nobody\nGroup=nogroup\n"), "\(finger)")
        #expect(readFile(dir + "/units/ident@.service").contains("ExecStart=@\(handler) identd say ident-here\n"), "argv[0] of its own: the @ prefix")

        let porter = try PorterRun("migrate-inetd", units: [:], arguments: ["--inetd-conf", dir + "/inetd.conf", "--services", services])
        let e = try Client.tcp(ports["echo"]!)
        try e.send("hi")
        e.shutdownWrite()
        #expect(try e.readAll() == "hi")
        let r = Report(try Client.tcp(ports["finger"]!).readAll())
        let nobody = try #require(Users.user("nobody"))
        #expect(r.value("uid") == "\(nobody.uid) \(nobody.uid)")
        #expect(r.value("gid") == "65534 65534" || r.value("gid") == "\(nobody.gid) \(nobody.gid)")
        #expect(r.environment["REMOTE_ADDR"] == "127.0.0.1")
        #expect(try Client.tcp(ports["ident"]!).readAll().contains("ident-here"))
        #expect(try porter.stop() == 0)
    }

    /// tftp over UDP with `wait`: the real in.tftpd gets the socket on
    /// stdin, as from inetd, and a TFTP read request is answered.
    @Test(.enabled(if: access("/usr/sbin/in.tftpd", X_OK) == 0, "needs /usr/sbin/in.tftpd from tftpd-hpa (apt-get install tftpd-hpa)"))
    func tftpFromInetdConf() throws {
        let dir = makeTempDirectory("migrate-tftp")
        defer { _ = system("rm -rf '\(dir)'") }
        mkdir(dir + "/tftp", 0o755)
        writeFile(dir + "/tftp/boot.txt", "served by in.tftpd under porter\n")
        let (services, ports) = Self.servicesFile(dir, ["echo", "daytime", "tftp", "finger", "ident"])
        writeFile(dir + "/inetd.conf", Self.realisticInetdConf(handlerBinary, tftpRoot: dir + "/tftp"))
        let porter = try PorterRun("migrate-tftp", units: [:], arguments: ["--inetd-conf", dir + "/inetd.conf", "--services", services])
        let rrq: [UInt8] = [0, 1] + Array("boot.txt".utf8) + [0] + Array("octet".utf8) + [0]
        // The answer comes from the server's own port (its transfer id), so
        // the client is not connected to porter's.
        let u = try Socket.open(family: AF_INET, type: Int32(SOCK_DGRAM.rawValue), nonBlocking: false)
        defer { u.close() }
        try Socket.bind(u, SocketAddress(ipv4: [127, 0, 0, 1], port: 0))
        _ = rrq.withUnsafeBytes { b in SocketAddress(ipv4: [127, 0, 0, 1], port: ports["tftp"]!).withSockaddr { sendto(u.rawValue, b.baseAddress, b.count, 0, $0, $1) } }
        var from = SocketAddress()
        var buf = [UInt8](repeating: 0, count: 1024)
        var p = pollfd(fd: u.rawValue, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 10_000) == 1, "a DATA packet within 10 s; porter's log:\n\(porter.log)")
        let n = try Socket.receive(u, into: &buf, from: &from) ?? 0
        #expect(n >= 4 && buf[1] == 3, "opcode DATA")
        #expect(String(decoding: buf[4..<n], as: UTF8.self) == "served by in.tftpd under porter\n")
        // ACK block 1 to the server's port.
        let ack: [UInt8] = [0, 4, buf[2], buf[3]]
        _ = ack.withUnsafeBytes { b in from.withSockaddr { sendto(u.rawValue, b.baseAddress, b.count, 0, $0, $1) } }
        try porter.waitForLog("tftp.service: started pid")
        #expect(try porter.stop() == 0)
    }
}
