/// The engine's record of one key: its version, its expiry, where its last record is on disk and,
/// while resident, its value.
///
/// DESIGN §5 indexes every key with its LSN, expiry and the disk location of
/// its last record; this is that index entry. An evicted key keeps its entry
/// with `value == nil`: `location` says where to read the value back.
/// Fields are ordered and sized to keep the entry at 40 bytes: it exists for every key.
struct IndexEntry: Sendable {
    /// The value bytes, or nil once evicted from memory (the WAL still has them).
    var value: [UInt8]?
    var lsn: UInt64
    /// Absolute Unix milliseconds; 0 means never.
    var expiresAtMs: Int64
    var location: DiskLocation
    private var clockSlot32: Int32 = -1

    init(value: [UInt8]?, lsn: UInt64, expiresAtMs: Int64, location: DiskLocation) {
        self.value = value
        self.lsn = lsn
        self.expiresAtMs = expiresAtMs
        self.location = location
    }

    /// Where the key sits in its shard's CLOCK ring; -1 when it is not in the
    /// ring (evicted, or the store keeps every value resident). A shard never
    /// holds 2^31 values, so 32 bits suffice.
    var clockSlot: Int {
        get { Int(clockSlot32) }
        set { clockSlot32 = Int32(truncatingIfNeeded: newValue) }
    }

    var hasExpiry: Bool { expiresAtMs != 0 }

    /// Whether the key reads as missing at `nowMs`; the boundary millisecond
    /// itself already counts as expired.
    func isExpired(atMs nowMs: Int64) -> Bool {
        expiresAtMs != 0 && expiresAtMs <= nowMs
    }

    var stored: StoredValue {
        StoredValue(value: value, lsn: lsn, expiresAtMs: expiresAtMs, location: location)
    }
}
