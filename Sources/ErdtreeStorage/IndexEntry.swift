/// The engine's record of one key: its version, its expiry and, while resident, its value.
///
/// DESIGN §5 indexes every key with its LSN, expiry and the disk location of
/// its last record; this is that index entry. An evicted key keeps its entry
/// with `value == nil`: its LSN names the WAL record that holds the value.
struct IndexEntry: Sendable {
    /// The value bytes, or nil once evicted from memory (the WAL still has them).
    var value: [UInt8]?
    var lsn: UInt64
    /// Absolute Unix milliseconds; 0 means never.
    var expiresAtMs: Int64
    /// Where the key sits in its shard's CLOCK ring; -1 when it is not in the
    /// ring (evicted, or the store keeps every value resident).
    var clockSlot: Int = -1

    var hasExpiry: Bool { expiresAtMs != 0 }

    /// Whether the key reads as missing at `nowMs`; the boundary millisecond
    /// itself already counts as expired.
    func isExpired(atMs nowMs: Int64) -> Bool {
        expiresAtMs != 0 && expiresAtMs <= nowMs
    }

    var stored: StoredValue {
        StoredValue(value: value, lsn: lsn, expiresAtMs: expiresAtMs)
    }
}
