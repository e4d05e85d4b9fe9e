import Glibc

/// One key's index fields, key bytes and (while resident) value bytes, in one heap allocation.
///
/// Every key has one, so its size is the engine's memory per key: a Swift object header, this
/// 36-byte header, then the key and the value back to back. A `[UInt8]` key and a `[UInt8]` value
/// would cost two allocations with a 32-byte header each, plus the index entry beside them.
///
/// The bytes never change once the box is made: a write, an eviction or a restore makes a new box
/// and swaps it into the shard's table. Readers can therefore hold a box (through `ValueBytes`)
/// and read its value with no lock. The header's `location` is the one field changed in place
/// (compaction moves records), and only under the shard's lock, where every header read happens.
///
/// `ManagedBuffer` is never `Sendable`; the types holding boxes (`ShardState`, `ValueBytes`) are
/// `@unchecked Sendable` on the strength of the rules above.
final class EntryBox: ManagedBuffer<EntryHeader, UInt8> {
    /// A box holding `key` and, unless nil, `value`.
    static func make(
        key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer?, lsn: UInt64, expiresAtMs: Int64,
        location: DiskLocation
    ) -> EntryBox {
        let valueCount = value?.count ?? 0
        let header = EntryHeader(
            lsn: lsn, expiresAtMs: expiresAtMs, location: location, keyCount: UInt32(key.count),
            valueCount: value == nil ? EntryHeader.evicted : UInt32(valueCount))
        let box = unsafeDowncast(
            EntryBox.create(minimumCapacity: key.count + valueCount) { _ in header }, to: EntryBox.self)
        box.withUnsafeMutablePointerToElements { elements in
            let raw = UnsafeMutableRawPointer(elements)
            if let base = key.baseAddress { raw.copyMemory(from: base, byteCount: key.count) }
            if let value, let base = value.baseAddress {
                (raw + key.count).copyMemory(from: base, byteCount: valueCount)
            }
        }
        return box
    }

    /// The header; read and changed only under the shard's lock.
    var fields: EntryHeader {
        get { withUnsafeMutablePointerToHeader { $0.pointee } }
        set { withUnsafeMutablePointerToHeader { $0.pointee = newValue } }
    }

    /// Calls `body` with the key's bytes.
    func withKey<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        let count = Int(fields.keyCount)
        return try withUnsafeMutablePointerToElements { try body(UnsafeRawBufferPointer(start: $0, count: count)) }
    }

    func keyEquals(_ key: StoreKey) -> Bool {
        withKey { stored in
            key.withUnsafeBytes { wanted in
                guard stored.count == wanted.count else { return false }
                guard let left = stored.baseAddress, let right = wanted.baseAddress else { return true }
                return memcmp(left, right, stored.count) == 0
            }
        }
    }

    /// The same key and fields without the value (the value is evicted).
    func withoutValue() -> EntryBox {
        let header = fields
        return withKey { key in
            EntryBox.make(
                key: key, value: nil, lsn: header.lsn, expiresAtMs: header.expiresAtMs, location: header.location)
        }
    }

    /// The same key and fields with `value` resident again.
    func with(value: UnsafeRawBufferPointer) -> EntryBox {
        let header = fields
        return withKey { key in
            EntryBox.make(
                key: key, value: value, lsn: header.lsn, expiresAtMs: header.expiresAtMs, location: header.location)
        }
    }

    /// The value's bytes as a view that keeps this box alive; nil when evicted.
    var value: ValueBytes? {
        let header = fields
        guard header.valueCount != EntryHeader.evicted else { return nil }
        return ValueBytes(box: self, offset: header.keyCount, count: header.valueCount)
    }
}

/// The fixed part of an `EntryBox`: 36 bytes (8 + 8 + 12 + 4 + 4).
struct EntryHeader: Sendable {
    static let evicted = UInt32.max

    var lsn: UInt64
    /// Absolute Unix milliseconds; 0 means never.
    var expiresAtMs: Int64
    var location: DiskLocation
    var keyCount: UInt32
    /// Value bytes after the key, or `evicted`.
    var valueCount: UInt32

    var isResident: Bool { valueCount != Self.evicted }
    var residentValueBytes: Int { isResident ? Int(valueCount) : 0 }

    /// Whether the key reads as missing at `nowMs`; the boundary millisecond itself already counts
    /// as expired.
    func isExpired(atMs nowMs: Int64) -> Bool {
        expiresAtMs != 0 && expiresAtMs <= nowMs
    }
}

/// A value's bytes as the engine holds them, shared rather than copied: a reference to the
/// immutable box plus where the value sits in it.
public struct ValueBytes: @unchecked Sendable, Equatable, CustomStringConvertible, ExpressibleByArrayLiteral {
    private let box: EntryBox
    private let offset: UInt32
    public let count: Int

    fileprivate init(box: EntryBox, offset: UInt32, count: UInt32) {
        self.box = box
        self.offset = offset
        self.count = Int(count)
    }

    /// A standalone value (e.g. to compare with what the store returns).
    public init(_ bytes: [UInt8]) {
        let box = bytes.withUnsafeBytes {
            EntryBox.make(
                key: UnsafeRawBufferPointer(start: nil, count: 0), value: $0, lsn: 0, expiresAtMs: 0, location: .none)
        }
        self.init(box: box, offset: 0, count: UInt32(bytes.count))
    }

    public init(arrayLiteral elements: UInt8...) {
        self.init(elements)
    }

    /// Calls `body` with the value's bytes, valid only during the call.
    public func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try box.withUnsafeMutablePointerToElements { elements in
            try body(UnsafeRawBufferPointer(start: UnsafeRawPointer(elements) + Int(offset), count: count))
        }
    }

    /// A copy of the bytes.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    public static func == (lhs: ValueBytes, rhs: ValueBytes) -> Bool {
        lhs.withUnsafeBytes { left in rhs.withUnsafeBytes { right in left.elementsEqual(right) } }
    }

    public var description: String { "\(bytes)" }
}
