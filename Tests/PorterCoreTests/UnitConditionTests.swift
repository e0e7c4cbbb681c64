import PorterCore
import Testing

@Suite("unit conditions")
struct UnitConditionTests {
    func cond(_ key: String, _ value: String) throws -> UnitCondition {
        try #require(try UnitCondition.parse(key: key, value: value, line: 1))
    }

    @Test func prefixes() throws {
        let c = try cond("ConditionPathExists", "|!/etc/x")
        #expect(c.trigger && c.negate && !c.isAssert && c.kind == .pathExists && c.value == "/etc/x")
        let a = try cond("AssertHost", "!web*")
        #expect(a.isAssert && a.negate && !a.trigger)
        #expect(try UnitCondition.parse(key: "ConditionPathExists", value: "", line: 1) == nil)  // resets
    }

    @Test(arguments: [
        ("ConditionFoo", "x", "unknown condition; porter evaluates ConditionPathExists="),
        ("AssertFoo", "x", "unknown assert; porter evaluates AssertPathExists="),
        ("ConditionPathIsEncrypted", "/", "not supported: porter cannot tell yet whether a path's block device is encrypted"),
        ("ConditionPathExists", "relative", "'relative' is not an absolute path"),
        ("ConditionKernelVersion", ">=", "has nothing to compare with"),
        ("ConditionACPower", "maybe", "invalid boolean"),
    ])
    func invalid(key: String, value: String, message: String) {
        do {
            _ = try UnitCondition.parse(key: key, value: value, line: 1)
            Issue.record("no error for \(key)=\(value)")
        } catch {
            #expect(error.message.contains(message) || error.message.hasPrefix(message), "\(error.message)")
        }
    }

    /// systemd's rule: every plain condition must hold; if there are
    /// triggers, at least one of them must.
    @Test(arguments: [
        // (trigger, negate, raw result) per condition; whether the unit may start
        ([(false, false, true)], true),
        ([(false, false, false)], false),
        ([(false, true, false)], true),  // negated
        ([(false, true, true)], false),
        ([(true, false, false), (true, false, true)], true),  // one trigger suffices
        ([(true, false, false), (true, false, false)], false),
        ([(true, false, true), (false, false, false)], false),  // a plain one still must hold
        ([(true, true, false), (false, false, true)], true),
        ([], true),
    ] as [([(Bool, Bool, Bool)], Bool)])
    func verdict(conditions: [(Bool, Bool, Bool)], starts: Bool) {
        let results = conditions.map { t in
            (UnitCondition(kind: .pathExists, isAssert: false, trigger: t.0, negate: t.1, value: "/x", line: 1), t.2)
        }
        #expect((UnitCondition.failing(results) == nil) == starts)
    }

    @Test(arguments: [
        ("5.10.0-28-amd64", "5.9", 1), ("5.10", "5.10", 0), ("5.10", "5.10.1", -1), ("6.1", "10.0", -1),
        ("1.02", "1.2", 0), ("2a", "2b", -1),
    ])
    func versions(a: String, b: String, order: Int) {
        let o = Comparison.compareVersions(a, b)
        #expect((o < 0 ? -1 : o > 0 ? 1 : 0) == order)
    }

    @Test func comparisons() throws {
        #expect(try Comparison.parse(">=2", defaultOperator: .equal) == Comparison(op: .greaterOrEqual, operand: "2"))
        #expect(try Comparison.parse("4", defaultOperator: .equal).op == .equal)
        #expect(try Comparison.parse("5.*", defaultOperator: nil).op == nil)
        #expect(try Comparison.parse("== 3", defaultOperator: nil) == Comparison(op: .equal, operand: "3"))
        #expect(try Comparison.parse("!=3", defaultOperator: nil).holds(1))
    }

    @Test func matches() throws {
        let cmdline = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet"
        #expect(ConditionMatch.kernelCommandLine("quiet", cmdline))
        #expect(ConditionMatch.kernelCommandLine("root", cmdline))
        #expect(ConditionMatch.kernelCommandLine("root=/dev/sda1", cmdline))
        #expect(!ConditionMatch.kernelCommandLine("root=/dev/sdb", cmdline))
        #expect(!ConditionMatch.kernelCommandLine("qui", cmdline))
        let env = ["LANG": "C", "EMPTY": ""]
        #expect(ConditionMatch.environment("LANG", env) && ConditionMatch.environment("LANG=C", env))
        #expect(!ConditionMatch.environment("LANG=de", env) && !ConditionMatch.environment("HOME", env))
        #expect(ConditionMatch.environment("EMPTY=", env))
        let os = ["ID": "debian", "VERSION_ID": "12"]
        #expect(try ConditionMatch.osRelease("ID=debian", os))
        #expect(try ConditionMatch.osRelease("ID=debian VERSION_ID>=11", os))
        #expect(try !ConditionMatch.osRelease("VERSION_ID<12", os))
        #expect(try ConditionMatch.osRelease("ID!=fedora", os))
    }

    @Test func readFromEveryKindOfUnit() {
        var units = UnitSet()
        units.add(fileName: "a.socket", bytes: Array("[Unit]\nConditionPathExists=/x\nConditionPathExists=\nAssertHost=h\n[Socket]\nListenStream=7\n".utf8), host: HostFacts())
        units.add(fileName: "a.service", bytes: Array("[Unit]\nConditionVirtualization=!container\n[Service]\nExecStart=/bin/true\n".utf8), host: HostFacts())
        units.add(fileName: "a.path", bytes: Array("[Unit]\nConditionUser=@system\n[Path]\nPathExists=/y\n".utf8), host: HostFacts())
        #expect(units.diagnostics.isEmpty, "\(units.diagnostics)")
        #expect(units.sockets.values.first?.unitConditions.map(\.description) == ["AssertHost=h"])
        #expect(units.services.values.first?.unitConditions.map(\.description) == ["ConditionVirtualization=!container"])
        #expect(units.paths.values.first?.unitConditions.map(\.description) == ["ConditionUser=@system"])
        var bad = UnitSet()
        bad.add(fileName: "b.service", bytes: Array("[Unit]\nConditionNonsense=1\n[Service]\nExecStart=/bin/true\n".utf8), host: HostFacts())
        #expect(bad.services.isEmpty)
        #expect(bad.diagnostics.first?.description.hasPrefix("b.service:2: ConditionNonsense: unknown condition; porter evaluates ConditionPathExists=") == true)
    }
}
