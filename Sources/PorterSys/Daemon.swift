import CPorter
import Glibc

/// Leaving the foreground the way daemon(7) and the article porter grew
/// from describe, for SysV-style init: fork, setsid, fork again (so the
/// daemon is no session leader and can never acquire a terminal), chdir /,
/// umask 0, stdin and stdout onto /dev/null, the terminal's job-control
/// signals ignored. The first parent waits on a pipe and exits only when
/// the daemon says it is ready (every socket bound) — 0 then, 1 if the
/// daemon died first — so an init script can trust its exit code.
public enum Daemon {
    /// In the daemon: the write end of the readiness pipe. Say `ready()`
    /// once set up; exiting without saying it makes the first parent fail.
    public struct Readiness {
        let fd: FileDescriptor
        public func ready() {
            _ = try? fd.write("ready\n")
            fd.close()
        }
    }

    /// Returns in the daemon only; the original process exits with the
    /// daemon's verdict. `keepStderr`: logs still go to stderr (otherwise
    /// it is /dev/null too).
    public static func detach(keepStderr: Bool) throws(SysError) -> Readiness {
        let pipe = try makePipe()
        let first = fork()
        if first < 0 { throw SysError(call: "fork", errno: SysError.current) }
        if first > 0 {
            // The original process: wait for the word, then go.
            pipe.write.close()
            var buffer = [UInt8](repeating: 0, count: 16)
            var got: [UInt8] = []
            while true {
                let n = buffer.withUnsafeMutableBytes { (try? pipe.read.read(into: $0)) ?? 0 } ?? 0
                if n <= 0 { break }
                got += buffer[0..<n]
            }
            var status: Int32 = 0
            _ = waitpid(first, &status, 0)  // the intermediate child, gone at once
            exit(got.starts(with: Array("ready".utf8)) ? 0 : 1)
        }
        // The first child: a new session, without a terminal.
        pipe.read.close()
        if setsid() < 0 { _exit(1) }
        let second = fork()
        if second < 0 { _exit(1) }
        if second > 0 { _exit(0) }
        // The daemon: not a session leader, so opening a terminal never
        // makes it the controlling one.
        _ = chdir("/")
        _ = umask(0)
        for sig in [SIGTTIN, SIGTTOU, SIGTSTP] { signal(sig, SIG_IGN) }
        let null = porter_open("/dev/null", O_RDWR | O_CLOEXEC, 0)
        if null >= 0 {
            _ = dup2(null, 0)
            _ = dup2(null, 1)
            if !keepStderr { _ = dup2(null, 2) }
            if null > 2 { _ = Glibc.close(null) }
        }
        return Readiness(fd: pipe.write)
    }
}

/// The pid file of a daemonized porter: written atomically (a temporary
/// file renamed into place, so no reader ever sees it empty or half
/// written) and locked for as long as porter runs (flock(2) on the file
/// that is in place, so a second porter finds it locked and refuses to
/// start). The lock belongs to the open file, so it survives an upgrade's
/// exec when the fd is handed over. Resolved without following symlinks
/// others could have placed.
public enum PidFile {
    public struct Refusal: Error, CustomStringConvertible {
        public var description: String
    }

    /// Writes `pid` to `path` and returns the locked fd (close-on-exec; the
    /// caller keeps it open).
    public static func create(_ path: String, pid: Int32) throws(Refusal) -> FileDescriptor {
        guard let name = path.split(separator: "/").last.map(String.init), path.hasPrefix("/") else {
            throw Refusal(description: "\(path): expected an absolute path")
        }
        let parent = SafePath.parent(of: path)
        let dir: FileDescriptor
        do { dir = try SafePath.directory(parent, trust: .porter, create: 0o755) } catch {
            throw Refusal(description: "\(path): \(error)")
        }
        defer { dir.close() }
        // Someone holds it: refuse, naming them.
        let existing = porter_openat(dir.rawValue, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0)
        if existing >= 0 {
            defer { _ = Glibc.close(existing) }
            if flock(existing, LOCK_SH | LOCK_NB) != 0 {
                var buffer = [UInt8](repeating: 0, count: 32)
                let n = read(existing, &buffer, buffer.count)
                let holder = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters() : "?"
                throw Refusal(description: "\(path): locked by pid \(holder); another porter runs with this pid file")
            }
        } else if SysError.current != ENOENT {
            throw Refusal(description: "\(path): \(SysError.describe(SysError.current))")
        }
        let temporary = ".\(name).\(getpid()).tmp"
        _ = unlinkat(dir.rawValue, temporary, 0)
        let fd = porter_openat(dir.rawValue, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Refusal(description: "\(parent)/\(temporary): \(SysError.describe(SysError.current))") }
        let file = FileDescriptor(fd)
        do {
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { throw SysError(call: "flock", errno: SysError.current) }
            try file.write("\(pid)\n")
            _ = fsync(fd)
            guard renameat(dir.rawValue, temporary, dir.rawValue, name) == 0 else {
                throw SysError(call: "rename(\(temporary), \(name))", errno: SysError.current)
            }
        } catch {
            _ = unlinkat(dir.rawValue, temporary, 0)
            file.close()
            throw Refusal(description: "\(path): \(error)")
        }
        return file
    }

    /// Removes the pid file if it is still the one `fd` locks.
    public static func remove(_ path: String, _ fd: FileDescriptor) {
        guard let name = path.split(separator: "/").last.map(String.init),
              let dir = try? SafePath.directory(SafePath.parent(of: path), trust: .porter) else { return }
        defer { dir.close() }
        var mine = stat(), there = stat()
        if fstat(fd.rawValue, &mine) == 0, fstatat(dir.rawValue, name, &there, AT_SYMLINK_NOFOLLOW) == 0,
           mine.st_ino == there.st_ino, mine.st_dev == there.st_dev {
            _ = unlinkat(dir.rawValue, name, 0)
        }
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\n" || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" { s = s.dropLast() }
        return String(s)
    }
}
