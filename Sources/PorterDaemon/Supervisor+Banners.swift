import Glibc
import PorterCore
import PorterSys

/// Banner=, BannerSuccess=, BannerFail= (xinetd's banners): text written to
/// a connection porter accepted, before it is served or after it is
/// refused. The files are read when the configuration is loaded, so a
/// connection costs one non-blocking send and no file access.
extension Supervisor {
    /// Reads the socket's banner files, when the configuration is loaded
    /// (`porter check` too). Each is taken whole or not at all: a missing,
    /// unreadable or too large file is a warning (`warn(key, why)`) and no
    /// banner (xinetd, too, serves without one). Symlinks are followed only
    /// where nobody but root or porter could have placed them: otherwise a
    /// user could show a remote client any file root can read.
    static func readBanners(_ s: SocketConfig, warn: (String, String) -> Void) -> Banners {
        func read(_ path: String?, _ key: String) -> [UInt8] {
            guard let path else { return [] }
            do {
                return try readBanner(path)
            } catch {
                warn(key, "\(path): \(error); no banner is sent")
                return []
            }
        }
        return Banners(always: read(s.banners.always, "Banner"), success: read(s.banners.success, "BannerSuccess"),
                       fail: read(s.banners.fail, "BannerFail"))
    }

    /// The banners the current preparation read for the socket.
    func loadBanners(_ s: SocketRuntime) {
        s.banners = activation?.prep.banners[s.config.name] ?? Banners()
    }

    struct BannerFailure: Error, CustomStringConvertible {
        var description: String
    }

    static func readBanner(_ path: String) throws(BannerFailure) -> [UInt8] {
        let fd: FileDescriptor
        do { fd = try SafePath.file(path, trust: .porter) } catch { throw BannerFailure(description: error.description) }
        defer { fd.close() }
        do {
            return try Files.readBytes(SafePath.procPath(fd), limit: BannerFiles.maxBytes)
        } catch {
            throw BannerFailure(description: "\(error)")
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
