import CPorter
import Glibc

/// A file descriptor number. It owns nothing by itself: whoever creates one
/// either stores it or closes it, and says so in its documentation.
public struct FileDescriptor: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    public static let standardInput = FileDescriptor(0)
    public static let standardOutput = FileDescriptor(1)
    public static let standardError = FileDescriptor(2)

    public var description: String { "fd \(rawValue)" }

    /// Closes the descriptor. Never retried: Linux has released the number
    /// even when close(2) reports EINTR, and a retry could close a reused fd.
    /// The corresponding C function is close(2).
    public func close() {
        _ = Glibc.close(rawValue)
    }

    /// Reads into `buffer`; nil when a non-blocking fd has nothing (EAGAIN),
    /// 0 at end of file. The corresponding C function is read(2).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SysError) -> Int? {
        try retryingNonBlocking("read") { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Writes all of `bytes` to a blocking fd, or as much as a non-blocking
    /// one takes; returns the count written. The corresponding C function is write(2).
    @discardableResult
    public func write(_ bytes: UnsafeRawBufferPointer) throws(SysError) -> Int {
        var done = 0
        while done < bytes.count {
            guard let n = try retryingNonBlocking("write", {
                Glibc.write(rawValue, bytes.baseAddress! + done, bytes.count - done)
            }) else { break }
            done += n
        }
        return done
    }

    /// Reads into an array's storage (all of it); nil on EAGAIN, 0 at end of file.
    public func read(into buffer: inout [UInt8]) throws(SysError) -> Int? {
        var result: Result<Int?, SysError> = .success(nil)
        buffer.withUnsafeMutableBytes { b in
            result = Result { () throws(SysError) -> Int? in try read(into: b) }
        }
        return try result.get()
    }

    /// Writes `range` of an array, as much as a non-blocking fd takes.
    @discardableResult
    public func write(_ bytes: [UInt8], _ range: Range<Int>) throws(SysError) -> Int {
        var result: Result<Int, SysError> = .success(0)
        bytes.withUnsafeBytes { b in
            result = Result { () throws(SysError) -> Int in try write(UnsafeRawBufferPointer(rebasing: b[range])) }
        }
        return try result.get()
    }

    @discardableResult
    public func write(_ text: String) throws(SysError) -> Int {
        var text = text
        var result: Result<Int, SysError> = .success(0)
        text.withUTF8 { buffer in
            result = Result { () throws(SysError) -> Int in try write(UnsafeRawBufferPointer(buffer)) }
        }
        return try result.get()
    }

    /// Whether O_NONBLOCK is set. The corresponding C function is fcntl(2) with F_GETFL.
    public var isNonBlocking: Bool { porter_fcntl_int(rawValue, F_GETFL, 0) & O_NONBLOCK != 0 }

    /// The corresponding C function is fcntl(2) with F_SETFL.
    public func setNonBlocking(_ on: Bool) throws(SysError) {
        let flags = try retrying("fcntl(F_GETFL)") { porter_fcntl_int(rawValue, F_GETFL, 0) }
        let wanted = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        if wanted != flags {
            _ = try retrying("fcntl(F_SETFL)") { porter_fcntl_int(rawValue, F_SETFL, wanted) }
        }
    }

    /// Whether FD_CLOEXEC is set. The corresponding C function is fcntl(2) with F_GETFD.
    public func isCloseOnExec() throws(SysError) -> Bool {
        let flags = try retrying("fcntl(F_GETFD)") { porter_fcntl_int(rawValue, F_GETFD, 0) }
        return flags & FD_CLOEXEC != 0
    }

    /// Sets or clears FD_CLOEXEC: cleared only on what porter hands to its
    /// next image on purpose (an upgrade). The corresponding C function is fcntl(2) with F_SETFD.
    public func setCloseOnExec(_ on: Bool) throws(SysError) {
        _ = try retrying("fcntl(F_SETFD)") { porter_fcntl_int(rawValue, F_SETFD, on ? FD_CLOEXEC : 0) }
    }

    /// A new close-on-exec descriptor for the same open file, numbered at least `minimum`.
    /// The corresponding C function is fcntl(2) with F_DUPFD_CLOEXEC.
    public func duplicate(minimum: Int32 = 3) throws(SysError) -> FileDescriptor {
        FileDescriptor(try retrying("fcntl(F_DUPFD_CLOEXEC)") { porter_fcntl_int(rawValue, F_DUPFD_CLOEXEC, minimum) })
    }

    /// Whether the number is open at all.
    public var isOpen: Bool { porter_fcntl_int(rawValue, F_GETFD, 0) != -1 }
}

/// A pipe's two ends, both close-on-exec. The corresponding C function is pipe2(2).
public func makePipe(nonBlocking: Bool = false) throws(SysError) -> (read: FileDescriptor, write: FileDescriptor) {
    var fds: [Int32] = [-1, -1]
    let flags = O_CLOEXEC | (nonBlocking ? O_NONBLOCK : 0)
    _ = try retrying("pipe2") { porter_pipe2(&fds, flags) }
    return (FileDescriptor(fds[0]), FileDescriptor(fds[1]))
}
