import Glibc
import PorterCore
import PorterSys

/// Evaluates `Condition*=`/`Assert*=` against this host, porter's user and
/// porter's environment, as systemd does against the manager's. What is
/// read from /proc and /sys is read once per check of a unit, not cached
/// across starts: a condition on a file must see the file as it is now.
public struct ConditionCheck {
    let environment: [String: String]
    let host: HostFacts

    public init(environment: [String: String], host: HostFacts) {
        self.environment = environment
        self.host = host
    }

    /// Why the unit must not start: the failed conditions (skip) or
    /// asserts (fail); nil when it may.
    public enum Verdict: Equatable {
        case skip(String)
        case fail(String)
    }

    public func verdict(_ conditions: [UnitCondition]) -> Verdict? {
        guard !conditions.isEmpty else { return nil }
        let conds = conditions.filter { !$0.isAssert }, asserts = conditions.filter(\.isAssert)
        if let failed = UnitCondition.failing(conds.map { ($0, holds($0)) }) {
            return .skip(failed.map(\.description).joined(separator: ", ") + " not met")
        }
        if let failed = UnitCondition.failing(asserts.map { ($0, holds($0)) }) {
            return .fail(failed.map(\.description).joined(separator: ", ") + " failed")
        }
        return nil
    }

    /// The raw result, before `!`.
    public func holds(_ c: UnitCondition) -> Bool {
        let v = c.value
        switch c.kind {
        case .pathExists: return (try? Files.status(v)) ?? nil != nil
        case .pathExistsGlob: return Self.globMatches(v)
        case .pathIsDirectory: return ((try? Files.status(v)) ?? nil)?.isDirectory ?? false
        case .pathIsSymbolicLink: return ((try? Files.status(v, follow: false)) ?? nil).map { $0.mode & S_IFMT == S_IFLNK } ?? false
        case .pathIsMountPoint: return Self.isMountPoint(v)
        case .pathIsReadWrite:
            var st = statvfs()
            return statvfs(v, &st) == 0 && st.f_flag & UInt(ST_RDONLY) == 0
        case .directoryNotEmpty:
            guard ((try? Files.status(v)) ?? nil)?.isDirectory == true, let names = try? Files.list(v) else { return false }
            return names.contains { !PathCondition.isHiddenOrBackup($0) }
        case .fileNotEmpty:
            guard let st = (try? Files.status(v)) ?? nil else { return false }
            return st.isRegular && st.size > 0
        case .fileIsExecutable:
            guard let st = (try? Files.status(v)) ?? nil else { return false }
            return st.isRegular && st.mode & 0o111 != 0
        case .user:
            if v == "@system" { return host.uid <= 999 }
            return v == host.userName || UInt32(v) == host.uid
        case .group:
            var groups = [gid_t](repeating: 0, count: 256)
            let n = getgroups(Int32(groups.count), &groups)
            let mine = Set([host.gid] + groups.prefix(Int(max(n, 0))))
            if let id = UInt32(v) { return mine.contains(id) }
            return Users.groupID(v).map { mine.contains($0) } ?? false
        case .host:
            return Files.matches(host.hostname, pattern: v) || v.lowercased().replacing("-", with: "") == host.machineID
        case .kernelCommandLine:
            return ConditionMatch.kernelCommandLine(v, read("/proc/cmdline"))
        case .kernelVersion:
            let release = host.kernelRelease
            return Values.words(v).allSatisfy { w in
                guard let cmp = try? Comparison.parse(w, defaultOperator: nil) else { return false }
                guard cmp.op != nil else { return Files.matches(release, pattern: cmp.operand) }
                return cmp.holds(Comparison.compareVersions(release, cmp.operand))
            }
        case .virtualization:
            let (kind, id) = Self.virtualization()
            if let b = try? Values.boolean(v) { return b == (kind != nil) }
            if v == "vm" || v == "container" { return kind == v }
            return id == v
        case .architecture:
            return v == "native" || v == Self.architecture
        case .environment:
            return ConditionMatch.environment(v, environment)
        case .capability:
            guard let n = Self.capabilities.firstIndex(of: v.uppercased()) else { return false }
            let line = read("/proc/self/status").split(separator: "\n").first { $0.hasPrefix("CapBnd:") }
            let mask = line.flatMap { UInt64($0.dropFirst(7).trimmingWhitespace(), radix: 16) } ?? 0
            return mask & (1 << UInt64(n)) != 0
        case .cpus:
            // The CPUs porter may run on (its affinity), as systemd counts them.
            let mask = read("/proc/self/status").split(separator: "\n").first { $0.hasPrefix("Cpus_allowed:") }
            var count = 0
            for word in (mask?.dropFirst(13).trimmingWhitespace() ?? "").split(separator: ",") {
                count += (UInt64(word, radix: 16) ?? 0).nonzeroBitCount
            }
            if count == 0 { count = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
            return compareAll(v) { operand in Int(operand).map { count - $0 } }
        case .memory:
            let kb = read("/proc/meminfo").split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
                .flatMap { Int64($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
            return compareAll(v) { operand in
                guard let want = try? ResourceLimit.parseSize(operand) else { return nil }
                let have = UInt64(kb) * 1024
                return have == want ? 0 : (have < want ? -1 : 1)
            }
        case .osRelease:
            var fields: [String: String] = [:]
            let text = (try? Files.read("/etc/os-release")) ?? (try? Files.read("/usr/lib/os-release")) ?? ""
            for (k, value) in EnvironmentParsing.file(text, warn: { _, _ in }) { fields[k] = value }
            return (try? ConditionMatch.osRelease(v, fields)) ?? false
        case .firstBoot:
            let id = read("/etc/machine-id").trimmingWhitespace()
            let first = id.isEmpty || id == "uninitialized"
            return ((try? Values.boolean(v)) ?? true) == first
        case .needsUpdate:
            // systemd: /usr changed after PATH/.updated was written.
            guard let usr = (try? Files.status("/usr")) ?? nil else { return false }
            guard let stamp = (try? Files.status(v + "/.updated")) ?? nil else { return true }
            return usr.modified > stamp.modified
        case .acPower:
            return ((try? Values.boolean(v)) ?? true) == Self.onACPower()
        case .security:
            return Self.security(v)
        case .kernelModuleLoaded:
            return ((try? Files.status("/sys/module/" + v.replacing("-", with: "_"))) ?? nil) != nil
        }
    }

    private func read(_ path: String) -> String { (try? Files.read(path)) ?? "" }

    /// Every space-separated comparison of `v` holds; `order` gives the
    /// sign of have - operand (nil: cannot tell, so false).
    private func compareAll(_ v: String, _ order: (String) -> Int?) -> Bool {
        Values.words(v).allSatisfy { w in
            guard let c = try? Comparison.parse(w, defaultOperator: .equal), let o = order(c.operand) else { return false }
            return c.holds(o < 0 ? -1 : o > 0 ? 1 : 0)
        }
    }

    static func globMatches(_ pattern: String) -> Bool {
        var g = glob_t()
        defer { globfree(&g) }
        return glob(pattern, GLOB_NOSORT, nil, &g) == 0 && g.gl_pathc > 0
    }

    /// A mount point: listed as one in /proc/self/mountinfo.
    static func isMountPoint(_ path: String) -> Bool {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        let info = (try? Files.read("/proc/self/mountinfo", limit: 16 << 20)) ?? ""
        for line in info.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count > 4, Self.unescapeMount(fields[4]) == p { return true }
        }
        return false
    }

    static func unescapeMount(_ s: Substring) -> String {
        String(s).replacing("\\040", with: " ").replacing("\\011", with: "\t").replacing("\\012", with: "\n").replacing("\\134", with: "\\")
    }

    /// What systemd-detect-virt would say: "container" or "vm" and the id,
    /// from the marks containers and hypervisors leave where a process can
    /// read them.
    static func virtualization() -> (kind: String?, id: String?) {
        let environ = ((try? Files.readBytes("/proc/1/environ")) ?? []).split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        if let c = environ.first(where: { $0.hasPrefix("container=") }) { return ("container", String(c.dropFirst(10))) }
        if let c = (try? Files.read("/run/systemd/container"))?.trimmingWhitespace(), !c.isEmpty { return ("container", c) }
        if ((try? Files.status("/.dockerenv")) ?? nil) != nil { return ("container", "docker") }
        if ((try? Files.status("/run/.containerenv")) ?? nil) != nil { return ("container", "podman") }
        if ((try? Files.read("/proc/sys/kernel/osrelease")) ?? "").contains("microsoft") { return ("container", "wsl") }
        let vendor = (((try? Files.read("/sys/class/dmi/id/sys_vendor")) ?? "") + " " + ((try? Files.read("/sys/class/dmi/id/product_name")) ?? "")).lowercased()
        for (mark, id) in [("qemu", "qemu"), ("kvm", "kvm"), ("vmware", "vmware"), ("virtualbox", "oracle"), ("innotek", "oracle"),
                           ("xen", "xen"), ("microsoft corporation virtual", "microsoft"), ("amazon ec2", "amazon"), ("google compute", "google"),
                           ("bochs", "bochs"), ("parallels", "parallels")] where vendor.contains(mark) {
            return ("vm", id)
        }
        let cpuinfo = (try? Files.read("/proc/cpuinfo", limit: 16 << 20)) ?? ""
        if cpuinfo.split(separator: "\n").contains(where: { $0.hasPrefix("flags") && $0.split(separator: " ").contains("hypervisor") }) {
            return ("vm", "vm-other")
        }
        return (nil, nil)
    }

    static var architecture: String {
        #if arch(x86_64)
        return "x86-64"
        #elseif arch(arm64)
        return "arm64"
        #elseif arch(i386)
        return "x86"
        #elseif arch(arm)
        return "arm"
        #else
        return "unknown"
        #endif
    }

    /// systemd's on_ac_power(): on AC unless a battery-only host is seen.
    static func onACPower() -> Bool {
        guard let supplies = try? Files.list("/sys/class/power_supply") else { return true }
        var sawMains = false
        for s in supplies {
            let type = ((try? Files.read("/sys/class/power_supply/\(s)/type")) ?? "").trimmingWhitespace()
            guard type == "Mains" else { continue }
            sawMains = true
            if ((try? Files.read("/sys/class/power_supply/\(s)/online")) ?? "").trimmingWhitespace() == "1" { return true }
        }
        return !sawMains
    }

    static func security(_ what: String) -> Bool {
        func exists(_ p: String) -> Bool { ((try? Files.status(p)) ?? nil) != nil }
        switch what {
        case "selinux": return exists("/sys/fs/selinux/enforce")
        case "apparmor": return ((try? Files.read("/sys/module/apparmor/parameters/enabled")) ?? "").hasPrefix("Y")
        case "smack": return exists("/sys/fs/smackfs")
        case "ima": return exists("/sys/kernel/security/ima")
        case "tomoyo": return exists("/sys/kernel/security/tomoyo")
        case "audit": return exists("/proc/self/loginuid")
        case "tpm2": return exists("/sys/class/tpmrm") && ((try? Files.list("/sys/class/tpmrm"))?.isEmpty == false)
        case "uefi-secureboot":
            let bytes = (try? Files.readBytes("/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c")) ?? []
            return bytes.count >= 5 && bytes[4] == 1
        default: return false
        }
    }

    /// capabilities(7) names in bit order.
    static let capabilities = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
        "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
        "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ]
}
