/// RuntimeDirectory=, StateDirectory=, CacheDirectory=, LogsDirectory=,
/// ConfigurationDirectory= of systemd.exec(5): directories porter makes for
/// the service under fixed roots, owned by its User=/Group=, and names in
/// `$RUNTIME_DIRECTORY` and the like.
public enum ServiceDirectories {
    public enum Kind: String, Sendable, CaseIterable {
        case runtime = "RuntimeDirectory", state = "StateDirectory", cache = "CacheDirectory"
        case logs = "LogsDirectory", configuration = "ConfigurationDirectory"

        /// The variable that names them: RUNTIME_DIRECTORY, ...
        public var variable: String {
            switch self {
            case .runtime: return "RUNTIME_DIRECTORY"
            case .state: return "STATE_DIRECTORY"
            case .cache: return "CACHE_DIRECTORY"
            case .logs: return "LOGS_DIRECTORY"
            case .configuration: return "CONFIGURATION_DIRECTORY"
            }
        }

        /// The root: for root /run, /var/lib, /var/cache, /var/log, /etc;
        /// for another user the XDG directories systemd's user manager uses.
        public func root(_ host: HostFacts) -> String {
            switch self {
            case .runtime: return host.runtimeDirectory
            case .state: return host.stateDirectory
            case .cache: return host.cacheDirectory
            case .logs: return host.logsDirectory
            case .configuration: return host.configDirectory
            }
        }
    }

    public struct Entry: Equatable, Sendable {
        public var names: [String] = []
        /// systemd's default for each: 0755.
        public var mode: UInt32 = 0o755
        public var line = 0
        public init() {}
    }

    public enum Preserve: String, Sendable {
        case no, yes, restart
    }

    /// Why `name` cannot be a directory name here, or nil: relative, no
    /// `..` or `.` components, no empty ones.
    public static func problem(_ name: String) -> String? {
        if name.hasPrefix("/") { return "\(Quote.value(name)) is absolute, expected a name relative to the root such as foo or foo/bar" }
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        if parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            return "\(Quote.value(name)) has an empty, . or .. component, expected a name such as foo or foo/bar"
        }
        return nil
    }
}
