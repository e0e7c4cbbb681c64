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

    /// Every unit file in `directory`, parsed and paired.
    public static func load(directory: String, host: HostFacts) throws(SysError) -> Configuration {
        var files: [(name: String, text: String)] = []
        var problems: [Diagnostic] = []
        for name in try Files.list(directory).sorted() {
            guard UnitName.parse(name) != nil || name.hasSuffix(".socket") || name.hasSuffix(".service") || name.hasSuffix(".path") else { continue }
            do {
                files.append((name, try Files.read(directory + "/" + name)))
            } catch {
                problems.append(Diagnostic(.error, file: name, "cannot read: \(error.reason)"))
            }
        }
        var config = Configuration.load(files: files, host: host)
        config.diagnostics = problems + config.diagnostics
        return config
    }
}
