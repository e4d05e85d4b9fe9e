import Glibc
import Testing

@testable import ErdtreeWAL

/// `erdtree wal dump` and `wal verify`'s reading, on real logs: what a healthy log reads as, and
/// that each kind of damage is named by file, offset and LSN without the files being touched.
@Suite struct WALInspectorTests {
    /// A closed log in `temp.wal` of several segments: sets 0..<12, a delete of key-3, an epoch
    /// marker for epoch 2 (LSN 14), then sets 12..<16 (LSNs 15...18).
    private func writeLog(_ temp: TemporaryDirectory) async throws {
        let log = try openLog(temp.wal, maxFileSizeBytes: 256).log
        try await log.appendTestRecords(0..<12)
        _ = try await log.appendAndWait(op: .delete, key: testRecord(3).key, value: []).get()
        let marker = WALRecord.epochMarker(2, timestampMs: 1_700_000_000_000)
        #expect(try await log.appendAndWait(op: .epoch, key: [], value: marker.value).get() == 14)
        try await log.appendTestRecords(12..<16)
        log.close()
    }

    /// Every event of a scan that goes on past problems.
    private func events(_ path: String) -> (events: [WALInspector.Event], summary: WALInspector.Summary) {
        var events: [WALInspector.Event] = []
        let summary = WALInspector(path: path).scan {
            events.append($0)
            return true
        }
        return (events, summary)
    }

    private func problem(_ path: String) throws -> WALInspector.Problem {
        guard case .failure(let problem) = WALInspector(path: path).verify() else {
            Issue.record("verify passed a damaged log")
            throw CancellationError()
        }
        return problem
    }

    @Test func aHealthyLogReadsInLSNOrderAcrossSegments() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeLog(temp)
        let paths = segmentPaths(temp.wal)
        #expect(paths.count > 2)

        let (events, summary) = events(temp.wal)
        var headers: [String] = []
        var records: [WALRecord] = []
        for event in events {
            switch event {
            case .segment(let header): headers.append(header.path)
            case .record(let record, _, _): records.append(record)
            case .problem(let problem): Issue.record("\(problem)")
            }
        }
        #expect(headers == paths)
        #expect(records.map(\.lsn) == Array(1...18))
        #expect(records[12].op == .delete && records[12].key == testRecord(3).key)
        #expect(records[13].markedEpoch == 2)
        let expected = WALInspector.Summary(
            files: paths.count, records: 18, firstLSN: 1, lastLSN: 18,
            epochStarts: [.init(epoch: 2, lsn: 14)])
        #expect(summary == expected)
        #expect(WALInspector(path: temp.wal).verify() == .success(expected))
    }

    @Test func aFlippedByteIsNamedByFileOffsetAndLSNAndNothingIsWritten() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeLog(temp)
        let path = segmentPaths(temp.wal)[1]
        let offsets = recordOffsets(path)
        let firstLSN = try #require(WALInspector.statedFirstLSN(fileName: String(path.split(separator: "/").last!)))
        incrementByte(path, at: offsets[1] + 20)
        let before = readFile(path)

        let found = try problem(temp.wal)
        #expect(found.path == path)
        #expect(found.offset == Int64(offsets[1]))
        #expect(found.afterLSN == firstLSN, "the record before it is the segment's first")
        #expect(found.lsn == nil, "a record whose checksum fails has no LSN to trust")
        #expect(found.reason.contains("checksum mismatch") && found.reason.contains("sealed"), "\(found.reason)")
        #expect(found.description.hasPrefix("\(path): offset \(offsets[1]) (after LSN \(firstLSN)): checksum"))
        #expect(readFile(path) == before)
    }

    @Test func aDumpGoesOnToTheNextSegmentAfterDamage() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeLog(temp)
        let paths = segmentPaths(temp.wal)
        incrementByte(paths[0], at: try #require(recordOffsets(paths[0]).last) + 8)

        let (events, summary) = events(temp.wal)
        #expect(summary.problems == 1, "the next segment's start is not held against a damaged one")
        #expect(summary.lastLSN == 18)
        #expect(events.contains { if case .segment(let header) = $0 { header.path == paths[1] } else { false } })
    }

    @Test func aTornTailOfTheNewestSegmentFailsAndIsLeftInPlace() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeLog(temp)
        let path = try #require(segmentPaths(temp.wal).last)
        let lastOffset = try #require(recordOffsets(path).last)
        shrinkSize(path, to: fileSize(path) - 3)
        let before = readFile(path)

        let found = try problem(temp.wal)
        #expect(found.path == path && found.offset == Int64(lastOffset) && found.afterLSN == 17)
        #expect(found.reason.contains("cut short") && found.reason.contains("torn write"), "\(found.reason)")
        #expect(readFile(path) == before && !fileExists(path + ".broken"), "verify never repairs")
    }

    @Test func aDamagedRecordFollowedByAValidOneIsNotATornWrite() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeLog(temp)
        let path = try #require(segmentPaths(temp.wal).last)
        let offsets = recordOffsets(path)
        try #require(offsets.count >= 2)
        incrementByte(path, at: offsets[0] + 30)
        #expect(try problem(temp.wal).reason.contains("a valid record follows at offset \(offsets[1])"))
    }

    @Test func aGapInsideASegmentIsReportedWithBothLSNs() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 5)
        let path = segmentPaths(temp.wal)[0]
        let offsets = recordOffsets(path)
        // LSN 4 becomes 9, under a valid checksum: the LSN check, not the CRC, must catch it.
        setByte(path, at: offsets[3] + RecordFormat.recordLSNOffset, to: 9)
        fixChecksum(path, recordAt: offsets[3], payloadLength: offsets[4] - offsets[3] - 8)

        let found = try problem(temp.wal)
        #expect(found.offset == Int64(offsets[3]) && found.lsn == 9 && found.afterLSN == 3)
        #expect(found.reason == "LSN 9 is where LSN 4 should be; LSNs must be consecutive")
        #expect(found.description.contains("offset \(offsets[3]) (LSN 9, after LSN 3): LSN 9 is where"))
    }

    @Test func aMissingSegmentIsAGapBetweenSegments() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeLog(temp)
        let paths = segmentPaths(temp.wal)
        unlink(paths[1])
        let found = try problem(temp.wal)
        #expect(found.path == paths[2] && found.offset == 0)
        #expect(found.reason.contains("but the previous segment ends at LSN"), "\(found.reason)")
    }

    @Test func aDamagedHeaderIsReportedAtOffsetZero() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeLog(temp)
        let path = segmentPaths(temp.wal)[0]
        incrementByte(path, at: RecordFormat.headerFirstLSNOffset)
        let found = try problem(temp.wal)
        #expect(found.path == path && found.offset == 0 && found.afterLSN == nil)
        #expect(found.reason.contains("header checksum mismatch"), "\(found.reason)")
    }

    @Test func compactedSegmentsMayHaveGapsButNotBeNewest() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal).log
        let snapshot = [3, 7, 90].map {
            WALRecord(lsn: UInt64($0), timestampMs: 0, op: .set, expiresAtMs: 0, key: Array("k\($0)".utf8), value: [1])
        }
        _ = try log.reset(replicationID: String(repeating: "0f", count: 16), snapshot: snapshot, through: 100)
        _ = try await log.appendAndWait(key: Array("after".utf8), value: [2]).get()
        log.close()

        let summary = try WALInspector(path: temp.wal).verify().get()
        #expect(summary.compactedFiles == 1 && summary.firstLSN == 3 && summary.lastLSN == 101)
        unlink(try #require(segmentPaths(temp.wal).last))
        #expect(try problem(temp.wal).reason.contains("the newest segment must be one the writer wrote"))
    }

    @Test func divergentFilesAreCheckedEachOnItsOwnAndOnlyWhenNamed() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 3)
        let divergent = temp.wal + "/divergent"
        mkdir(divergent, 0o755)
        // Two histories that overlap: each file stands on its own.
        writeFile(divergent + "/2-1001.log", segment(firstLSN: 1001, lsns: 1001...1003))
        writeFile(divergent + "/3-1002.log", segment(firstLSN: 1002, lsns: [1002]))

        let single = try WALInspector(path: divergent + "/2-1001.log").verify().get()
        #expect(single.files == 1 && single.firstLSN == 1001 && single.lastLSN == 1003)
        let both = try WALInspector(path: divergent).verify().get()
        #expect(both.files == 2 && both.records == 4)

        writeFile(divergent + "/4-7.log", segment(firstLSN: 8, lsns: [8]))
        #expect(try problem(divergent).reason == "the header says the first LSN is 8 but the name says 7")
        #expect(try WALInspector(path: temp.wal).verify().get().records == 3, "divergent/ is not part of the log")
    }

    @Test func verifyPassesWhileTheLogIsWritten() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal, maxFileSizeBytes: 4096).log
        defer { log.close() }
        let writer = Task {
            for round in 0..<20 { try await log.appendTestRecords((round * 50)..<(round * 50 + 50), valueBytes: 200) }
        }
        var checks = 0
        while checks < 200 {
            let result = WALInspector(path: temp.wal).verify()
            if case .failure(let problem) = result { Issue.record("\(problem)") }
            checks += 1
            if log.lastLSN == 1000 { break }
        }
        try await writer.value
        #expect(try WALInspector(path: temp.wal).verify().get().lastLSN == 1000)
    }

    @Test func divergentNamesStateTheirFirstLSN() {
        #expect(WALInspector.statedFirstLSN(fileName: "00000000000000000042.log") == 42)
        #expect(WALInspector.statedFirstLSN(fileName: "3-1001.log") == 1001)
        for name in ["3-1001.log.broken", "x-1.log", "3--1.log", "3-+1.log", "1001.log", "notes.txt"] {
            #expect(WALInspector.statedFirstLSN(fileName: name) == nil, "\(name)")
        }
    }

    /// A version 1 segment holding one set per LSN.
    private func segment(firstLSN: UInt64, lsns: some Sequence<UInt64>) -> [UInt8] {
        var bytes = RecordFormat.encodeHeader(.init(firstLSN: firstLSN, replicationID: Array(0..<16)))
        for lsn in lsns {
            RecordFormat.appendRecord(
                lsn: lsn, timestampMs: 0, op: .set, expiresAtMs: 0, key: Array("k\(lsn)".utf8), value: [1],
                to: &bytes)
        }
        return bytes
    }
}
