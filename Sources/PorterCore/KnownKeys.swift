/// systemd keys porter does not implement, and what to do about each.
///
/// The rule (issue #2): a key whose absence would change security or
/// semantics refuses the unit — a unit that asks for a sandbox, a resource
/// limit or a second command must never run without it. Keys that only
/// order, document or install units are accepted silently; other harmless
/// keys get a warning. Anything not listed anywhere is "unknown" and gets a
/// warning with the nearest known key, to catch misspellings.
public enum KnownKeys {
    public enum Verdict: Equatable {
        case silent
        case ignored(String)
        case refused(String)
        /// Needs a sandbox porter does not have: gathered into one message per unit.
        case sandbox
        case unknown(suggestion: String?)
    }

    static let unitSilent: Set<String> = [
        "Description", "Documentation", "After", "Before", "Wants", "WantedBy", "PartOf", "Conflicts",
        "DefaultDependencies", "StopWhenUnneeded", "RefuseManualStart", "RefuseManualStop", "AllowIsolate",
        "IgnoreOnIsolate", "CollectMode", "SourcePath", "Upholds", "PropagatesReloadTo", "ReloadPropagatedFrom",
        "PropagatesStopTo", "StopPropagatedFrom", "JobTimeoutSec", "JobRunningTimeoutSec", "JobTimeoutAction",
        "SurviveFinalKillSignal", "RequiresMountsFor", "WantsMountsFor",
    ]
    static let unitIgnored: Set<String> = [
        "Requires", "Requisite", "BindsTo", "OnFailure", "OnSuccess", "OnFailureJobMode", "JoinsNamespaceOf",
        "FailureAction", "SuccessAction", "FailureActionExitStatus", "SuccessActionExitStatus",
        "StartLimitAction", "RebootArgument",
    ]
    static let installKeys: Set<String> = ["WantedBy", "RequiredBy", "UpheldBy", "Alias", "Also", "DefaultInstance"]

    /// Keys of systemd.exec(5), systemd.kill(5) and systemd.resource-control(5)
    /// that porter cannot honour without namespaces, cgroups, capabilities or
    /// seccomp. A unit using one is refused rather than run unprotected.
    static let execRefused: Set<String> = [
        "RootDirectory", "RootImage", "RootImageOptions", "RootHash", "RootVerity", "MountAPIVFS",
        "ProtectProc", "ProcSubset", "BindPaths", "BindReadOnlyPaths", "MountImages", "ExtensionImages",
        "ExtensionDirectories", "DynamicUser", "CapabilityBoundingSet", "AmbientCapabilities", "SecureBits",
        "SELinuxContext", "AppArmorProfile", "SmackProcessLabel", "ProtectSystem", "ProtectHome",
        "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "ExecPaths", "NoExecPaths", "TemporaryFileSystem",
        "PrivateTmp", "PrivateDevices", "PrivateNetwork", "NetworkNamespacePath", "PrivateIPC", "IPCNamespacePath",
        "PrivateUsers", "ProtectHostname", "ProtectClock", "ProtectKernelTunables", "ProtectKernelModules",
        "ProtectKernelLogs", "ProtectControlGroups", "RestrictAddressFamilies", "RestrictFileSystems",
        "RestrictNetworkInterfaces", "RestrictNamespaces", "LockPersonality", "MemoryDenyWriteExecute",
        "RestrictRealtime", "RestrictSUIDSGID", "RemoveIPC", "PrivateMounts", "MountFlags", "SystemCallFilter",
        "SystemCallErrorNumber", "SystemCallArchitectures", "SystemCallLog", "PAMName", "KeyringMode",
        "LoadCredential", "LoadCredentialEncrypted", "SetCredential", "SetCredentialEncrypted", "ImportCredential",
        "IPAddressAllow", "IPAddressDeny", "IPIngressFilterPath", "IPEgressFilterPath", "SocketBindAllow",
        "SocketBindDeny", "DeviceAllow", "DevicePolicy", "MemoryMax", "MemoryHigh", "MemoryLow", "MemoryMin",
        "MemorySwapMax", "MemoryLimit", "CPUQuota", "CPUQuotaPeriodSec", "CPUWeight", "StartupCPUWeight",
        "CPUShares", "AllowedCPUs", "AllowedMemoryNodes", "TasksMax", "IOWeight", "IODeviceWeight",
        "IOReadBandwidthMax", "IOWriteBandwidthMax", "IOReadIOPSMax", "IOWriteIOPSMax", "Slice", "Delegate",
        "TTYPath", "StandardInputText", "StandardInputData", "ProtectSystemd",
        "BPFProgram", "ManagedOOMSwap", "ManagedOOMMemoryPressure", "NUMAPolicy", "NUMAMask",
    ]
    /// Harmless: scheduling hints and logging niceties.
    static let execIgnored: Set<String> = [
        "SyslogFacility", "SyslogLevel", "SyslogLevelPrefix", "LogLevelMax", "LogExtraFields", "LogRateLimitIntervalSec",
        "LogRateLimitBurst", "LogNamespace", "LogFilterPatterns", "TTYReset", "TTYVHangup", "TTYVTDisallocate",
        "TTYRows", "TTYColumns", "UtmpIdentifier", "UtmpMode", "CoredumpFilter", "CoredumpReceive",
        "MemoryAccounting", "CPUAccounting", "IOAccounting", "TasksAccounting", "IPAccounting",
    ]
    static let serviceRefused: [String: String] = [
        "BusName": "it belongs to Type=dbus, and porter has no D-Bus bus",
        "USBFunctionDescriptors": "USB gadget functions need systemd's FunctionFS support, which porter does not have",
        "USBFunctionStrings": "USB gadget functions need systemd's FunctionFS support, which porter does not have",
    ]
    /// Accepted with a warning: what they ask for cannot matter or is
    /// porter's behaviour anyway; the warning says which.
    static let serviceWarned: [String: String] = [
        "TimeoutAbortSec": "porter aborts a hung service with the stop timeout",
        "TimeoutStartFailureMode": "porter stops a service that did not start in time with KillSignal=",
        "TimeoutStopFailureMode": "porter sends FinalKillSignal= when the stop timeout passes",
        "OOMPolicy": "without cgroups porter cannot tell an OOM kill from another SIGKILL; the service is handled as killed",
        "ExitType": "porter follows the main process (ExitType=main); ExitType=cgroup would need cgroups",
    ]
    static let serviceIgnored: Set<String> = []
    static let socketRefused: [String: String] = [
        "ListenFIFO": "porter does not listen on FIFOs yet", "ListenSpecial": "porter does not open special files yet",
        "ListenNetlink": "porter does not listen on netlink sockets yet", "ListenMessageQueue": "porter does not open POSIX message queues yet",
        "ListenUSBFunction": "USB gadget functions need systemd's FunctionFS support, which porter does not have",
        "SocketProtocol": "porter opens sockets with the default protocol only (no SCTP or UDP-Lite yet)",
        "ExecStartPre": "porter does not run commands for socket units yet", "ExecStartPost": "porter does not run commands for socket units yet",
        "ExecStopPre": "porter does not run commands for socket units yet", "ExecStopPost": "porter does not run commands for socket units yet",
        "Writable": "it belongs to ListenSpecial=, which porter does not support yet",
        "SmackLabel": "porter has no SMACK support", "SmackLabelIPIn": "porter has no SMACK support", "SmackLabelIPOut": "porter has no SMACK support",
        "SELinuxContextFromNet": "porter has no SELinux support",
        "DeferTrigger": "porter starts a service on the first event, without job queues to defer for",
        "DeferTriggerMaxSec": "porter starts a service on the first event, without job queues to defer for",
        "PassFileDescriptorsToExec": "porter does not run commands for socket units yet",
    ]
    static let socketIgnored: Set<String> = [
        "PipeSize", "MessageQueueMaxMessages", "MessageQueueMessageSize", "TCPCongestion",
        "AcceptFileDescriptors", "Timestamping", "TimeoutSec",
    ]

    public static func classify(section: String, key: String, implemented: [String]) -> Verdict {
        switch section {
        case "Unit":
            if unitSilent.contains(key) { return .silent }
            if unitIgnored.contains(key) { return .ignored("porter starts each unit on its own activity") }
        case "Install":
            return .silent
        case "Service", "Socket":
            let table = section == "Service" ? serviceRefused : socketRefused
            if let why = table[key] { return .refused(why) }
            if section == "Service", let why = serviceWarned[key] { return .ignored(why) }
            if key.hasSuffix("Accounting") {
                return .ignored("accounting needs cgroups, which porter does not use")
            }
            if execRefused.contains(key) { return .sandbox }
            if section == "Socket" && socketIgnored.contains(key) {
                return .ignored("porter does not set it yet; the socket works with the kernel's default")
            }
            if serviceIgnored.contains(key) || execIgnored.contains(key) {
                return .ignored("a logging or terminal setting porter does not have; its output goes to porter's log as it is")
            }
        default:
            break
        }
        return .unknown(suggestion: nearest(key, in: implemented))
    }

    /// The implemented key closest to `key` by edit distance, if close enough
    /// to be a likely misspelling.
    static func nearest(_ key: String, in candidates: [String]) -> String? {
        var best: (String, Int)? = nil
        for c in candidates {
            let d = distance(key.lowercased(), c.lowercased())
            if d <= max(2, c.count / 4), d < (best?.1 ?? .max) { best = (c, d) }
        }
        return best?.0
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
}
