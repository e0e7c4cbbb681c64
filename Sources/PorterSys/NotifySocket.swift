import CPorter
import Glibc

/// The socket services report to with sd_notify(3): a datagram socket in
/// the abstract namespace, with SO_PASSCRED so every message carries the
/// sender's pid, which porter checks against the service it claims to be.
public struct NotifySocket {
    public let fd: FileDescriptor
    /// NOTIFY_SOCKET for the services: `@name`.
    public let address: String

    public struct Message {
        public var pid: Int32
        public var uid: UInt32
        /// The datagram as it came; PorterCore's NotifyDatagram parses it.
        public var text: [UInt8]
        /// Passed with SCM_RIGHTS; the receiver owns them.
        public var fds: [FileDescriptor]
        /// Why the kernel cut the message, if it did: such a message is
        /// rejected whole (never acted on with fds or text missing).
        public var truncation: String?
    }

    /// The caller owns the socket. The corresponding C functions are
    /// socket(2), setsockopt(2) SO_PASSCRED and bind(2).
    public init(name: String) throws(SysError) {
        fd = try Socket.open(family: AF_UNIX, type: Int32(SOCK_DGRAM.rawValue), nonBlocking: true)
        do {
            try Socket.setOption(fd, SOL_SOCKET, SO_PASSCRED, 1)
            // sd_notify(3) services send 4 KiB at most; raise the queue so a
            // burst of watchdog pings is not dropped.
            try? Socket.setOption(fd, SOL_SOCKET, SO_RCVBUF, 1 << 20)
            try Socket.bind(fd, SocketAddress(unix: Array(name.utf8), abstract: true))
        } catch {
            fd.close()
            throw error
        }
        address = "@" + name
    }

    /// A socket an earlier image of porter bound (an upgrade). The caller
    /// owns it.
    public init(adopting fd: FileDescriptor, address: String) {
        self.fd = fd
        self.address = address
    }

    /// The next message, nil when none waits.
    public func receive() -> Message? {
        var text = [CChar](repeating: 0, count: 4096)
        var fds = [Int32](repeating: -1, count: 253)
        var pid: Int32 = 0, uid: UInt32 = 0, nfds: Int32 = 0, truncated: Int32 = 0
        while true {
            let n = porter_notify_receive(fd.rawValue, &text, text.count, &pid, &uid, &fds, Int32(fds.count), &nfds, &truncated)
            if n == -Int(EINTR) { continue }
            guard n >= 0 else { return nil }
            let why: String? = truncated == 1 ? "fds were lost in transit (MSG_CTRUNC: porter's fd limit, or more than \(fds.count))"
                : truncated == 2 ? "longer than \(text.count) bytes" : nil
            return Message(pid: pid, uid: uid, text: text.prefix(n).map { UInt8(bitPattern: $0) },
                           fds: fds.prefix(Int(nfds)).map(FileDescriptor.init), truncation: why)
        }
    }

    public func close() { fd.close() }
}
