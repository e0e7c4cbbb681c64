import PorterCore
import PorterSys

/// StandardOutput=journal: a pipe whose lines porter writes into its own
/// log, prefixed with the unit's name. One pipe per service unit, shared by
/// all of a template's instances; porter keeps the write end to hand to
/// each child, so it never sees end-of-file and never has to re-create it.
/// Lines longer than `maxLine` are cut, so a child without newlines cannot
/// make porter buffer without bound.
final class JournalPipe {
    let read: FileDescriptor
    let write: FileDescriptor
    let name: String
    var token: UInt64 = 0
    private var pending: [UInt8] = []
    static let maxLine = 4096

    /// Owns both ends until `close()`.
    init(name: String) throws(SysError) {
        let p = try makePipe(nonBlocking: true)
        read = p.read
        write = p.write
        self.name = name
        // Children write with blocking semantics; only porter's end is non-blocking.
        try write.setNonBlocking(false)
        try read.setNonBlocking(true)
    }

    /// Logs every complete line that is waiting.
    func drain() {
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { raw in (try? read.read(into: raw)) ?? nil }
            guard let n, n > 0 else { break }
            for b in chunk[0..<n] {
                if b == UInt8(ascii: "\n") {
                    emit()
                } else {
                    pending.append(b)
                    if pending.count >= Self.maxLine { emit() }
                }
            }
        }
    }

    /// Logs a last partial line.
    func flush() {
        drain()
        if !pending.isEmpty { emit() }
    }

    private func emit() {
        Log.write(.info, "\(name): " + String(decoding: pending, as: UTF8.self))
        pending.removeAll(keepingCapacity: true)
    }

    func close() {
        read.close()
        write.close()
    }
}
