import Glibc

/// porter's own side of sd_notify(3), for when a service manager started
/// it with NOTIFY_SOCKET set (systemd's Type=notify or notify-reload, or
/// another porter): one datagram per message on a non-blocking socket, so
/// a manager that stopped reading never stalls porter's loop.
public final class ManagerNotify {
    let address: SocketAddress
    var fd: FileDescriptor?

    /// nil unless NOTIFY_SOCKET names a socket porter can write to: an
    /// absolute path or an abstract name (`@name`), as sd_notify accepts.
    public init?(_ value: String?) {
        guard let value, !value.isEmpty else { return nil }
        if value.hasPrefix("@") {
            address = SocketAddress(unix: Array(value.utf8.dropFirst()), abstract: true)
        } else if value.hasPrefix("/") {
            guard value.utf8.count < 108 else { return nil }
            address = SocketAddress(unix: Array(value.utf8), abstract: false)
        } else {
            return nil
        }
    }

    /// Sends `text`; false when it could not be delivered (logged by the
    /// caller once). A manager that was restarted has a new socket at the
    /// same address: the connection is made again on failure.
    @discardableResult
    public func send(_ text: String) -> Bool {
        for _ in 0..<2 {
            do {
                if fd == nil {
                    let s = try Socket.open(family: AF_UNIX, type: Int32(SOCK_DGRAM.rawValue), nonBlocking: true)
                    do { try Socket.connect(s, address) } catch {
                        s.close()
                        throw error
                    }
                    fd = s
                }
                return try fd!.write(text) == text.utf8.count
            } catch {
                fd?.close()
                fd = nil
            }
        }
        return false
    }
}
