import Glibc
import Synchronization

/// A segment as the log tracks it in memory: its file, how much of it is committed, and a sparse
/// LSN → offset index so that `entries(since:)` starts near its first record instead of at the header.
///
/// The writer thread is the only one that stores `committedBytes` and adds index points; readers
/// load them from any thread and never read past `committedBytes`.
final class SegmentFile: Sendable {
    struct IndexPoint: Sendable {
        var lsn: UInt64
        var offset: Int64
    }

    /// Records at least this far apart get an index point, so a lookup reads at most this much extra.
    static let indexSpacingBytes: Int64 = 64 << 10

    let firstLSN: UInt64
    let path: String
    /// Bytes that reached the kernel, header included.
    let committedBytes: Atomic<Int64>
    private let index = Mutex<[IndexPoint]>([])

    init(firstLSN: UInt64, path: String, committedBytes: Int64) {
        self.firstLSN = firstLSN
        self.path = path
        self.committedBytes = Atomic(committedBytes)
    }

    func addIndexPoints(_ points: [IndexPoint]) {
        guard !points.isEmpty else { return }
        index.withLock { $0.append(contentsOf: points) }
    }

    /// Offset of a record boundary at or before the record holding `lsn`.
    func startOffset(forLSN lsn: UInt64) -> Int64 {
        index.withLock { points in
            var low = 0
            var high = points.count
            while low < high {
                let middle = (low + high) / 2
                if points[middle].lsn <= lsn { low = middle + 1 } else { high = middle }
            }
            return low == 0 ? Int64(RecordFormat.headerSize) : points[low - 1].offset
        }
    }

    /// Creates the segment file that starts at `firstLSN`: header written, file and directory fsynced.
    ///
    /// On failure the partial file is removed, so that a full disk during rotation leaves the log
    /// as it was. Returns the segment and a descriptor open for appending.
    static func create(directory: String, firstLSN: UInt64, replicationID: [UInt8]) throws(WALError) -> (
        SegmentFile, Int32
    ) {
        let path = System.join(directory, RecordFormat.segmentName(firstLSN: firstLSN))
        let fd = try System.open(path, flags: O_WRONLY | O_CREAT | O_EXCL | O_APPEND)
        do throws(WALError) {
            let header = RecordFormat.encodeHeader(.init(firstLSN: firstLSN, replicationID: replicationID))
            try System.write(fd, header, path: path)
            try System.fsync(fd, path: path)
            try System.fsyncDirectory(directory)
        } catch {
            try? System.close(fd, path: path)
            try? System.unlink(path)
            try? System.fsyncDirectory(directory)
            throw error
        }
        return (SegmentFile(firstLSN: firstLSN, path: path, committedBytes: Int64(RecordFormat.headerSize)), fd)
    }
}
