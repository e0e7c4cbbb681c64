import CPorter
import Glibc

/// Resolves a path one component at a time from "/", with
/// `openat(O_PATH|O_NOFOLLOW)` at each step, so that what porter ends up
/// holding is a directory it has checked, not whatever the path names a
/// moment later. A symlink is followed only where it sits in a directory
/// that no one but a trusted owner can write (so nobody else can have
/// put it there or swap it): an admin's `/var/run -> /run` keeps working,
/// a user's `inbox -> /root` in their own directory is refused. Porter
/// then works relative to the fd (openat, renameat, inotify through
/// /proc/self/fd/N), so a later swap of a component cannot redirect it.
public enum SafePath {
    /// Owners whose directories may hold symlinks porter follows: root and
    /// porter's own uid (a porter that is not root can be redirected only
    /// to what it could reach anyway).
    public struct Trust: Sendable {
        public var owners: Set<UInt32>
        public init(owners: Set<UInt32>) { self.owners = owners }

        /// root and the effective uid.
        public static var porter: Trust { Trust(owners: [0, geteuid()]) }

        /// Why a directory is not trusted to hold symlinks, or nil.
        func distrust(_ st: stat) -> String? {
            if !owners.contains(st.st_uid) { return "uid \(st.st_uid) owns it" }
            if st.st_mode & 0o002 != 0 { return "anyone can write it" }
            if st.st_mode & 0o020 != 0 && st.st_gid != 0 { return "group \(st.st_gid) can write it" }
            return nil
        }
    }

    public enum Outcome {
        /// The final component, opened O_PATH. The caller owns the fd.
        case found(FileDescriptor)
        /// A component does not exist: the deepest directory that does
        /// (opened O_PATH, owned by the caller) and its path.
        case missing(FileDescriptor, path: String)
        /// A symlink that may not be followed: the directory holding it
        /// (owned by the caller), its path, and why.
        case refused(FileDescriptor, path: String, reason: String)
        /// Something that is not a directory stands where one is needed: the
        /// directory holding it (owned by the caller), its path, and its name.
        case notDirectory(FileDescriptor, path: String, name: String)
    }

    static let maxLinks = 40  // as the kernel's MAXSYMLINKS

    /// Resolves the absolute `path`. With `create`, missing directories are
    /// made with that mode (mkdirat in the verified parent). With
    /// `directory`, the final component must be a directory too.
    public static func open(_ path: String, trust: Trust, create mode: UInt32? = nil,
                            directory: Bool = true) throws(SysError) -> Outcome {
        guard path.hasPrefix("/") else { throw SysError(call: "resolve(\(path))", errno: EINVAL) }
        var dir = try openRoot()
        var dirPath = "/"
        var rest = components(path)
        var links = 0
        while !rest.isEmpty {
            let name = rest.removeFirst()
            if name == "." { continue }
            if name == ".." {
                let up = porter_openat(dir.rawValue, "..", PORTER_O_PATH | O_DIRECTORY | O_CLOEXEC, 0)
                if up < 0 { dir.close(); throw SysError(call: "open(\(dirPath)/..)", errno: SysError.current) }
                dir.close()
                dir = FileDescriptor(up)
                dirPath = parent(of: dirPath)
                continue
            }
            let here = join(dirPath, name)
            var raw = porter_openat(dir.rawValue, name, PORTER_O_PATH | O_NOFOLLOW | O_CLOEXEC, 0)
            if raw < 0 && SysError.current == ENOENT, let mode {
                if mkdirat(dir.rawValue, name, mode_t(mode)) != 0 && SysError.current != EEXIST {
                    let e = SysError.current
                    dir.close()
                    throw SysError(call: "mkdir(\(here))", errno: e)
                }
                raw = porter_openat(dir.rawValue, name, PORTER_O_PATH | O_NOFOLLOW | O_CLOEXEC, 0)
            }
            if raw < 0 {
                let e = SysError.current
                if e == ENOENT { return .missing(dir, path: dirPath) }
                dir.close()
                throw SysError(call: "open(\(here))", errno: e)
            }
            let fd = FileDescriptor(raw)
            var st = stat()
            guard fstat(fd.rawValue, &st) == 0 else {
                let e = SysError.current
                fd.close(); dir.close()
                throw SysError(call: "stat(\(here))", errno: e)
            }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                dir.close()
                dir = fd
                dirPath = here
            case S_IFLNK:
                var parentStat = stat()
                _ = fstat(dir.rawValue, &parentStat)
                if let why = trust.distrust(parentStat) {
                    fd.close()
                    return .refused(dir, path: dirPath, reason: "\(here) is a symlink in a directory that others can write (\(why)); porter follows symlinks only in directories that only root can write")
                }
                links += 1
                guard links <= maxLinks, let target = readLink(fd) else {
                    fd.close(); dir.close()
                    throw SysError(call: "resolve(\(here))", errno: ELOOP)
                }
                fd.close()
                if target.hasPrefix("/") {
                    dir.close()
                    dir = try openRoot()
                    dirPath = "/"
                }
                rest = components(target) + rest
            default:
                guard rest.isEmpty, !directory else {
                    fd.close()
                    return .notDirectory(dir, path: dirPath, name: name)
                }
                dir.close()
                return .found(fd)
            }
        }
        return .found(dir)
    }

    /// What stood in the way of a directory, as one message.
    public struct Problem: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// The directory at `path` (O_PATH, owned by the caller), or a problem
    /// that says what was in the way.
    public static func directory(_ path: String, trust: Trust, create mode: UInt32? = nil) throws(Problem) -> FileDescriptor {
        try found(path, trust: trust, create: mode, directory: true) { "\(path): no such directory (\($0) is the deepest that exists)" }
    }

    /// Whatever is at `path`, file or not (O_PATH, owned by the caller;
    /// open it through `procPath`), or a problem that says what was in the
    /// way — for files porter opens on a service's behalf (banners,
    /// OpenFile=).
    public static func file(_ path: String, trust: Trust) throws(Problem) -> FileDescriptor {
        try found(path, trust: trust, create: nil, directory: false) { _ in "no such file" }
    }

    /// `open`, with every outcome but `.found` as one message (`missing`
    /// words the one for a component that does not exist, given the
    /// deepest that does).
    private static func found(_ path: String, trust: Trust, create mode: UInt32?, directory: Bool,
                              missing: (String) -> String) throws(Problem) -> FileDescriptor {
        let outcome: Outcome
        do { outcome = try open(path, trust: trust, create: mode, directory: directory) } catch { throw Problem(description: error.description) }
        switch outcome {
        case .found(let fd): return fd
        case .missing(let fd, let at):
            fd.close()
            throw Problem(description: missing(at))
        case .refused(let fd, _, let reason):
            fd.close()
            throw Problem(description: reason)
        case .notDirectory(let fd, let at, let name):
            fd.close()
            throw Problem(description: "open(\(join(at, name))): \(SysError.describe(ENOTDIR))")
        }
    }

    private static func openRoot() throws(SysError) -> FileDescriptor {
        FileDescriptor(try retrying("open(/)") { porter_open("/", PORTER_O_PATH | O_DIRECTORY | O_CLOEXEC, 0) })
    }

    /// readlinkat(fd, "") on an O_PATH fd of the link itself.
    private static func readLink(_ fd: FileDescriptor) -> String? {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { raw in
            readlinkat(fd.rawValue, "", raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
        }
        guard n > 0, n < buf.count else { return nil }
        return String(validating: buf[0..<n], as: UTF8.self)
    }

    static func components(_ path: String) -> [String] {
        path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    }

    static func join(_ dir: String, _ name: String) -> String { dir == "/" ? "/" + name : dir + "/" + name }

    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// The directory at `path` if it exists and may be used, else nil
    /// (whatever fd the resolution held is closed).
    public static func existingDirectory(_ path: String, trust: Trust) -> FileDescriptor? {
        try? directory(path, trust: trust)
    }

    /// Removes `name` in the directory `parent` and everything below it
    /// without following a symlink: each level is opened O_NOFOLLOW from
    /// the one above, and a link is unlinked, never entered. Returns the
    /// first error; what could be removed is gone.
    public static func removeTree(in parent: FileDescriptor, _ name: String) -> SysError? {
        let raw = porter_openat(parent.rawValue, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0)
        if raw < 0 {
            let e = SysError.current
            if e == ENOENT { return nil }
            if e == ENOTDIR || e == ELOOP {
                return unlinkat(parent.rawValue, name, 0) == 0 ? nil : SysError(call: "unlink(\(name))", errno: SysError.current)
            }
            return SysError(call: "open(\(name))", errno: e)
        }
        let dir = FileDescriptor(raw)
        var first: SysError? = nil
        var entries: [(String, UInt8)] = []
        try? Files.forEachEntry(in: dir) { n, type in
            entries.append((n, type))
            return true
        }
        for (n, type) in entries {
            let e: SysError?
            if type == DT_DIR {
                e = removeTree(in: dir, n)
            } else {
                e = unlinkat(dir.rawValue, n, 0) == 0 ? nil : SysError(call: "unlink(\(n))", errno: SysError.current)
            }
            if first == nil { first = e }
        }
        dir.close()
        if unlinkat(parent.rawValue, name, AT_REMOVEDIR) != 0 && first == nil {
            first = SysError(call: "rmdir(\(name))", errno: SysError.current)
        }
        return first
    }

    /// Whether symlinks in the directory `fd` may be followed.
    public static func allowsLinks(in fd: FileDescriptor, trust: Trust) -> Bool {
        var st = stat()
        return fstat(fd.rawValue, &st) == 0 && trust.distrust(st) == nil
    }

    /// A path through which a path-taking call (inotify_add_watch, bind)
    /// reaches exactly the inode `fd` holds. Needs /proc.
    public static func procPath(_ fd: FileDescriptor, _ name: String? = nil) -> String {
        "/proc/self/fd/\(fd.rawValue)" + (name.map { "/" + $0 } ?? "")
    }
}
