/// A page of records read back from the log for replication or tools.
public struct WALEntries: Sendable {
    /// Records with `lsn > since`, in LSN order, at most `limit`.
    public var records: [WALRecord]
    /// The requested position is older than the oldest record on disk: the reader needs a snapshot.
    public var resyncRequired: Bool
    /// The log's last written LSN when the read started (or the last returned, if later).
    public var lastLSN: UInt64

    public init(records: [WALRecord], resyncRequired: Bool, lastLSN: UInt64) {
        self.records = records
        self.resyncRequired = resyncRequired
        self.lastLSN = lastLSN
    }
}
