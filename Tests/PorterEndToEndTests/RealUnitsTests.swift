import Glibc
import PorterSys
import Testing

/// Debian's own unit files, symlinked unchanged from /lib/systemd/system,
/// relocated only through drop-ins, and talked to with the real clients.
/// Skipped where the packages are not installed (`apt-get install rpcbind
/// cups-daemon cups-client`); the core suite needs none of them.
@Suite("units Debian ships", .serialized, .timeLimit(.minutes(2)))
struct RealUnitsTests {
    static func exists(_ p: String) -> Bool { access(p, F_OK) == 0 }
    static func portFree(_ port: UInt16) -> Bool { (try? Client.tcp(port)).map { $0.close(); return false } ?? true }

    static let rpcbind = getuid() == 0 && exists("/lib/systemd/system/rpcbind.socket") && exists("/sbin/rpcbind")
        && exists("/usr/sbin/rpcinfo") && portFree(111)
    static let cups = getuid() == 0 && exists("/lib/systemd/system/cups.socket") && exists("/usr/sbin/cupsd")
        && exists("/usr/bin/lpstat") && !listening("/run/cups/cups.sock")
    /// A cupsd already running would answer instead of porter's; a stale socket file is fine.
    static func listening(_ path: String) -> Bool { (try? Client.unix(path)).map { $0.close(); return true } ?? false }

    /// Runs `argv`, returns its exit status and output.
    func run(_ argv: [String], in dir: String) throws -> (Int32, String) {
        let out = dir + "/client-\(argv[0].split(separator: "/").last!)"
        let pid = spawnProgram(argv, stdout: out, stderr: out)
        return (try waitExit(pid, seconds: 30), readFile(out))
    }

    @Test(.enabled(if: rpcbind, "needs root, Debian's rpcbind package (apt-get install rpcbind) and port 111 free"))
    func rpcbindAnswersRpcinfo() throws {
        let porter = try PorterRun("rpcbind", units: [
            // Loopback only: the unit listens on 0.0.0.0:111 and [::]:111.
            "rpcbind.socket.d/loopback.conf": "[Socket]\nListenStream=\nListenDatagram=\nListenStream=/run/rpcbind.sock\nListenStream=127.0.0.1:111\nListenDatagram=127.0.0.1:111\n",
        ])
        // Linked in after porter started (PorterRun writes files): read on a reload.
        for unit in ["rpcbind.socket", "rpcbind.service"] { symlink("/lib/systemd/system/" + unit, porter.units + "/" + unit) }
        kill(porter.pid, SIGHUP)
        try porter.waitForLog("configuration reloaded")
        let (status, out) = try run(["/usr/sbin/rpcinfo", "-p", "127.0.0.1"], in: porter.dir)
        #expect(status == 0, "\(out)")
        #expect(out.contains("portmapper") && out.contains("udp") && out.contains("tcp"))
        try porter.waitForLog("rpcbind.service: ready after")  // Type=notify, as shipped
        #expect(try porter.stop() == 0)
        #expect(porter.log.contains("rpcbind.service: pid"))
    }

    @Test(.enabled(if: cups, "needs root and Debian's cups-daemon and cups-client (apt-get install cups-daemon cups-client), and no cupsd running"))
    func cupsAnswersLpstat() throws {
        let porter = try PorterRun("cups", units: [:])
        for unit in ["cups.socket", "cups.path", "cups.service"] { symlink("/lib/systemd/system/" + unit, porter.units + "/" + unit) }
        kill(porter.pid, SIGHUP)
        try porter.waitForLog("configuration reloaded")
        let (status, out) = try run(["/usr/bin/lpstat", "-h", "/run/cups/cups.sock", "-r"], in: porter.dir)
        #expect(status == 0 && out.contains("scheduler is running"), "\(out)")
        try porter.waitForLog("cups.service: ready after")
        #expect(try porter.stop() == 0)
        // RemoveOnStop=on in the shipped unit.
        #expect(!Self.exists("/run/cups/cups.sock"))
    }
}
