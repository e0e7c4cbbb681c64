import Glibc
import PorterCore
import PorterSys

/// What one image of porter hands the next in `porter upgrade`: a memfd
/// whose number is in PORTER_UPGRADE_FD, holding JSON. Its header is the
/// part every porter version reads — the fds handed over and what each is
/// (a listening socket, the control socket, a journal pipe...) — so a
/// porter that cannot read the rest still adopts every socket by address
/// and loses no connection; the `state` (units, processes, counts) is
/// read when its version is one this porter knows.
struct UpgradeHandover {
    static let variable = "PORTER_UPGRADE_FD"
    static let format = "porter-upgrade"
    /// The version of `state` this porter writes; it reads this one and older ones it knows.
    static let stateVersion = 1

    struct Handed: Codable, Equatable {
        var fd: Int32
        /// listen, control, metrics, notify, pidfile, journal-read,
        /// journal-write, connection, stored, exchange: what the next image
        /// does with it.
        var role: String
        /// The unit (or journal) it belongs to, where it has one.
        var name: String?
    }

    struct Header: Codable {
        var format: String
        var version: Int
        var porter: String
        var fds: [Handed]
    }

    var header: Header
    /// The state, when the header's version is one this porter reads.
    var state: JSON?
    /// Why the state could not be used, for the log.
    var stateProblem: String?
    let memfd: Int32

    var descriptors: Set<Int32> { Set(header.fds.map(\.fd)).union([memfd]) }

    func fds(_ role: String) -> [FileDescriptor] {
        header.fds.filter { $0.role == role }.map { FileDescriptor($0.fd) }
    }

    /// Reads the handover from its memfd (closed afterwards); nil, with a
    /// line on stderr, when not even the header can be read: then nothing
    /// handed over is kept, as after a plain restart.
    static func read(from fd: Int32) -> UpgradeHandover? {
        let memfd = FileDescriptor(fd)
        _ = lseek(fd, 0, SEEK_SET)
        let bytes: [UInt8]
        do { bytes = try Files.readAll(try memfd.duplicate(), limit: 1 << 30) } catch {
            Log.error("upgrade: cannot read the state handed over (fd \(fd)): \(error); starting afresh")
            return nil
        }
        let json: JSON
        let header: Header
        do {
            json = try JSON.parse(bytes)
            guard let h = json["header"] else { throw JSONCoding.Failure(description: "no header") }
            header = try JSONCoding.decode(Header.self, from: h)
            guard header.format == format else { throw JSONCoding.Failure(description: "not a porter upgrade state") }
        } catch {
            Log.error("upgrade: the state handed over is unreadable (\(error)); starting afresh")
            return nil
        }
        var h = UpgradeHandover(header: header, state: nil, stateProblem: nil, memfd: fd)
        if header.version == stateVersion {
            h.state = json["state"]
        } else {
            h.stateProblem = "state version \(header.version) from porter \(header.porter); this porter reads version \(stateVersion)"
        }
        return h
    }
}
