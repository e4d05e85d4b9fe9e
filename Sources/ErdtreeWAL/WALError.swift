import Glibc

/// Everything that can go wrong in the write-ahead log; each case says what and where.
public enum WALError: Error, Equatable, CustomStringConvertible {
    /// A record that is not a torn tail of the newest segment failed its checks; the log refuses
    /// to start rather than drop it. `lsn` is the LSN the record holds or should hold.
    case corruptRecord(segment: String, offset: Int64, lsn: UInt64?, reason: String)
    /// A segment's header is missing, damaged, or does not fit the segments around it.
    case badSegmentHeader(segment: String, reason: String)
    /// A system call failed; `call` is its name and `path` the file or directory it worked on.
    case io(call: String, path: String, errno: Int32)
    /// The log was closed before the operation.
    case closed
    /// An append that must get a given LSN (a replica's) does not continue the log there.
    case lsnMismatch(expected: UInt64, got: UInt64)
    /// A location names a segment that compaction has since replaced; look the key up again.
    case segmentGone(UInt32)
    /// Compaction's commit record (`compaction.commit`) is unreadable; recovery cannot tell
    /// which files are current, so it refuses to start.
    case badCompactionRecord(path: String, reason: String)

    public var description: String {
        switch self {
        case .corruptRecord(let segment, let offset, let lsn, let reason):
            let which = lsn.map { " (LSN \($0))" } ?? ""
            return "WAL segment \(segment) is corrupt at offset \(offset)\(which): \(reason)."
        case .badSegmentHeader(let segment, let reason):
            return "WAL segment \(segment) has a bad header: \(reason)."
        case .io(let call, let path, let code):
            return "\(call)(\(path)) failed: \(String(cString: strerror(code))) (errno \(code))."
        case .closed:
            return "The write-ahead log is closed."
        case .lsnMismatch(let expected, let got):
            return "The record for LSN \(got) does not continue the write-ahead log, whose next LSN is \(expected)."
        case .segmentGone(let id):
            return "WAL segment number \(id) was replaced by compaction."
        case .badCompactionRecord(let path, let reason):
            return "WAL compaction record \(path) is unreadable: \(reason)."
        }
    }
}
