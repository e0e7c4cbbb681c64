import Glibc
import PorterCore
import PorterSys

/// One proxied TCP connection: the client porter accepted and, once the
/// backend is ready, porter's connection to it. Bytes go through one pipe
/// per direction with splice(2), so they never enter porter's memory; the
/// pipe is the only buffer, so a side that stops reading stops the other
/// side's reading (back-pressure) instead of growing anything. An end of
/// file is passed on as shutdown(SHUT_WR) once what came before it is
/// delivered; a reset is passed on as a reset.
///
///   phase      | what happens
///   -----------+---------------------------------------------------------
///   waiting    | the backend is not ready (starting, not started yet)
///   connecting | a non-blocking connect to the backend is under way
///   relaying   | both sockets watched edge-triggered; every event pumps
///              | both directions until each would block
/// The relay is over when both directions have passed their end of file
/// on, or when either side failed (then the other is reset).
final class Relay {
    enum Phase: String, Codable { case waiting, connecting, relaying }

    struct Direction {
        var pipe: (read: FileDescriptor, write: FileDescriptor)?
        var capacity = 0
        /// Bytes in the pipe, not yet written out.
        var inPipe = 0
        /// The source said end of file.
        var eof = false
        /// The end of file was passed on (shutdown(SHUT_WR) of the destination).
        var shutDown = false
        var moved: UInt64 = 0
        /// A read filled the scratch buffer: splice from now on.
        var bulk = false

        var finished: Bool { eof && inPipe == 0 && shutDown }
    }

    let id: UInt64
    let client: FileDescriptor
    /// The socket unit that accepted it (its MaxConnections=) and the service it goes to.
    let socket: UnitID
    let service: UnitID
    var backend: FileDescriptor?
    var phase = Phase.waiting
    var clientToken: UInt64 = 0
    var backendToken: UInt64?
    /// client → backend, backend → client.
    var up = Direction()
    var down = Direction()
    /// The PROXY header still to send before the client's bytes.
    var prefix: [UInt8] = []
    /// The client's address; its text (`127.0.0.1:40112`) only when a log
    /// line needs it.
    let peerAddress: SocketAddress
    var peerText: String?
    var peer: String {
        if let peerText { return peerText }
        let t = peerAddress.description
        peerText = t
        return t
    }
    let since: Instant
    var lastTraffic: Instant
    /// The next connect attempt, while the backend refuses.
    var retryAt: Instant?
    var attempts = 0
    /// When a connection still not relaying gives up.
    var giveUpAt: Instant?

    init(id: UInt64, client: FileDescriptor, socket: UnitID, service: UnitID, peer: SocketAddress, now: Instant) {
        self.id = id
        self.client = client
        self.socket = socket
        self.service = service
        peerAddress = peer
        since = now
        lastTraffic = now
    }

    /// The largest pipe a relay asks for: big enough that a bulk transfer
    /// moves a lot per splice(2), and paid for (in the user's pipe pages)
    /// only once a direction has filled the default one.
    static let bulkPipe = 1 << 20

    enum Outcome {
        case goOn
        case finished
        /// A side failed: the other one is reset, with why.
        case failed(String)
    }

    /// Moves what can be moved now, both ways. `now` is when the event came.
    func pump(now: Instant, pipes: PipePool) -> Outcome {
        guard phase == .relaying, let backend else { return .goOn }
        do {
            if !prefix.isEmpty {
                let sent = try prefix.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws(SysError) -> Int in try backend.write(b) }
                prefix.removeFirst(sent)
                if !prefix.isEmpty { return .goOn }  // the rest when the backend can take it
            }
            var progress = false
            progress = try Self.pump(&up, from: client, to: backend, pipes, otherDone: down.finished) || progress
            progress = try Self.pump(&down, from: backend, to: client, pipes, otherDone: up.finished) || progress
            if progress { lastTraffic = now }
        } catch {
            return .failed("\(error)")
        }
        return up.finished && down.finished ? .finished : .goOn
    }

    /// One direction until it would block: first what waits in the pipe,
    /// then from the source, as long as the destination keeps up.
    ///
    /// Small transfers are copied (read(2) into one scratch buffer shared by
    /// every relay, write(2) out at once): for a request of a few hundred
    /// bytes that costs the kernel less than splicing pages through a pipe.
    /// Once a read fills the scratch buffer the direction is a bulk one and
    /// splices from then on. Whatever the destination does not take at once
    /// goes into the direction's pipe (empty then, and at least as large as
    /// the scratch buffer, so it always fits): porter never keeps bytes of
    /// its own for a connection.
    ///
    /// `otherDone`: the other direction has passed its end of file on, so
    /// the relay closes as soon as this one is done — the close sends the
    /// FIN, and a shutdown(2) before it would only cost a syscall.
    private static func pump(_ d: inout Direction, from source: FileDescriptor, to destination: FileDescriptor,
                             _ pipes: PipePool, otherDone: Bool) throws(SysError) -> Bool {
        var progress = false
        while true {
            if d.inPipe > 0, let pipe = d.pipe {
                while d.inPipe > 0 {
                    guard let n = try Splice.move(from: pipe.read, to: destination, count: d.inPipe), n > 0 else { return progress }
                    d.inPipe -= n
                    d.moved &+= UInt64(n)
                    progress = true
                }
            }
            if d.eof {
                if !d.shutDown {
                    if !otherDone { Socket.shutdownWrite(destination) }
                    d.shutDown = true
                    progress = true
                }
                return progress
            }
            if d.bulk {
                let pipe = try ensurePipe(&d, pipes)
                guard let n = try Splice.move(from: source, to: pipe.write, count: d.capacity) else { return progress }
                progress = true
                if n == 0 {
                    d.eof = true
                    continue
                }
                d.inPipe += n
                // The default pipe filled in one go: worth a larger pipe.
                if n == d.capacity && d.capacity < bulkPipe, let grown = Splice.resize(pipe.write, to: bulkPipe) { d.capacity = grown }
                continue
            }
            guard let n = try source.read(into: &scratch) else { return progress }
            progress = true
            if n == 0 {
                d.eof = true
                continue
            }
            if n == scratch.count { d.bulk = true }
            let written = try destination.write(scratch, 0..<n)
            d.moved &+= UInt64(written)
            if written < n {
                // The destination is full: the rest waits in the pipe.
                let pipe = try ensurePipe(&d, pipes)
                let parked = try pipe.write.write(scratch, written..<n)
                precondition(parked == n - written, "an empty relay pipe holds at least the scratch buffer")
                d.inPipe = parked
                return progress
            }
        }
    }

    private static func ensurePipe(_ d: inout Direction, _ pipes: PipePool) throws(SysError) -> (read: FileDescriptor, write: FileDescriptor) {
        if let p = d.pipe { return p }
        let p = try pipes.take()
        d.pipe = (p.read, p.write)
        d.capacity = p.capacity
        return (p.read, p.write)
    }

    /// One buffer for every relay's small copies: the loop runs one relay
    /// at a time, and nothing stays in it between two calls.
    nonisolated(unsafe) static var scratch = [UInt8](repeating: 0, count: Splice.defaultPipe)

    /// Closes everything; with `reset`, each side gets a reset instead of
    /// an orderly end (a failure passed on). Empty pipes go back to `pipes`.
    func close(reset: Bool, pipes: PipePool?) {
        if reset {
            Socket.resetOnClose(client)
            if let backend { Socket.resetOnClose(backend) }
        }
        client.close()
        backend?.close()
        backend = nil
        for d in [up, down] {
            guard let p = d.pipe else { continue }
            if let pipes, d.inPipe == 0 {
                pipes.give((p.read, p.write, d.capacity))
            } else {
                p.read.close()
                p.write.close()
            }
        }
        up.pipe = nil
        down.pipe = nil
    }

    /// What a relay holds now besides its two sockets: 0, 1 or 2 pipes.
    var pipes: Int { (up.pipe == nil ? 0 : 1) + (down.pipe == nil ? 0 : 1) }
}

/// Empty pipes of relays that ended, for the next ones: a short relayed
/// connection costs two pipe2(2) and four close(2) less. Only pipes of the
/// default size are kept (a grown one holds the user's pipe pages), and
/// at most `limit` pairs.
final class PipePool {
    private var free: [(read: FileDescriptor, write: FileDescriptor, capacity: Int)] = []
    static let limit = 64

    func take() throws(SysError) -> (read: FileDescriptor, write: FileDescriptor, capacity: Int) {
        if let p = free.popLast() { return p }
        return try Splice.pipe()
    }

    func give(_ p: (read: FileDescriptor, write: FileDescriptor, capacity: Int)) {
        guard free.count < Self.limit, p.capacity == Splice.defaultPipe else {
            p.read.close()
            p.write.close()
            return
        }
        free.append(p)
    }

    var count: Int { free.count }
}
