import CPorter
import Glibc

/// Why a listening socket could not be opened: the step, the errno, and a
/// hint where the usual cause is known.
public struct ListenError: Error, CustomStringConvertible {
    public var step: String
    public var errno: Int32
    public var hint: String?

    public init(step: String, errno: Int32, hint: String? = nil) {
        self.step = step
        self.errno = errno
        self.hint = hint
    }

    public var description: String {
        // errno 0: the step is the whole message.
        (errno == 0 ? step : "\(step): \(SysError.describe(errno))") + (hint.map { " (\($0))" } ?? "")
    }
}

/// A Unix socket's file: where porter binds one in a directory others may
/// write, and removes it again.
public enum UnixSocketFile {
    /// Called between bind(2) and the ownership change: lets a test swap
    /// the file, as an attacker racing porter would.
    nonisolated(unsafe) static var afterBindForTesting: ((String) -> Void)?

    /// Binds `fd` to the Unix path `path` (`address` is its sockaddr), as
    /// the security model says: parents resolved and made in verified
    /// directories, a stale file replaced only when nothing listens on it,
    /// the mode applied through the umask at bind time, ownership changed
    /// on the checked inode only.
    /// `boundInode` tells the inode of the file the socket created (from
    /// sock_diag's UNIX_DIAG_VFS), nil when the kernel does not say.
    public static func bind(_ fd: FileDescriptor, _ address: SocketAddress, path: String, directoryMode: UInt32, socketMode: UInt32,
                            owner: (uid: UInt32?, gid: UInt32?), trust: SafePath.Trust,
                            boundInode: (FileDescriptor) -> UInt32?) throws(ListenError) {
        // The parent is resolved (and made, with DirectoryMode=) without
        // following symlinks that others could have placed; everything
        // after that happens relative to its fd.
        let name = String(path.split(separator: "/").last ?? "")
        let parent = SafePath.parent(of: path)
        let dir: FileDescriptor
        do { dir = try SafePath.directory(parent, trust: trust, create: directoryMode) } catch {
            throw ListenError(step: error.description, errno: 0)
        }
        defer { dir.close() }
        try removeStale(path, name: name, in: dir)
        let old = umask(mode_t(~socketMode & 0o777))
        defer { umask(old) }
        // bind(2) takes the path itself, so that getsockname(2) and the
        // service's sd_is_socket_unix(3) see the configured name; the file
        // it made is then checked to be the one in the verified directory.
        do { try Socket.bind(fd, address) } catch {
            throw ListenError(step: "bind", errno: error.errno)
        }
        afterBindForTesting?(path)
        let file = porter_openat(dir.rawValue, name, PORTER_O_PATH | O_NOFOLLOW | O_CLOEXEC, 0)
        var st = stat()
        guard file >= 0 else {
            throw ListenError(step: "\(path) vanished after bind (replaced by someone who can write \(parent)?)", errno: 0)
        }
        defer { _ = Glibc.close(file) }
        let bound = boundInode(fd)
        guard fstat(file, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK,
              bound.map({ $0 == UInt32(truncatingIfNeeded: st.st_ino) }) ?? (st.st_uid == geteuid() && st.st_nlink == 1) else {
            throw ListenError(step: "\(path) is not the socket porter bound (replaced by someone who can write \(parent)?), refused", errno: 0)
        }
        if owner.uid != nil || owner.gid != nil {
            // Through the O_PATH fd of the checked inode: never whatever the
            // path names by now (a symlink swapped in would otherwise hand a
            // root file to SocketUser=).
            if fchownat(file, "", owner.uid ?? UInt32.max, owner.gid ?? UInt32.max, PORTER_AT_EMPTY_PATH) != 0 {
                throw ListenError(step: "chown(\(path))", errno: SysError.current)
            }
        }
    }

    /// A socket file is stale only when connecting to it is refused: a live
    /// one (an orphaned service after porter was killed, another unit, a
    /// program of someone else's) is left alone and reported as in use, as
    /// TCP reports EADDRINUSE. Anything that is not a socket stays too.
    static func removeStale(_ path: String, name: String, in dir: FileDescriptor) throws(ListenError) {
        var st = stat()
        if fstatat(dir.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) != 0 {
            let e = SysError.current
            if e == ENOENT { return }
            throw ListenError(step: "stat(\(path))", errno: e)
        }
        guard st.st_mode & S_IFMT == S_IFSOCK else {
            throw ListenError(step: "\(path) exists and is not a socket;", errno: EEXIST)
        }
        // Probe through the verified directory; SOCK_STREAM reaches a datagram
        // socket too (EPROTOTYPE: something is bound there).
        let probe = SafePath.procPath(dir, name)
        let target = probe.utf8.count <= 107 /* sun_path less its NUL */ ? probe : path
        switch Socket.probeUnix(target) {
        case ECONNREFUSED:
            if unlinkat(dir.rawValue, name, 0) != 0 && SysError.current != ENOENT {
                throw ListenError(step: "unlink(\(path))", errno: SysError.current)
            }
        case ENOENT:
            return
        case let e:
            let how = e == 0 || e == EAGAIN || e == EINPROGRESS || e == EPROTOTYPE ? "something accepts connections on it" : SysError.describe(e)
            throw ListenError(step: "bind", errno: EADDRINUSE, hint: "a live socket is there: \(how); stop it first")
        }
    }

    /// Removes a socket file porter made (RemoveOnStop=, a unit refused
    /// after its socket was bound): through the verified parent, and only
    /// if it is still a socket.
    public static func removeSocketFile(_ path: String, trust: SafePath.Trust = .porter) {
        guard let name = path.split(separator: "/").last.map(String.init),
              let dir = try? SafePath.directory(SafePath.parent(of: path), trust: trust) else { return }
        defer { dir.close() }
        var st = stat()
        if fstatat(dir.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFSOCK {
            _ = unlinkat(dir.rawValue, name, 0)
        }
    }

}
