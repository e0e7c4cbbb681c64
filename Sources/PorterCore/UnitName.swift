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
        if a.instance != b.instance { return (a.instance ?? "") < (b.instance ?? "") }
        return a.type.rawValue < b.type.rawValue
    }

    /// Characters systemd allows in unit names.
    static func isValidCharacter(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || ":-_.\\".contains(c))
    }

    /// Parses a file name; nil when it is not a unit name porter reads.
    public static func parse(_ name: String) -> UnitName? {
        guard name.count <= 255, let dot = name.lastIndex(of: ".") else { return nil }
        guard let type = UnitType(rawValue: String(name[name.index(after: dot)...])) else { return nil }
        let stem = name[..<dot]
        var prefix = Substring(stem)
        var instance: String? = nil
        if let at = stem.firstIndex(of: "@") {
            prefix = stem[..<at]
            instance = String(stem[stem.index(after: at)...])
            guard instance!.allSatisfy({ isValidCharacter($0) || $0 == "@" }) else { return nil }
        }
        guard !prefix.isEmpty, prefix.allSatisfy(isValidCharacter) else { return nil }
        return UnitName(prefix: String(prefix), instance: instance, type: type)
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
