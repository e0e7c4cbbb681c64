import Glibc
import PorterCore
import PorterSys

/// OpenFile=: what porter opens for a service at each start, with its own
/// privileges, before the service drops to its user.
extension Launch {
    struct OpenFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// Opens `f` for a start. The path is resolved one component at a time
    /// (a symlink is followed only where nobody but root or porter could
    /// have placed it), then the file itself is opened through the
    /// resolved fd, never by name again; a Unix socket there is connected
    /// to. Never waits: a FIFO without a writer, a full socket backlog fail
    /// the start instead of stalling porter's loop. The service gets a
    /// blocking fd, as systemd hands it over.
    static func open(_ f: OpenFile) throws(OpenFailure) -> FileDescriptor {
        let resolved: FileDescriptor
        do { resolved = try SafePath.file(f.path, trust: .porter) } catch { throw OpenFailure(description: error.description) }
        defer { resolved.close() }
        let through = SafePath.procPath(resolved)
        var st = stat()
        guard fstat(resolved.rawValue, &st) == 0 else { throw OpenFailure(description: SysError.describe(SysError.current)) }
        let fd: FileDescriptor
        do throws(SysError) {
            if st.st_mode & S_IFMT == S_IFSOCK {
                fd = try Socket.open(family: AF_UNIX, type: Int32(SOCK_STREAM.rawValue), nonBlocking: true)
                do {
                    try Socket.connect(fd, SocketAddress(unix: Array(through.utf8), abstract: false))
                } catch {
                    fd.close()
                    throw error
                }
            } else {
                let access: Int32
                switch f.access {
                case .readWrite: access = O_RDWR
                case .readOnly: access = O_RDONLY
                case .append: access = O_WRONLY | O_APPEND
                case .truncate: access = O_WRONLY | O_TRUNC
                }
                fd = try Files.open(through, flags: access | O_NONBLOCK)
            }
            try fd.setNonBlocking(false)
        } catch {
            throw OpenFailure(description: error.reason)
        }
        return fd
    }
}
