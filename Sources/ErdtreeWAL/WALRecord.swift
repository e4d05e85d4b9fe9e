/// What a record does: to its key, or, for an epoch marker, to the history.
public enum WALOp: UInt8, Sendable {
    case set = 1
    case delete = 2
    /// The first record of a new epoch (a promotion): no key, the epoch as an 8-byte
    /// little-endian value. It belongs to the history, not to any key, so compaction keeps it.
    case epoch = 3
}

/// One logged write, as appended and as replayed.
///
/// `lsn` is assigned by the log's writer thread; `expiresAtMs` is an absolute Unix time in
/// milliseconds (0 means the key never expires) and `value` is empty for deletes.
public struct WALRecord: Sendable, Equatable {
    public var lsn: UInt64
    public var timestampMs: Int64
    public var op: WALOp
    public var expiresAtMs: Int64
    public var key: [UInt8]
    public var value: [UInt8]

    public init(lsn: UInt64, timestampMs: Int64, op: WALOp, expiresAtMs: Int64, key: [UInt8], value: [UInt8]) {
        self.lsn = lsn
        self.timestampMs = timestampMs
        self.op = op
        self.expiresAtMs = expiresAtMs
        self.key = key
        self.value = value
    }
}

extension WALRecord {
    /// The record that starts `epoch` at `lsn` (0: the log assigns it).
    public static func epochMarker(_ epoch: UInt64, lsn: UInt64 = 0, timestampMs: Int64) -> WALRecord {
        WALRecord(
            lsn: lsn, timestampMs: timestampMs, op: .epoch, expiresAtMs: 0, key: [],
            value: withUnsafeBytes(of: epoch.littleEndian) { Array($0) })
    }

    /// The epoch an epoch marker starts; nil for any other record, or a marker whose value is
    /// not 8 bytes (which recovery reports as corrupt).
    public var markedEpoch: UInt64? {
        guard op == .epoch, key.isEmpty, value.count == 8 else { return nil }
        return value.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    }
}
