import FuzzSupport
import Glibc
import Logging

@testable import ErdtreeWAL

// The WAL's segment reader and recovery over a segment directory built from the input: either a
// log written with the writer's own encoders and then mutated as the input says, or the input
// itself as a segment. Recovery must open it or refuse with a precise error, never crash, hang or
// allocate by a length field; a log it opened must reopen to the same records with nothing left
// to repair. A single truncation or byte flip is checked against the exact expected outcome.

let scratch = ScratchDirectory(prefix: "erdtree-fuzz-wal")
let directory = scratch.path + "/wal"
let quiet = Logger(label: "fuzz.wal") { _ in SwiftLogNoOpLogHandler() }

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    _ = scratch.fresh("wal")
    let mode = input.takeByte()
    let plan: MutationPlan
    if mode & 0x80 != 0 {
        plan = rawSegment(&input, validHeader: mode & 0x40 != 0)
    } else {
        plan = mutatedLog(&input)
    }
    if mode & 0x01 != 0 {
        // Nothing writes here, so the inspector need not wait for a torn tail to grow.
        var inspector = WALInspector(path: directory)
        inspector.waitsForGrowth = 0
        _ = inspector.scan { _ in true }
    }
    checkRecovery(plan, writer: mode & 0x02 != 0)
    return 0
}

/// What was written, and when the mutation was simple enough to predict, what recovery must do.
struct MutationPlan {
    var written: [WALRecord] = []
    var expected: Expected?

    enum Expected {
        case replays(prefix: Int, tailOffset: Int64?)
        case refuses
    }
}

/// The input after a header byte, as the only segment; with a valid header first when asked.
func rawSegment(_ input: inout FuzzInput, validHeader: Bool) -> MutationPlan {
    var bytes: [UInt8] = []
    if validHeader {
        bytes = RecordFormat.encodeHeader(.init(firstLSN: 1, replicationID: Array(repeating: 7, count: 16)))
    }
    bytes += Array(input.takeRest())
    writeFile(directory + "/" + RecordFormat.segmentName(firstLSN: 1), bytes)
    return MutationPlan()
}

/// A log of up to 8 records in up to 3 segments, then mutations the input chooses.
func mutatedLog(_ input: inout FuzzInput) -> MutationPlan {
    let replicationID = (0..<16).map { UInt8($0) }
    let recordCount = Int(input.takeByte() % 9)
    let perSegment = Int(input.takeByte() % 4) + 1
    var written: [WALRecord] = []
    var segments: [(name: String, bytes: [UInt8], offsets: [Int])] = []
    for index in 0..<recordCount {
        if index % perSegment == 0 {
            let firstLSN = UInt64(index + 1)
            segments.append(
                (
                    RecordFormat.segmentName(firstLSN: firstLSN),
                    RecordFormat.encodeHeader(.init(firstLSN: firstLSN, replicationID: replicationID)), []
                ))
        }
        let op: WALOp = [.set, .delete, .epoch][Int(input.takeByte() % 3)]
        let key = op == .epoch ? [] : Array(input.take(Int(input.takeByte() % 8)))
        var value = Array(input.take(op == .epoch ? 8 : Int(input.takeByte() % 16)))
        if op == .epoch { value += repeatElement(0, count: 8 - value.count) }
        let record = WALRecord(
            lsn: UInt64(index + 1), timestampMs: 1_700_000_000_000 + Int64(index), op: op, expiresAtMs: 0, key: key,
            value: value)
        written.append(record)
        let last = segments.count - 1
        segments[last].offsets.append(segments[last].bytes.count)
        RecordFormat.appendRecord(
            lsn: record.lsn, timestampMs: record.timestampMs, op: op, expiresAtMs: 0, key: key, value: value,
            to: &segments[last].bytes)
    }
    if segments.isEmpty {
        segments.append(
            (
                RecordFormat.segmentName(firstLSN: 1),
                RecordFormat.encodeHeader(.init(firstLSN: 1, replicationID: replicationID)), []
            ))
    }
    var plan = MutationPlan(written: written)
    let mutations = input.takeByte()
    if mutations & 0x80 != 0, segments.count == 1 {
        plan.expected = predictSingle(&input, segment: &segments[0], kind: mutations & 1, written: written)
    } else {
        for _ in 0..<(mutations % 6) where !input.bytes.isEmpty {
            mutate(&input, &segments)
        }
    }
    for segment in segments {
        writeFile(directory + "/" + segment.name, segment.bytes)
    }
    if plan.expected == nil, input.takeByte() & 1 == 1 {
        // The rest of the input as the body of a compaction commit record, which recovery reads
        // first; mostly with its checksum line, so that the body's parser and the finishing of the
        // compaction are reached.
        let body = Array(input.takeRest())
        let crc = body.withUnsafeBytes { CRC32C.checksum($0) }
        let crcLine = body.last == 0x21 ? [] : Array("crc32c \(RecordFormat.hex(crc))\n".utf8)
        writeFile(directory + "/" + WALCompaction.commitName, body + crcLine)
    }
    return plan
}

/// One cut (kind 0) or one flipped byte (kind 1) in a lone segment, and what recovery must do.
func predictSingle(
    _ input: inout FuzzInput, segment: inout (name: String, bytes: [UInt8], offsets: [Int]), kind: UInt8,
    written: [WALRecord]
) -> MutationPlan.Expected? {
    let length = segment.bytes.count
    let position = Int(input.takeUInt16()) % length
    let ends = Array(segment.offsets.dropFirst()) + [length]
    let damaged = segment.offsets.isEmpty ? 0 : ends.firstIndex { $0 > position } ?? segment.offsets.count
    if kind == 0 {
        segment.bytes.removeLast(length - position)
        guard position >= RecordFormat.headerSize else { return .replays(prefix: 0, tailOffset: nil) }
        let start = damaged < segment.offsets.count ? segment.offsets[damaged] : length
        return .replays(prefix: damaged, tailOffset: start == position ? nil : Int64(start))
    }
    segment.bytes[position] ^= max(1, input.takeByte())
    guard position >= RecordFormat.headerSize else {
        // A lone header-only segment with a bad header is a torn rotation: a fresh log replaces it.
        return length == RecordFormat.headerSize ? .replays(prefix: 0, tailOffset: nil) : .refuses
    }
    guard damaged == segment.offsets.count - 1 else { return .refuses }
    return .replays(prefix: damaged, tailOffset: Int64(segment.offsets[damaged]))
}

/// One mutation of the segment list, chosen by the input.
func mutate(_ input: inout FuzzInput, _ segments: inout [(name: String, bytes: [UInt8], offsets: [Int])]) {
    guard !segments.isEmpty else { return }
    let which = Int(input.takeByte()) % segments.count
    switch input.takeByte() % 7 {
    case 0:
        let position = Int(input.takeUInt16()) % max(1, segments[which].bytes.count)
        if position < segments[which].bytes.count { segments[which].bytes[position] = input.takeByte() }
    case 1:
        let length = Int(input.takeUInt16()) % (segments[which].bytes.count + 1)
        segments[which].bytes.removeLast(segments[which].bytes.count - length)
    case 2:
        segments[which].bytes += input.take(Int(input.takeByte()))
    case 3:
        segments.remove(at: which)
    case 4:
        // A copy under another segment name: its header then disagrees with its name.
        var copy = segments[which]
        copy.name = RecordFormat.segmentName(firstLSN: UInt64(input.takeByte()) + 1)
        segments.append(copy)
    case 5:
        // Left as a compaction's output: recovery renames it or deletes it.
        segments[which].name += WALCompaction.partSuffix
    default:
        // A record length field rewritten to a value from the input (a huge one must not allocate).
        let position =
            segments[which].offsets.isEmpty
            ? RecordFormat.headerSize : segments[which].offsets[Int(input.takeByte()) % segments[which].offsets.count]
        let value = input.takeUInt32()
        if position + 8 <= segments[which].bytes.count {
            for index in 0..<4 {
                segments[which].bytes[position + 4 + index] = UInt8(truncatingIfNeeded: value >> (8 * index))
            }
        }
    }
}

/// Recovers the log and returns its report. With `writer`, opens it as a node does (recovery,
/// then the writer thread), appends a record and closes it; without, runs recovery alone, which
/// is what the input can reach and is many times faster (no thread to start and join).
func recover(writer: Bool, _ replay: (WALRecord) -> Void) throws(WALError) -> WALRecoveryReport {
    guard writer else {
        let recovered = try WALRecovery(directory: directory, logger: quiet).run { record, _ in replay(record) }
        close(recovered.activeFD)
        return recovered.report
    }
    let configuration = WALConfiguration(
        directory: directory, syncPolicy: .interval(.seconds(3600)), maxFileSizeBytes: 4096)
    let (log, report) = try WriteAheadLog.open(configuration, logger: quiet) { record, _ in replay(record) }
    log.append(op: .set, key: [1], value: [2], expiresAtMs: 0, timestampMs: 0) { _ in }
    log.close()
    return report
}

func checkRecovery(_ plan: MutationPlan, writer: Bool) {
    var replayed: [WALRecord] = []
    let report: WALRecoveryReport
    do throws(WALError) {
        report = try recover(writer: false) { replayed.append($0) }
    } catch {
        switch error {
        case .corruptRecord, .badSegmentHeader, .badCompactionRecord: break
        default: fatalError("recovery failed with an error that is not about the log's contents: \(error)")
        }
        if case .replays = plan.expected { fatalError("recovery refused a log it must repair: \(error)") }
        return
    }
    if let expected = plan.expected {
        guard case .replays(let prefix, let tailOffset) = expected else {
            fatalError("recovery opened a log whose damage it must refuse")
        }
        fuzzCheck(replayed == Array(plan.written.prefix(prefix)), "replayed \(replayed.count), expected \(prefix)")
        fuzzCheck(report.truncatedTail?.offset == tailOffset, "tail \(String(describing: report.truncatedTail))")
    }
    // Whatever recovery repaired stays repaired: a second open replays the same and cuts nothing.
    var again: [WALRecord] = []
    do throws(WALError) {
        let second = try recover(writer: writer) { again.append($0) }
        fuzzCheck(again == replayed, "a reopen replayed \(again.count) records, not \(replayed.count)")
        fuzzCheck(second.truncatedTail == nil, "a reopen found a torn tail again")
    } catch {
        fatalError("a log recovery opened does not reopen: \(error)")
    }
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "open \(path): errno \(errno)")
    defer { close(fd) }
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    precondition(written == bytes.count, "short write to \(path)")
}

extension FuzzInput {
    mutating func takeUInt16() -> UInt16 { UInt16(takeByte()) | UInt16(takeByte()) << 8 }
    mutating func takeUInt32() -> UInt32 { UInt32(takeUInt16()) | UInt32(takeUInt16()) << 16 }
}

runFuzzer(fuzzOne)
