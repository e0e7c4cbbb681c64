import PorterCore
import Testing

@Suite("JSON")
struct JSONTests {
    @Test(arguments: [
        ("null", JSON.null),
        ("true", .bool(true)),
        (" [1, -2.5e3, \"a\\u00e9\\n\", {}] ", .array([.number("1"), .number("-2.5e3"), .string("aé\n"), .object([:])])),
        ("{\"b\":{\"c\":[]},\"a\":null}", .object(["a": .null, "b": .object(["c": .array([])])])),
        ("\"\\ud83d\\ude00\\u0000x\"", .string("😀\u{0}x")),
        ("18446744073709551615", .number("18446744073709551615")),
    ])
    func parses(_ text: String, _ expected: JSON) throws {
        #expect(try JSON.parse(text) == expected)
        // What it prints parses back to the same value.
        #expect(try JSON.parse(expected.text) == expected)
    }

    @Test(arguments: [
        ("", "unexpected end"), ("[1,]", "unexpected byte"), ("{\"a\":1,\"a\":2}", "duplicate key"),
        ("\"\\ud800\"", "lone high surrogate"), ("01", "trailing bytes"), ("1.", "no digits after"),
        ("\"a\u{1}\"", "control byte"), ("nul", "expected null"), ("[1] x", "trailing bytes"),
        ("\"\\x\"", "invalid escape"), ("{1:2}", "expected a string key"),
    ])
    func refuses(_ text: String, _ reason: String) {
        #expect(throws: JSON.ParseError.self) { try JSON.parse(text) }
        do { _ = try JSON.parse(text) } catch { #expect(error.reason.contains(reason), "\(error)") }
    }

    @Test func refusesInvalidUTF8AndDeepNesting() {
        #expect(throws: JSON.ParseError.self) { try JSON.parse([0x22, 0xFF, 0x22]) }
        let deep = String(repeating: "[", count: JSON.maxDepth + 1) + String(repeating: "]", count: JSON.maxDepth + 1)
        #expect(throws: JSON.ParseError.self) { try JSON.parse(deep) }
        let ok = String(repeating: "[", count: JSON.maxDepth - 1) + String(repeating: "]", count: JSON.maxDepth - 1)
        #expect((try? JSON.parse(ok)) != nil)
    }

    @Test func escapesControlCharacters() {
        #expect(JSON.string("a\"\\\u{1}\u{7f}\t").text == "\"a\\\"\\\\\\u0001\\u007f\\t\"")
    }

    struct Sample: Codable, Equatable {
        enum Kind: Codable, Equatable {
            case plain
            case running(pid: Int32, since: Int64)
            case pair(String, UInt64)
        }
        var name: String
        var count: UInt64
        var big: Int64
        var optional: Int?
        var missing: String?
        var kinds: [Kind]
        var map: [String: Int]
        var intMap: [Int32: String]
        var set: Set<String>
        var duration: Duration
        var nested: [[Bool]]
        var ratio: Double
    }

    @Test func codableRoundTripKeepsEveryBit() throws {
        let s = Sample(name: "echo@1.service", count: .max, big: .min, optional: 7, missing: nil,
                       kinds: [.plain, .running(pid: 42, since: 9_007_199_254_740_993), .pair("x", 3)],
                       map: ["a": 1], intMap: [3: "three", -1: "minus"], set: ["x", "y"],
                       duration: .nanoseconds(1_500_000_001), nested: [[true], []], ratio: 0.25)
        let json = try JSONCoding.encode(s)
        #expect(json["missing"] == nil)
        let text = json.text
        let back = try JSONCoding.decode(Sample.self, from: Array(text.utf8))
        #expect(back == s)
    }

    @Test func decodingNamesWhatIsWrong() {
        do {
            _ = try JSONCoding.decode(Sample.self, from: Array("{\"name\":1}".utf8))
            Issue.record("decoded")
        } catch {
            #expect("\(error)".contains("name: expected a string"))
        }
        do {
            _ = try JSONCoding.decode([Int8].self, from: Array("[1, 300]".utf8))
            Issue.record("decoded")
        } catch {
            #expect("\(error)".contains("[1]: expected an integer that fits Int8"))
        }
    }
}
