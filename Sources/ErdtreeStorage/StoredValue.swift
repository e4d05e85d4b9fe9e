/// What a read of one key returns: its value and the version it was written at.
///
/// `value` shares its storage with the engine (copy-on-write), so returning it
/// costs a reference-count increment, not a copy of the bytes.
public struct StoredValue: Sendable, Equatable {
    /// The value bytes, as last written.
    public let value: [UInt8]
    /// The LSN of the write that produced `value` (the key's version).
    public let lsn: UInt64
    /// Absolute expiry in Unix milliseconds; 0 means the key never expires.
    public let expiresAtMs: Int64

    public init(value: [UInt8], lsn: UInt64, expiresAtMs: Int64) {
        self.value = value
        self.lsn = lsn
        self.expiresAtMs = expiresAtMs
    }
}
