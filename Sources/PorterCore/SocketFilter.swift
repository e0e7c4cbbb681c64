/// A classic BPF socket filter (SO_ATTACH_FILTER, Documentation/networking/
/// filter.rst) that enforces an `AddressAccess` in the kernel, for sockets
/// whose connections porter never sees: an Accept=no stream socket (TCP runs
/// a listener's filter on each SYN, `tcp_filter()` in net/ipv4/tcp_ipv4.c,
/// so a denied client's handshake never completes and the service never
/// accepts it) and every datagram socket (UDP runs it on each datagram).
///
/// The source address is loaded relative to the network header
/// (SKF_NET_OFF), whatever the transport header's position; the version
/// nibble tells IPv4 from IPv6 (an IPv4 client of a dual-stack socket
/// sends IPv4 packets). Each rule ends in its own `ret`, so every
/// conditional jump is short (their offsets are 8 bits); the jump to the
/// IPv6 rules is the 32-bit `ja`. Pure: the instructions are numbers.
public enum SocketFilter {
    public struct Instruction: Equatable, Sendable {
        public var code: UInt16
        public var jt: UInt8
        public var jf: UInt8
        public var k: UInt32
    }

    // linux/filter.h and linux/bpf_common.h
    static let ld: UInt16 = 0x00, alu: UInt16 = 0x04, jmp: UInt16 = 0x05, ret: UInt16 = 0x06, misc: UInt16 = 0x07
    static let w: UInt16 = 0x00, b: UInt16 = 0x10, abs: UInt16 = 0x20
    static let and: UInt16 = 0x50, rsh: UInt16 = 0x70, ja: UInt16 = 0x00, jeq: UInt16 = 0x10
    static let tax: UInt16 = 0x00, txa: UInt16 = 0x80
    /// SKF_NET_OFF: loads relative to the network header.
    static let netOffset = UInt32(bitPattern: -0x100000)
    public static let accept: UInt32 = 0xFFFF_FFFF
    public static let drop: UInt32 = 0
    /// BPF_MAXINSNS.
    public static let maxInstructions = 4096

    static func op(_ code: UInt16, _ k: UInt32 = 0, jt: UInt8 = 0, jf: UInt8 = 0) -> Instruction {
        Instruction(code: code, jt: jt, jf: jf, k: k)
    }

    /// nil when nothing is denied (no filter needed).
    public static func program(_ access: AddressAccess) -> [Instruction]? {
        guard !access.allowsEveryone else { return nil }
        let rules = access.allow.map { ($0, accept) } + access.deny.map { ($0, drop) }
        var v4: [Instruction] = [op(ld | w | abs, netOffset + 12), op(misc | tax)]
        // A /0 rule decides every address of its family: nothing after it.
        var v4Decided = false, v6Decided = false
        for (p, verdict) in rules where p.isIPv4 {
            if p.length == 0 { v4.append(op(ret, verdict)); v4Decided = true; break }
            v4.append(op(misc | txa))
            if p.length < 32 { v4.append(op(alu | and, mask(p.length, at: 0))) }
            v4.append(op(jmp | jeq, word(p.bytes), jt: 0, jf: 1))
            v4.append(op(ret, verdict))
        }
        if !v4Decided { v4.append(op(ret, accept)) }
        var v6: [Instruction] = []
        for (p, verdict) in rules where !p.isIPv4 {
            if p.length == 0 { v6.append(op(ret, verdict)); v6Decided = true; break }
            let words = (p.length + 31) / 32
            var rule: [[Instruction]] = []
            for i in 0..<words {
                var part = [op(ld | w | abs, netOffset + 8 + UInt32(4 * i))]
                let m = mask(p.length, at: i * 32)
                if m != 0xFFFF_FFFF { part.append(op(alu | and, m)) }
                part.append(op(jmp | jeq, word(Array(p.bytes[(4 * i)..<(4 * i + 4)]))))
                rule.append(part)
            }
            for i in 0..<words {
                // A word that differs skips the rest of the rule and its ret.
                let rest = rule[(i + 1)...].reduce(0) { $0 + $1.count } + 1
                rule[i][rule[i].count - 1].jf = UInt8(rest)
            }
            v6 += rule.flatMap { $0 } + [op(ret, verdict)]
        }
        if !v6Decided { v6.append(op(ret, accept)) }
        // ldb [net]; rsh 4; jeq 6 ? ja v6 : (jeq 4 ? v4 : accept)
        let head: [Instruction] = [
            op(ld | b | abs, netOffset), op(alu | rsh, 4),
            op(jmp | jeq, 6, jt: 0, jf: 1), op(jmp | ja, UInt32(2 + v4.count)),
            op(jmp | jeq, 4, jt: 1, jf: 0), op(ret, accept),
        ]
        return head + v4 + v6
    }

    /// The 32-bit mask of a prefix of `length` bits, for the word whose
    /// first bit is `at`.
    static func mask(_ length: Int, at: Int) -> UInt32 {
        let bits = min(max(length - at, 0), 32)
        return bits == 0 ? 0 : UInt32.max << (32 - bits)
    }

    /// Four bytes in network order as the number BPF loads (host order).
    static func word(_ b: [UInt8]) -> UInt32 {
        UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
    }

    /// Runs a program on a packet's network header, for tests: the subset
    /// of classic BPF the program above uses.
    public static func run(_ program: [Instruction], networkHeader packet: [UInt8]) -> UInt32? {
        var a: UInt32 = 0, x: UInt32 = 0, pc = 0
        func load(_ k: UInt32, size: Int) -> UInt32? {
            let off = Int(k &- netOffset)
            guard off >= 0, off + size <= packet.count else { return nil }
            return packet[off..<(off + size)].reduce(0) { $0 << 8 | UInt32($1) }
        }
        while pc < program.count {
            let i = program[pc]
            pc += 1
            switch i.code {
            case ld | w | abs: guard let v = load(i.k, size: 4) else { return 0 }; a = v
            case ld | b | abs: guard let v = load(i.k, size: 1) else { return 0 }; a = v
            case alu | rsh: a >>= i.k
            case alu | and: a &= i.k
            case misc | tax: x = a
            case misc | txa: a = x
            case jmp | ja: pc += Int(i.k)
            case jmp | jeq: pc += a == i.k ? Int(i.jt) : Int(i.jf)
            case ret: return i.k
            default: return nil
            }
        }
        return nil
    }
}
