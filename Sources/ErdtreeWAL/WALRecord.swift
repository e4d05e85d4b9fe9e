/// What a record does to its key.
public enum WALOp: UInt8, Sendable {
    case set = 1
    case delete = 2
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
