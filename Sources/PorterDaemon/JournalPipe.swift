import Glibc
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

    /// Both ends of a pipe an earlier image of porter made (an upgrade),
    /// with the line it had begun.
    init(adopting read: FileDescriptor, write: FileDescriptor, name: String, pending: [UInt8]) {
        self.read = read
        self.write = write
        self.name = name
        self.pending = pending
    }

    /// A line begun and not finished yet.
    var pendingLine: [UInt8] { pending }

    /// The most porter reads from one pipe per wake-up. The pipe is
    /// level-triggered in epoll, so what is left is read on the next turn
    /// of the loop, after the other units' events: a service that writes
    /// without pause gets its share and no more, and when porter is slower
    /// than the writer, the full pipe blocks the writer, not porter.
    static let budget = 65536
    /// One read buffer for every pipe: the loop drains one pipe at a time,
    /// and a thousand services must not cost 64 KiB each.
    nonisolated(unsafe) private static var chunk = [UInt8](repeating: 0, count: JournalPipe.budget)

    /// Logs the complete lines of at most one `budget` of output.
    func drain() {
        let n = Self.chunk.withUnsafeMutableBytes { raw in (try? read.read(into: raw)) ?? nil }
        guard let n, n > 0 else { return }
        split(count: n)
    }

    /// Cuts the first `count` bytes of `chunk` into lines with memchr(3):
    /// a per-byte loop cost porter ~11 s of CPU per GiB of output.
    private func split(count n: Int) {
        Self.chunk.withUnsafeBytes { raw in
            let base = raw.baseAddress!
            var at = 0
            while at < n {
                let room = Self.maxLine - pending.count
                let scan = min(n - at, room)
                if let hit = memchr(base + at, 0x0A, scan) {
                    let len = base.distance(to: UnsafeRawPointer(hit)) - at
                    pending.append(contentsOf: UnsafeRawBufferPointer(start: base + at, count: len))
                    emit()
                    at += len + 1
                } else {
                    pending.append(contentsOf: UnsafeRawBufferPointer(start: base + at, count: scan))
                    at += scan
                    if pending.count >= Self.maxLine { emit() }
                }
            }
        }
    }

    /// Logs what is left at shutdown: what is waiting (bounded: a writer
    /// left running with KillMode=none must not keep porter here), then a
    /// last partial line.
    func flush() {
        for _ in 0..<16 {
            let n = Self.chunk.withUnsafeMutableBytes { raw in (try? read.read(into: raw)) ?? nil }
            guard let n, n > 0 else { break }
            split(count: n)
        }
        if !pending.isEmpty { emit() }
    }

    private func emit() {
        let (level, skip) = Self.level(of: pending)
        Log.write(level, "\(name): " + String(decoding: pending.dropFirst(skip), as: UTF8.self))
        pending.removeAll(keepingCapacity: true)
    }

    /// A line that starts with a syslog priority (`<3>`, as sd-daemon(3)
    /// describes for services logging to journald) has that level; the
    /// prefix is not part of the message. Others are info.
    static func level(of line: [UInt8]) -> (LogLevel, Int) {
        guard line.count >= 3, line[0] == UInt8(ascii: "<"), line[2] == UInt8(ascii: ">"),
              line[1] >= UInt8(ascii: "0"), line[1] <= UInt8(ascii: "7") else { return (.info, 0) }
        switch line[1] - UInt8(ascii: "0") {
        case 0...3: return (.error, 3)
        case 4: return (.warning, 3)
        case 7: return (.debug, 3)
        default: return (.info, 3)
        }
    }

    func close() {
        read.close()
        write.close()
    }
}
