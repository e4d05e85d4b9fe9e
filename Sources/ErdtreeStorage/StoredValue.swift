/// What a read of one key returns: its value, if resident, and the version it was written at.
///
/// `value` shares its storage with the engine (the entry's immutable box), so
/// returning it costs a reference-count increment, not a copy of the bytes.
public struct StoredValue: Sendable, Equatable {
    /// The value bytes, as last written; nil when the value was evicted from
    /// memory. The caller then reads the record at `location` and may hand
    /// it back with `KeyValueStore.restore(_:value:lsn:)`.
    public let value: ValueBytes?
    /// The LSN of the write that produced `value` (the key's version).
    public let lsn: UInt64
    /// Absolute expiry in Unix milliseconds; 0 means the key never expires.
    public let expiresAtMs: Int64
    /// Where the write's record is on disk.
    public let location: DiskLocation

    /// Whether the value was evicted and must be read from the WAL.
    public var isEvicted: Bool { value == nil }

    public init(value: ValueBytes?, lsn: UInt64, expiresAtMs: Int64, location: DiskLocation = .none) {
        self.value = value
        self.lsn = lsn
        self.expiresAtMs = expiresAtMs
        self.location = location
    }

    /// An entry with a copy of `bytes` as its value.
    @_disfavoredOverload
    public init(value bytes: [UInt8]?, lsn: UInt64, expiresAtMs: Int64, location: DiskLocation = .none) {
        self.init(value: bytes.map(ValueBytes.init), lsn: lsn, expiresAtMs: expiresAtMs, location: location)
    }
}
