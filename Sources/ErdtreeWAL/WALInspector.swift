import Glibc

/// Reads a log without changing it: what `erdtree wal dump` prints and `erdtree wal verify`
/// checks (etcd's etcd-dump-logs, Redis's redis-check-aof).
///
/// `path` is a log directory or one segment file:
/// - In a directory, the files named like segments (`<first LSN, 20 digits>.log`) are one log,
///   read in LSN order under recovery's rules (docs/wal-format.md, "Recovery"; `WALRecovery`):
///   every header and record CRC, LSNs consecutive within and across written segments, increasing
///   in compacted ones, compacted segments only as a prefix, one replication id. Other files and
///   subdirectories (`divergent/`) are passed over, as recovery passes over them.
/// - A directory with no segment-named file but other `*.log` files (`divergent/`, whose files
///   are `<epoch>-<first LSN>.log`), and a single file, are read file by file: each is checked on
///   its own (header, CRCs, LSNs from its header's first LSN on), since two divergent histories
///   need not continue each other.
///
/// It only reads (`O_RDONLY`, `pread`), so it can run beside a node writing the directory. Every
/// file is opened as soon as the directory is listed, so a compaction that deletes one later does
/// not take it away mid-read; a record cut short at the end of the newest file is given a moment
/// to be finished (`WALInspector+Scan.swift`) before it is reported as a torn write.
public struct WALInspector: Sendable {
    /// A segment's header, as read.
    public struct SegmentHeader: Sendable, Equatable {
        public var path: String
        public var firstLSN: UInt64
        /// 32 lowercase hex digits.
        public var replicationID: String
        /// Written by compaction (header version 2): LSNs increase with gaps.
        public var compacted: Bool
        /// The file's size when it was opened.
        public var bytes: Int64
    }

    /// The first LSN of an epoch, from an epoch marker.
    public struct EpochStart: Sendable, Equatable {
        public var epoch: UInt64
        public var lsn: UInt64
    }

    /// Something wrong with the log, and where: the file, the byte offset in it (nil when the
    /// problem is not at one place, such as a file that cannot be opened) and the LSNs around it.
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var path: String
        public var offset: Int64?
        /// The LSN the record at `offset` holds, when its checksum matched.
        public var lsn: UInt64?
        /// The last good LSN read before `offset`, in this file or the ones before it.
        public var afterLSN: UInt64?
        public var reason: String

        /// `<path>: offset <n> (LSN <l>, after LSN <a>): <reason>`; the parts not known are left out.
        public var description: String {
            var text = path + ": "
            if let offset {
                text += "offset \(offset)"
                let lsns = [lsn.map { "LSN \($0)" }, afterLSN.map { "after LSN \($0)" }].compactMap { $0 }
                if !lsns.isEmpty { text += " (" + lsns.joined(separator: ", ") + ")" }
                text += ": "
            }
            return text + reason
        }
    }

    /// What a scan found, in the order it is in the files.
    public enum Event: Sendable {
        /// A file's header was read; its records follow.
        case segment(SegmentHeader)
        case record(WALRecord, offset: Int64, size: Int)
        case problem(Problem)
    }

    /// What a scan read.
    public struct Summary: Sendable, Equatable {
        public var files = 0
        public var compactedFiles = 0
        public var records = 0
        /// The first and last record's LSN in the order read; 0 when there is no record.
        public var firstLSN: UInt64 = 0
        public var lastLSN: UInt64 = 0
        public var epochStarts: [EpochStart] = []
        public var problems = 0
        /// `compaction.commit` is in the directory: a compaction is running, or was interrupted
        /// and the next start finishes it (docs/wal-format.md, "Compaction").
        public var compactionPending = false
    }

    /// How the files of a scan relate.
    enum Layout {
        /// A log directory's segments: one history, checked across files. `compactionPending`:
        /// the directory holds `compaction.commit`.
        case log(compactionPending: Bool)
        /// Files checked each on its own.
        case separateFiles
    }

    public let path: String
    /// How many times a torn end is re-read for a writer to finish it (`Scan.growthWaits`).
    var waitsForGrowth = Scan.growthWaits

    public init(path: String) {
        self.path = path
    }

    /// Reads every file and record, calling `visit` for each header, record and problem in order.
    ///
    /// After a problem the scan goes on where it can: past an LSN that does not follow, to the
    /// next file after a damaged record or header (a damaged length says nothing about where the
    /// next record starts). `visit` returns false to stop at once.
    ///
    /// - Returns: what was read, up to where it stopped.
    @discardableResult
    public func scan(_ visit: (Event) -> Bool) -> Summary {
        withoutActuallyEscaping(visit) { visit in
            var scan = Scan(visit: visit, waitsForGrowth: waitsForGrowth)
            switch listFiles() {
            case .failure(let problem):
                scan.report(problem)
            case .success(let (files, layout)):
                scan.read(files, layout: layout)
            }
            return scan.summary
        }
    }

    /// Checks the whole log; stops at the first problem.
    ///
    /// - Returns: the summary of a log with no problem, or the first problem.
    public func verify() -> Result<Summary, Problem> {
        var first: Problem?
        let summary = scan { event in
            guard case .problem(let problem) = event else { return true }
            first = problem
            return false
        }
        if let first { return .failure(first) }
        return .success(summary)
    }

    /// The files to read, in order, and how they relate.
    private func listFiles() -> Result<([String], Layout), Problem> {
        guard System.isDirectory(path) else { return .success(([path], .separateFiles)) }
        let names: [String]
        do {
            names = try System.listDirectory(path)
        } catch {
            return .failure(Problem(path: path, reason: error.description))
        }
        let segments = names.compactMap { name in RecordFormat.firstLSN(segmentName: name).map { ($0, name) } }
        if !segments.isEmpty {
            let ordered = segments.sorted { $0.0 < $1.0 }.map { System.join(path, $0.1) }
            return .success((ordered, .log(compactionPending: names.contains(WALCompaction.commitName))))
        }
        let others = names.filter {
            $0.hasSuffix(RecordFormat.segmentSuffix) && !System.isDirectory(System.join(path, $0))
        }
        guard !others.isEmpty else {
            return .failure(Problem(path: path, reason: "no *\(RecordFormat.segmentSuffix) file in the directory"))
        }
        let ordered = others.map { (Self.statedFirstLSN(fileName: $0) ?? .max, $0) }.sorted { $0 < $1 }
        return .success((ordered.map { System.join(path, $0.1) }, .separateFiles))
    }

    /// The first LSN a file's name states: a segment's `<20 digits>.log`, or a divergent file's
    /// `<epoch>-<first LSN>.log`; nil for any other name.
    static func statedFirstLSN(fileName: String) -> UInt64? {
        if let lsn = RecordFormat.firstLSN(segmentName: fileName) { return lsn }
        guard fileName.hasSuffix(RecordFormat.segmentSuffix) else { return nil }
        let stem = fileName.dropLast(RecordFormat.segmentSuffix.count)
        let parts = stem.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { (0x30...0x39).contains($0) } })
        else { return nil }
        return UInt64(parts[1])
    }
}
