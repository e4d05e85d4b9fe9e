import Glibc
import Logging

/// Opens a log directory: validates every segment, replays every record, and repairs the one
/// kind of damage a crash can cause.
///
/// The rules, each enforced where its comment says:
/// 1. Segments are `<first LSN>.log` files, read in order of first LSN. Other files are ignored.
/// 2. Every header must be whole and valid, carry the first LSN its name states and the
///    replication id of the first segment, and start right after the previous segment's last LSN.
/// 3. Every record's LSN is the previous one plus one; a gap or a repeat is corruption.
/// 4. Torn rotation: a newest segment too short to hold its header (or exactly header-sized with
///    an invalid header) was being created when the process died. It holds no records; it is
///    deleted and the segment before it becomes the active one.
/// 5. Torn write: in the newest segment only, a short or checksum-bad record after which no valid
///    record starts at any later offset is the batch the writer was writing when it died. Its bytes
///    are copied to `<segment>.broken`, the segment is truncated to the last whole record and
///    fsynced, and recovery continues with a warning naming file, offset and LSN.
/// 6. Anything else (a bad record in a sealed segment, a bad record followed by a valid one, a bad
///    header) refuses to start with `.corruptRecord` or `.badSegmentHeader` naming the file, the
///    offset and the LSN: acknowledged data is never dropped silently.
/// 7. An empty directory starts a fresh log: segment 1 with a new random replication id.
/// 8. A compaction that committed (`compaction.commit` exists) is finished: the segments it
///    replaced are deleted and its output renamed into place. One that did not commit is undone:
///    its `.compacting` files are deleted. See `WALCompaction`.
/// 9. Segments compaction wrote (header version 2) hold only live records, so their LSNs may skip
///    (rule 3 then asks only that they increase, and the next segment may start past the last
///    one's end). They form a prefix of the log: a compacted segment after a written one, or as
///    the newest segment, is corruption.
struct WALRecovery {
    struct Recovered {
        var replicationID: [UInt8]
        var segments: [SegmentFile]
        var activeFD: Int32
        var lastLSN: UInt64
        /// The first LSN of the first segment compaction did not write.
        var oldestStreamableLSN: UInt64
        var report: WALRecoveryReport
    }

    let directory: String
    let logger: Logger

    func run(replay: (WALRecord, WALLocation) -> Void) throws(WALError) -> Recovered {
        let started = ContinuousClock.now
        try System.makeDirectories(directory)
        // Rule 8: an interrupted compaction is finished or undone before segments are listed.
        try WALCompaction.recover(directory: directory, logger: logger)
        var names = try System.listDirectory(directory)
            .compactMap { name in RecordFormat.firstLSN(segmentName: name).map { (firstLSN: $0, name: name) } }
            .sorted { $0.firstLSN < $1.firstLSN }

        if let newest = names.last, try removeTornRotation(System.join(directory, newest.name)) {
            names.removeLast()
        }
        guard !names.isEmpty else { return try createFreshLog(started: started) }

        var replicationID: [UInt8] = []
        var segments: [SegmentFile] = []
        var nextLSN: UInt64 = 0
        var records = 0
        var truncatedTail: WALTruncatedTail?
        var progress = Progress(started: started)
        var activeFD: Int32 = -1
        var oldestStreamableLSN: UInt64?

        for (position, entry) in names.enumerated() {
            let path = System.join(directory, entry.name)
            let isNewest = position == names.count - 1
            // The newest segment's descriptor becomes the writer's: O_APPEND, since reading it leaves
            // the file offset at 0 and the writer never seeks.
            let fd = try System.open(path, flags: isNewest ? O_RDWR | O_APPEND : O_RDONLY)
            var keepOpen = false
            defer {
                if !keepOpen { try? System.close(fd, path: path) }
            }
            let fileSize = try System.fileSize(fd, path: path)

            // Rule 2: the header and how it fits the segments before it.
            let header = try readHeader(fd: fd, path: path, fileSize: fileSize)
            guard header.firstLSN == entry.firstLSN else {
                throw .badSegmentHeader(
                    segment: path,
                    reason: "the header says the first LSN is \(header.firstLSN) but the name says \(entry.firstLSN)"
                )
            }
            // Rule 9: compacted segments come first, and the newest segment is one the writer wrote.
            if header.compacted {
                if oldestStreamableLSN != nil || isNewest {
                    throw .badSegmentHeader(
                        segment: path,
                        reason: isNewest
                            ? "it is a compacted segment, but the newest segment must be one the writer wrote"
                            : "it is a compacted segment after segments the writer wrote")
                }
            } else if oldestStreamableLSN == nil {
                oldestStreamableLSN = header.firstLSN
            }
            if position == 0 {
                replicationID = header.replicationID
            } else {
                guard header.replicationID == replicationID else {
                    throw .badSegmentHeader(
                        segment: path,
                        reason: "replication id \(hexString(header.replicationID)) differs from the first segment's "
                            + "\(hexString(replicationID))"
                    )
                }
                let previousCompacted = segments.last?.compacted == true
                guard header.firstLSN == nextLSN || (previousCompacted && header.firstLSN > nextLSN) else {
                    throw .badSegmentHeader(
                        segment: path,
                        reason:
                            "it starts at LSN \(header.firstLSN) but the previous segment ends at LSN \(nextLSN - 1)"
                    )
                }
            }
            nextLSN = header.firstLSN

            let segment = SegmentFile(
                firstLSN: header.firstLSN, path: path, committedBytes: fileSize, compacted: header.compacted)
            var points: [SegmentFile.IndexPoint] = []
            var lastIndexed = Int64(RecordFormat.headerSize)
            var goodEnd = Int64(RecordFormat.headerSize)
            let reader = SegmentReader(fd: fd, path: path, start: goodEnd, end: fileSize)
            scan: while let event = try reader.next() {
                switch event {
                case .record(let record, let offset, let size):
                    // Rule 3.
                    guard record.lsn == nextLSN || (header.compacted && record.lsn > nextLSN) else {
                        throw .corruptRecord(
                            segment: path,
                            offset: offset,
                            lsn: record.lsn,
                            reason: header.compacted
                                ? "LSN \(record.lsn) follows LSN \(nextLSN - 1); LSNs must increase"
                                : "LSN \(record.lsn) is where LSN \(nextLSN) should be; LSNs must be consecutive"
                        )
                    }
                    if offset - lastIndexed >= SegmentFile.indexSpacingBytes {
                        points.append(.init(lsn: record.lsn, offset: offset))
                        lastIndexed = offset
                    }
                    replay(
                        record, WALLocation(segment: segment.id, offset: UInt32(offset), length: UInt32(size)))
                    nextLSN = record.lsn + 1
                    records += 1
                    goodEnd = offset + Int64(size)
                    progress.recordReplayed(logger: logger, segment: path)
                case .tornTail(let offset), .corrupt(let offset, _, _):
                    let reason: String
                    let claimedLSN: UInt64?
                    if case .corrupt(_, let lsn, let why) = event {
                        reason = why
                        claimedLSN = lsn
                    } else {
                        reason = "the record is cut short by the end of the file"
                        claimedLSN = nil
                    }
                    // Rules 5 and 6.
                    guard isNewest else {
                        throw .corruptRecord(
                            segment: path,
                            offset: offset,
                            lsn: claimedLSN ?? nextLSN,
                            reason: "\(reason), in a sealed segment"
                        )
                    }
                    if let later = try SegmentReader.firstValidRecord(
                        fd: fd, path: path, from: offset + 1, end: fileSize)
                    {
                        throw .corruptRecord(
                            segment: path,
                            offset: offset,
                            lsn: claimedLSN ?? nextLSN,
                            reason:
                                "\(reason), and a valid record follows at offset \(later), so it is not a torn write"
                        )
                    }
                    truncatedTail = try truncateTornTail(
                        fd: fd,
                        path: path,
                        offset: offset,
                        fileSize: fileSize,
                        lsn: nextLSN,
                        reason: reason
                    )
                    break scan
                }
            }
            segment.committedBytes.store(goodEnd, ordering: .relaxed)
            segment.addIndexPoints(points)
            segments.append(segment)
            if isNewest {
                keepOpen = true
                activeFD = fd
                // Records replayed from the page cache of a crashed process may not be on disk yet.
                try System.fsync(fd, path: path)
            }
        }

        let lastLSN = nextLSN - 1
        let seconds = progress.secondsSinceStart()
        logger.info(
            "WAL recovered",
            metadata: [
                "directory": "\(directory)", "segments": "\(segments.count)", "records": "\(records)",
                "last_lsn": "\(lastLSN)", "seconds": "\(seconds)",
                "records_per_second": "\(seconds > 0 ? Int(Double(records) / seconds) : records)",
                "replication_id": "\(hexString(replicationID))",
            ]
        )
        return Recovered(
            replicationID: replicationID,
            segments: segments,
            activeFD: activeFD,
            lastLSN: lastLSN,
            oldestStreamableLSN: oldestStreamableLSN ?? 1,
            report: WALRecoveryReport(
                segments: segments.count,
                records: records,
                lastLSN: lastLSN,
                truncatedTail: truncatedTail,
                seconds: seconds
            )
        )
    }

    /// Rule 7.
    private func createFreshLog(started: ContinuousClock.Instant) throws(WALError) -> Recovered {
        var generator = SystemRandomNumberGenerator()
        let replicationID = (0..<RecordFormat.replicationIDSize).map { _ in UInt8.random(in: 0...255, using: &generator)
        }
        let (segment, fd) = try SegmentFile.create(directory: directory, firstLSN: 1, replicationID: replicationID)
        logger.info(
            "WAL created",
            metadata: ["segment": "\(segment.path)", "replication_id": "\(hexString(replicationID))"]
        )
        let seconds = Progress(started: started).secondsSinceStart()
        return Recovered(
            replicationID: replicationID,
            segments: [segment],
            activeFD: fd,
            lastLSN: 0,
            oldestStreamableLSN: 1,
            report: WALRecoveryReport(segments: 1, records: 0, lastLSN: 0, truncatedTail: nil, seconds: seconds)
        )
    }

    /// Rule 4: deletes the newest segment when its creation never finished. Returns whether it did.
    private func removeTornRotation(_ path: String) throws(WALError) -> Bool {
        let fd = try System.open(path, flags: O_RDONLY)
        defer { try? System.close(fd, path: path) }
        let fileSize = try System.fileSize(fd, path: path)
        guard fileSize <= Int64(RecordFormat.headerSize) else { return false }
        if fileSize == Int64(RecordFormat.headerSize),
            case .success = try SegmentReader.decodeHeader(fd: fd, path: path, fileSize: fileSize)
        {
            return false
        }
        try System.unlink(path)
        try System.fsyncDirectory(directory)
        logger.warning(
            "WAL segment with an unfinished header removed (the process died while creating it); it held no records",
            metadata: ["segment": "\(path)", "bytes": "\(fileSize)"]
        )
        return true
    }

    private func readHeader(fd: Int32, path: String, fileSize: Int64) throws(WALError) -> RecordFormat.SegmentHeader {
        switch try SegmentReader.decodeHeader(fd: fd, path: path, fileSize: fileSize) {
        case .success(let header): return header
        case .failure(let problem): throw .badSegmentHeader(segment: path, reason: problem.reason)
        }
    }

    /// Rule 5: keeps the torn bytes in `<segment>.broken`, then cuts them off and fsyncs.
    private func truncateTornTail(
        fd: Int32,
        path: String,
        offset: Int64,
        fileSize: Int64,
        lsn: UInt64,
        reason: String
    ) throws(WALError) -> WALTruncatedTail {
        let brokenPath = path + ".broken"
        var torn = [UInt8](repeating: 0, count: Int(fileSize - offset))
        _ = try System.pread(fd, into: &torn, count: torn.count, offset: offset, path: path)
        try System.writeFile(brokenPath, torn)
        try System.ftruncate(fd, length: offset, path: path)
        try System.fsync(fd, path: path)
        try System.fsyncDirectory(directory)
        logger.warning(
            "WAL torn write at the end of the newest segment truncated (the process died mid-write; nothing of it was acknowledged)",
            metadata: [
                "segment": "\(path)", "offset": "\(offset)", "bytes": "\(fileSize - offset)", "lsn": "\(lsn)",
                "reason": "\(reason)", "saved_to": "\(brokenPath)",
            ]
        )
        return WALTruncatedTail(segment: path, offset: offset, bytes: fileSize - offset)
    }

    /// Logs replay speed about once a second so that a long recovery is visibly alive.
    private struct Progress {
        let started: ContinuousClock.Instant
        var lastReport: ContinuousClock.Instant
        var records = 0
        var recordsAtLastReport = 0

        init(started: ContinuousClock.Instant) {
            self.started = started
            self.lastReport = started
        }

        @inline(__always)
        mutating func recordReplayed(logger: Logger, segment: String) {
            records &+= 1
            guard records & 0x3FFF == 0 else { return }
            let now = ContinuousClock.now
            let elapsed = now - lastReport
            guard elapsed >= .seconds(1) else { return }
            let rate = Double(records - recordsAtLastReport) / elapsed.seconds
            logger.info(
                "WAL recovery in progress",
                metadata: ["records": "\(records)", "records_per_second": "\(Int(rate))", "segment": "\(segment)"]
            )
            lastReport = now
            recordsAtLastReport = records
        }

        func secondsSinceStart() -> Double {
            (ContinuousClock.now - started).seconds
        }
    }
}

extension Duration {
    fileprivate var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

func hexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}
