/// Fletcher-style sums over 8-byte words: what the test handler answers
/// for a stream it read ("sum") and what the tests expect of it, from one
/// definition. Built optimized even in debug builds (the handler sums
/// gigabytes with it).
public struct WordSum {
    public var s1: UInt64 = 0, s2: UInt64 = 0, count: UInt64 = 0
    var carry: [UInt8] = []

    public init() {}

    public mutating func add(_ p: UnsafeRawBufferPointer) {
        var bytes = p[...]
        count &+= UInt64(p.count)
        if !carry.isEmpty {
            while carry.count < 8, let b = bytes.first { carry.append(b); bytes = bytes.dropFirst() }
            if carry.count == 8 { word(carry.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }); carry.removeAll() }
        }
        let whole = bytes.count / 8
        let base = UnsafeRawBufferPointer(rebasing: bytes)
        for i in 0..<whole { word(base.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) }
        carry += bytes.suffix(bytes.count - whole * 8)
    }
    mutating func word(_ w: UInt64) {
        s1 = s1 &+ w
        s2 = s2 &+ s1
    }
    public var text: String { "bytes \(count) sum \(s1 &+ UInt64(carry.count)):\(s2)" }
}
