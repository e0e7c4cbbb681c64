import CPorter
import Glibc

/// File-system calls porter needs: reading configs, preparing Unix socket
/// paths, finding executables.
public enum Files {
    /// Why a file was not read: it is not a regular file (a FIFO would
    /// block the loop, a device never ends), it is larger than the limit
    /// (a partial file is never parsed: a cut could drop a `User=` line or
    /// shorten a path), or a system call failed.
    public enum ReadFailure: Error, CustomStringConvertible {
        case notRegular
        case tooLarge(limit: Int)
        case system(SysError)

        public var description: String {
            switch self {
            case .notRegular: return "not a regular file"
            case .tooLarge(let limit): return "larger than \(Files.describeSize(limit)), refused"
            case .system(let e): return "cannot read: \(e.reason)"
            }
        }
    }

    /// The largest unit file or EnvironmentFile= porter reads (the README
    /// states it); a larger one is refused whole.
    public static let maxConfigBytes = 1 << 20

    static func describeSize(_ n: Int) -> String {
        n % (1 << 20) == 0 ? "\(n >> 20) MiB" : n % 1024 == 0 ? "\(n >> 10) KiB" : "\(n) bytes"
    }

    /// Reads a whole regular file (symlinks followed), at most `limit` bytes.
    public static func readBytes(_ path: String, limit: Int = maxConfigBytes) throws(ReadFailure) -> [UInt8] {
        let raw = porter_open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0)
        if raw < 0 { throw .system(SysError(call: "open(\(path))", errno: SysError.current)) }
        return try readAll(FileDescriptor(raw), limit: limit)
    }

    /// The same as text; invalid UTF-8 is repaired. For the kernel's own
    /// files (/proc, /etc/machine-id), not for configuration.
    public static func read(_ path: String, limit: Int = maxConfigBytes) throws(ReadFailure) -> String {
        String(decoding: try readBytes(path, limit: limit), as: UTF8.self)
    }

    /// Opens a directory for `readBytes(at:)`. The caller owns the fd.
    public static func openDirectory(_ path: String) throws(SysError) -> FileDescriptor {
        FileDescriptor(try retrying("open(\(path))") { porter_open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0) })
    }

    /// Opens the directory `name` in `dir` (following a symlink: drop-in
    /// directories may be linked in). The caller owns the fd.
    public static func openDirectory(at dir: FileDescriptor, _ name: String) throws(SysError) -> FileDescriptor {
        FileDescriptor(try retrying("open(\(name))") { porter_openat(dir.rawValue, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0) })
    }

    /// Reads a whole regular file relative to a directory fd, at most
    /// `limit` bytes. O_NONBLOCK: opening a FIFO must not wait for a writer
    /// (it is refused after fstat anyway); symlinks are followed, since an
    /// admin may link a unit in from elsewhere.
    public static func readBytes(at directory: FileDescriptor, _ name: String, limit: Int = maxConfigBytes) throws(ReadFailure) -> [UInt8] {
        // O_NOATIME: reading configuration must not dirty inodes (on ext4 the
        // atime update cost more than the read). Only the owner (or root)
        // may ask for it; others fall back to a plain open.
        let flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK
        var raw = porter_openat(directory.rawValue, name, flags | PORTER_O_NOATIME, 0)
        if raw < 0 && SysError.current == EPERM {
            raw = porter_openat(directory.rawValue, name, flags, 0)
        }
        if raw < 0 { throw .system(SysError(call: "open(\(name))", errno: SysError.current)) }
        return try readAll(FileDescriptor(raw), limit: limit)
    }

    /// Reads `fd` to its end and closes it. One fstat, then one read for a
    /// small file; the size is checked before and while reading (a file that
    /// grows past the limit meanwhile is refused too). Files that report no
    /// size (/proc) are read until end of file.
    public static func readAll(_ fd: FileDescriptor, limit: Int) throws(ReadFailure) -> [UInt8] {
        defer { fd.close() }
        var st = stat()
        if fstat(fd.rawValue, &st) != 0 { throw .system(SysError(call: "fstat", errno: SysError.current)) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .notRegular }
        guard Int(st.st_size) <= limit else { throw .tooLarge(limit: limit) }
        // One byte more than the limit, so reaching it shows the file is larger.
        var bytes = [UInt8](repeating: 0, count: min(max(Int(st.st_size) + 1, 4096), limit + 1))
        var used = 0
        while true {
            if used == bytes.count {
                guard used <= limit else { throw .tooLarge(limit: limit) }
                bytes += [UInt8](repeating: 0, count: min(bytes.count, limit + 1 - used))
            }
            var result: Result<Int?, SysError> = .success(0)
            bytes.withUnsafeMutableBytes { raw in
                result = Result { () throws(SysError) -> Int? in try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[used...])) }
            }
            let n: Int
            do { n = try result.get() ?? 0 } catch { throw .system(error) }
            if n == 0 { break }
            used += n
        }
        guard used <= limit else { throw .tooLarge(limit: limit) }
        bytes.removeSubrange(used...)
        return bytes
    }

    /// Calls `body` with the raw name and `d_type` of each entry but "."
    /// and "..", until it returns false. The corresponding C function is readdir(3).
    private static func forEachRawEntry(_ path: String, _ body: ([UInt8], UInt8) -> Bool) throws(SysError) {
        guard let dir = opendir(path) else { throw SysError(call: "opendir(\(path))", errno: SysError.current) }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix(while: { $0 != 0 })) }
            if name == [0x2E] || name == [0x2E, 0x2E] { continue }
            if !body(name, entry.pointee.d_type) { return }
        }
    }

    /// The same with names as text; names that are not UTF-8 are skipped
    /// (no unit, socket or job name can contain them).
    private static func forEachEntry(_ path: String, _ body: (String, UInt8) -> Bool) throws(SysError) {
        try forEachRawEntry(path) { raw, type in
            guard let name = String(validating: raw, as: UTF8.self) else { return true }
            return body(name, type)
        }
    }

    /// Calls `body` with the name and `d_type` of each entry of the
    /// directory `dir` (any fd of it, O_PATH included), until it returns
    /// false; names that are not UTF-8 are skipped. The corresponding C
    /// functions are openat(2) and fdopendir(3).
    public static func forEachEntry(in dir: FileDescriptor, notText: ((UInt8) -> Void)? = nil,
                                    _ body: (String, UInt8) -> Bool) throws(SysError) {
        let raw = porter_openat(dir.rawValue, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
        if raw < 0 { throw SysError(call: "open(.)", errno: SysError.current) }
        guard let d = fdopendir(raw) else {
            let e = SysError.current
            _ = Glibc.close(raw)
            throw SysError(call: "fdopendir", errno: e)
        }
        defer { closedir(d) }
        while let entry = readdir(d) {
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix(while: { $0 != 0 })) }
            if bytes == [0x2E] || bytes == [0x2E, 0x2E] { continue }
            guard let name = String(validating: bytes, as: UTF8.self) else {
                notText?(entry.pointee.d_type)
                continue
            }
            if !body(name, entry.pointee.d_type) { return }
        }
    }

    /// lstat(2) (or stat(2) with `follow`) of `name` in the directory `dir`;
    /// nil if missing. The corresponding C function is fstatat(2).
    public static func status(at dir: FileDescriptor, _ name: String, follow: Bool = false) -> Status? {
        var st = stat()
        guard fstatat(dir.rawValue, name, &st, follow ? 0 : AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return Status(mode: st.st_mode, size: Int64(st.st_size),
                      modified: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec),
                      inode: UInt64(st.st_ino))
    }

    /// Entries of `dir` that are not directories, matching `pattern`.
    /// `notText` counts the entries (other than directories) whose names
    /// are not UTF-8, which no unit can name.
    public static func regularFiles(in dir: FileDescriptor, matching pattern: String?, notText: inout Int) -> [String] {
        var names: [String] = []
        var skipped = 0
        defer { notText += skipped }
        try? forEachEntry(in: dir, notText: { type in if type != UInt8(DT_DIR) { skipped += 1 } }) { name, type in
            if type == UInt8(DT_DIR) { return true }
            if type == UInt8(DT_UNKNOWN), status(at: dir, name)?.isDirectory ?? true { return true }
            if let pattern, !matches(name, pattern: pattern) { return true }
            names.append(name)
            return true
        }
        return names
    }

    /// The first entry of `dir` by name (matching `pattern`, if any, and
    /// `include`).
    public static func firstEntry(in dir: FileDescriptor, matching pattern: String? = nil,
                                  where include: (String) -> Bool = { _ in true }) -> String? {
        var first: String? = nil
        try? forEachEntry(in: dir) { name, _ in
            if let pattern, !matches(name, pattern: pattern) { return true }
            if !include(name) { return true }
            if first == nil || name < first! { first = name }
            return true
        }
        return first
    }

    /// Opens `name` in `dir` without following a symlink there. The caller
    /// owns the fd. The corresponding C function is openat(2).
    public static func open(at dir: FileDescriptor, _ name: String, flags: Int32) throws(SysError) -> FileDescriptor {
        FileDescriptor(try retrying("open(\(name))") { porter_openat(dir.rawValue, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0) })
    }

    /// Creates `name` in `dir`, which must not exist (not even as a
    /// symlink), for writing. The caller owns the fd. The corresponding C
    /// function is openat(2) with O_CREAT | O_EXCL.
    public static func create(at dir: FileDescriptor, _ name: String, mode: UInt32) throws(SysError) -> FileDescriptor {
        FileDescriptor(try retrying("create(\(name))") {
            porter_openat(dir.rawValue, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, mode)
        })
    }

    /// Where the symlink `name` in `dir` points, or nil when it is not a
    /// symlink. The corresponding C function is readlinkat(2).
    public static func readLink(at dir: FileDescriptor, _ name: String) -> String? {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { raw in
            readlinkat(dir.rawValue, name, raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
        }
        guard n > 0, n < buf.count else { return nil }
        return String(decoding: buf[..<n], as: UTF8.self)
    }

    /// The corresponding C function is renameat(2).
    public static func rename(at from: FileDescriptor, _ name: String, to: FileDescriptor, _ newName: String) throws(SysError) {
        _ = try retrying("rename(\(name))") { renameat(from.rawValue, name, to.rawValue, newName) }
    }

    /// Names in a directory, without "." and "..", as bytes: a name that is
    /// not UTF-8 must be reported as it is, not decoded into another name.
    public static func listRaw(_ path: String) throws(SysError) -> [[UInt8]] {
        var names: [[UInt8]] = []
        try forEachRawEntry(path) { name, _ in
            names.append(name)
            return true
        }
        return names
    }

    /// Names in a directory, without "." and "..".
    public static func list(_ path: String) throws(SysError) -> [String] {
        var names: [String] = []
        try forEachEntry(path) { name, _ in
            names.append(name)
            return true
        }
        return names
    }

    public struct Status {
        public var mode: UInt32
        public var size: Int64
        public var modified: Int64  // ns since the epoch
        public var inode: UInt64 = 0
        public var isDirectory: Bool { mode & S_IFMT == S_IFDIR }
        public var isRegular: Bool { mode & S_IFMT == S_IFREG }
        public var isSocket: Bool { mode & S_IFMT == S_IFSOCK }
    }

    /// stat(2) without following a final symlink when `follow` is false; nil if missing.
    public static func status(_ path: String, follow: Bool = true) throws(SysError) -> Status? {
        var st = stat()
        let r = follow ? stat(path, &st) : lstat(path, &st)
        if r != 0 {
            let e = SysError.current
            if e == ENOENT || e == ENOTDIR { return nil }
            throw SysError(call: "stat(\(path))", errno: e)
        }
        return Status(mode: st.st_mode, size: Int64(st.st_size),
                      modified: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec),
                      inode: UInt64(st.st_ino))
    }

    /// Whether `name` matches a shell pattern. The corresponding C function is fnmatch(3).
    public static func matches(_ name: String, pattern: String) -> Bool {
        fnmatch(pattern, name, FNM_PERIOD) == 0
    }

    /// Removes a file. The corresponding C function is unlink(2).
    public static func unlink(_ path: String) throws(SysError) {
        _ = try retrying("unlink(\(path))") { Glibc.unlink(path) }
    }

    public static func isExecutable(_ path: String) -> Bool {
        guard let st = try? status(path), st.isRegular else { return false }
        return access(path, X_OK) == 0
    }

    /// systemd's fixed search path for ExecStart= names without a slash.
    public static let searchPath = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]

    /// Resolves a plain program name in the search path; absolute paths are returned as they are.
    public static func resolveExecutable(_ name: String) -> String? {
        if name.hasPrefix("/") { return name }
        for dir in searchPath where isExecutable(dir + "/" + name) { return dir + "/" + name }
        return nil
    }

    /// Opens a file for a child's stdin/stdout (StandardInput=file:, StandardOutput=append: ...).
    /// The caller owns the returned fd.
    public static func open(_ path: String, flags: Int32, mode: UInt32 = 0o644) throws(SysError) -> FileDescriptor {
        FileDescriptor(try retrying("open(\(path))") { porter_open(path, flags | O_CLOEXEC | O_NOCTTY, mode) })
    }
}
