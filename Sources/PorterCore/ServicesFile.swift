/// /etc/services (services(5)): service names and aliases to ports, per
/// protocol. inetd.conf and xinetd name their services; the importers turn
/// each name into the port systemd's Listen*= lines need. Pure: the
/// caller reads the file.
public struct ServicesFile: Sendable {
    struct Key: Hashable { var name: String; var proto: String }
    private var ports: [Key: UInt16] = [:]

    public init() {}

    /// `name port/protocol [alias...]  # comment`, one per line; lines
    /// that do not parse are skipped, as getservbyname(3) skips them.
    public init(text: String) {
        for raw in text.split(whereSeparator: { $0 == "\n" }) {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard words.count >= 2 else { continue }
            let pp = words[1].split(separator: "/")
            guard pp.count == 2, let port = UInt16(pp[0]), port > 0 else { continue }
            let proto = String(pp[1])
            for name in [words[0]] + words.dropFirst(2) {
                // The first line for a name wins, as in getservbyname(3).
                if ports[Key(name: name, proto: proto)] == nil { ports[Key(name: name, proto: proto)] = port }
            }
        }
    }

    /// The port of `name` for `proto` ("tcp", "udp"); a number is taken as it is.
    public func port(_ name: String, proto: String) -> UInt16? {
        if let n = UInt16(name), n > 0 { return n }
        return ports[Key(name: name, proto: proto)]
    }

    /// The few names every inetd knows, for hosts without /etc/services
    /// (minimal containers): what `internal` services and the common ones use.
    public static let builtin = ServicesFile(text: """
        echo 7/tcp
        echo 7/udp
        discard 9/tcp sink null
        discard 9/udp sink null
        daytime 13/tcp
        daytime 13/udp
        chargen 19/tcp ttytst source
        chargen 19/udp ttytst source
        ftp 21/tcp
        telnet 23/tcp
        time 37/tcp timserver
        time 37/udp timserver
        tftp 69/udp
        finger 79/tcp
        auth 113/tcp authentication tap ident
        rsync 873/tcp
        git 9418/tcp
        """)
}
