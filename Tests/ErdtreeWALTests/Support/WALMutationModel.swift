import Glibc

@testable import ErdtreeWAL

/// A small generator with a seed a failing test can print and a rerun can reuse (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

/// The seed of a randomized test: `ERDTREE_TEST_SEED` when set (to replay a failure), else a fresh one.
func testSeed() -> UInt64 {
    if let text = getenv("ERDTREE_TEST_SEED").map({ String(cString: $0) }), let seed = UInt64(text) {
        return seed
    }
    return UInt64.random(in: 0...UInt64.max)
}

/// A closed log as the real writer left it: its segments' bytes, and where each record sits.
struct WrittenLog {
    struct Segment {
        var name: String
        var bytes: [UInt8]
        /// Start offset and size of each record, in order.
        var records: [(offset: Int, size: Int)]
        /// Index in `WrittenLog.records` of this segment's first record.
        var firstRecord: Int
    }

    var records: [WALRecord]
    var segments: [Segment]

    /// Appends `count` random records (random op, key, value and expiry) through the writer,
    /// rotating segments at `maxFileSizeBytes`, and reads the result back.
    static func write<G: RandomNumberGenerator>(
        count: Int, maxFileSizeBytes: Int64, using generator: inout G
    ) async throws -> WrittenLog {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let opened = try openLog(temp.wal, maxFileSizeBytes: maxFileSizeBytes)
        var records: [WALRecord] = []
        for _ in 0..<count {
            let op: WALOp = Bool.random(using: &generator) ? .set : .delete
            let key = (0..<Int.random(in: 1...12, using: &generator)).map { _ in
                UInt8.random(in: 0...255, using: &generator)
            }
            let value =
                op == .delete
                ? []
                : (0..<Int.random(in: 0...40, using: &generator)).map { _ in
                    UInt8.random(in: 0...255, using: &generator)
                }
            let expiresAtMs = Bool.random(using: &generator) ? 0 : Int64.random(in: 1...Int64.max, using: &generator)
            let timestampMs = Int64.random(in: 0...Int64.max, using: &generator)
            let lsn = try await opened.log.appendAndWait(
                op: op, key: key, value: value, expiresAtMs: expiresAtMs, timestampMs: timestampMs
            ).get()
            records.append(
                WALRecord(lsn: lsn, timestampMs: timestampMs, op: op, expiresAtMs: expiresAtMs, key: key, value: value))
        }
        opened.log.close()

        var segments: [Segment] = []
        var firstRecord = 0
        for name in segmentNames(temp.wal) {
            let path = temp.wal + "/" + name
            let bytes = readFile(path)
            let offsets = recordOffsets(path)
            let spans = offsets.enumerated().map { index, offset in
                (offset: offset, size: (index + 1 < offsets.count ? offsets[index + 1] : bytes.count) - offset)
            }
            segments.append(Segment(name: name, bytes: bytes, records: spans, firstRecord: firstRecord))
            firstRecord += spans.count
        }
        return WrittenLog(records: records, segments: segments)
    }
}

extension WrittenLog {
    /// Every segment file, oldest first, as the writer left it.
    var files: [(name: String, bytes: [UInt8])] { segments.map { ($0.name, $0.bytes) } }

    /// What recovery must do when segment `index` is damaged from byte `position` on (a flipped
    /// byte, a cut, or garbage appended there) and is now `fileLength` bytes long. Segment names
    /// stand for paths: see `ExpectedRecovery.placed(in:)`.
    func expectedAfterDamage(inSegment index: Int, at position: Int, fileLength: Int) -> ExpectedRecovery {
        let segment = segments[index]
        let isNewest = index == segments.count - 1
        let before = { (count: Int) in 0..<(segment.firstRecord + count) }
        guard position >= RecordFormat.headerSize else {
            // Rule 4: a newest segment no longer than a header with no valid one was being created.
            let tornRotation = isNewest && fileLength <= RecordFormat.headerSize
            return ExpectedRecovery(
                replayed: before(0),
                outcome: tornRotation ? .opened(tail: nil) : .badSegmentHeader(segment: segment.name))
        }
        let damaged = segment.records.firstIndex { $0.offset + $0.size > position } ?? segment.records.count
        let offset = damaged < segment.records.count ? segment.records[damaged].offset : segment.bytes.count
        if fileLength == position, offset == position {
            // A cut at a record boundary: nothing is damaged, but a sealed segment now ends early.
            return ExpectedRecovery(
                replayed: before(damaged),
                outcome: isNewest ? .opened(tail: nil) : .badSegmentHeader(segment: segments[index + 1].name))
        }
        let laterRecordSurvives = segment.records.dropFirst(damaged + 1).contains { $0.offset + $0.size <= fileLength }
        if isNewest, !laterRecordSurvives {
            let tail = WALTruncatedTail(
                segment: segment.name, offset: Int64(offset), bytes: Int64(fileLength - offset))
            return ExpectedRecovery(replayed: before(damaged), outcome: .opened(tail: tail))
        }
        let firstLSN = RecordFormat.firstLSN(segmentName: segment.name) ?? 0
        return ExpectedRecovery(
            replayed: before(damaged),
            outcome: .corruptRecord(segment: segment.name, offset: Int64(offset), lsn: firstLSN + UInt64(damaged)))
    }
}

/// How opening a damaged log ended.
enum RecoveryOutcome: Equatable {
    /// The log opened, after cutting off this torn tail, if any.
    case opened(tail: WALTruncatedTail?)
    case corruptRecord(segment: String, offset: Int64, lsn: UInt64?)
    case badSegmentHeader(segment: String)
}

/// What recovery must do with a damaged log: replay these of the records written, in order, then end so.
struct ExpectedRecovery: Equatable {
    var replayed: Range<Int>
    var outcome: RecoveryOutcome
}

extension ExpectedRecovery {
    /// The expectation with each segment name replaced by its path in `directory`.
    func placed(in directory: String) -> ExpectedRecovery {
        let path = { (name: String) in directory + "/" + name }
        switch outcome {
        case .opened(let tail?):
            var placed = tail
            placed.segment = path(tail.segment)
            return ExpectedRecovery(replayed: replayed, outcome: .opened(tail: placed))
        case .opened(nil):
            return self
        case .corruptRecord(let segment, let offset, let lsn):
            return ExpectedRecovery(
                replayed: replayed, outcome: .corruptRecord(segment: path(segment), offset: offset, lsn: lsn))
        case .badSegmentHeader(let segment):
            return ExpectedRecovery(replayed: replayed, outcome: .badSegmentHeader(segment: path(segment)))
        }
    }
}

/// Writes `files` (name → bytes) as the only contents of `directory`, opens the log there, and
/// reports what it replayed and how it ended. The log is closed again.
func recoverDirectory(_ directory: String, files: [(name: String, bytes: [UInt8])]) -> (
    replayed: [WALRecord], outcome: RecoveryOutcome
) {
    emptyDirectory(directory)
    for file in files { writeFile(directory + "/" + file.name, file.bytes) }
    var replayed: [WALRecord] = []
    let configuration = WALConfiguration(
        directory: directory, syncPolicy: .interval(.seconds(1)), maxFileSizeBytes: 1 << 20)
    do throws(WALError) {
        let (log, report) = try WriteAheadLog.open(configuration, logger: quietLogger) { record, _ in
            replayed.append(record)
        }
        log.close()
        return (replayed, .opened(tail: report.truncatedTail))
    } catch .corruptRecord(let segment, let offset, let lsn, _) {
        return (replayed, .corruptRecord(segment: segment, offset: offset, lsn: lsn))
    } catch .badSegmentHeader(let segment, _) {
        return (replayed, .badSegmentHeader(segment: segment))
    } catch {
        preconditionFailure("recovery of \(directory) failed with \(error)")
    }
}

/// Makes `directory` (and its parent) exist and hold nothing, without a `rm -rf` child process:
/// the property tests recover thousands of logs, and a fork each would be most of their time.
private func emptyDirectory(_ directory: String) {
    if let slash = directory.lastIndex(of: "/") { mkdir(String(directory[..<slash]), 0o755) }
    mkdir(directory, 0o755)
    guard let handle = opendir(directory) else { preconditionFailure("opendir \(directory): errno \(errno)") }
    defer { closedir(handle) }
    while let entry = readdir(handle) {
        let name = withUnsafePointer(to: &entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        if name != ".", name != ".." { unlink(directory + "/" + name) }
    }
}
