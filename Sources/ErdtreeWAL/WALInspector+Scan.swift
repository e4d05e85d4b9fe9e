import Glibc

extension WALInspector {
    /// Where a file stands in the scan; says which of recovery's rules apply to it.
    enum FileRole {
        /// A log's segment with a newer one after it: it was fsynced before that one existed.
        case sealed
        /// A log's newest segment: the one a running node appends to, where a torn write may be.
        case newest
        /// A file read on its own (`Layout.separateFiles`).
        case separate
    }

    /// One pass over the files: the checks, and the state they carry from record to record and
    /// from file to file.
    struct Scan {
        /// How long a record cut short at the end of a file that is still being written is waited
        /// for, at most, before it is reported: a write in flight takes microseconds.
        static let growthWaitMicroseconds: UInt32 = 10_000
        static let growthWaits = 3
        /// How many times a file may be found grown before a torn end is reported anyway: a node
        /// writing without pause always has one more record in flight.
        static let growthRereads = 100

        let visit: (Event) -> Bool
        /// `growthWaits`, or 0 where no writer can be running (the WAL fuzz harness, whose every
        /// torn tail would otherwise cost 30 ms).
        let waitsForGrowth: Int
        var summary = Summary()
        private(set) var stopped = false
        /// The LSN the next record must hold (or pass, in or after a compacted segment); nil after a
        /// file whose end could not be read, whose successor cannot be checked against it.
        private var nextLSN: UInt64?
        /// The last good LSN, for `Problem.afterLSN`.
        private var lastLSN: UInt64?
        private var previousCompacted = false
        private var sawWrittenSegment = false
        private var replicationID: [UInt8]?

        init(visit: @escaping (Event) -> Bool, waitsForGrowth: Int) {
            self.visit = visit
            self.waitsForGrowth = waitsForGrowth
        }

        /// Hands `problem` to the visitor.
        mutating func report(_ problem: Problem) {
            summary.problems += 1
            if !visit(.problem(problem)) { stopped = true }
        }

        private mutating func report(_ path: String, at offset: Int64?, lsn: UInt64? = nil, _ reason: String) {
            report(Problem(path: path, offset: offset, lsn: lsn, afterLSN: lastLSN, reason: reason))
        }

        mutating func read(_ files: [String], layout: Layout) {
            var isLog = false
            if case .log(let compactionPending) = layout {
                isLog = true
                summary.compactionPending = compactionPending
            }
            // Opened together, before any is read: see the type's comment on compaction.
            let opened = files.map { path in
                (path, Result { () throws(WALError) in try System.open(path, flags: O_RDONLY) })
            }
            defer {
                for case (let path, .success(let fd)) in opened { try? System.close(fd, path: path) }
            }
            for (position, (path, descriptor)) in opened.enumerated() where !stopped {
                let role: FileRole = !isLog ? .separate : position == files.count - 1 ? .newest : .sealed
                if role == .separate { self = Scan(visit: visit, carrying: summary, waitsForGrowth: waitsForGrowth) }
                summary.files += 1
                switch descriptor {
                case .success(let fd):
                    do throws(WALError) {
                        try readFile(fd: fd, path: path, role: role)
                    } catch {
                        report(path, at: nil, error.description)
                        nextLSN = nil
                    }
                case .failure(let error):
                    report(path, at: nil, error.description)
                    nextLSN = nil
                }
            }
        }

        /// A fresh scan state that keeps the summary so far: the next file stands on its own.
        private init(visit: @escaping (Event) -> Bool, carrying summary: Summary, waitsForGrowth: Int) {
            self.visit = visit
            self.summary = summary
            self.waitsForGrowth = waitsForGrowth
        }

        private mutating func readFile(fd: Int32, path: String, role: FileRole) throws(WALError) {
            var fileSize = try System.fileSize(fd, path: path)
            if fileSize < Int64(RecordFormat.headerSize), role != .sealed {
                // A node may be creating it (rotation): the header is written right after the create.
                fileSize = try Self.grownSize(fd: fd, path: path, beyond: fileSize, waits: waitsForGrowth) ?? fileSize
            }
            guard let header = try readHeader(fd: fd, path: path, fileSize: fileSize, role: role) else {
                nextLSN = nil
                return
            }
            if header.compacted { summary.compactedFiles += 1 }
            let shown = SegmentHeader(
                path: path, firstLSN: header.firstLSN, replicationID: hexString(header.replicationID),
                compacted: header.compacted, bytes: fileSize)
            guard visit(.segment(shown)) else {
                stopped = true
                return
            }
            checkPlace(of: header, path: path, role: role)
            guard !stopped else { return }
            nextLSN = header.firstLSN
            previousCompacted = header.compacted
            try readRecords(fd: fd, path: path, role: role, compacted: header.compacted, fileSize: fileSize)
        }

        /// The header, or nil after reporting what is wrong with it.
        private mutating func readHeader(fd: Int32, path: String, fileSize: Int64, role: FileRole) throws(WALError)
            -> RecordFormat.SegmentHeader?
        {
            switch try SegmentReader.decodeHeader(fd: fd, path: path, fileSize: fileSize) {
            case .success(let header):
                return header
            case .failure(let problem):
                // A torn rotation (WALRecovery's rule 4).
                let tornRotation = role == .newest && fileSize <= Int64(RecordFormat.headerSize)
                report(
                    path, at: 0,
                    problem.reason
                        + (tornRotation
                            ? "; the process died creating this newest segment, and the next start deletes it" : ""))
                return nil
            }
        }

        /// Checks the header against the file's name and, in a log, against the segments before it
        /// (recovery's step 1). Reports what does not fit; the records are read either way.
        private mutating func checkPlace(of header: RecordFormat.SegmentHeader, path: String, role: FileRole) {
            let name = String(path.split(separator: "/").last ?? Substring(path))
            if let stated = WALInspector.statedFirstLSN(fileName: name), stated != header.firstLSN {
                report(path, at: 0, "the header says the first LSN is \(header.firstLSN) but the name says \(stated)")
            }
            guard role != .separate else { return }
            if header.compacted, sawWrittenSegment || role == .newest {
                report(
                    path, at: 0,
                    role == .newest
                        ? "it is a compacted segment, but the newest segment must be one the writer wrote"
                        : "it is a compacted segment after segments the writer wrote")
            }
            if !header.compacted { sawWrittenSegment = true }
            if let replicationID, header.replicationID != replicationID {
                report(
                    path, at: 0,
                    "replication id \(hexString(header.replicationID)) differs from the first segment's "
                        + hexString(replicationID))
            }
            if replicationID == nil { replicationID = header.replicationID }
            if let nextLSN, header.firstLSN != nextLSN, !(previousCompacted && header.firstLSN > nextLSN) {
                report(
                    path, at: 0,
                    "it starts at LSN \(header.firstLSN) but the previous segment ends at LSN \(nextLSN - 1)")
            }
        }

        private mutating func readRecords(fd: Int32, path: String, role: FileRole, compacted: Bool, fileSize: Int64)
            throws(WALError)
        {
            var end = fileSize
            var rereads = 0
            var reader = SegmentReader(fd: fd, path: path, start: Int64(RecordFormat.headerSize), end: end)
            while !stopped, let event = try reader.next() {
                switch event {
                case .record(let record, let offset, let size):
                    if let expected = nextLSN, record.lsn != expected, !(compacted && record.lsn > expected) {
                        report(
                            path, at: offset, lsn: record.lsn,
                            compacted
                                ? "LSN \(record.lsn) follows LSN \(expected - 1); LSNs must increase"
                                : "LSN \(record.lsn) is where LSN \(expected) should be; LSNs must be consecutive")
                    }
                    count(record)
                    guard visit(.record(record, offset: offset, size: size)) else {
                        stopped = true
                        return
                    }
                case .tornTail(let offset):
                    if role != .sealed, rereads < Self.growthRereads,
                        let grown = try Self.grownSize(fd: fd, path: path, beyond: end, waits: waitsForGrowth)
                    {
                        // A write in flight: read on from the record it cut short.
                        rereads += 1
                        end = grown
                        reader = SegmentReader(fd: fd, path: path, start: offset, end: end)
                        continue
                    }
                    try reportDamage(
                        fd: fd, path: path, role: role, offset: offset, lsn: nil, end: end,
                        reason: "the record is cut short by the end of the file")
                case .corrupt(let offset, let lsn, let reason):
                    try reportDamage(fd: fd, path: path, role: role, offset: offset, lsn: lsn, end: end, reason: reason)
                }
            }
        }

        private mutating func count(_ record: WALRecord) {
            if summary.records == 0 { summary.firstLSN = record.lsn }
            summary.records += 1
            summary.lastLSN = record.lsn
            if let epoch = record.markedEpoch { summary.epochStarts.append(EpochStart(epoch: epoch, lsn: record.lsn)) }
            nextLSN = record.lsn + 1
            lastLSN = record.lsn
        }

        /// Reports a record that is not whole and valid, saying whether recovery would call it a
        /// torn write (steps 4 and 5), and ends the file: what follows cannot be found.
        private mutating func reportDamage(
            fd: Int32, path: String, role: FileRole, offset: Int64, lsn: UInt64?, end: Int64, reason: String
        ) throws(WALError) {
            let verdict: String
            if role == .sealed {
                verdict = ", in a sealed segment"
            } else if let later = try SegmentReader.firstValidRecord(fd: fd, path: path, from: offset + 1, end: end) {
                verdict = ", and a valid record follows at offset \(later), so it is not a torn write"
            } else if role == .newest {
                verdict =
                    "; nothing valid follows: a torn write, which the next start truncates (keeping the bytes "
                    + "in \(path).broken)"
            } else {
                verdict = "; nothing valid follows (a torn write)"
            }
            report(path, at: offset, lsn: lsn, reason + verdict)
            nextLSN = nil
        }

        /// The file's size once it has grown past `size`, waiting a little for a writer; nil if it
        /// did not grow.
        static func grownSize(fd: Int32, path: String, beyond size: Int64, waits: Int) throws(WALError) -> Int64? {
            for _ in 0..<waits {
                let now = try System.fileSize(fd, path: path)
                if now > size { return now }
                usleep(growthWaitMicroseconds)
            }
            let now = try System.fileSize(fd, path: path)
            return now > size ? now : nil
        }
    }
}
