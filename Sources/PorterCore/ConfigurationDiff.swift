/// What a reload changes, unit by unit: the difference between the units
/// porter runs and a configuration read again, by name and by the
/// fingerprint of each unit's file.
public struct ConfigurationDiff: Equatable, Sendable {
    public var added: [UnitName] = []
    public var removed: [UnitName] = []
    public var changed: [UnitName] = []
    public var unchanged: [UnitName] = []

    public init(old: [UnitName: UInt64], new: [UnitName: UInt64]) {
        for (name, print) in new {
            switch old[name] {
            case nil: added.append(name)
            case print: unchanged.append(name)
            default: changed.append(name)
            }
        }
        removed = old.keys.filter { new[$0] == nil }
        added.sort()
        removed.sort()
        changed.sort()
        unchanged.sort()
    }

    /// The one info line of a reload.
    public var summary: String {
        "\(added.count) added, \(removed.count) removed, \(changed.count) changed, \(unchanged.count) unchanged"
            + (added.isEmpty ? "" : "; added: " + Self.list(added))
            + (removed.isEmpty ? "" : "; removed: " + Self.list(removed))
            + (changed.isEmpty ? "" : "; changed: " + Self.list(changed))
    }

    /// At most ten names in a log line.
    static func list(_ names: [UnitName]) -> String {
        let shown = names.prefix(10).map(\.description).joined(separator: " ")
        return names.count > 10 ? shown + " and \(names.count - 10) more" : shown
    }
}

extension Listen {
    /// What a listening socket is bound to, whatever line says so: a
    /// reload hands a socket on to the unit that asks for the same.
    public struct Endpoint: Hashable, Sendable {
        public var kind: SocketKind
        public var address: ListenAddress
    }

    public var endpoint: Endpoint { Endpoint(kind: kind, address: address) }
}

extension SocketConfig {
    /// Every setting that shapes a listening socket. A reload hands a
    /// socket on whatever these are; when they differ, the daemon sets
    /// what a live socket can take and names the rest.
    public struct Shape: Hashable, Sendable {
        var backlog: Int32
        var bindIPv6Only: String
        var flags: [Bool]
        var buffers: [Int?]
        var modes: [UInt32]
        var owner: [String?]
        var options: [SocketOption]
    }

    public var shape: Shape {
        Shape(backlog: backlog, bindIPv6Only: bindIPv6Only.rawValue, flags: [reusePort, freeBind, keepAlive, noDelay],
              buffers: [receiveBuffer, sendBuffer], modes: [socketMode, directoryMode], owner: [socketUser, socketGroup],
              options: options)
    }
}
