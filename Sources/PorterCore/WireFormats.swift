/// The kernel's and the services' wire formats that porter reads, as pure
/// parsers over bytes: no syscalls, so each one is tested and fuzzed on its
/// own (issue 9). The syscall wrappers hand over raw bytes; the daemon
/// parses them here.

/// One sd_notify(3) datagram: newline-separated `KEY=VALUE` assignments.
public enum NotifyDatagram {
    public enum Problem: Error, Equatable, CustomStringConvertible {
        case nulByte, invalidUTF8
        public var description: String {
            switch self {
            case .nulByte: return "it contains a NUL byte"
            case .invalidUTF8: return "it is not valid UTF-8"
            }
        }
    }

    /// The assignments in order; lines without `=` are skipped, as
    /// systemd does. A datagram with a NUL byte or invalid UTF-8 is refused
    /// whole (systemd ignores such messages too), never read in part.
    public static func parse(_ bytes: some Collection<UInt8>) throws(Problem) -> [(key: String, value: String)] {
        if bytes.contains(0) { throw .nulByte }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .invalidUTF8 }
        var fields: [(key: String, value: String)] = []
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            fields.append((String(line[..<eq]), String(line[line.index(after: eq)...])))
        }
        return fields
    }
}

/// The records one read(2) of an inotify fd returns (inotify(7)): a
/// 16-byte header (wd, mask, cookie, len, native byte order) and `len`
/// bytes of NUL-padded name.
public enum InotifyRecords {
    public struct Record: Equatable, Sendable {
        public var wd: Int32
        public var mask: UInt32
        /// The name inside the watched directory; empty for the watched
        /// path itself. nil when the name is not UTF-8 (no unit can name
        /// such a file; the event still counts for the directory).
        public var name: String?

        public init(wd: Int32, mask: UInt32, name: String?) {
            self.wd = wd
            self.mask = mask
            self.name = name
        }
    }

    public static let headerSize = 16

    /// Every complete record in `bytes`; a truncated tail is dropped (the
    /// kernel never returns one, a fuzzer does).
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> [Record] {
        var records: [Record] = []
        var o = 0
        while o + headerSize <= bytes.count {
            let wd = Int32(bitPattern: bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self))
            let mask = bytes.loadUnaligned(fromByteOffset: o + 4, as: UInt32.self)
            let len = Int(bytes.loadUnaligned(fromByteOffset: o + 12, as: UInt32.self))
            guard len <= bytes.count - o - headerSize else { break }
            let raw = bytes[(o + headerSize)..<(o + headerSize + len)]
            let name = raw.prefix { $0 != 0 }
            records.append(Record(wd: wd, mask: mask, name: String(validating: name, as: UTF8.self)))
            o += headerSize + len
        }
        return records
    }

    public static func parse(_ bytes: [UInt8]) -> [Record] {
        bytes.withUnsafeBytes { parse($0) }
    }
}
