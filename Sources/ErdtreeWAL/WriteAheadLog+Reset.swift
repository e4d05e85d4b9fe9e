import Glibc

extension WriteAheadLog {
    /// Replaces the whole log with a master's snapshot: a slave's full resync.
    ///
    /// The snapshot's records (live keys as of `lastLSN`, sorted by LSN, none above it) become
    /// compacted segments covering LSNs 1…`lastLSN` of history `replicationID`; an empty active
    /// segment starts at `lastLSN + 1`, where the master's batches continue. The writer thread is
    /// stopped for the duration: call it with no appends in flight.
    ///
    /// Order on disk, so a crash at any point leaves a log recovery accepts: the snapshot is
    /// written as `.compacting` files and fsynced; then every old segment is deleted; then the
    /// snapshot files are renamed into place and the new active segment is created. A crash
    /// before the renames finish leaves `.compacting` files without a commit record, which
    /// recovery deletes: the slave then starts empty and resyncs again.
    ///
    /// - Returns: where each snapshot record now sits, in the order given.
    /// - Throws: `.badSegmentHeader` for a malformed id, `.lsnMismatch` for records out of order
    ///   or above `lastLSN`, `.io` when the disk refuses (the log is then closed).
    public func reset(replicationID hex: String, snapshot: [WALRecord], through lastLSN: UInt64) throws(WALError)
        -> [WALLocation]
    {
        guard let id = Self.bytes(ofHex: hex), id.count == RecordFormat.replicationIDSize else {
            throw .badSegmentHeader(segment: directory, reason: "replication id \"\(hex)\" is not 32 hex digits")
        }
        var previous: UInt64 = 0
        for record in snapshot {
            guard record.lsn > previous, record.lsn <= lastLSN else {
                throw .lsnMismatch(expected: min(previous + 1, lastLSN), got: record.lsn)
            }
            previous = record.lsn
        }
        stopWriter()

        var writer = PartWriter(directory: directory, maxBytes: maxFileSizeBytes, replicationID: id)
        do throws(WALError) {
            for record in snapshot { try writer.add(record, rangeFirstLSN: 1) }
            try writer.finish()
        } catch {
            writer.discard()
            throw error
        }
        for name in try System.listDirectory(directory)
        where RecordFormat.firstLSN(segmentName: name) != nil || name.hasSuffix(".broken") {
            try System.unlink(System.join(directory, name))
        }
        try System.fsyncDirectory(directory)
        for part in writer.parts {
            let path = System.join(directory, part.name)
            try System.rename(path + WALCompaction.partSuffix, to: path)
        }
        try System.fsyncDirectory(directory)
        let (active, fd) = try SegmentFile.create(directory: directory, firstLSN: lastLSN + 1, replicationID: id)

        let parts = writer.parts.map { part in
            SegmentFile(
                firstLSN: part.firstLSN, path: System.join(directory, part.name), committedBytes: part.bytes,
                compacted: true, readFD: part.readFD)
        }
        for (part, written) in zip(parts, writer.parts) { part.addIndexPoints(written.points) }
        var locations: [WALLocation] = []
        locations.reserveCapacity(snapshot.count)
        for part in parts {
            let reader = SegmentReader(
                fd: try part.descriptor(), path: part.path, start: Int64(RecordFormat.headerSize),
                end: part.committedBytes.load(ordering: .relaxed))
            while let event = try reader.next() {
                guard case .record(_, let offset, let size) = event else {
                    throw .corruptRecord(
                        segment: part.path, offset: 0, lsn: nil, reason: "just written, yet unreadable")
                }
                locations.append(WALLocation(segment: part.id, offset: UInt32(offset), length: UInt32(size)))
            }
        }

        shared.segments.withLock { $0 = SegmentTable(parts + [active]) }
        shared.replicationID.withLock { $0 = id }
        shared.lastLSN.store(lastLSN, ordering: .releasing)
        shared.durableLSN.store(lastLSN, ordering: .releasing)
        shared.completedLSN.store(lastLSN, ordering: .releasing)
        shared.oldestStreamableLSN.store(lastLSN + 1, ordering: .releasing)
        shared.queue.withLock { $0 = WALSharedState.Queue() }
        try startWriter(activeFD: fd, active: active, lastLSN: lastLSN)
        logger.warning(
            "WAL replaced by a snapshot (full resync)",
            metadata: [
                "records": "\(snapshot.count)", "through_lsn": "\(lastLSN)", "replication_id": "\(hex)",
                "segments": "\(parts.count + 1)",
            ])
        return locations
    }
}
