/// Codable to and from `JSON`, without Foundation: the status report and
/// the state an upgrade hands over are plain Codable values, so adding a
/// field is adding a property. Integers keep every bit (their text is the
/// number); optionals that are nil are left out; enums with payloads use
/// Swift's synthesized form.
public enum JSONCoding {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    public static func encode<T: Encodable>(_ value: T) throws -> JSON {
        let e = ValueEncoder(codingPath: [])
        try value.encode(to: e)
        return e.box.json
    }

    public static func decode<T: Decodable>(_ type: T.Type, from json: JSON) throws -> T {
        try T(from: ValueDecoder(json, codingPath: []))
    }

    public static func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>) throws -> T {
        try decode(type, from: try JSON.parse(bytes))
    }

    static func path(_ p: [CodingKey]) -> String {
        p.isEmpty ? "the top level" : p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

// MARK: - Encoding

/// A value under construction: containers fill it in place (one of the
/// three is set; appending to a stored array does not copy it).
final class Box {
    var value: JSON?
    var object: [String: Box]?
    var array: [Box]?

    var json: JSON {
        if let object { return .object(object.mapValues(\.json)) }
        if let array { return .array(array.map(\.json)) }
        return value ?? .object([:])
    }

    func becomeObject() {
        if object == nil { object = [:]; array = nil; value = nil }
    }

    func becomeArray() {
        if array == nil { array = []; object = nil; value = nil }
    }

    func take(_ other: Box) {
        value = other.value
        object = other.object
        array = other.array
    }

    static func leaf(_ v: JSON) -> Box {
        let b = Box()
        b.value = v
        return b
    }
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init(intValue: Int) {
        stringValue = String(intValue)
        self.intValue = intValue
    }
}

final class ValueEncoder: Encoder {
    let box: Box
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(codingPath: [CodingKey], box: Box = Box()) {
        self.codingPath = codingPath
        self.box = box
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        box.becomeObject()
        return KeyedEncodingContainer(KeyedEncoder<Key>(box: box, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        box.becomeArray()
        return UnkeyedEncoder(box: box, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer { SingleEncoder(box: box, codingPath: codingPath) }
}

/// What every container does to turn a leaf into JSON.
func encodeLeaf<T: Encodable>(_ value: T, path: [CodingKey]) throws -> Box {
    let b = Box()
    func set(_ v: JSON) { b.value = v }
    switch value {
    case let v as String: set(.string(v))
    case let v as Bool: set(.bool(v))
    case let v as Int: set(.int(v))
    case let v as Int8: set(.int(v))
    case let v as Int16: set(.int(v))
    case let v as Int32: set(.int(v))
    case let v as Int64: set(.int(v))
    case let v as UInt: set(.int(v))
    case let v as UInt8: set(.int(v))
    case let v as UInt16: set(.int(v))
    case let v as UInt32: set(.int(v))
    case let v as UInt64: set(.int(v))
    case let v as Double:
        guard v.isFinite else { throw JSONCoding.Failure(description: "\(JSONCoding.path(path)): \(v) is not a JSON number") }
        set(.number(String(v)))
    case let v as Float:
        guard v.isFinite else { throw JSONCoding.Failure(description: "\(JSONCoding.path(path)): \(v) is not a JSON number") }
        set(.number(String(v)))
    default:
        try value.encode(to: ValueEncoder(codingPath: path, box: b))
    }
    return b
}

struct KeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let box: Box
    let codingPath: [CodingKey]

    private func set(_ key: Key, _ b: Box) { box.object?[key.stringValue] = b }

    mutating func encodeNil(forKey key: Key) throws { set(key, .leaf(.null)) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        set(key, try encodeLeaf(value, path: codingPath + [key]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let b = Box()
        b.becomeObject()
        set(key, b)
        return KeyedEncodingContainer(KeyedEncoder<NestedKey>(box: b, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        let b = Box()
        b.becomeArray()
        set(key, b)
        return UnkeyedEncoder(box: b, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> Encoder { superEncoder(forKey: Key(stringValue: "super")!) }

    mutating func superEncoder(forKey key: Key) -> Encoder {
        let b = Box()
        set(key, b)
        return ValueEncoder(codingPath: codingPath + [key], box: b)
    }
}

struct UnkeyedEncoder: UnkeyedEncodingContainer {
    let box: Box
    let codingPath: [CodingKey]

    var count: Int { box.array?.count ?? 0 }

    private func append(_ b: Box) -> [CodingKey] {
        let path = codingPath + [AnyKey(intValue: count)]
        box.array?.append(b)
        return path
    }

    mutating func encodeNil() throws { _ = append(.leaf(.null)) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let b = try encodeLeaf(value, path: codingPath + [AnyKey(intValue: count)])
        _ = append(b)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let b = Box()
        b.becomeObject()
        return KeyedEncodingContainer(KeyedEncoder<NestedKey>(box: b, codingPath: append(b)))
    }

    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
        let b = Box()
        b.becomeArray()
        return UnkeyedEncoder(box: b, codingPath: append(b))
    }

    mutating func superEncoder() -> Encoder {
        let b = Box()
        return ValueEncoder(codingPath: append(b), box: b)
    }
}

struct SingleEncoder: SingleValueEncodingContainer {
    let box: Box
    let codingPath: [CodingKey]

    mutating func encodeNil() throws { box.take(.leaf(.null)) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        box.take(try encodeLeaf(value, path: codingPath))
    }
}

// MARK: - Decoding

final class ValueDecoder: Decoder {
    let json: JSON
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(_ json: JSON, codingPath: [CodingKey]) {
        self.json = json
        self.codingPath = codingPath
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let o) = json else { throw mismatch("an object", json, codingPath) }
        return KeyedDecodingContainer(KeyedDecoder<Key>(object: o, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard case .array(let a) = json else { throw mismatch("an array", json, codingPath) }
        return UnkeyedDecoder(array: a, codingPath: codingPath)
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer { SingleDecoder(json: json, codingPath: codingPath) }
}

func mismatch(_ expected: String, _ found: JSON, _ path: [CodingKey]) -> JSONCoding.Failure {
    let what: String
    switch found {
    case .null: what = "null"
    case .bool: what = "a boolean"
    case .number(let n): what = "the number \(n)"
    case .string: what = "a string"
    case .array: what = "an array"
    case .object: what = "an object"
    }
    return JSONCoding.Failure(description: "\(JSONCoding.path(path)): expected \(expected), found \(what)")
}

func decodeLeaf<T: Decodable>(_ type: T.Type, _ json: JSON, path: [CodingKey]) throws -> T {
    func integer<I: FixedWidthInteger>(_: I.Type) throws -> I {
        guard case .number(let n) = json, let v = I(n) else { throw mismatch("an integer that fits \(I.self)", json, path) }
        return v
    }
    switch type {
    case is String.Type:
        guard case .string(let s) = json else { throw mismatch("a string", json, path) }
        return s as! T
    case is Bool.Type:
        guard case .bool(let b) = json else { throw mismatch("a boolean", json, path) }
        return b as! T
    case is Int.Type: return try integer(Int.self) as! T
    case is Int8.Type: return try integer(Int8.self) as! T
    case is Int16.Type: return try integer(Int16.self) as! T
    case is Int32.Type: return try integer(Int32.self) as! T
    case is Int64.Type: return try integer(Int64.self) as! T
    case is UInt.Type: return try integer(UInt.self) as! T
    case is UInt8.Type: return try integer(UInt8.self) as! T
    case is UInt16.Type: return try integer(UInt16.self) as! T
    case is UInt32.Type: return try integer(UInt32.self) as! T
    case is UInt64.Type: return try integer(UInt64.self) as! T
    case is Double.Type:
        guard case .number(let n) = json, let v = Double(n) else { throw mismatch("a number", json, path) }
        return v as! T
    case is Float.Type:
        guard case .number(let n) = json, let v = Float(n) else { throw mismatch("a number", json, path) }
        return v as! T
    default:
        return try T(from: ValueDecoder(json, codingPath: path))
    }
}

struct KeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: [String: JSON]
    let codingPath: [CodingKey]

    var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    private func value(_ key: Key) throws -> JSON {
        guard let v = object[key.stringValue] else {
            throw JSONCoding.Failure(description: "\(JSONCoding.path(codingPath + [key])): missing")
        }
        return v
    }

    func decodeNil(forKey key: Key) throws -> Bool { try value(key) == .null }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try decodeLeaf(type, try value(key), path: codingPath + [key])
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try ValueDecoder(try value(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
        try ValueDecoder(try value(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> Decoder { try superDecoder(forKey: Key(stringValue: "super")!) }

    func superDecoder(forKey key: Key) throws -> Decoder {
        ValueDecoder(object[key.stringValue] ?? .null, codingPath: codingPath + [key])
    }
}

struct UnkeyedDecoder: UnkeyedDecodingContainer {
    let array: [JSON]
    let codingPath: [CodingKey]
    var currentIndex = 0

    init(array: [JSON], codingPath: [CodingKey]) {
        self.array = array
        self.codingPath = codingPath
    }

    var count: Int? { array.count }
    var isAtEnd: Bool { currentIndex >= array.count }

    private mutating func next() throws -> (JSON, [CodingKey]) {
        guard !isAtEnd else {
            throw JSONCoding.Failure(description: "\(JSONCoding.path(codingPath)): fewer than \(currentIndex + 1) elements")
        }
        defer { currentIndex += 1 }
        return (array[currentIndex], codingPath + [AnyKey(intValue: currentIndex)])
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return false }
        if array[currentIndex] == .null {
            currentIndex += 1
            return true
        }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let (v, path) = try next()
        return try decodeLeaf(type, v, path: path)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (v, path) = try next()
        return try ValueDecoder(v, codingPath: path).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer {
        let (v, path) = try next()
        return try ValueDecoder(v, codingPath: path).unkeyedContainer()
    }

    mutating func superDecoder() throws -> Decoder {
        let (v, path) = try next()
        return ValueDecoder(v, codingPath: path)
    }
}

struct SingleDecoder: SingleValueDecodingContainer {
    let json: JSON
    let codingPath: [CodingKey]

    func decodeNil() -> Bool { json == .null }

    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decodeLeaf(type, json, path: codingPath) }
}
