import CPorter
import Glibc

/// Moving bytes between sockets through a pipe without copying them into
/// user space, and the socket calls a relay needs. Every call is
/// non-blocking: nil means "would block" (EAGAIN).
public enum Splice {
    /// SPLICE_F_MOVE | SPLICE_F_NONBLOCK (splice(2)).
    static let flags: UInt32 = 1 | 2

    /// Moves up to `count` bytes from `from` to `to` (one of them a pipe):
    /// the count moved, 0 at end of file, nil when it would block.
    /// The corresponding C function is splice(2).
    public static func move(from: FileDescriptor, to: FileDescriptor, count: Int) throws(SysError) -> Int? {
        while true {
            let r = porter_splice(from.rawValue, to.rawValue, count, flags)
            if r >= 0 { return r }
            let e = Int32(-r)
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return nil }
            throw SysError(call: "splice", errno: e)
        }
    }

    /// A pipe for one direction of a relay, both ends non-blocking and
    /// close-on-exec, with room for `size` bytes (the kernel rounds up to
    /// pages, and may give less than asked). The caller owns both ends.
    /// The corresponding C functions are pipe2(2) and fcntl(2) F_SETPIPE_SZ.
    public static func pipe(size: Int = defaultPipe) throws(SysError) -> (read: FileDescriptor, write: FileDescriptor, capacity: Int) {
        let p = try makePipe(nonBlocking: true)
        if size == defaultPipe { return (p.read, p.write, size) }
        let got = porter_set_pipe_size(p.write.rawValue, Int32(size))
        // Refused (pipe-max-size, the user's pipe pages): the default 64 KiB.
        return (p.read, p.write, got > 0 ? Int(got) : defaultPipe)
    }

    /// A new pipe's capacity (pipe(7): 16 pages).
    public static let defaultPipe = 65536
}

extension Splice {
    /// Asks for a pipe of `size` bytes; the new capacity, or nil when the
    /// kernel refused (pipe-max-size, the user's pipe pages).
    /// The corresponding C function is fcntl(2) F_SETPIPE_SZ.
    public static func resize(_ pipe: FileDescriptor, to size: Int) -> Int? {
        let got = porter_set_pipe_size(pipe.rawValue, Int32(size))
        return got > 0 ? Int(got) : nil
    }
}

extension Socket {
    public enum ConnectResult: Equatable {
        case connected
        /// Under way: the socket becomes writable when it is done (see `pendingError`).
        case inProgress
        case failed(Int32)
    }

    /// Starts a connection on a non-blocking socket.
    /// The corresponding C function is connect(2).
    public static func startConnect(_ fd: FileDescriptor, _ address: SocketAddress) -> ConnectResult {
        while true {
            let r = address.withSockaddr { Glibc.connect(fd.rawValue, $0, $1) }
            if r == 0 { return .connected }
            let e = SysError.current
            if e == EINTR { continue }
            // (A Unix socket's EAGAIN is a full backlog, not a connect under way.)
            if e == EINPROGRESS { return .inProgress }
            return .failed(e)
        }
    }

    /// The outcome of a non-blocking connect (or a later error): 0 for
    /// none. The corresponding C function is getsockopt(2) SO_ERROR.
    public static func pendingError(_ fd: FileDescriptor) -> Int32 { porter_socket_error(fd.rawValue) }

    /// Passes a half-close on. The corresponding C function is shutdown(2) SHUT_WR.
    public static func shutdownWrite(_ fd: FileDescriptor) { _ = shutdown(fd.rawValue, Int32(SHUT_WR)) }

    /// Makes the next close send a reset (SO_LINGER 0), to pass a reset on.
    public static func resetOnClose(_ fd: FileDescriptor) { _ = porter_reset_on_close(fd.rawValue) }

    /// Sends one datagram to `address` (nil: the connected peer); false
    /// when it would block or failed. The corresponding C function is sendto(2).
    @discardableResult
    public static func send(_ fd: FileDescriptor, _ bytes: UnsafeRawBufferPointer, to address: SocketAddress? = nil) -> Int32 {
        while true {
            let r: Int
            if let address {
                r = address.withSockaddr { Glibc.sendto(fd.rawValue, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), $0, $1) }
            } else {
                r = Glibc.send(fd.rawValue, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT))
            }
            if r >= 0 { return 0 }
            let e = SysError.current
            if e == EINTR { continue }
            return e
        }
    }

    /// The same into an array (its whole capacity).
    public static func receive(_ fd: FileDescriptor, into buffer: inout [UInt8], from peer: inout SocketAddress) throws(SysError) -> Int? {
        var result: Result<Int?, SysError> = .success(nil)
        buffer.withUnsafeMutableBytes { b in
            result = Result { () throws(SysError) -> Int? in try receive(fd, into: b, from: &peer) }
        }
        return try result.get()
    }

    /// One datagram into `buffer` and who sent it; nil when none waits.
    /// The corresponding C function is recvfrom(2).
    public static func receive(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, from peer: inout SocketAddress) throws(SysError) -> Int? {
        while true {
            let r = peer.withMutableSockaddr { Glibc.recvfrom(fd.rawValue, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT), $0, $1) }
            if r >= 0 { return r }
            let e = SysError.current
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return nil }
            throw SysError(call: "recvfrom", errno: e)
        }
    }
}
