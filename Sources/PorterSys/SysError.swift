import CPorter
import Glibc

/// A failed system call: which call, and the errno it left.
public struct SysError: Error, Equatable, CustomStringConvertible {
    public var call: String
    public var errno: Int32

    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    /// The errno text alone, as strerror(3) gives it ("No such file or directory").
    public var reason: String { SysError.describe(errno) }

    public var description: String { "\(call): \(reason)" }

    public static func describe(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }

    /// The errno of the last failed call on this thread.
    @inline(__always)
    public static var current: Int32 { porter_errno() }
}

/// Runs `body` until it stops failing with EINTR; any other failure throws.
/// Every wrapper goes through here so EINTR is handled in exactly one place.
/// `close` never does: Linux releases the fd even when close reports EINTR.
@inline(__always)
func retrying<T: FixedWidthInteger>(_ call: String, _ body: () -> T) throws(SysError) -> T {
    while true {
        let r = body()
        if r != -1 { return r }
        let e = porter_errno()
        if e == EINTR { continue }
        throw SysError(call: call, errno: e)
    }
}

/// Like `retrying`, but EAGAIN/EWOULDBLOCK is not an error: it returns nil.
@inline(__always)
func retryingNonBlocking<T: FixedWidthInteger>(_ call: String, _ body: () -> T) throws(SysError) -> T? {
    while true {
        let r = body()
        if r != -1 { return r }
        let e = porter_errno()
        if e == EINTR { continue }
        if e == EAGAIN || e == EWOULDBLOCK { return nil }
        throw SysError(call: call, errno: e)
    }
}
