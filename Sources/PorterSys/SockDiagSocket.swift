import CPorter
import Glibc

/// A NETLINK_SOCK_DIAG socket: requests out, replies in, as bytes
/// (PorterCore's SockDiag builds and parses them).
public final class SockDiagSocket {
    let fd: FileDescriptor

    /// nil when the kernel has no sock_diag. The corresponding C function is socket(2).
    public init?() {
        let s = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_SOCK_DIAG)
        guard s >= 0 else { return nil }
        fd = FileDescriptor(s)
    }

    /// The corresponding C function is send(2).
    public func send(_ request: [UInt8]) -> Bool {
        request.withUnsafeBytes { Glibc.send(fd.rawValue, $0.baseAddress, $0.count, 0) } == request.count
    }

    /// One reply datagram; nil when the kernel answered nothing or failed.
    /// The corresponding C function is recv(2).
    public func receive(into buffer: inout [UInt8]) -> Int? {
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.recv(fd.rawValue, $0.baseAddress, $0.count, 0) }
            if n < 0 && SysError.current == EINTR { continue }
            return n > 0 ? n : nil
        }
    }

    public func close() { fd.close() }
}

extension Socket {
    /// The inode number of a socket (its sockfs inode, what sock_diag asks by).
    public static func inode(_ fd: FileDescriptor) -> UInt32? {
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0 else { return nil }
        return UInt32(truncatingIfNeeded: st.st_ino)
    }
}
