import Glibc
import PorterCore
import PorterSys

/// Reads a configuration directory and resolves what the pure parser
/// cannot: users and groups, the host's facts for specifiers.
public enum ConfigLoader {
    /// The facts specifiers and defaults need, read once.
    public static func hostFacts(environment: [String: String]) -> HostFacts {
        var hostname = "localhost"
        var name = [CChar](repeating: 0, count: 256)
        if gethostname(&name, name.count) == 0 { hostname = String(cString: name) }
        let uid = Processes.effectiveUID
        let gid = Processes.effectiveGID
        let me = Users.user(String(uid))
        var home = me?.home ?? "/root"
        var dirs = (runtime: "/run", state: "/var/lib", cache: "/var/cache", logs: "/var/log", config: "/etc")
        if uid != 0 {
            // What systemd's user manager uses for %t, %S, %C, %L, %E.
            home = environment["HOME"] ?? home
            let state = environment["XDG_STATE_HOME"] ?? home + "/.local/state"
            dirs = (environment["XDG_RUNTIME_DIR"] ?? "/tmp", state, environment["XDG_CACHE_HOME"] ?? home + "/.cache",
                    state + "/log", environment["XDG_CONFIG_HOME"] ?? home + "/.config")
        }
        var release = ""
        var u = utsname()
        if uname(&u) == 0 {
            release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        return HostFacts(
            hostname: hostname, userName: me?.name ?? String(uid), uid: uid, groupName: Users.groupName(gid), gid: gid,
            home: home, shell: me?.shell ?? "/bin/sh", runtimeDirectory: dirs.runtime, stateDirectory: dirs.state,
            cacheDirectory: dirs.cache, logsDirectory: dirs.logs, configDirectory: dirs.config, kernelRelease: release,
            machineID: ((try? Files.read("/etc/machine-id")) ?? "").trimmingWhitespace(),
            bootID: ((try? Files.read("/proc/sys/kernel/random/boot_id")) ?? "").trimmingWhitespace().replacing("-", with: ""))
    }

    /// The unit files of a configuration directory, read through one
    /// directory fd.
    public struct Directory {
        let fd: FileDescriptor
        public let path: String
        /// Unit file names, sorted.
        public let names: [String]
        /// Names that look like unit files but are not UTF-8, escaped for
        /// messages: refused, never decoded into a name that is not theirs.
        public let invalidNames: [String]

        /// Owns the directory fd until `close()`.
        public init(_ path: String) throws(SysError) {
            self.path = path
            fd = try Files.openDirectory(path)
            var names: [String] = [], invalid: [String] = []
            for raw in try Files.listRaw(path) {
                if let name = String(validating: raw, as: UTF8.self) {
                    if UnitSet.isUnitFileName(name) { names.append(name) }
                } else if UnitSet.isUnitFileName(String(decoding: raw, as: UTF8.self)) {
                    invalid.append(Quote.escaped(bytes: raw))
                }
            }
            self.names = names.sorted()
            invalidNames = invalid.sorted()
        }

        /// Reads the named files into `units`; unreadable ones are reported
        /// and refused (FIFOs, devices, files over the size limit).
        public func add(_ selected: [String], to units: inout UnitSet, host: HostFacts) {
            units.reserve(selected.count)
            for name in selected {
                do {
                    units.add(fileName: name, bytes: try Files.readBytes(at: fd, name), host: host)
                } catch {
                    units.refuse(fileName: name, "\(error)")
                }
            }
        }

        /// Whether someone besides root (and porter's user) can write the
        /// directory: whoever can add a unit there runs programs as porter.
        public var writableByOthers: Bool { !SafePath.allowsLinks(in: fd, trust: .porter) }

        /// Reports the names that are not UTF-8.
        public func reportInvalidNames(to units: inout UnitSet) {
            for name in invalidNames {
                units.report(Diagnostic(.error, file: name, "file name is not valid UTF-8, refused (unit names are letters, digits and :-_.\\ only)"))
            }
        }

        public func close() { fd.close() }
    }
}
