import Testing

@testable import ErdtreeWAL

/// Issue 18's WAL property: for every mutation of a log the real writer wrote, recovery replays
/// exactly the records before the damaged one, then reports a torn tail (only at the end of the
/// newest segment) or corruption at the damaged record's offset and LSN.
///
/// Each test writes its own random log from a printed seed; `ERDTREE_TEST_SEED=<seed>` replays it.
@Suite struct WALRoundTripPropertyTests {
    /// Small segments, so that every mutation lands in sealed segments as well as the newest one.
    static let recordCount = 12
    static let maxFileSizeBytes: Int64 = 320

    /// A fresh random log, and the seed that made it.
    private func writtenLog() async throws -> (WrittenLog, seed: UInt64) {
        let seed = testSeed()
        var generator = SeededGenerator(seed: seed)
        let log = try await WrittenLog.write(
            count: Self.recordCount, maxFileSizeBytes: Self.maxFileSizeBytes, using: &generator)
        #expect(log.segments.count >= 2, "seed \(seed): the log should span several segments")
        return (log, seed)
    }

    @Test func everyTruncationReplaysThePrefixBeforeTheCut() async throws {
        let (log, seed) = try await writtenLog()
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        for (index, segment) in log.segments.enumerated() {
            for length in 0..<segment.bytes.count {
                var files = log.files
                files[index].bytes = Array(segment.bytes[..<length])
                expectRecovery(
                    of: files, in: temp.wal, log: log,
                    expected: log.expectedAfterDamage(inSegment: index, at: length, fileLength: length),
                    "seed \(seed): \(segment.name) cut to \(length) bytes")
            }
        }
    }

    @Test func everyByteFlipStopsAtTheDamagedRecord() async throws {
        let (log, seed) = try await writtenLog()
        var generator = SeededGenerator(seed: seed)
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        for (index, segment) in log.segments.enumerated() {
            for position in 0..<segment.bytes.count {
                let mask = UInt8.random(in: 1...255, using: &generator)
                var files = log.files
                files[index].bytes[position] ^= mask
                expectRecovery(
                    of: files, in: temp.wal, log: log,
                    expected: log.expectedAfterDamage(inSegment: index, at: position, fileLength: segment.bytes.count),
                    "seed \(seed): \(segment.name) byte \(position) xor \(mask)")
            }
        }
    }

    @Test func appendedGarbageIsATornTailOnlyInTheNewestSegment() async throws {
        let (log, seed) = try await writtenLog()
        var generator = SeededGenerator(seed: seed)
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        for (index, segment) in log.segments.enumerated() {
            // Short garbage is cut short by the end; zeros are a length no record has; long random
            // garbage usually claims a length past the end.
            let garbage: [[UInt8]] = [
                [0x00], Array(repeating: 0, count: 48),
                (0..<5).map { _ in UInt8.random(in: 0...255, using: &generator) },
                (0..<64).map { _ in UInt8.random(in: 0...255, using: &generator) },
            ]
            for tail in garbage {
                var files = log.files
                files[index].bytes += tail
                expectRecovery(
                    of: files, in: temp.wal, log: log,
                    expected: log.expectedAfterDamage(
                        inSegment: index, at: segment.bytes.count, fileLength: segment.bytes.count + tail.count),
                    "seed \(seed): \(tail.count) bytes of garbage after \(segment.name)")
            }
        }
    }

    @Test func aMissingSegmentIsABreakUnlessItIsAnEnd() async throws {
        let (log, seed) = try await writtenLog()
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let last = log.segments.count - 1
        for index in log.segments.indices {
            var files = log.files
            files.remove(at: index)
            let before = 0..<log.segments[index].firstRecord
            let expected: ExpectedRecovery
            switch index {
            case 0:
                // A log may start at any LSN: compaction and truncation delete the oldest segments.
                let rest = last == 0 ? 0..<0 : log.segments[1].firstRecord..<log.records.count
                expected = ExpectedRecovery(replayed: rest, outcome: .opened(tail: nil))
            case last:
                expected = ExpectedRecovery(replayed: before, outcome: .opened(tail: nil))
            default:
                expected = ExpectedRecovery(
                    replayed: before, outcome: .badSegmentHeader(segment: log.segments[index + 1].name))
            }
            expectRecovery(
                of: files, in: temp.wal, log: log, expected: expected,
                "seed \(seed): \(log.segments[index].name) deleted")
        }
    }

    private func expectRecovery(
        of files: [(name: String, bytes: [UInt8])],
        in directory: String,
        log: WrittenLog,
        expected: ExpectedRecovery,
        _ what: Comment,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let expected = expected.placed(in: directory)
        let result = recoverDirectory(directory, files: files)
        #expect(
            result.replayed == Array(log.records[expected.replayed]), "\(what): replayed",
            sourceLocation: sourceLocation)
        #expect(result.outcome == expected.outcome, what, sourceLocation: sourceLocation)
        if case .opened(let tail?) = expected.outcome,
            let file = files.first(where: { tail.segment.hasSuffix("/" + $0.name) })
        {
            // The torn bytes are kept for a post-mortem, unchanged.
            #expect(
                readFile(tail.segment + ".broken") == Array(file.bytes[Int(tail.offset)...]), "\(what): .broken",
                sourceLocation: sourceLocation)
        }
    }
}
