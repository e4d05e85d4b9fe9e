/// A key of the store: arbitrary bytes, compared byte for byte.
///
/// The wire limits keys to valid UTF-8 (docs/api.md), but the engine does not
/// care: WAL replay and snapshots hand it raw bytes, and checking UTF-8 again
/// here would cost every read. Validation belongs to ErdtreeNode.
///
/// The key's hash is computed once, at construction, with the standard
/// library's `Hasher` (SipHash, seeded randomly per process). Computing it once
/// lets the same value both pick the shard and serve as the dictionary hash, so
/// a lookup reads the key bytes once. A seeded hash keeps clients from
/// crafting keys that all land in one shard or one bucket; the price is that
/// the hash is stable only within a process, so it must never be persisted.
public struct StoreKey: Hashable, Sendable {
    /// The key's bytes, shared (copy-on-write) with every copy of the key.
    public let bytes: [UInt8]

    /// Seeded hash of `bytes`; see the type's comment for why it is cached.
    let digest: Int

    /// Creates a key over `bytes`, keeping a reference rather than copying.
    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.digest = bytes.withUnsafeBytes { Self.digest(of: $0) }
    }

    /// The digest a key with these bytes has (in this process).
    static func digest(of bytes: UnsafeRawBufferPointer) -> Int {
        var hasher = Hasher()
        hasher.combine(bytes: bytes)
        return hasher.finalize()
    }

    /// Creates a key by copying `buffer`, e.g. straight out of a decoded message.
    public init(_ buffer: UnsafeRawBufferPointer) {
        self.init([UInt8](buffer))
    }

    /// Creates a key from the UTF-8 encoding of `string`.
    public init(_ string: String) {
        self.init(Array(string.utf8))
    }

    /// Calls `body` with the key's bytes without copying them.
    public func withUnsafeBytes<Result>(
        _ body: (UnsafeRawBufferPointer) throws -> Result
    ) rethrows -> Result {
        try bytes.withUnsafeBytes(body)
    }

    public static func == (lhs: StoreKey, rhs: StoreKey) -> Bool {
        // Different digests settle almost every mismatch without touching the bytes.
        lhs.digest == rhs.digest && lhs.bytes == rhs.bytes
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(digest)
    }
}

extension StoreKey: CustomStringConvertible {
    /// The key as a quoted string when it is valid UTF-8, else as hex bytes,
    /// so that log lines and test failures name binary keys readably.
    public var description: String {
        if let text = String(validating: bytes, as: UTF8.self) {
            return "\"\(text)\""
        }
        let hexDigits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = [UInt8(ascii: "0"), UInt8(ascii: "x")]
        hex.reserveCapacity(2 + 2 * bytes.count)
        for byte in bytes {
            hex.append(hexDigits[Int(byte >> 4)])
            hex.append(hexDigits[Int(byte & 0x0f)])
        }
        return String(decoding: hex, as: UTF8.self)
    }
}
