/// A unit's identity while porter runs: a slot in its table and the
/// generation of that slot. A removed unit's id is never handed out again
/// (the slot's next occupant has the next generation), so an event, a
/// timer or an instance that still names a removed unit finds nothing and
/// is dropped, instead of reaching whatever took its place.
public struct UnitID: Hashable, Sendable, CustomStringConvertible {
    public let slot: UInt32
    public let generation: UInt32

    public var description: String { "#\(slot).\(generation)" }

    /// Names no unit, ever (no table hands out its slot): the owner of a
    /// process whose unit is gone.
    public static let nowhere = UnitID(slot: .max, generation: .max)
}

/// The units of one kind: insertion, removal and lookup by id in O(1).
/// Lookups of removed ids answer nil; iteration is in slot order.
public struct UnitTable<Element> {
    private var slots: [(generation: UInt32, element: Element?)] = []
    private var free: [UInt32] = []
    public private(set) var count = 0

    public init() {}

    /// Stores `element` and returns its new id.
    @discardableResult
    public mutating func insert(_ make: (UnitID) -> Element) -> UnitID {
        // A slot whose generation would wrap is retired for good: its ids
        // must never come back.
        while let slot = free.popLast() {
            let generation = slots[Int(slot)].generation
            guard generation < UInt32.max else { continue }
            let id = UnitID(slot: slot, generation: generation + 1)
            slots[Int(slot)] = (id.generation, make(id))
            count += 1
            return id
        }
        let id = UnitID(slot: UInt32(slots.count), generation: 0)
        slots.append((0, make(id)))
        count += 1
        return id
    }

    /// The unit with this id, or nil when it was removed.
    public subscript(id: UnitID) -> Element? {
        get {
            guard Int(id.slot) < slots.count, slots[Int(id.slot)].generation == id.generation else { return nil }
            return slots[Int(id.slot)].element
        }
        set {
            // Replaces a live unit under the same id; removal is `remove`.
            guard let newValue, contains(id) else { return }
            slots[Int(id.slot)].element = newValue
        }
    }

    public func contains(_ id: UnitID) -> Bool {
        Int(id.slot) < slots.count && slots[Int(id.slot)].generation == id.generation && slots[Int(id.slot)].element != nil
    }

    @discardableResult
    public mutating func remove(_ id: UnitID) -> Element? {
        guard contains(id) else { return nil }
        let e = slots[Int(id.slot)].element
        slots[Int(id.slot)].element = nil
        free.append(id.slot)
        count -= 1
        return e
    }

    public var isEmpty: Bool { count == 0 }

    /// The live ids, in slot order.
    public var ids: [UnitID] {
        slots.indices.compactMap { i in
            slots[i].element == nil ? nil : UnitID(slot: UInt32(i), generation: slots[i].generation)
        }
    }

    /// The live units, in slot order.
    public var values: [Element] { slots.compactMap(\.element) }
}

extension UnitTable: Sequence {
    public func makeIterator() -> IndexingIterator<[Element]> { values.makeIterator() }
}

/// FNV-1a over a unit file's bytes: what tells a reload whether a unit
/// changed. Not a defence against anyone (whoever writes the directory
/// runs programs anyway), only a cheap, stable summary.
public enum Fingerprint {
    public static func of(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h ^ UInt64(bytes.count) &* 0x9e37_79b9_7f4a_7c15
    }
}
