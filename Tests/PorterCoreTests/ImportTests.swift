@testable import PorterCore
import Testing

/// The xinetd and inetd readers and converters, on the files Debian ships
/// and on realistic hand-written ones.
@Suite("importing xinetd and inetd")
struct ImportTests {
    static let services = ServicesFile(text: """
        echo    7/tcp
        echo    7/udp
        daytime 13/tcp
        tftp    69/udp
        finger  79/tcp
        auth    113/tcp  authentication tap ident
        rsync   873/tcp
        myapp   7777/tcp          # a local service
        """)

    func xinetd(_ text: String, defaults: String = "", resolve: XinetdAccess.HostResolver? = nil) -> ImportResult {
        let d = XinetdText(file: "xinetd.conf", text: defaults)
        let parsed = XinetdText(file: "svc", text: text)
        var defs: [XinetdText.Attribute] = []
        for case .defaults(let a) in d.items { defs += a }
        var services: [XinetdService] = []
        for case .service(let name, let attrs, let file, let line) in parsed.items {
            services.append(XinetdService(name: name, file: file, line: line, defaults: defs, attributes: attrs))
        }
        var importer = XinetdImport(services: Self.services, source: "xinetd.conf")
        importer.resolve = resolve
        return importer.convert(services, defaults: defs)
    }

    func unit(_ r: ImportResult, _ name: String) -> String { r.units.first { $0.name == name }?.text ?? "(no \(name))" }

    /// Banners go where porter accepts the connection; elsewhere they are reported.
    @Test func bannersWherePorterAccepts() {
        let r = xinetd("""
            service echo
            {
                type = INTERNAL
                socket_type = stream
                wait = no
                banner_success = /etc/welcome
                banner_fail = /etc/goaway
            }
            service daytime
            {
                socket_type = stream
                protocol = tcp
                wait = yes
                user = root
                server = /usr/sbin/some-daemon
                banner = /etc/issue
            }
            """)
        let echo = unit(r, "echo.socket")
        #expect(echo.contains("BannerSuccess=/etc/welcome\n") && echo.contains("BannerFail=/etc/goaway\n"), "\(echo)")
        #expect(!unit(r, "daytime.socket").contains("Banner"))
        #expect(r.render().contains("porter writes banners only to connections it accepts"))
        let c = Configuration.load(files: r.units.map { ($0.name, $0.text) }, host: HostFacts())
        #expect(!c.hasErrors, "\(c.diagnostics)")
    }

    /// Host names in only_from/no_access are resolved once, when read;
    /// domain wildcards and names without an address are not checkable.
    @Test func hostNamesAreResolvedWhenRead() {
        func convert(_ onlyFrom: String, _ noAccess: String) -> ImportResult {
            xinetd("""
                service myapp
                {
                    socket_type = stream
                    wait = no
                    server = /bin/cat
                    \(onlyFrom.isEmpty ? "" : "only_from = " + onlyFrom)
                    \(noAccess.isEmpty ? "" : "no_access = " + noAccess)
                }
                """, resolve: { ["localhost": [[127, 0, 0, 1], [127, 0, 0, 1], Array(repeating: 0, count: 15) + [1]], "bad.example": [[10, 9, 9, 9]]][$0] })
        }
        let r = convert("localhost .example.com nowhere.invalid", "")
        let socket = unit(r, "myapp.socket")
        #expect(socket.contains("IPAddressAllow=127.0.0.1 ::1\n"), "\(socket)")
        let report = r.render()
        #expect(report.contains("localhost is 127.0.0.1 ::1"), "\(report)")
        #expect(report.contains(".example.com nowhere.invalid left out"), "\(report)")
        let d = convert("", "bad.example")
        #expect(unit(d, "myapp.socket").contains("IPAddressDeny=10.9.9.9\n"))
        // A name porter cannot check in no_access would let in whom xinetd refused: not converted.
        let w = convert("", ".example.com")
        #expect(w.units.isEmpty && w.render().contains("domain wildcards"))
    }

    @Test func parsesSectionsOperatorsAndIncludes() {
        let t = XinetdText(file: "xinetd.conf", text: """
            # comment
            defaults
            {
                log_type = SYSLOG daemon info
                only_from = 10.0.0.0/8
            }

            includedir /etc/xinetd.d
            service myapp {
                socket_type = stream
                only_from += 192.168.1.0/24
                no_access-=10.1.2.3
            }
            service broken
            {
                this is not an attribute
            """)
        #expect(t.items.count == 3)
        guard case .defaults(let d) = t.items[0], case .includeDir(let dir, _) = t.items[1],
              case .service(let name, let attrs, _, let line) = t.items[2] else {
            Issue.record("unexpected items \(t.items)")
            return
        }
        #expect(d.map(\.name) == ["log_type", "only_from"])
        #expect(dir == "/etc/xinetd.d")
        #expect(name == "myapp" && line == 9)
        #expect(attrs[1].op == .add && attrs[1].values == ["192.168.1.0/24"])
        #expect(attrs[2].op == .remove && attrs[2].name == "no_access")
        let text = t.diagnostics.map(\.description).joined(separator: "\n")
        #expect(text.contains("xinetd.conf:16: expected ATTRIBUTE = VALUE (or += or -=), got 'this is not an attribute'"), "\(text)")
        #expect(text.contains("xinetd.conf:14: service broken: no closing '}'"), "\(text)")
        let merged = XinetdService(name: "myapp", file: "f", line: 1, defaults: d, attributes: attrs)
        #expect(merged.values["only_from"] == ["10.0.0.0/8", "192.168.1.0/24"], "+= adds to what the defaults gave")
        #expect(XinetdText.includedFileName("echo") && !XinetdText.includedFileName("echo.dpkg-old") && !XinetdText.includedFileName("echo~"))
    }

    /// Debian's /etc/xinetd.d/echo, enabled.
    @Test func debiansEchoBecomesTwoBuiltins() {
        let r = xinetd("""
            service echo
            {
            \tdisable\t\t= no
            \ttype\t\t= INTERNAL
            \tid\t\t= echo-stream
            \tsocket_type\t= stream
            \tprotocol\t= tcp
            \tuser\t\t= root
            \twait\t\t= no
            }
            service echo
            {
            \tdisable\t\t= yes
            \ttype\t\t= INTERNAL
            \tid\t\t= echo-dgram
            \tsocket_type\t= dgram
            \tprotocol\t= udp
            \tuser\t\t= root
            \twait\t\t= yes
            }
            """)
        #expect(r.unitNames == ["echo-stream.socket"])
        #expect(unit(r, "echo-stream.socket").contains("ListenStream=0.0.0.0:7\nInternalService=echo\n"))
        #expect(r.skipped == ["echo-dgram (disabled)"])
        let c = Configuration.load(files: r.units.map { ($0.name, $0.text) }, host: HostFacts())
        #expect(!c.hasErrors, "\(c.diagnostics)")
    }

    @Test func aServerWithEveryAttribute() {
        let r = xinetd("""
            service myapp
            {
                socket_type = stream
                wait        = no
                user        = nobody
                group       = nogroup
                server      = /usr/local/bin/my app
                server_args = -v --name "x" 100%
                flags       = IPv6 NODELAY KEEPALIVE REUSE
                instances   = 30
                per_source  = 5
                cps         = 50 10
                only_from   = 10.0.0.0 192.168.{1,2}.0
                no_access   = 10.1.0.0/16
                env         = LANG=C MODE=a$b
                passenv     = PATH
                umask       = 22
                nice        = 5
                rlimit_as   = 64M
                rlimit_files = UNLIMITED
                log_on_success = PID HOST DURATION
                banner      = /etc/issue
                access_times = 08:00-17:00
                bogus_attr  = 1
            }
            """, defaults: "defaults\n{\n log_type = SYSLOG daemon info\n}\n")
        #expect(r.unitNames == ["myapp.socket", "myapp@.service"])
        let socket = unit(r, "myapp.socket"), service = unit(r, "myapp@.service")
        for line in ["ListenStream=[::]:7777", "BindIPv6Only=both", "NoDelay=yes", "KeepAlive=yes", "Accept=yes", "MaxConnections=30",
                     "MaxConnectionsPerSource=5", "TriggerLimitIntervalSec=1s", "TriggerLimitBurst=50", "TriggerLimitPauseSec=10s",
                     "IPAddressDeny=any 10.1.0.0/16", "LogConnections=yes", "Banner=/etc/issue"] {
            #expect(socket.contains(line + "\n"), "\(line) in\n\(socket)")
        }
        #expect(socket.contains("IPAddressAllow=") && !socket.contains("IPAddressAllow=10.0.0.0/8 "), "10/8 is written without the hole")
        for line in ["ExecStart=\"/usr/local/bin/my app\" -v --name \"\\\"x\\\"\" 100%%", "StandardInput=socket", "User=nobody", "Group=nogroup",
                     "Environment=LANG=C", "Environment=MODE=a$$b", "PassEnvironment=PATH", "UMask=0022", "Nice=5", "LimitAS=64M", "LimitNOFILE=infinity"] {
            #expect(service.contains(line + "\n"), "\(line) in\n\(service)")
        }
        let report = r.render()
        for needle in ["banner", "access_times", "bogus_attr", "log_type", "groups", "cps", "only_from", "no_access", "per_source", "instances"] {
            #expect(report.contains(needle), "\(needle) in the report")
        }
        // What porter makes of the units it wrote.
        let c = Configuration.load(files: r.units.map { ($0.name, $0.text) }, host: HostFacts())
        #expect(!c.hasErrors, "\(c.diagnostics)")
        let s = c.sockets[0]
        // xinetd's rule, on the converted lists: the hole stays denied.
        #expect(s.access.check([10, 1, 2, 3]) != .allowed)
        #expect(s.access.check([10, 2, 3, 4]) == .allowed)
        #expect(s.access.check([192, 168, 2, 9]) == .allowed)
        #expect(s.access.check([192, 168, 3, 9]) != .allowed)
        #expect(s.access.check([172, 16, 0, 1]) != .allowed)
        let exec = c.services.values.first!.exec!
        #expect(exec.path == "/usr/local/bin/my app")
        #expect(exec.arguments == ["/usr/local/bin/my app", "-v", "--name", "\"x\"", "100%%"], "as written: % specifiers resolve at start")
    }

    @Test func redirectAndNamesThatCannotBeChecked() {
        let r = xinetd("""
            service myapp
            {
                socket_type = stream
                wait = no
                redirect = 10.0.0.5 8080
            }
            service finger
            {
                socket_type = stream
                wait = no
                server = /usr/sbin/in.fingerd
                no_access = badhost.example.com
            }
            service daytime
            {
                socket_type = stream
                wait = no
                server = /bin/date
                only_from = trusted.example.com 127.0.0.1
            }
            """)
        #expect(unit(r, "myapp.service").contains("ProxyTo=10.0.0.5:8080\n"))
        #expect(!unit(r, "myapp.service").contains("ExecStart"))
        #expect(!unit(r, "myapp.socket").contains("Accept=yes"), "porter relays: Accept=no")
        #expect(!r.unitNames.contains("finger.socket"), "a deny list porter cannot check is not dropped silently: the service is not converted")
        #expect(r.render().contains("badhost.example.com"))
        #expect(unit(r, "daytime.socket").contains("IPAddressAllow=127.0.0.1\nIPAddressDeny=any\n"), "names are left out: stricter, and reported")
        let c = Configuration.load(files: r.units.map { ($0.name, $0.text) }, host: HostFacts())
        #expect(!c.hasErrors, "\(c.diagnostics)")
    }

    @Test func inetdConfEveryField() {
        let t = InetdText(file: "inetd.conf", text: """
            # /etc/inetd.conf
            echo            stream  tcp     nowait  root    internal
            echo            dgram   udp     wait    root    internal
            tftp            dgram   udp     wait    nobody  /usr/sbin/in.tftpd in.tftpd -s /srv/tftp
            finger          stream  tcp     nowait.400      nobody:nogroup  /usr/sbin/in.fingerd in.fingerd -w
            ident           stream  tcp     nowait  identd.identd   /usr/sbin/identd
            #<off># telnet  stream  tcp     nowait  telnetd /usr/sbin/tcpd  /usr/sbin/in.telnetd
            127.0.0.1:rsync stream tcp nowait root /usr/bin/rsync rsyncd --daemon
                --config=/etc/rsyncd.conf
            myapp stream tcp6 nowait root /usr/local/bin/app
            oops stream tcp
            """)
        #expect(t.entries.map(\.service) == ["echo", "echo", "tftp", "finger", "ident", "telnet", "rsync", "myapp"])
        #expect(t.diagnostics.map(\.description) == ["inetd.conf:11: expected SERVICE SOCKET-TYPE PROTOCOL WAIT USER SERVER [ARGS...], got 3 fields"])
        let finger = t.entries[3]
        #expect(finger.maxPerMinute == 400 && finger.user == "nobody" && finger.group == "nogroup")
        #expect(t.entries[4].user == "identd" && t.entries[4].group == "identd")
        #expect(t.entries[5].disabled)
        #expect(t.entries[6].host == "127.0.0.1" && t.entries[6].arguments == ["rsyncd", "--daemon", "--config=/etc/rsyncd.conf"])
        let r = InetdImport(services: Self.services).convert(t.entries)
        #expect(r.unitNames == ["echo.socket", "echo-udp.socket", "tftp.socket", "tftp.service", "finger.socket", "finger@.service",
                                "ident.socket", "ident@.service", "rsync.socket", "rsync@.service", "myapp-tcp6.socket", "myapp-tcp6@.service"])
        #expect(unit(r, "tftp.service").contains("ExecStart=/usr/sbin/in.tftpd -s /srv/tftp\nStandardInput=socket\nUser=nobody\n"), "argv[0] is the program's own name: no @")
        #expect(unit(r, "tftp.socket").contains("ListenDatagram=0.0.0.0:69\n"))
        #expect(unit(r, "finger.socket").contains("TriggerLimitBurst=400\n"))
        #expect(unit(r, "finger@.service").contains("User=nobody\nGroup=nogroup\n"))
        #expect(unit(r, "rsync.socket").contains("ListenStream=127.0.0.1:873\n"))
        #expect(unit(r, "rsync@.service").contains("ExecStart=@/usr/bin/rsync rsyncd --daemon --config=/etc/rsyncd.conf\n"))
        #expect(unit(r, "myapp-tcp6.socket").contains("ListenStream=[::]:7777\nBindIPv6Only=ipv6-only\n"))
        #expect(unit(r, "echo-udp.socket").contains("ListenDatagram=0.0.0.0:7\nInternalService=echo\n"))
        #expect(r.skipped == ["telnet/tcp (disabled)"])
        let c = Configuration.load(files: r.units.map { ($0.name, $0.text) }, host: HostFacts())
        #expect(!c.hasErrors, "\(c.diagnostics)")
        #expect(c.sockets.count == 7)
    }

    /// A host name where an address belongs (inetd's `host:service`,
    /// xinetd's bind) is resolved to the name's first address of the
    /// family, as inetd binds it.
    @Test func listenHostNamesAreResolvedWhenRead() {
        let resolve: XinetdAccess.HostResolver = {
            ["localhost": [Array(repeating: 0, count: 15) + [1], [127, 0, 0, 1]]][$0]
        }
        let t = InetdText(file: "inetd.conf", text: """
            localhost:echo stream tcp nowait root internal
            localhost:daytime stream tcp6 nowait root internal
            nowhere.invalid:time stream tcp nowait root internal
            """)
        var i = InetdImport(services: Self.services)
        i.resolve = resolve
        let r = i.convert(t.entries)
        #expect(unit(r, "echo.socket").contains("ListenStream=127.0.0.1:7\n"), "\(unit(r, "echo.socket"))")
        #expect(unit(r, "daytime-tcp6.socket").contains("ListenStream=[::1]:13\n") || unit(r, "daytime.socket").contains("ListenStream=[::1]:13\n"))
        #expect(r.skipped == ["time/tcp (host)"] && r.render().contains("nowhere.invalid is not an IP address, nor a host name"))
        let xr = xinetd("service echo\n{\n type = INTERNAL\n socket_type = stream\n wait = no\n bind = localhost\n}\n", resolve: resolve)
        #expect(unit(xr, "echo.socket").contains("ListenStream=127.0.0.1:7\n"), "\(unit(xr, "echo.socket"))")
    }

    /// Whatever a word holds, the ExecStart= line written for it reads back
    /// as that word.
    @Test func commandWordsRoundTrip() throws {
        var rng = SplitMix(seed: 11)
        let alphabet = Array("ab/ -\"'\\$%;{}=@\t~")
        for _ in 0..<500 {
            let words = (0..<Int(1 + rng.next() % 4)).map { _ in
                String((0..<Int(1 + rng.next() % 8)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })
            }
            let line = UnitWriter.command(["/bin/prog"] + words)
            let parsed = try ExecCommand.parse(line)
            #expect(parsed.count == 1, "\(line)")
            let expanded = try parsed[0].arguments.map { try Specifiers(unit: UnitName.parse("x.service")!, host: HostFacts()).expand($0) }
            let env = expanded.dropFirst().flatMap { EnvironmentExpansion.expand($0) { _ in nil } }
            #expect(env == words, "\(line)")
        }
    }

    @Test func servicesFile() {
        #expect(Self.services.port("auth", proto: "tcp") == 113)
        #expect(Self.services.port("ident", proto: "tcp") == 113, "aliases")
        #expect(Self.services.port("echo", proto: "udp") == 7)
        #expect(Self.services.port("tftp", proto: "tcp") == nil)
        #expect(Self.services.port("8080", proto: "tcp") == 8080)
        #expect(ServicesFile.builtin.port("chargen", proto: "udp") == 19)
    }
}
