/// A unit name: `echo.socket`, `echo@.service` (a template),
/// `echo@3-127.0.0.1:7-127.0.0.1:40000.service` (an instance).
public struct UnitName: Hashable, Sendable, CustomStringConvertible, Comparable {
    public enum UnitType: String, Sendable, CaseIterable {
        case socket, service, path
    }

    public var prefix: String
    /// nil for a plain unit, "" for a template, the instance otherwise.
    public var instance: String?
    public var type: UnitType

    public init(prefix: String, instance: String? = nil, type: UnitType) {
        self.prefix = prefix
        self.instance = instance
        self.type = type
    }

    public var isTemplate: Bool { instance == "" }

    public var description: String {
        prefix + (instance.map { "@" + $0 } ?? "") + "." + type.rawValue
    }

    /// The name without its type suffix (`%N`).
    public var withoutSuffix: String {
        prefix + (instance.map { "@" + $0 } ?? "")
    }

    public func withType(_ t: UnitType) -> UnitName { UnitName(prefix: prefix, instance: instance, type: t) }
    public func withInstance(_ i: String?) -> UnitName { UnitName(prefix: prefix, instance: i, type: type) }

    /// By name as written, without building the strings: prefix, then
    /// instance, then type.
    public static func < (a: UnitName, b: UnitName) -> Bool {
        if a.prefix != b.prefix { return a.prefix < b.prefix }
        // A plain unit before its template (nil before ""): a total order,
        // so sorted lists come out the same every time.
        switch (a.instance, b.instance) {
        case (nil, .some): return true
        case (.some, nil): return false
        case let (x?, y?) where x != y: return x < y
        default: break
        }
        return a.type.rawValue < b.type.rawValue
    }

    /// Bytes systemd allows in unit names: letters, digits, `:-_.\\`.
    static func isValidByte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
            || b == UInt8(ascii: ":") || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
            || b == UInt8(ascii: ".") || b == UInt8(ascii: "\\")
    }

    /// Parses a file name; nil when it is not a unit name porter reads.
    public static func parse(_ name: String) -> UnitName? {
        let u = name.utf8
        guard u.count <= 255, let dot = u.lastIndex(of: UInt8(ascii: ".")) else { return nil }
        let typeName = String(decoding: u[u.index(after: dot)...], as: UTF8.self)
        guard let type = UnitType(rawValue: typeName) else { return nil }
        let stem = u[..<dot]
        var prefix = stem
        var instance: String? = nil
        if let at = stem.firstIndex(of: UInt8(ascii: "@")) {
            prefix = stem[..<at]
            let rest = stem[stem.index(after: at)...]
            guard rest.allSatisfy({ isValidByte($0) || $0 == UInt8(ascii: "@") }) else { return nil }
            instance = String(decoding: rest, as: UTF8.self)
        }
        guard !prefix.isEmpty, prefix.allSatisfy(isValidByte) else { return nil }
        return UnitName(prefix: String(decoding: prefix, as: UTF8.self), instance: instance, type: type)
    }

    /// Escapes a string for use in a unit name as `systemd-escape` does:
    /// `/` becomes `-`; `-`, a leading `.` and every byte other than ASCII
    /// letters, digits, `:`, `_` and `.` become `\xNN`. `unescape` undoes it.
    public static func escape(_ s: String) -> String {
        var out = ""
        for (i, b) in s.utf8.enumerated() {
            switch b {
            case UInt8(ascii: "/"): out.append("-")
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: ":"), UInt8(ascii: "_"):
                out.append(Character(Unicode.Scalar(b)))
            case UInt8(ascii: ".") where i > 0: out.append(".")
            default:
                let hex = String(b, radix: 16)
                out += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }

    /// Undoes unit-name escaping as systemd's unit_name_unescape() does:
    /// `-` becomes `/` and `\xNN` becomes the byte NN. Used for `%I`, `%P`, `%f`.
    public static func unescape(_ s: String) -> String {
        var bytes: [UInt8] = []
        let u = Array(s.utf8)
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "-") {
                bytes.append(UInt8(ascii: "/"))
            } else if u[i] == UInt8(ascii: "\\"), i + 3 < u.count, u[i + 1] == UInt8(ascii: "x"),
                      let v = UInt8(String(decoding: u[(i + 2)...(i + 3)], as: UTF8.self), radix: 16) {
                bytes.append(v)
                i += 3
            } else {
                bytes.append(u[i])
            }
            i += 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
