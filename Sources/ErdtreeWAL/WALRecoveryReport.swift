/// What recovery found when the log was opened.
public struct WALRecoveryReport: Sendable {
    /// Segments read, after any torn rotation was removed.
    public var segments: Int
    /// Records replayed.
    public var records: Int
    /// LSN of the last replayed record, or the one before the newest segment's first LSN when it holds none.
    public var lastLSN: UInt64
    /// The torn write cut off the end of the newest segment, if any.
    public var truncatedTail: WALTruncatedTail?
    /// Wall time spent recovering.
    public var seconds: Double

    public init(segments: Int, records: Int, lastLSN: UInt64, truncatedTail: WALTruncatedTail?, seconds: Double) {
        self.segments = segments
        self.records = records
        self.lastLSN = lastLSN
        self.truncatedTail = truncatedTail
        self.seconds = seconds
    }
}

/// A torn write removed from the end of the newest segment during recovery.
public struct WALTruncatedTail: Sendable, Equatable {
    /// Path of the segment that was truncated.
    public var segment: String
    /// The segment's new size: where the last whole record ended.
    public var offset: Int64
    /// How many bytes were cut off (they are kept in `<segment>.broken`).
    public var bytes: Int64

    public init(segment: String, offset: Int64, bytes: Int64) {
        self.segment = segment
        self.offset = offset
        self.bytes = bytes
    }
}
