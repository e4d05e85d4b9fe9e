import CErdtreeSystem
import ErdtreeSync
import Glibc
import Synchronization

/// A segment as the log tracks it in memory: its file, how much of it is committed, and a sparse
/// LSN → offset index so that `entries(since:)` starts near its first record instead of at the header.
///
/// The writer thread is the only one that stores `committedBytes` and adds index points; readers
/// load them from any thread and never read past `committedBytes`.
///
/// Readers share one read-only descriptor, opened on first use and closed when the last reference
/// to the segment goes away. A reader holding a `SegmentFile` can therefore finish its reads even
/// after compaction deleted the file: the descriptor keeps the unlinked file's bytes alive.
final class SegmentFile: Sendable {
    struct IndexPoint: Sendable {
        var lsn: UInt64
        var offset: Int64
    }

    /// Records at least this far apart get an index point, so a lookup reads at most this much extra.
    static let indexSpacingBytes: Int64 = 64 << 10

    /// The log's number for this file (`WALLocation.segment`); unique within the process.
    let id: UInt32
    let firstLSN: UInt64
    let path: String
    /// Written by compaction: holds only live records, with gaps between their LSNs.
    let compacted: Bool
    /// Bytes that reached the kernel, header included.
    let committedBytes: Atomic<Int64>
    private let index = Locked<[IndexPoint]>([])
    /// The shared read-only descriptor, -1 until the first read opens it.
    private let readFD = Locked<Int32>(-1)

    private static let nextID = Atomic<UInt32>(1)

    init(firstLSN: UInt64, path: String, committedBytes: Int64, compacted: Bool = false, readFD: Int32 = -1) {
        self.id = Self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        self.firstLSN = firstLSN
        self.path = path
        self.compacted = compacted
        self.committedBytes = Atomic(committedBytes)
        self.readFD.withLock { $0 = readFD }
    }

    deinit {
        let fd = readFD.withLock { $0 }
        if fd >= 0 { try? System.close(fd, path: path) }
    }

    /// The shared read-only descriptor, opened on first use. Do not close it.
    func descriptor() throws(WALError) -> Int32 {
        try readFD.withLock { (fd: inout Int32) throws(WALError) -> Int32 in
            if fd < 0 { fd = try System.open(path, flags: O_RDONLY) }
            return fd
        }
    }

    /// Reads the record at `offset` of `length` bytes with one `pread`.
    ///
    /// - Throws: `.corruptRecord` when the bytes there are not one whole valid record (the caller's
    ///   location is stale or the file is damaged), `.io` when the read fails.
    func record(at offset: Int64, length: Int) throws(WALError) -> WALRecord {
        try readRecord(at: offset, length: length) { fd, bytes throws(WALError) in
            try System.pread(fd, into: bytes, offset: offset, path: path)
        }
    }

    /// The record at `offset`, if all its bytes are in the page cache: never waits for the disk
    /// (preadv2 with RWF_NOWAIT), so an event loop may call it. Nil on any miss or problem; the
    /// blocking `record(at:length:)` then reports the problem properly.
    func cachedRecord(at offset: Int64, length: Int) -> WALRecord? {
        try? readRecord(at: offset, length: length) { fd, bytes throws(WALError) in
            let read = erdtree_pread_nowait(fd, bytes.baseAddress, bytes.count, off_t(offset))
            guard read == bytes.count else { throw .io(call: "preadv2", path: path, errno: read < 0 ? errno : EIO) }
            return read
        }
    }

    private func readRecord(
        at offset: Int64, length: Int, _ read: (Int32, UnsafeMutableRawBufferPointer) throws(WALError) -> Int
    ) throws(WALError) -> WALRecord {
        let end = committedBytes.load(ordering: .acquiring)
        guard offset >= Int64(RecordFormat.headerSize), length > 0, offset + Int64(length) <= end else {
            throw .corruptRecord(
                segment: path, offset: offset, lsn: nil,
                reason: "a \(length)-byte record at offset \(offset) lies outside the \(end) committed bytes")
        }
        let fd = try descriptor()
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: 16)
        defer { bytes.deallocate() }
        let count = try read(fd, bytes)
        switch RecordFormat.decodeRecord(UnsafeRawBufferPointer(rebasing: bytes[0..<count])) {
        case .record(let record, let size) where size == length:
            return record
        case .record(let record, let size):
            throw .corruptRecord(
                segment: path, offset: offset, lsn: record.lsn,
                reason: "the record there is \(size) bytes, not the \(length) the index says")
        case .incomplete(let needed):
            throw .corruptRecord(
                segment: path, offset: offset, lsn: nil,
                reason: "the record there needs \(needed) bytes but \(count) were read")
        case .corrupt(let lsn, let reason):
            throw .corruptRecord(segment: path, offset: offset, lsn: lsn, reason: reason)
        }
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
