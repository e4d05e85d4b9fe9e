import Glibc
import Synchronization

/// What one compaction did.
public struct WALCompactionResult: Sendable, Equatable {
    /// Segments replaced and the bytes they held (headers included).
    public var segmentsIn: Int
    public var bytesIn: Int64
    /// Segments written and their bytes.
    public var segmentsOut: Int
    public var bytesOut: Int64
    /// Records read, and how many of them were live and kept.
    public var recordsIn: Int
    public var recordsKept: Int
    /// The range the replaced segments covered; entries up to `lastLSN` are no longer streamable.
    public var firstLSN: UInt64
    public var lastLSN: UInt64
}

extension WriteAheadLog {
    /// Rewrites the oldest `count` segments with only the records `isLive` keeps (WALCompaction).
    ///
    /// Runs on the calling thread (blocking file I/O: not an event loop) while appends and reads
    /// go on. Only segments whose every record's `append` completion has returned are replaced,
    /// so `isLive` must answer from state those completions update (the node applies each write to
    /// its store inside the completion). `isLive` sees each record of the old segments in LSN order; after the commit point
    /// `moved` sees each kept record with its new location, before any old segment is deleted or
    /// stops resolving, so an index updated by `moved` never points at a missing file. Entries up
    /// to the replaced range's last LSN are no longer streamable (`oldestStreamableLSN`).
    ///
    /// - Parameter count: how many of the oldest segments to replace; the active segment never is,
    ///   so at most `segments.count - 1`.
    /// - Returns: nil when another compaction is running or `count` leaves nothing to do.
    /// - Throws: `WALError` when reading or writing fails. Before the commit point nothing changed
    ///   (the partial output is deleted); after it, the log is consistent in memory and the rest
    ///   of the work is left to recovery: further compactions refuse until a restart.
    public func compact(
        segments count: Int,
        isLive: (WALRecord) -> Bool,
        moved: (WALRecord, WALLocation) -> Void
    ) throws(WALError) -> WALCompactionResult? {
        guard count > 0,
            compactionRunning.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
        else { return nil }
        defer { compactionRunning.store(false, ordering: .releasing) }
        if let stopped = compactionStoppedBy.withLock({ $0 }) { throw stopped }

        let table = shared.segments.withLock { $0.ordered }
        guard count < table.count else { return nil }
        // `isLive` can judge a record only once its completion has applied it.
        guard table[count].firstLSN - 1 <= shared.completedLSN.load(ordering: .acquiring) else { return nil }
        let inputs = Array(table[0..<count])
        let range = (first: inputs[0].firstLSN, last: table[count].firstLSN - 1)
        var result = WALCompactionResult(
            segmentsIn: count, bytesIn: 0, segmentsOut: 0, bytesOut: 0, recordsIn: 0, recordsKept: 0,
            firstLSN: range.first, lastLSN: range.last)

        // Step 1: the parts.
        var writer = PartWriter(directory: directory, maxBytes: maxFileSizeBytes, replicationID: replicationIDBytes)
        do throws(WALError) {
            for segment in inputs {
                let end = segment.committedBytes.load(ordering: .acquiring)
                result.bytesIn += end
                let reader = SegmentReader(
                    fd: try segment.descriptor(), path: segment.path, start: Int64(RecordFormat.headerSize), end: end)
                while let event = try reader.next() {
                    guard case .record(let record, _, _) = event else {
                        throw Self.unreadable(event, in: segment.path)
                    }
                    result.recordsIn += 1
                    guard isLive(record) else { continue }
                    result.recordsKept += 1
                    try writer.add(record, rangeFirstLSN: range.first)
                }
            }
            try writer.finish()
            #if ERDTREE_FAILPOINTS
                WALFailpoints.compactionStepReached("parts-written")
            #endif
            // Step 2: the commit point.
            try writeCommitRecord(
                WALCompaction.CommitRecord(
                    firstLSN: range.first, lastLSN: range.last, parts: writer.parts.map(\.name)))
        } catch {
            writer.discard()
            throw error
        }
        #if ERDTREE_FAILPOINTS
            WALFailpoints.compactionStepReached("committed")
        #endif

        // New locations resolve before old ones stop resolving.
        let parts = writer.parts.map { part in
            SegmentFile(
                firstLSN: part.firstLSN, path: System.join(directory, part.name), committedBytes: part.bytes,
                compacted: true, readFD: part.readFD)
        }
        for (part, written) in zip(parts, writer.parts) { part.addIndexPoints(written.points) }
        shared.segments.withLock { table in
            for part in parts { table.register(part) }
        }
        do throws(WALError) {
            for part in parts {
                let reader = SegmentReader(
                    fd: try part.descriptor(), path: part.path, start: Int64(RecordFormat.headerSize),
                    end: part.committedBytes.load(ordering: .relaxed))
                while let event = try reader.next() {
                    guard case .record(let record, let offset, let size) = event else {
                        throw Self.unreadable(event, in: part.path + WALCompaction.partSuffix)
                    }
                    moved(record, WALLocation(segment: part.id, offset: UInt32(offset), length: UInt32(size)))
                }
            }
        } catch {
            // The parts are committed; what `moved` missed still resolves through the old segments,
            // which stay in the table (and on disk) until a restart finishes the compaction.
            compactionStoppedBy.withLock { $0 = error }
            throw error
        }
        #if ERDTREE_FAILPOINTS
            WALFailpoints.compactionStepReached("relocated")
        #endif
        shared.segments.withLock { $0.replacePrefix(count, with: parts) }
        shared.oldestStreamableLSN.store(range.last + 1, ordering: .releasing)
        result.segmentsOut = parts.count
        result.bytesOut = writer.parts.reduce(0) { $0 + $1.bytes }

        // Steps 3 to 5.
        do throws(WALError) {
            try forEachThenSyncDirectory(inputs, steps: ("old-segment-deleted", "old-segments-deleted")) {
                segment throws(WALError) in try System.unlink(segment.path)
            }
            try forEachThenSyncDirectory(parts, steps: ("part-renamed", "parts-renamed")) {
                part throws(WALError) in try System.rename(part.path + WALCompaction.partSuffix, to: part.path)
            }
            try System.unlink(System.join(directory, WALCompaction.commitName))
            try System.fsyncDirectory(directory)
        } catch {
            compactionStoppedBy.withLock { $0 = error }
            throw error
        }
        return result
    }

    /// Runs `change` on each segment, then fsyncs the directory so the changes are durable.
    /// `steps` name the crash points after the first change and after the fsync (failpoint builds).
    private func forEachThenSyncDirectory(
        _ segments: [SegmentFile], steps: (afterFirst: String, afterAll: String),
        _ change: (SegmentFile) throws(WALError) -> Void
    ) throws(WALError) {
        for (index, segment) in segments.enumerated() {
            try change(segment)
            #if ERDTREE_FAILPOINTS
                if index == 0 { WALFailpoints.compactionStepReached(steps.afterFirst) }
            #endif
        }
        try System.fsyncDirectory(directory)
        #if ERDTREE_FAILPOINTS
            WALFailpoints.compactionStepReached(steps.afterAll)
        #endif
    }

    private func writeCommitRecord(_ record: WALCompaction.CommitRecord) throws(WALError) {
        let temporary = System.join(directory, WALCompaction.commitTemporaryName)
        try System.writeFile(temporary, record.encoded())
        try System.rename(temporary, to: System.join(directory, WALCompaction.commitName))
        try System.fsyncDirectory(directory)
    }

    private static func unreadable(_ event: SegmentReader.Event, in path: String) -> WALError {
        switch event {
        case .record(let record, let offset, _):
            return .corruptRecord(segment: path, offset: offset, lsn: record.lsn, reason: "unexpected record")
        case .tornTail(let offset):
            return .corruptRecord(
                segment: path, offset: offset, lsn: nil, reason: "a sealed record is cut short during compaction")
        case .corrupt(let offset, let lsn, let reason):
            return .corruptRecord(segment: path, offset: offset, lsn: lsn, reason: reason)
        }
    }
}

/// Writes compaction's output: `.compacting` files of at most `maxBytes`, each fsynced when full.
struct PartWriter {
    struct Part {
        var name: String
        var firstLSN: UInt64
        var bytes: Int64
        var readFD: Int32
        var points: [SegmentFile.IndexPoint]
    }

    let directory: String
    let maxBytes: Int64
    let replicationID: [UInt8]
    private(set) var parts: [Part] = []
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []
    private var lastIndexed: Int64 = 0

    init(directory: String, maxBytes: Int64, replicationID: [UInt8]) {
        self.directory = directory
        self.maxBytes = maxBytes
        self.replicationID = replicationID
    }

    /// Appends `record`; the first part starts at `rangeFirstLSN` so the parts tile the range.
    mutating func add(_ record: WALRecord, rangeFirstLSN: UInt64) throws(WALError) {
        if fd < 0 || parts[parts.count - 1].bytes >= maxBytes {
            try closePart()
            try openPart(firstLSN: parts.isEmpty ? rangeFirstLSN : record.lsn)
        }
        let offset = parts[parts.count - 1].bytes
        if offset - lastIndexed >= SegmentFile.indexSpacingBytes {
            parts[parts.count - 1].points.append(.init(lsn: record.lsn, offset: offset))
            lastIndexed = offset
        }
        let before = buffer.count
        RecordFormat.appendRecord(
            lsn: record.lsn, timestampMs: record.timestampMs, op: record.op, expiresAtMs: record.expiresAtMs,
            key: record.key, value: record.value, to: &buffer)
        parts[parts.count - 1].bytes += Int64(buffer.count - before)
        if buffer.count >= 1 << 20 { try flush() }
    }

    /// Writes and fsyncs the last part, then the directory.
    mutating func finish() throws(WALError) {
        try closePart()
        if !parts.isEmpty { try System.fsyncDirectory(directory) }
    }

    /// Deletes every part written so far (before the commit point only).
    mutating func discard() {
        if fd >= 0 { try? System.close(fd, path: directory) }
        fd = -1
        for part in parts {
            if part.readFD >= 0 { try? System.close(part.readFD, path: part.name) }
            try? System.unlink(System.join(directory, part.name) + WALCompaction.partSuffix)
        }
        parts.removeAll()
        try? System.fsyncDirectory(directory)
    }

    private mutating func openPart(firstLSN: UInt64) throws(WALError) {
        let name = RecordFormat.segmentName(firstLSN: firstLSN)
        let path = System.join(directory, name) + WALCompaction.partSuffix
        fd = try System.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC)
        let readFD: Int32
        do throws(WALError) {
            readFD = try System.open(path, flags: O_RDONLY)
        } catch {
            try? System.close(fd, path: path)
            fd = -1
            try? System.unlink(path)
            throw error
        }
        parts.append(Part(name: name, firstLSN: firstLSN, bytes: 0, readFD: readFD, points: []))
        buffer = RecordFormat.encodeHeader(.init(firstLSN: firstLSN, replicationID: replicationID, compacted: true))
        parts[parts.count - 1].bytes = Int64(buffer.count)
        lastIndexed = Int64(buffer.count)
    }

    private mutating func flush() throws(WALError) {
        guard !buffer.isEmpty else { return }
        try System.write(fd, buffer, path: parts[parts.count - 1].name + WALCompaction.partSuffix)
        buffer.removeAll(keepingCapacity: true)
    }

    private mutating func closePart() throws(WALError) {
        guard fd >= 0 else { return }
        let path = System.join(directory, parts[parts.count - 1].name) + WALCompaction.partSuffix
        try flush()
        try System.fsync(fd, path: path)
        try System.close(fd, path: path)
        fd = -1
    }
}
