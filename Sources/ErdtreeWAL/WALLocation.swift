/// Where one record sits on disk: which segment, at which offset, how many bytes.
///
/// `segment` is the log's in-memory number for a segment file, not its name: compaction replaces
/// a segment with one of the same first LSN, and the number tells them apart. Numbers are not
/// persisted; recovery hands out new ones, and hands every record's location to its replay.
/// 32-bit fields keep the index entry that stores a location small; the configuration layer
/// caps `wal.max_file_size` far below 4 GiB, so offsets fit.
public struct WALLocation: Sendable, Equatable, Hashable {
    public var segment: UInt32
    public var offset: UInt32
    public var length: UInt32

    public init(segment: UInt32, offset: UInt32, length: UInt32) {
        self.segment = segment
        self.offset = offset
        self.length = length
    }
}

/// What `WriteAheadLog.append` completes with: the record's LSN and where it was written.
public struct WALAppended: Sendable, Equatable {
    public var lsn: UInt64
    public var location: WALLocation

    public init(lsn: UInt64, location: WALLocation) {
        self.lsn = lsn
        self.location = location
    }
}

/// One segment as status reports and compaction see it.
public struct WALSegmentInfo: Sendable, Equatable {
    /// The log's number for the segment (`WALLocation.segment`).
    public var id: UInt32
    public var firstLSN: UInt64
    /// Committed bytes, header included.
    public var bytes: Int64
    /// Committed bytes of records (without the header).
    public var recordBytes: Int64 { max(0, bytes - Int64(RecordFormat.headerSize)) }
    /// Written by compaction.
    public var compacted: Bool
    /// The segment the writer appends to; never compacted.
    public var active: Bool

    public init(id: UInt32, firstLSN: UInt64, bytes: Int64, compacted: Bool, active: Bool) {
        self.id = id
        self.firstLSN = firstLSN
        self.bytes = bytes
        self.compacted = compacted
        self.active = active
    }
}
