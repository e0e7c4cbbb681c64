import Glibc
import PorterCore
import PorterSys

/// One short request-and-answer connection on porter's own sockets (the
/// control socket, the metrics endpoint). Everything about it is bounded,
/// so no client can stall or grow the loop: the request (4 KiB for
/// control, 8 KiB for HTTP), the time for the whole exchange, and the
/// answer, which is written as the peer takes it (EPOLLOUT) and then the
/// connection is closed. It owns its fd.
final class Exchange {
    enum Kind {
        case control(peer: PeerCredentials)
        case metrics
    }

    let id: UInt64
    let fd: FileDescriptor
    let kind: Kind
    var input: [UInt8] = []
    /// The answer, once there is one; `sent` bytes of it are gone.
    var output: [UInt8]?
    var sent = 0
    /// Until the request has arrived, the earlier deadline: a client that
    /// connects and says nothing holds a slot for 3 s at most.
    let requestDeadline: Instant
    let answerDeadline: Instant
    var token: UInt64 = 0
    /// Waiting for something to finish before answering (ExecReload=).
    var waiting = false

    /// The whole exchange, from accept to the last byte of the answer.
    static let timeLimit = Duration.seconds(10)
    static let requestLimit = Duration.seconds(3)
    /// Exchanges at once; at the limit porter stops accepting on its own
    /// sockets until one ends (clients wait in the backlog).
    static let maxOpen = 64

    init(id: UInt64, fd: FileDescriptor, kind: Kind, now: Instant) {
        self.id = id
        self.fd = fd
        self.kind = kind
        requestDeadline = now + Self.requestLimit
        answerDeadline = now + Self.timeLimit
    }

    var deadline: Instant { output == nil ? requestDeadline : answerDeadline }

    var limit: Int {
        switch kind {
        case .control: return ControlRequest.maxLength
        case .metrics: return HTTPRequest.maxHead
        }
    }

    enum ReadResult { case more, complete, closed }

    /// Reads what arrived; never more than the request's limit in all.
    func readAvailable() -> ReadResult {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while input.count <= limit {
            let n: Int?
            do {
                n = try buffer.withUnsafeMutableBytes { (b: UnsafeMutableRawBufferPointer) throws(SysError) -> Int? in
                    try fd.read(into: b)
                }
            } catch {
                return .closed
            }
            guard let n else { return .more }
            if n == 0 { return .complete }
            input += buffer[0..<n]
        }
        return .more
    }

    /// Writes what the peer takes now; true once everything is out.
    func flush() -> Bool {
        guard let output else { return false }
        while sent < output.count {
            let n: Int
            do {
                n = try output.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws(SysError) -> Int in
                    try fd.write(UnsafeRawBufferPointer(rebasing: b[sent...]))
                }
            } catch {
                return true  // the peer went away: nothing more to do
            }
            if n == 0 { return false }
            sent += n
        }
        return true
    }
}
