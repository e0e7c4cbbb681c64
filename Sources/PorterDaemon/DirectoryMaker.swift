import Glibc
import PorterCore
import PorterSys

/// Makes a service's RuntimeDirectory= and the rest before it runs, and
/// removes its runtime directories after. Each path is resolved from its
/// root one component at a time without following a symlink someone else
/// could have placed (SafePath); missing parents are made root's, 0755;
/// the directory itself gets the unit's mode and is owned by its User= and
/// Group= (only the directory: what the service put inside is its own).
enum DirectoryMaker {
    /// The directories of `p` for `unit`, made or checked; the variables
    /// that name them. A failure fails the start with the path and errno.
    static func make(_ p: PreparedService, unit: UnitName) throws(Launch.Failure) -> [(String, String)] {
        var env: [(String, String)] = []
        let sp = Specifiers(unit: unit, host: p.host, user: p.config.user)
        for kind in ServiceDirectories.Kind.allCases {
            guard let entry = p.config.directories[kind], !entry.names.isEmpty else { continue }
            var paths: [String] = []
            for raw in entry.names {
                let name: String
                do { name = try sp.expand(raw) } catch { throw Launch.Failure("\(kind.rawValue)=\(raw): \(error.message)") }
                if let problem = ServiceDirectories.problem(name) { throw Launch.Failure("\(kind.rawValue)=: \(problem)") }
                let path = kind.root(p.host) + "/" + name
                do {
                    let fd = try SafePath.directory(path, trust: .porter, create: 0o755)
                    defer { fd.close() }
                    let proc = SafePath.procPath(fd)
                    if chmod(proc, mode_t(entry.mode)) != 0 {
                        throw Launch.Failure("\(kind.rawValue)=\(path): chmod: \(SysError.describe(SysError.current))")
                    }
                    if let ids = p.accountIDs, chown(proc, ids.uid, ids.gid) != 0 {
                        throw Launch.Failure("\(kind.rawValue)=\(path): chown: \(SysError.describe(SysError.current))")
                    }
                } catch let e as SafePath.Problem {
                    throw Launch.Failure("\(kind.rawValue)=\(path): \(e.description)")
                } catch let e as Launch.Failure {
                    throw e
                } catch {
                    throw Launch.Failure("\(kind.rawValue)=\(path): \(error)")
                }
                paths.append(path)
            }
            env.append((kind.variable, paths.joined(separator: ":")))
        }
        return env
    }

    /// RuntimeDirectory= once the service stopped (RuntimeDirectoryPreserve=
    /// decides): removed without following a link inside.
    static func removeRuntime(_ p: PreparedService, unit: UnitName) {
        guard let entry = p.config.directories[.runtime], !entry.names.isEmpty else { return }
        let sp = Specifiers(unit: unit, host: p.host, user: p.config.user)
        for raw in entry.names {
            guard let name = try? sp.expand(raw), ServiceDirectories.problem(name) == nil else { continue }
            let path = ServiceDirectories.Kind.runtime.root(p.host) + "/" + name
            let parentPath = path.split(separator: "/").dropLast().joined(separator: "/")
            guard let parent = SafePath.existingDirectory("/" + parentPath, trust: .porter) else { continue }
            defer { parent.close() }
            let last = String(path.split(separator: "/").last!)
            if let e = SafePath.removeTree(in: parent, last) {
                Log.warning("\(unit): RuntimeDirectory=\(path) not removed: \(e)")
            }
        }
    }
}
