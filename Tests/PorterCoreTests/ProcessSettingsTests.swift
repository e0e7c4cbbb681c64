import PorterCore
import Testing

/// Limit*=, Nice= and the other process settings of systemd.exec(5).
@Suite("process settings")
struct ProcessSettingsTests {
    func service(_ lines: String) -> (ServiceConfig?, [String]) {
        var units = UnitSet()
        units.add(fileName: "a.service", bytes: Array("[Service]\nExecStart=/bin/true\n\(lines)\n".utf8), host: HostFacts())
        return (units.services.values.first, units.diagnostics.map(\.description))
    }

    static let inf = ResourceLimit.infinity

    @Test(arguments: [
        ("LimitNOFILE=1024", 7, 1024, 1024),
        ("LimitNOFILE=512:4096", 7, 512, 4096),
        ("LimitNOFILE=infinity", 7, inf, inf),
        ("LimitCORE=0:infinity", 4, 0, inf),
        ("LimitAS=4G", 9, 4 << 30, 4 << 30),
        ("LimitMEMLOCK=64K:1M", 8, 64 << 10, 1 << 20),
        ("LimitFSIZE=2E", 1, 2 << 60, 2 << 60),
        ("LimitCPU=90", 0, 90, 90),
        ("LimitCPU=2min:1h", 0, 120, 3600),
        ("LimitCPU=1500ms", 0, 2, 2),  // rounded up to whole seconds
        ("LimitRTTIME=5ms", 15, 5000, 5000),
        ("LimitRTTIME=7", 15, 7, 7),  // microseconds without a unit
        ("LimitNICE=-5", 13, 25, 25),  // a nice value: 20 - n
        ("LimitNICE=+19", 13, 1, 1),
        ("LimitNICE=30", 13, 30, 30),  // the raw limit
    ] as [(String, Int32, UInt64, UInt64)])
    func limits(line: String, resource: Int32, soft: UInt64, hard: UInt64) {
        let (s, d) = service(line)
        #expect(d.isEmpty)
        #expect(s?.process.limit(resource) == ResourceLimit(resource: resource, soft: soft, hard: hard))
    }

    @Test(arguments: [
        ("LimitNOFILE=4096:512", "a.service:3: LimitNOFILE: soft limit 4096 is above the hard limit 512, expected SOFT:HARD with SOFT <= HARD"),
        ("LimitNOFILE=lots", "a.service:3: LimitNOFILE: invalid limit 'lots', expected a number or infinity"),
        ("LimitNOFILE=1:2:3", "a.service:3: LimitNOFILE: invalid limit '1:2:3', expected VALUE or SOFT:HARD"),
        ("LimitAS=4X", "a.service:3: LimitAS: invalid size '4X', expected bytes with an optional K, M, G, T, P or E suffix (base 1024), or infinity"),
        ("LimitNICE=41", "a.service:3: LimitNICE: invalid limit '41', expected the raw limit 0-40 or a nice value such as -5 or +10"),
        ("Nice=20", "a.service:3: Nice: 20 out of range -20-19"),
        ("OOMScoreAdjust=-1001", "a.service:3: OOMScoreAdjust: -1001 out of range -1000-1000"),
        ("IOSchedulingClass=fast", "a.service:3: IOSchedulingClass: invalid value 'fast', expected realtime, best-effort, idle or none"),
        ("CPUSchedulingPolicy=deadline", "a.service:3: CPUSchedulingPolicy: invalid value 'deadline', expected other, batch, idle, fifo or rr"),
        ("CPUAffinity=3-1", "a.service:3: CPUAffinity: invalid CPU '3-1', expected CPU numbers or ranges 0-1023 such as 0-3 5"),
        ("CPUSchedulingPriority=10", "a.service: CPUSchedulingPriority: CPUSchedulingPriority=10 needs CPUSchedulingPolicy=fifo or rr; other, batch and idle take 0"),
    ])
    func invalidValuesAreErrors(line: String, message: String) {
        let (s, d) = service(line)
        #expect(s == nil)
        #expect(d.contains(message), "\(d)")
    }

    @Test func anEmptyAssignmentResetsALimit() {
        let (s, _) = service("LimitNOFILE=10\nLimitNOFILE=")
        #expect(s?.process.limits == [])
    }

    @Test func prioritiesAndTheRest() {
        let (s, d) = service("""
            Nice=-5
            OOMScoreAdjust=500
            IOSchedulingClass=idle
            CPUSchedulingPolicy=fifo
            CPUSchedulingPriority=10
            CPUSchedulingResetOnFork=yes
            CPUAffinity=0-2 9,10
            TimerSlackNSec=50us
            IgnoreSIGPIPE=no
            SyslogIdentifier=web
            """)
        #expect(d.isEmpty, "\(d)")
        let p = s!.process
        #expect(p.nice == -5 && p.oomScoreAdjust == 500)
        #expect(p.ioPriority == 3 << 13)
        #expect(p.cpuScheduling == .init(policy: 1, priority: 10, resetOnFork: true))
        #expect(p.cpuAffinity?.prefix(2) == [0b0000_0111, 0b0000_0110])
        #expect(p.timerSlackNanoseconds == 50_000)
        #expect(!p.ignoreSIGPIPE)
        #expect(s!.syslogIdentifier == "web")
        // A level alone is best-effort; the defaults set nothing.
        let bestEffort6: Int32 = 2 << 13 | 6
        #expect(service("IOSchedulingPriority=6").0?.process.ioPriority == bestEffort6)
        #expect(service("").0?.process == ProcessSettings())
        #expect(service("").0?.process.ignoreSIGPIPE == true)
    }
}
