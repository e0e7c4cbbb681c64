import Glibc
import PorterCore
import PorterSys

/// Reads a configuration directory and resolves what the pure parser
/// cannot: users and groups, the host's facts for specifiers.
public enum ConfigLoader {
    /// The facts specifiers and defaults need, read once.
    public static func hostFacts(environment: [String: String]) -> HostFacts {
        var facts = HostFacts()
        var name = [CChar](repeating: 0, count: 256)
        if gethostname(&name, name.count) == 0 { facts.hostname = String(cString: name) }
        let uid = Processes.effectiveUID
        facts.uid = uid
        facts.gid = Processes.effectiveGID
        if let me = Users.user(String(uid)) {
            facts.userName = me.name
            facts.home = me.home
            facts.shell = me.shell
        }
        facts.groupName = Users.groupName(facts.gid)
        if uid != 0 {
            // What systemd's user manager uses for %t, %S, %C, %L, %E.
            let home = environment["HOME"] ?? facts.home
            facts.home = home
            facts.runtimeDirectory = environment["XDG_RUNTIME_DIR"] ?? "/tmp"
            facts.stateDirectory = environment["XDG_STATE_HOME"] ?? home + "/.local/state"
            facts.cacheDirectory = environment["XDG_CACHE_HOME"] ?? home + "/.cache"
            facts.logsDirectory = facts.stateDirectory + "/log"
            facts.configDirectory = environment["XDG_CONFIG_HOME"] ?? home + "/.config"
        }
        var u = utsname()
        if uname(&u) == 0 {
            facts.kernelRelease = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        facts.machineID = ((try? Files.read("/etc/machine-id")) ?? "").trimmingWhitespace()
        facts.bootID = ((try? Files.read("/proc/sys/kernel/random/boot_id")) ?? "").trimmingWhitespace().replacing("-", with: "")
        return facts
    }

    /// The unit files of a configuration directory, read through one
    /// directory fd.
    public struct Directory {
        let fd: FileDescriptor
        public let path: String
        /// Unit file names, sorted.
        public let names: [String]

        /// Owns the directory fd until `close()`.
        public init(_ path: String) throws(SysError) {
            self.path = path
            fd = try Files.openDirectory(path)
            names = try Files.list(path).filter(UnitSet.isUnitFileName).sorted()
        }

        /// Reads the named files into `units`; unreadable ones are reported.
        public func add(_ selected: [String], to units: inout UnitSet, host: HostFacts) {
            for name in selected {
                do {
                    units.add(fileName: name, bytes: try Files.readBytes(at: fd, name), host: host)
                } catch {
                    units.report(Diagnostic(.error, file: name, "cannot read: \(error.reason)"))
                }
            }
        }

        public func close() { fd.close() }
    }

    /// Every unit file in `directory`, parsed and paired.
    public static func load(directory: String, host: HostFacts) throws(SysError) -> Configuration {
        let dir = try Directory(directory)
        defer { dir.close() }
        var units = UnitSet()
        dir.add(dir.names, to: &units, host: host)
        return Configuration.pair(units)
    }
}
