import Glibc
import PorterCore
import PorterDaemon
import PorterSys
import Testing

/// End-to-end tests run one at a time: each starts the real porter binary,
/// and timing-sensitive ones should not compete for the two cores.
@Suite("end to end", .serialized)
struct EndToEnd {}

/// Whether ::1 can be bound here (containers without IPv6 have none).
let hasIPv6Loopback: Bool = {
    guard let s = try? Socket.open(family: AF_INET6, type: Int32(SOCK_STREAM.rawValue), nonBlocking: false) else { return false }
    defer { s.close() }
    return (try? Socket.bind(s, try SocketAddress(.ipv6(address: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], port: 0, scope: nil)))) != nil
}()

extension EndToEnd {
    @Suite("activation", .timeLimit(.minutes(2)))
    struct Activation {
        /// Accept=yes, inetd style: the connection on 0/1/2, no LISTEN_*,
        /// systemd's and UCSPI's connection variables, systemd's instance name.
        @Test func acceptYesOverTCPv4() throws {
            let port = freePort()
            // Start porter with a low soft fd limit, as a shell would give it.
            var original = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &original)
            var low = original
            low.rlim_cur = min(1024, original.rlim_max)
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &low)
            let porter = try PorterRun("tcp4", units: [
                "echo.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n",
                "echo@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
            ])
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &original)
            let c = try Client.tcp(port)
            let local = try Socket.localAddress(c.fd)
            let report = Report(try c.readAll())
            c.close()
            let env = report.environment
            #expect(env["REMOTE_ADDR"] == "127.0.0.1")
            #expect(env["REMOTE_PORT"] == String(local.port!))
            #expect(env["PROTO"] == "TCP")
            #expect(env["TCPREMOTEIP"] == "127.0.0.1" && env["TCPREMOTEPORT"] == String(local.port!))
            #expect(env["TCPLOCALIP"] == "127.0.0.1" && env["TCPLOCALPORT"] == String(port))
            #expect(env["LISTEN_FDS"] == nil && env["LISTEN_PID"] == nil)
            #expect(env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            // Exactly 0, 1 and 2, all the same connection, blocking, inheritable.
            let fds = report.fds
            #expect(Set(fds.keys) == [0, 1, 2], "\(fds)")
            let inode = inodeOfSocket(fds[0] ?? "")
            #expect(inode != nil && fds.values.allSatisfy { inodeOfSocket($0) == inode && $0.hasSuffix("block inherit") })
            #expect(report.value("sid") == String(report.pid))
            #expect(report.value("SigBlk:") == "0000000000000000")
            // porter raises its own fd limit but hands children the one it was given.
            #expect(report.value("nofile") == "\(low.rlim_cur) \(low.rlim_max)")
            let limits = readFile("/proc/\(porter.pid)/limits").split(separator: "\n").first { $0.hasPrefix("Max open files") } ?? ""
            #expect(limits.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first == Substring(String(low.rlim_max)))
            let log = try porter.waitForLog("exited, status 0")
            let name = "echo@0-"
            // xinetd's log_on_success: the peer, the pid, the exit and how long it took.
            let middle = "-127.0.0.1:\(port)-127.0.0.1:\(local.port!).service: pid \(report.pid) from 127.0.0.1:\(local.port!) exited, status 0, after "
            #expect(log.split(separator: "\n").contains { $0.contains(name) && $0.contains(middle) && $0.hasSuffix("ms") }, "\(log)")
            #expect(try porter.stop() == 0)
        }

        @Test(.enabled(if: hasIPv6Loopback, "no IPv6 loopback on this host"))
        func acceptYesOverTCPv6() throws {
            let port = freePort(AF_INET6)
            let porter = try PorterRun("tcp6", units: [
                "echo.socket": "[Socket]\nListenStream=[::1]:\(port)\nAccept=yes\n",
                "echo@.service": "[Service]\nExecStart=\(handlerBinary) report\nStandardInput=socket\n",
            ])
            let loopback: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
            let c = try Client.tcp(port, host: loopback)
            let env = Report(try c.readAll()).environment
            c.close()
            #expect(env["REMOTE_ADDR"] == "::1" && env["PROTO"] == "TCP6")
            #expect(env["TCP6LOCALPORT"] == String(port) && env["TCPREMOTEIP"] == "::1")
            try porter.waitForLog("-::1:\(port)-::1:")
            #expect(try porter.stop() == 0)
        }

        /// Without StandardInput=socket the connection is fd 3, sd_listen_fds style,
        /// and stdout goes to porter's log.
        @Test func acceptYesOverUnixWithListenFDs() throws {
            let porter = try PorterRun("unix", units: [
                "echo.socket": "[Socket]\nListenStream=%t/porter-test-\(getpid())/echo.sock\nAccept=yes\nSocketMode=0600\nRemoveOnStop=yes\n",
                "echo@.service": "[Service]\nExecStart=\(handlerBinary) report\n",
            ])
            let runtime = geteuid() == 0 ? "/run" : (getenv("XDG_RUNTIME_DIR").map { String(cString: $0) } ?? "/tmp")
            let path = runtime + "/porter-test-\(getpid())/echo.sock"
            let st = try #require(try Files.status(path, follow: false))
            #expect(st.isSocket && st.mode & 0o777 == 0o600)
            let c = try Client.unix(path)
            c.shutdownWrite()
            _ = try? c.readAll(seconds: 2)
            c.close()
            // The handler wrote its report to stdout: porter's log.
            let log = try porter.waitForLog("end\n")
            let lines = log.split(separator: "\n").filter { $0.contains("echo@") && $0.contains(".service: ") }
            let report = Report(lines.map { l in String(l[l.firstRange(of: ".service: ")!.upperBound...]) }.joined(separator: "\n"))
            let env = report.environment
            #expect(env["LISTEN_FDS"] == "1" && env["LISTEN_FDNAMES"] == "connection")
            #expect(env["LISTEN_PID"] == String(report.pid))
            #expect(env["PROTO"] == "UNIX" && env["UNIXREMOTEPID"] == String(getpid()))
            #expect(Set(report.fds.keys) == [0, 1, 2, 3], "\(report.fds)")
            #expect(report.fds[0]?.hasPrefix("/dev/null") == true)
            #expect(report.fds[1]?.hasPrefix("pipe:") == true)
            #expect(inodeOfSocket(report.fds[3] ?? "") != nil)
            // Unix peers are named NR-COOKIE-PID_PIDFDID-UID (or NR-COOKIE-PID-UID).
            let exit = try porter.waitForLog("pid \(report.pid) from pid \(getpid()) uid \(getuid()) exited")
            #expect(exit.split(separator: "\n").contains { $0.contains("echo@0-") && $0.contains("-\(getpid())") && $0.contains("-\(getuid()).service: pid \(report.pid) from pid \(getpid()) uid \(getuid()) exited, status 0, after ") })
            #expect(try porter.stop() == 0)
            #expect(try Files.status(path, follow: false) == nil, "RemoveOnStop=yes removes the socket file")
            rmdir(runtime + "/porter-test-\(getpid())")
        }

        /// Accept=no: every listening fd of every socket that activates the
        /// service, from fd 3, named, with LISTEN_PID set by the child itself.
        @Test func acceptNoWithSeveralListenersAndNames() throws {
            let (p1, p2, p3) = (freePort(), freePort(), freePort())
            let porter = try PorterRun("wait", units: [
                "web.socket": "[Socket]\nListenStream=127.0.0.1:\(p1)\nListenStream=127.0.0.1:\(p2)\n",
                "admin.socket": "[Socket]\nListenStream=127.0.0.1:\(p3)\nService=web.service\nFileDescriptorName=admin\n",
                "web.service": "[Service]\nExecStart=\(handlerBinary) serve\n",
            ])
            // The second listener of web.socket starts it...
            var c = try Client.tcp(p2)
            var text = try c.readAll()
            c.close()
            var report = Report(text)
            #expect(report.value("accepted-on") == "4")
            let env = report.environment
            #expect(env["LISTEN_FDS"] == "3")
            #expect(env["LISTEN_FDNAMES"] == "web.socket:web.socket:admin")
            #expect(env["LISTEN_PID"] == String(report.pid))
            #expect(Set(report.fds.keys) == [0, 1, 2, 3, 4, 5], "\(report.fds)")
            #expect(report.fds.filter { $0.key >= 3 }.values.allSatisfy { $0.hasPrefix("socket:") && $0.hasSuffix("block inherit") })
            try porter.waitForLog("web.service: pid \(report.pid) exited, status 0")
            // ...and after it exits, the other socket starts it again.
            c = try Client.tcp(p3)
            text = try c.readAll()
            c.close()
            report = Report(text)
            #expect(report.value("accepted-on") == "5")
            // The child can answer before porter has written its line: wait for it.
            try porter.waitForLog("web.service: started pid \(report.pid) with 3 fds (LISTEN_FDNAMES=web.socket:web.socket:admin)")
            #expect(try porter.stop() == 0)
        }

        /// A bare port listens on [::] and takes IPv4 too (BindIPv6Only=default);
        /// sequential packet sockets in the abstract namespace are accepted too.
        @Test func barePortIsDualStackAndSeqpacketAbstract() throws {
            let port = freePort()
            let name = "porter-test-\(getpid())"
            let porter = try PorterRun("dual", units: [
                "any.socket": "[Socket]\nListenStream=\(port)\nAccept=yes\n",
                "any@.service": "[Service]\nExecStart=\(handlerBinary) say dual\nStandardInput=socket\n",
                "pkt.socket": "[Socket]\nListenSequentialPacket=@\(name)\nAccept=yes\n",
                "pkt@.service": "[Service]\nExecStart=\(handlerBinary) say packet\nStandardInput=socket\n",
            ])
            let c = try Client.tcp(port)
            #expect(try c.readAll().hasPrefix("dual\n"))
            c.close()
            try porter.waitForLog("any@0-")
            #expect(porter.log.contains("-127.0.0.1:\(port)-127.0.0.1:"), "IPv4-mapped addresses are named as IPv4")
            let p = try Client.connect(.abstract(name), family: AF_UNIX, type: Int32(SOCK_SEQPACKET.rawValue))
            #expect(try p.readAll(datagram: true) == "packet\n")
            p.close()
            #expect(try porter.stop() == 0)
        }

        /// Every fd porter holds is close-on-exec (the kernel's own view, /proc/PID/fdinfo).
        @Test func everyPorterFDIsCloseOnExec() throws {
            let port = freePort()
            let porter = try PorterRun("cloexec", units: [
                "a.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\n",
                "a.service": "[Service]\nExecStart=\(handlerBinary) serve\n",
                "b.socket": "[Socket]\nListenDatagram=127.0.0.1:\(freePort())\n",
                "b.service": "[Service]\nExecStart=\(handlerBinary) udp\nStandardInput=socket\n",
            ])
            let c = try Client.tcp(port)  // creates the journal pipe too
            _ = try c.readAll()
            c.close()
            let fds = try Files.list("/proc/\(porter.pid)/fd").compactMap { Int32($0) }.filter { $0 > 2 }
            #expect(fds.count >= 7)
            for fd in fds {
                let info = readFile("/proc/\(porter.pid)/fdinfo/\(fd)")
                let flags = info.split(separator: "\n").first { $0.hasPrefix("flags:") }.map { Int($0.dropFirst(6).trimmingWhitespace(), radix: 8) ?? 0 } ?? 0
                #expect(flags & 0o2000000 != 0, "fd \(fd) of porter is not close-on-exec")
            }
            #expect(try porter.stop() == 0)
        }

        /// UDP with StandardInput=socket, inetd "wait" style (in.tftpd): the
        /// listening socket on stdin/stdout; datagrams queued meanwhile start it again.
        @Test func udpWithStandardInputSocket() throws {
            let port = freePort()
            let porter = try PorterRun("udp", units: [
                "tftp.socket": "[Socket]\nListenDatagram=127.0.0.1:\(port)\n",
                "tftp.service": "[Service]\nExecStart=\(handlerBinary) udp\nStandardInput=socket\n",
            ])
            var pids: Set<Int32> = []
            for i in 0..<3 {
                let c = try Client.udp(port)
                try c.send("ping\(i)")
                let reply = try c.readAll(datagram: true)
                c.close()
                #expect(reply.hasPrefix("got ping\(i)\n"))
                let r = Report(String(reply.drop(while: { $0 != "\n" }).dropFirst()))
                #expect(r.environment["LISTEN_FDS"] == nil)
                #expect(Set(r.fds.keys) == [0, 1, 2])
                pids.insert(r.pid)
                try porter.waitForLog("tftp.service: pid \(r.pid) exited")
            }
            #expect(pids.count == 3)
            #expect(try porter.stop() == 0)
        }

        @Test(.enabled(if: isRoot, "User= needs porter to run as root"))
        func userSwitchesCredentials() throws {
            // A copy of the handler that nobody can reach (the build tree may be under /root).
            let copies = makeTempDirectory("handler")
            defer { _ = system("rm -rf '\(copies)'") }
            let handler = copies + "/handler"
            #expect(system("cp '\(handlerBinary)' '\(handler)' && chmod 755 '\(handler)'") == 0)
            let port = freePort()
            let porter = try PorterRun("user", units: [
                "id.socket": "[Socket]\nListenStream=127.0.0.1:\(port)\nAccept=yes\n",
                "id@.service": "[Service]\nExecStart=\(handler) report\nUser=nobody\nStandardInput=socket\nWorkingDirectory=/tmp\n",
            ])
            let c = try Client.tcp(port)
            let r = Report(try c.readAll())
            c.close()
            let nobody = try #require(Users.user("nobody"))
            #expect(r.value("uid") == "\(nobody.uid) \(nobody.uid)")
            #expect(r.value("gid") == "\(nobody.gid) \(nobody.gid)")
            #expect(r.value("groups") == Users.groups(of: "nobody", gid: nobody.gid).map(String.init).joined(separator: ","))
            #expect(r.environment["USER"] == "nobody" && r.environment["HOME"] == nobody.home)
            #expect(r.value("cwd") == "/tmp")
            #expect(try porter.stop() == 0)
        }
    }
}
