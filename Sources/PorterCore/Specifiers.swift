/// What porter knows about the machine and about itself, for specifiers
/// and defaults. Gathered once by the daemon; tests make their own. A class,
/// so the thousands of specifier contexts made at start share one copy.
public final class HostFacts: Sendable {
    public let hostname: String
    public let userName: String
    public let uid: UInt32
    public let groupName: String
    public let gid: UInt32
    public let home: String
    public let shell: String
    /// %t: /run for root, $XDG_RUNTIME_DIR (or /tmp) otherwise, as systemd does.
    public let runtimeDirectory: String
    public let stateDirectory: String
    public let cacheDirectory: String
    public let logsDirectory: String
    public let configDirectory: String
    public let kernelRelease: String
    public let machineID: String
    public let bootID: String

    public init(hostname: String = "localhost", userName: String = "root", uid: UInt32 = 0,
                groupName: String = "root", gid: UInt32 = 0, home: String = "/root", shell: String = "/bin/sh",
                runtimeDirectory: String = "/run", stateDirectory: String = "/var/lib",
                cacheDirectory: String = "/var/cache", logsDirectory: String = "/var/log",
                configDirectory: String = "/etc", kernelRelease: String = "", machineID: String = "",
                bootID: String = "") {
        self.hostname = hostname
        self.userName = userName
        self.uid = uid
        self.groupName = groupName
        self.gid = gid
        self.home = home
        self.shell = shell
        self.runtimeDirectory = runtimeDirectory
        self.stateDirectory = stateDirectory
        self.cacheDirectory = cacheDirectory
        self.logsDirectory = logsDirectory
        self.configDirectory = configDirectory
        self.kernelRelease = kernelRelease
        self.machineID = machineID
        self.bootID = bootID
    }
}

/// Specifier expansion (`%i`, `%n`, `%t`, ... ) as systemd.unit(5) lists it.
public struct Specifiers: Sendable {
    public var unit: UnitName
    public var host: HostFacts
    /// User= of the unit, for %u/%U when set.
    public var user: String?

    public init(unit: UnitName, host: HostFacts, user: String? = nil) {
        self.unit = unit
        self.host = host
        self.user = user
    }

    /// Specifiers whose value depends on the instance: a template's text that
    /// contains one must be expanded again for every instance.
    public static let instanceDependent: Set<Character> = ["i", "I", "n", "N", "f"]

    public static func dependsOnInstance(_ s: String) -> Bool {
        guard s.utf8.contains(UInt8(ascii: "%")) else { return false }
        var percent = false
        for c in s {
            if percent {
                if instanceDependent.contains(c) { return true }
                percent = false
            } else if c == "%" {
                percent = true
            }
        }
        return false
    }

    public func expand(_ s: String) throws(ValueError) -> String {
        guard s.utf8.contains(UInt8(ascii: "%")) else { return s }
        var out = ""
        var percent = false
        for c in s {
            if !percent {
                if c == "%" { percent = true } else { out.append(c) }
                continue
            }
            percent = false
            out += try value(of: c, in: s)
        }
        if percent { throw ValueError("\(Quote.value(s)) ends in a lone '%', write %% for a percent sign") }
        return out
    }

    private func value(of c: Character, in s: String) throws(ValueError) -> String {
        let instance = unit.instance ?? ""
        switch c {
        case "%": return "%"
        case "n": return unit.description
        case "N": return unit.withoutSuffix
        case "p": return unit.prefix
        case "P": return UnitName.unescape(unit.prefix)
        case "i": return instance
        case "I": return UnitName.unescape(instance)
        case "f":
            let raw = instance.isEmpty ? unit.prefix : instance
            let u = UnitName.unescape(raw)
            return u.hasPrefix("/") ? u : "/" + u
        case "j": return String(unit.prefix.split(separator: "-", omittingEmptySubsequences: false).last ?? "")
        case "J": return UnitName.unescape(String(unit.prefix.split(separator: "-", omittingEmptySubsequences: false).last ?? ""))
        case "t": return host.runtimeDirectory
        case "S": return host.stateDirectory
        case "C": return host.cacheDirectory
        case "L": return host.logsDirectory
        case "E": return host.configDirectory
        case "T": return "/tmp"
        case "V": return "/var/tmp"
        case "h": return host.home
        case "s": return host.shell
        case "u": return user ?? host.userName
        case "U":
            // A numeric User= is its own uid; a named one stays a name here
            // because Core does not read the user database.
            return user ?? String(host.uid)
        case "g": return host.groupName
        case "G": return String(host.gid)
        case "H": return host.hostname
        case "l": return String(host.hostname.split(separator: ".").first ?? "")
        case "v": return host.kernelRelease
        case "m": return host.machineID
        case "b": return host.bootID
        default:
            throw ValueError("unknown specifier '%\(c)' in \(Quote.value(s)), write %% for a percent sign")
        }
    }
}
