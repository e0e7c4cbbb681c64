import Glibc
import PorterCore
import PorterSys

/// Banner=, BannerSuccess=, BannerFail= (xinetd's banners): text written to
/// a connection porter accepted, before it is served or after it is
/// refused. The files are read when the configuration is loaded, so a
/// connection costs one non-blocking send and no file access.
extension Supervisor {
    /// Reads the socket's banner files. Each is taken whole or not at all:
    /// a missing, unreadable or too large file is a warning and no banner
    /// (xinetd, too, serves without one). Symlinks are followed only where
    /// nobody but root or porter could have placed them: otherwise a user
    /// could show a remote client any file root can read.
    func loadBanners(_ s: SocketRuntime) {
        let files = s.config.banners
        guard !files.isEmpty else {
            s.banners = Banners()
            return
        }
        func read(_ path: String?, _ key: String) -> [UInt8] {
            guard let path else { return [] }
            do {
                return try Self.readBanner(path)
            } catch {
                Log.warning("\(s.name): \(key)=\(path): \(error); no banner is sent")
                return []
            }
        }
        s.banners = Banners(always: read(files.always, "Banner"), success: read(files.success, "BannerSuccess"),
                            fail: read(files.fail, "BannerFail"))
    }

    struct BannerFailure: Error, CustomStringConvertible {
        var description: String
    }

    static func readBanner(_ path: String) throws(BannerFailure) -> [UInt8] {
        let outcome: SafePath.Outcome
        do { outcome = try SafePath.open(path, trust: .porter, directory: false) } catch {
            throw BannerFailure(description: error.reason)
        }
        switch outcome {
        case .found(let fd):
            defer { fd.close() }
            do {
                return try Files.readBytes(SafePath.procPath(fd), limit: BannerFiles.maxBytes)
            } catch {
                throw BannerFailure(description: "\(error)")
            }
        case .missing(let fd, let at):
            fd.close()
            throw BannerFailure(description: "\(at) does not exist")
        case .refused(let fd, let at, let reason):
            fd.close()
            throw BannerFailure(description: "\(at) is a symlink in a directory that \(reason); not followed")
        case .notDirectory(let fd, let at, let name):
            fd.close()
            throw BannerFailure(description: "\(at)/\(name) is not a directory")
        }
    }

    /// Writes the banner for a connection porter accepted (`served`: it is
    /// served; otherwise it was refused). False when the connection could
    /// not take it whole — the peer is gone — and is to be closed.
    func sendBanner(_ s: SocketRuntime, _ connection: FileDescriptor, served: Bool) -> Bool {
        let text = s.banners.text(served: served)
        guard !text.isEmpty else { return true }
        do {
            // A fresh connection's send buffer holds at least 4 KiB, the
            // largest banner: a short count means the peer went away.
            if try Socket.sendNow(connection, text) == text.count { return true }
            return false
        } catch {
            return false
        }
    }
}
