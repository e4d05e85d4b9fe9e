/// The engine's record of one key: its version, its expiry and its value.
///
/// DESIGN §5 indexes every key with its LSN, expiry and the disk location of
/// its last record; this is that index entry. Eviction and disk fallback will
/// add the location here and let `value` be absent for evicted keys, without
/// changing how shards look keys up or decide last-writer-wins.
struct IndexEntry: Sendable {
    var value: [UInt8]
    var lsn: UInt64
    /// Absolute Unix milliseconds; 0 means never.
    var expiresAtMs: Int64

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
