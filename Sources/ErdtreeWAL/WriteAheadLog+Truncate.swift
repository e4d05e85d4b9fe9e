import Glibc

extension WriteAheadLog {
    /// What `truncate(after:savingTo:replay:)` did.
    public struct Truncation: Sendable {
        /// Records moved out of the log into the saved file (0: nothing was past the LSN).
        public var saved: Int
        /// The file they went to; nil when there were none.
        public var savedPath: String?
    }

    /// Cuts the log after `lsn`, keeping what it cuts: a node rejoining a history in which its
    /// last records never happened (a divergent tail).
    ///
    /// The records after `lsn` are written to `savingTo` first, in the segment format (a header
    /// whose first LSN is the first saved record's, then the records), and fsynced. Then the
    /// segments after `lsn` are deleted newest first, the segment holding `lsn` is cut after it,
    /// and a new active segment starts at `lsn + 1`, each step followed by a directory fsync. A
    /// crash between steps leaves a log that is a prefix of the old one (recovery accepts it; the
    /// master then asks for the same cut again). The saved file is written only if none of that
    /// name exists: after such a crash the first one, written before anything was deleted, holds
    /// the whole tail.
    ///
    /// Then the log is recovered again, calling `replay` for every record left, and the writer
    /// restarts. The writer is stopped for the duration: call it with no appends in flight.
    ///
    /// - Throws: `.lsnMismatch` when `lsn` is past the log's end or before what the log can still
    ///   read (compacted: the caller needs a full resync instead); `.io` when the disk refuses.
    public func truncate(
        after lsn: UInt64, savingTo path: String, replay: (WALRecord, WALLocation) -> Void
    ) throws(WALError) -> Truncation {
        let tail = try entries(since: lsn, limit: Int.max)
        guard !tail.resyncRequired else { throw .lsnMismatch(expected: oldestStreamableLSN, got: lsn + 1) }
        guard lsn <= lastLSN else { throw .lsnMismatch(expected: lastLSN, got: lsn) }
        stopWriter()
        if let first = tail.records.first, access(path, F_OK) != 0 {
            try save(tail.records, firstLSN: first.lsn, to: path)
        }
        let segments = shared.segments.withLock { $0.ordered }
        for segment in segments.reversed() where segment.firstLSN > lsn {
            try System.unlink(segment.path)
            try System.fsyncDirectory(directory)
        }
        if let holding = segments.last(where: { $0.firstLSN <= lsn }), !holding.compacted {
            try cut(holding, after: lsn)
        }
        let (_, fd) = try SegmentFile.create(directory: directory, firstLSN: lsn + 1, replicationID: replicationIDBytes)
        try System.close(fd, path: System.join(directory, RecordFormat.segmentName(firstLSN: lsn + 1)))
        try restart(replay: replay)
        logger.warning(
            "WAL truncated: records past the branch point moved aside",
            metadata: ["after_lsn": "\(lsn)", "records": "\(tail.records.count)", "saved_to": "\(path)"])
        return Truncation(saved: tail.records.count, savedPath: tail.records.isEmpty ? nil : path)
    }

    /// Writes `records` as one segment file at `path` (via a temporary name, fsynced, renamed).
    private func save(_ records: [WALRecord], firstLSN: UInt64, to path: String) throws(WALError) {
        try System.makeDirectories(System.parent(of: path))
        var bytes = RecordFormat.encodeHeader(.init(firstLSN: firstLSN, replicationID: replicationIDBytes))
        for record in records {
            RecordFormat.appendRecord(
                lsn: record.lsn, timestampMs: record.timestampMs, op: record.op, expiresAtMs: record.expiresAtMs,
                key: record.key, value: record.value, to: &bytes)
        }
        let temporary = path + ".tmp"
        try System.writeFile(temporary, bytes)
        try System.rename(temporary, to: path)
        try System.fsyncDirectory(System.parent(of: path))
    }

    /// Cuts `segment` right after the record at `lsn` (or after its last record before it).
    private func cut(_ segment: SegmentFile, after lsn: UInt64) throws(WALError) {
        let fd = try System.open(segment.path, flags: O_RDWR)
        defer { try? System.close(fd, path: segment.path) }
        let size = try System.fileSize(fd, path: segment.path)
        let reader = SegmentReader(fd: fd, path: segment.path, start: Int64(RecordFormat.headerSize), end: size)
        var end = Int64(RecordFormat.headerSize)
        while let event = try reader.next() {
            guard case .record(let record, let offset, let size) = event, record.lsn <= lsn else { break }
            end = offset + Int64(size)
        }
        try System.ftruncate(fd, length: end, path: segment.path)
        try System.fsync(fd, path: segment.path)
    }

    /// Recovers the directory again and starts a new writer on it: the log after a truncation.
    private func restart(replay: (WALRecord, WALLocation) -> Void) throws(WALError) {
        let recovered = try WALRecovery(directory: directory, logger: logger).run(replay: replay)
        guard let active = recovered.segments.last else {
            preconditionFailure("recovery always leaves an active segment")
        }
        shared.segments.withLock { $0 = SegmentTable(recovered.segments) }
        shared.replicationID.withLock { $0 = recovered.replicationID }
        shared.lastLSN.store(recovered.lastLSN, ordering: .releasing)
        shared.durableLSN.store(recovered.lastLSN, ordering: .releasing)
        shared.completedLSN.store(recovered.lastLSN, ordering: .releasing)
        shared.oldestStreamableLSN.store(recovered.oldestStreamableLSN, ordering: .releasing)
        shared.queue.withLock { $0 = WALSharedState.Queue() }
        try startWriter(activeFD: recovered.activeFD, active: active, lastLSN: recovered.lastLSN)
    }
}

extension WriteAheadLog {
    /// Records in the `*.log` files of `directory` (the divergent files a node set aside), read
    /// up to the first bad record of each; 0 when there is no such directory.
    public static func recordCount(inFilesOf directory: String) -> Int {
        guard System.isDirectory(directory), let names = try? System.listDirectory(directory) else { return 0 }
        var count = 0
        for name in names where name.hasSuffix(RecordFormat.segmentSuffix) {
            let path = System.join(directory, name)
            guard let fd = try? System.open(path, flags: O_RDONLY) else { continue }
            defer { try? System.close(fd, path: path) }
            guard let size = try? System.fileSize(fd, path: path) else { continue }
            let reader = SegmentReader(fd: fd, path: path, start: Int64(RecordFormat.headerSize), end: size)
            while let event = try? reader.next(), case .record = event { count += 1 }
        }
        return count
    }
}
