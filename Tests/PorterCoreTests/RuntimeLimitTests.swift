import PorterCore
import Testing

/// RuntimeMaxSec= with RuntimeRandomizedExtraSec=: each run's limit is
/// drawn evenly in [max, max + extra], seeded by the run's start.
@Suite("runtime limit")
struct RuntimeLimitTests {
    @Test func eachRunDrawsItsOwnLimitWithinTheRange() throws {
        let c = Configuration.load(files: [
            (name: "r.service", text: "[Service]\nExecStart=/bin/true\nRuntimeMaxSec=10s\nRuntimeRandomizedExtraSec=5s\n"),
            (name: "r.socket", text: "[Socket]\nListenStream=7\n"),
        ], host: HostFacts())
        #expect(c.diagnostics.isEmpty, "\(c.diagnostics)")
        let s = try #require(c.services[UnitName.parse("r.service")!])
        #expect(s.runtimeMax == .seconds(10) && s.runtimeRandomizedExtra == .seconds(5))
        var p = ServicePolicy()
        p.runtimeMax = s.runtimeMax
        p.runtimeRandomizedExtra = s.runtimeRandomizedExtra
        var limits: [Duration] = []
        for i in 0..<200 {
            let since = Instant(nanoseconds: 1_000_000_000 + Int64(i) * 7_919_000)
            let l = try #require(p.runtimeLimit(since: since))
            #expect(l >= .seconds(10) && l <= .seconds(15))
            #expect(p.runtimeLimit(since: since) == l, "the same run keeps its limit")
            limits.append(l)
        }
        // Evenly spread: both halves of the range are used, and often.
        #expect(limits.filter { $0 < .milliseconds(12_500) }.count > 60)
        #expect(limits.filter { $0 >= .milliseconds(12_500) }.count > 60)
        p.runtimeRandomizedExtra = nil
        #expect(p.runtimeLimit(since: Instant(nanoseconds: 5)) == .seconds(10))
        p.runtimeMax = nil
        #expect(p.runtimeLimit(since: Instant(nanoseconds: 5)) == nil)
    }
}
