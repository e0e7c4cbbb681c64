import CPorter
import Glibc

/// One inotify instance for every watched path of every unit: 10 000
/// watched paths cost one file descriptor (systemd opens one per path).
public struct Inotify {
    public let fd: FileDescriptor

    public struct Mask: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let modify = Mask(rawValue: UInt32(IN_MODIFY))
        public static let attrib = Mask(rawValue: UInt32(IN_ATTRIB))
        public static let closeWrite = Mask(rawValue: UInt32(IN_CLOSE_WRITE))
        public static let movedFrom = Mask(rawValue: UInt32(IN_MOVED_FROM))
        public static let movedTo = Mask(rawValue: UInt32(IN_MOVED_TO))
        public static let create = Mask(rawValue: UInt32(IN_CREATE))
        public static let delete = Mask(rawValue: UInt32(IN_DELETE))
        public static let deleteSelf = Mask(rawValue: UInt32(IN_DELETE_SELF))
        public static let moveSelf = Mask(rawValue: UInt32(IN_MOVE_SELF))
        public static let onlyDirectory = Mask(rawValue: UInt32(IN_ONLYDIR))
        public static let maskAdd = Mask(rawValue: UInt32(IN_MASK_ADD))
        public static let dontFollow = Mask(rawValue: UInt32(IN_DONT_FOLLOW))
        // Reported only:
        public static let ignored = Mask(rawValue: UInt32(IN_IGNORED))
        public static let isDirectory = Mask(rawValue: UInt32(IN_ISDIR))
        public static let overflow = Mask(rawValue: UInt32(IN_Q_OVERFLOW))
    }

    /// The caller owns the instance. The corresponding C function is inotify_init1(2).
    public init() throws(SysError) {
        fd = FileDescriptor(try retrying("inotify_init1") { inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) })
    }

    /// Adds to (IN_MASK_ADD) or creates a watch; the same inode in one
    /// instance always gets the same descriptor.
    /// The corresponding C function is inotify_add_watch(2).
    public func add(_ path: String, mask: Mask) throws(SysError) -> Int32 {
        try retrying("inotify_add_watch(\(path))") { inotify_add_watch(fd.rawValue, path, mask.union(.maskAdd).rawValue) }
    }

    /// The corresponding C function is inotify_rm_watch(2).
    public func remove(_ wd: Int32) {
        _ = inotify_rm_watch(fd.rawValue, wd)
    }

    /// Reads what waits into `buffer` (whole records: the kernel never
    /// splits one); 0 when nothing waits. PorterCore's InotifyRecords
    /// parses the bytes. The corresponding C function is read(2).
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        while true {
            let n = Glibc.read(fd.rawValue, buffer.baseAddress, buffer.count)
            if n < 0 && SysError.current == EINTR { continue }
            return max(n, 0)
        }
    }

    public func close() { fd.close() }
}
