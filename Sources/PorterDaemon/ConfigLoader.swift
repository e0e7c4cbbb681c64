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

    /// The directories porter reads when none is given, first wins, as
    /// systemd reads /etc, /run and /usr/lib: the admin's units, runtime
    /// ones, and what packages install. Missing ones are skipped.
    public static let defaultDirectories = ["/etc/porter", "/run/porter", "/usr/lib/porter"]

    /// The unit files of several configuration directories, each read
    /// through its own directory fd; which file makes which unit is
    /// `UnitSources`' decision.
    public struct Directories {
        let fds: [FileDescriptor]
        public let paths: [String]
        public let sources: UnitSources
        /// Names that look like unit files but are not UTF-8, escaped for
        /// messages: refused, never decoded into a name that is not theirs.
        public let invalidNames: [String]

        /// Owns the directory fds until `close()`. `optional`: the defaults,
        /// of which missing ones are skipped.
        public init(_ paths: [String], optional: Bool = false, allowNone: Bool = false) throws(Failure) {
            var fds: [FileDescriptor] = [], kept: [String] = [], listings: [UnitSources.Listing] = [], invalid: [String] = []
            for path in paths {
                let fd: FileDescriptor
                do {
                    guard let st = try Files.status(path), st.isDirectory else {
                        if optional { continue }
                        for f in fds { f.close() }
                        throw Failure("\(path): not a directory; expected --config-dir DIR with .socket, .service and .path files")
                    }
                    fd = try Files.openDirectory(path)
                } catch let e as SysError {
                    for f in fds { f.close() }
                    throw Failure("\(path): cannot read: \(e.reason)")
                } catch let e as Failure {
                    throw e
                } catch {
                    throw Failure("\(path): \(error)")
                }
                fds.append(fd)
                kept.append(path)
                listings.append(Self.list(fd, path))
                for raw in (try? Files.listRaw(path)) ?? [] where String(validating: raw, as: UTF8.self) == nil
                    && UnitSources.isUnitFileName(String(decoding: raw, as: UTF8.self)) {
                    invalid.append(Quote.escaped(bytes: raw))
                }
            }
            guard !fds.isEmpty || allowNone else {
                throw Failure("no configuration directory: none of \(paths.joined(separator: ", ")) exists; expected --config-dir DIR")
            }
            self.fds = fds
            self.paths = kept
            sources = UnitSources.resolve(listings)
            invalidNames = invalid.sorted()
        }

        public struct Failure: Error, CustomStringConvertible {
            public var description: String
            init(_ d: String) { description = d }
        }

        /// One directory: unit files (what each is) and drop-in directories.
        static func list(_ fd: FileDescriptor, _ path: String) -> UnitSources.Listing {
            var listing = UnitSources.Listing(path: path)
            var dropInDirs: [String] = []
            try? Files.forEachEntry(in: fd) { name, type in
                if UnitSources.isUnitFileName(name) {
                    listing.units[name] = entry(fd, name, type)
                } else if name.hasSuffix(".d"), type == DT_DIR || type == DT_LNK || type == DT_UNKNOWN {
                    dropInDirs.append(name)
                }
                return true
            }
            for dir in dropInDirs {
                guard let sub = try? Files.openDirectory(at: fd, dir) else { continue }
                var files: [String: UnitSources.Entry] = [:]
                try? Files.forEachEntry(in: sub) { name, type in
                    if name.hasSuffix(".conf") { files[name] = entry(sub, name, type) }
                    return true
                }
                sub.close()
                listing.dropIns[dir] = files
            }
            return listing
        }

        /// A file, a symlink, or masked by a link to /dev/null. An empty
        /// file masks too (systemd.unit(5)); that shows when it is read, so
        /// the listing costs no stat per file.
        static func entry(_ dir: FileDescriptor, _ name: String, _ type: UInt8) -> UnitSources.Entry {
            guard type == DT_LNK || type == DT_UNKNOWN, let target = Files.readLink(at: dir, name) else { return .file }
            return target == "/dev/null" ? .masked : .link(target)
        }

        /// Every unit that will be loaded, by name.
        public var names: [UnitName] { sources.units.keys.sorted() }

        /// Reads the files of `selected` into `units`; unreadable ones are
        /// reported and refused (FIFOs, devices, files over the size limit,
        /// a dangling symlink).
        public func add(_ selected: [UnitName], to units: inout UnitSet, host: HostFacts) {
            units.reserve(selected.count)
            for name in selected {
                guard let unit = sources.units[name] else { continue }
                var files: [(name: String, bytes: [UInt8])] = []
                do {
                    for src in unit.sources {
                        do {
                            files.append((src.displayName, try Files.readBytes(at: fds[src.directory], src.name)))
                        } catch {
                            throw Failure("\(error)")
                        }
                    }
                } catch {
                    units.refuse(fileName: files.isEmpty ? name.description : unit.sources[files.count].displayName, unit: name, "\(error)")
                    continue
                }
                if files[0].bytes.isEmpty {
                    units.mask(name, "\(name): masked by the empty file \(unit.file.path), not loaded")
                    continue
                }
                units.add(name, files: files, host: host)
            }
        }

        /// The unit as porter reads it, file by file, as `systemctl cat`
        /// prints it.
        public func show(_ name: UnitName) -> String? {
            guard let unit = sources.units[name] else { return nil }
            var out = ""
            for src in unit.sources {
                out += "# \(src.path)" + (src.linkTarget.map { " -> \($0)" } ?? "") + "\n"
                let bytes = (try? Files.readBytes(at: fds[src.directory], src.name)) ?? []
                out += String(decoding: bytes, as: UTF8.self)
                if !out.hasSuffix("\n") { out += "\n" }
                out += "\n"
            }
            return out
        }

        /// The directories others than root (and porter's user) can write:
        /// whoever can add a unit there runs programs as porter.
        public var writableByOthers: [String] {
            zip(fds, paths).filter { !SafePath.allowsLinks(in: $0.0, trust: .porter) }.map(\.1)
        }

        /// Reports the names that are not UTF-8, invalid unit names, drop-ins
        /// for missing units; logs masked units and aliases.
        public func report(to units: inout UnitSet) {
            for name in invalidNames {
                units.report(Diagnostic(.error, file: name, "file name is not valid UTF-8, refused (unit names are letters, digits and :-_.\\ only)"))
            }
            for d in sources.diagnostics { units.report(d) }
            for n in sources.notes { units.note(n) }
            for (name, path) in sources.masked { units.mask(name, "\(name): masked by \(path), not loaded") }
        }

        public func close() { for fd in fds { fd.close() } }
    }
}
