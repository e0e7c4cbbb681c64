/// The control socket's wire format, version 1 (README, "Operating
/// porter"). A request is one line of UTF-8 text, at most 4 KiB with its
/// newline:
///
///     porter/1 VERB [UNIT...]\n
///
/// VERB is `status [UNIT...]`, `start UNIT`, `stop UNIT`, `reload [UNIT]`,
/// `upgrade` or `version`. The answer is one JSON object, then the
/// connection closes: `{"protocol":1,"ok":true,"result":...}` or
/// `{"protocol":1,"ok":false,"error":"..."}`. A client speaking a later
/// version is answered in version 1 with an error that names both.
public struct ControlRequest: Equatable, Sendable {
    public enum Verb: String, Sendable, CaseIterable {
        case status, start, stop, reload, upgrade, version
    }

    public var verb: Verb
    public var units: [String]

    public init(_ verb: Verb, _ units: [String] = []) {
        self.verb = verb
        self.units = units
    }

    public static let version = 1
    public static let magic = "porter/"
    /// Bytes of one request line, its newline included.
    public static let maxLength = 4096

    public enum Problem: Error, Equatable, CustomStringConvertible {
        case tooLong
        case notText(String)
        case notPorter
        case unsupportedVersion(String)
        case unknownVerb(String)
        case arguments(String)

        public var description: String {
            switch self {
            case .tooLong: return "request longer than \(ControlRequest.maxLength) bytes"
            case .notText(let why): return "request is not a line of text: \(why)"
            case .notPorter: return "not a porter control request (expected 'porter/1 VERB ...')"
            case .unsupportedVersion(let v): return "protocol version \(v) is not spoken here; this porter speaks \(ControlRequest.version)"
            case .unknownVerb(let v): return "unknown request \(Quote.value(v)), expected one of \(Verb.allCases.map(\.rawValue).joined(separator: ", "))"
            case .arguments(let why): return why
            }
        }
    }

    /// Where the request line ends in what arrived so far: the index of
    /// its newline, nil while it is incomplete. Throws once more than a
    /// request's worth arrived without one.
    public static func lineEnd(_ bytes: [UInt8]) throws(Problem) -> Int? {
        if let n = bytes.firstIndex(of: 0x0A) {
            guard n < maxLength else { throw .tooLong }
            return n
        }
        if bytes.count >= maxLength { throw .tooLong }
        return nil
    }

    /// Parses one request line (without its newline; a trailing CR is
    /// allowed for hand-typed requests). Refused whole, never repaired.
    public static func parse(_ line: some Collection<UInt8>) throws(Problem) -> ControlRequest {
        var bytes = Array(line)
        if bytes.last == 0x0D { bytes.removeLast() }
        guard bytes.count < maxLength else { throw .tooLong }
        if let problem = TextCheck.problem(bytes[...]) { throw .notText(problem) }
        if bytes.contains(where: { $0 < 0x20 && $0 != 0x09 || $0 == 0x7F }) { throw .notText("a control character") }
        let text = String(decoding: bytes, as: UTF8.self)
        var words = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let head = words.first, head.hasPrefix(magic) else { throw .notPorter }
        let version = String(head.dropFirst(magic.count))
        guard let v = Int(version), v >= 1, version.allSatisfy(\.isASCII) else { throw .notPorter }
        guard v == Self.version else { throw .unsupportedVersion(version) }
        words.removeFirst()
        guard let verbWord = words.first else { throw .arguments("missing request after \(head)") }
        guard let verb = Verb(rawValue: verbWord) else { throw .unknownVerb(verbWord) }
        let units = Array(words.dropFirst())
        for u in units where UnitName.parse(u) == nil {
            throw .arguments("\(Quote.value(u)) is not a unit name (expected NAME.socket, NAME.service, NAME@.service or NAME.path)")
        }
        switch verb {
        case .start, .stop:
            guard units.count == 1 else { throw .arguments("\(verb.rawValue) takes exactly one unit") }
        case .reload:
            guard units.count <= 1 else { throw .arguments("reload takes at most one unit") }
        case .upgrade, .version:
            guard units.isEmpty else { throw .arguments("\(verb.rawValue) takes no unit") }
        case .status:
            break
        }
        return ControlRequest(verb, units)
    }

    /// The line a client sends.
    public var line: String {
        ([Self.magic + String(Self.version), verb.rawValue] + units).joined(separator: " ") + "\n"
    }
}

/// The answer to a control request.
public struct ControlReply: Sendable {
    public var ok: Bool
    public var result: JSON?
    public var error: String?

    public init(result: JSON) {
        ok = true
        self.result = result
    }

    public init(error: String, result: JSON? = nil) {
        ok = false
        self.error = error
        self.result = result
    }

    public var json: JSON {
        var o: [String: JSON] = ["protocol": .int(ControlRequest.version), "ok": .bool(ok)]
        if let result { o["result"] = result }
        if let error { o["error"] = .string(error) }
        return .object(o)
    }

    /// Reads an answer; anything else is an error naming what was wrong.
    public static func parse(_ bytes: [UInt8]) throws -> ControlReply {
        let json = try JSON.parse(bytes)
        guard case .bool(let ok)? = json["ok"] else {
            throw JSONCoding.Failure(description: "not a porter control reply (no \"ok\")")
        }
        if ok { return ControlReply(result: json["result"] ?? .null) }
        return ControlReply(error: json["error"]?.string ?? "failed without a reason", result: json["result"])
    }
}
