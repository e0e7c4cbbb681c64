/// OpenFile= (systemd.service(5)): `PATH[:FDNAME[:OPTIONS]]`, a file (or
/// Unix socket, which is connected to) that porter opens with its own
/// privileges at each start and passes to the service after its sockets and
/// stored fds, named in LISTEN_FDNAMES — so a service that runs as a user
/// can be handed a file only root may open. Options: `read-only`,
/// `append`, `truncate` (at most one; read-write without any), and
/// `graceful` (a file that cannot be opened is left out instead of failing
/// the start). The name defaults to the path's last component.
public struct OpenFile: Equatable, Sendable {
    public enum Access: Equatable, Sendable { case readWrite, readOnly, append, truncate }

    public var path: String
    public var name: String
    public var access: Access
    public var graceful: Bool

    public init(path: String, name: String, access: Access, graceful: Bool) {
        self.path = path
        self.name = name
        self.access = access
        self.graceful = graceful
    }

    /// systemd's open_file_parse(): at most three colon-separated fields
    /// (a backslash takes the next character as it is, so `\:` is a colon).
    public static func parse(_ value: String) throws(ValueError) -> OpenFile {
        var fields: [String] = [""], escaped = false
        for c in value {
            if escaped {
                fields[fields.count - 1].append(c)
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else if c == ":" {
                fields.append("")
            } else {
                fields[fields.count - 1].append(c)
            }
        }
        guard !escaped else { throw ValueError("\(Quote.value(value)) ends with a backslash") }
        guard fields.count <= 3 else {
            throw ValueError("\(Quote.value(value)) has more than three fields, expected PATH[:FDNAME[:OPTIONS]]")
        }
        let path = fields[0]
        guard path.hasPrefix("/"), !path.hasSuffix("/"), !path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            throw ValueError("\(Quote.value(path)) is not a normalized absolute path, expected /path/to/file")
        }
        var name = fields.count > 1 ? fields[1] : ""
        if name.isEmpty { name = String(path.split(separator: "/").last ?? "") }
        // sd_listen_fds(3)'s names: printable ASCII without ':', at most 255.
        guard !name.isEmpty, name.utf8.count <= 255, name.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F && $0 != ":" }) else {
            throw ValueError("invalid fd name \(Quote.value(name)), expected printable ASCII without ':' (at most 255 characters)")
        }
        var access: Access? = nil, graceful = false
        for option in (fields.count > 2 ? fields[2] : "").split(separator: ",", omittingEmptySubsequences: true) {
            switch option {
            case "graceful":
                guard !graceful else { throw ValueError("option graceful is given twice") }
                graceful = true
            case "read-only", "append", "truncate":
                let a: Access = option == "read-only" ? .readOnly : option == "append" ? .append : .truncate
                guard access == nil else { throw ValueError("read-only, append and truncate exclude each other; found \(Quote.value(String(option))) after another") }
                access = a
            default:
                throw ValueError("unknown option \(Quote.value(String(option))), expected read-only, append, truncate or graceful")
            }
        }
        return OpenFile(path: path, name: name, access: access ?? .readWrite, graceful: graceful)
    }
}
