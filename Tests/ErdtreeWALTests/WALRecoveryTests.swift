import Glibc
import Testing

@testable import ErdtreeWAL

/// Recovery on damaged segment files (etcd's repair tests, LevelDB's log_test edges): what is a
/// torn write and is repaired, what is corruption and refuses to start. Every repair test ends by
/// writing again and reading everything back.
@Suite struct WALRecoveryTests {
    /// Appends one record after recovery, then checks a reopen replays LSNs 1...expectedLast.
    private func expectWritableAfterRepair(_ opened: OpenedLog, directory: String, expectedLast: UInt64) async throws {
        let lsn = try await opened.log.appendAndWait(key: Array("after-repair".utf8), value: [7]).get()
        #expect(lsn == expectedLast)
        opened.log.close()
        let reopened = try openLog(directory)
        defer { reopened.log.close() }
        #expect(reopened.replayed.map(\.lsn) == Array(1...expectedLast))
        #expect(reopened.replayed.last?.key == Array("after-repair".utf8))
        #expect(reopened.report.truncatedTail == nil)
    }

    private func expectCorruptRecord(
        _ directory: String,
        segment: String,
        offset: Int,
        lsn: UInt64,
        reasonContains: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do {
            let opened = try openLog(directory)
            opened.log.close()
            Issue.record("opened a corrupt log", sourceLocation: sourceLocation)
        } catch let error as WALError {
            guard case .corruptRecord(let badSegment, let badOffset, let badLSN, let reason) = error else {
                Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
                return
            }
            #expect(badSegment == segment, sourceLocation: sourceLocation)
            #expect(badOffset == Int64(offset), sourceLocation: sourceLocation)
            #expect(badLSN == lsn, sourceLocation: sourceLocation)
            #expect(reason.contains(reasonContains), "\(reason)", sourceLocation: sourceLocation)
            #expect(error.description.contains(segment), sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func tornTailAtEveryByteOfTheLastRecordIsTruncated() async throws {
        let source = TemporaryDirectory()
        defer { source.remove() }
        try await writeClosedLog(source, count: 5)
        let name = segmentNames(source.wal)[0]
        let original = readFile(source.wal + "/" + name)
        let lastOffset = try #require(recordOffsets(source.wal + "/" + name).last)

        for length in (lastOffset + 1)..<original.count {
            let temp = TemporaryDirectory()
            defer { temp.remove() }
            let path = temp.wal + "/" + name
            mkdir(temp.path + "/data", 0o755)
            mkdir(temp.wal, 0o755)
            writeFile(path, Array(original[..<length]))

            let opened = try openLog(temp.wal)
            #expect(opened.replayed.map(\.lsn) == [1, 2, 3, 4], "cut at \(length)")
            #expect(
                opened.report.truncatedTail
                    == WALTruncatedTail(segment: path, offset: Int64(lastOffset), bytes: Int64(length - lastOffset))
            )
            #expect(fileSize(path) == lastOffset)
            #expect(readFile(path + ".broken") == Array(original[lastOffset..<length]))
            try await expectWritableAfterRepair(opened, directory: temp.wal, expectedLast: 5)
        }
    }

    @Test func cutAtARecordBoundaryNeedsNoRepair() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 5)
        let path = segmentPaths(temp.wal)[0]
        shrinkSize(path, to: try #require(recordOffsets(path).last))
        let opened = try openLog(temp.wal)
        #expect(opened.replayed.count == 4)
        #expect(opened.report.truncatedTail == nil)
        try await expectWritableAfterRepair(opened, directory: temp.wal, expectedLast: 5)
    }

    @Test func checksumMismatchInTheLastRecordIsATornWrite() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 5)
        let path = segmentPaths(temp.wal)[0]
        let lastOffset = try #require(recordOffsets(path).last)
        incrementByte(path, at: fileSize(path) - 3)
        let opened = try openLog(temp.wal)
        #expect(opened.replayed.count == 4)
        #expect(opened.report.truncatedTail?.offset == Int64(lastOffset))
        try await expectWritableAfterRepair(opened, directory: temp.wal, expectedLast: 5)
    }

    @Test func badLengthAtEndIsATornWrite() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 5)
        let path = segmentPaths(temp.wal)[0]
        let lastOffset = try #require(recordOffsets(path).last)
        // A length past the end of the file: the writer died before the rest arrived.
        setUInt32(path, at: lastOffset + 4, to: 1000)
        var opened = try openLog(temp.wal)
        #expect(opened.replayed.count == 4)
        #expect(opened.report.truncatedTail?.offset == Int64(lastOffset))
        opened.log.close()

        // A length no record can have, at the end: the same.
        let last = try #require(recordOffsets(path).last)
        setUInt32(path, at: last + 4, to: 0xFFFF_FF00)
        opened = try openLog(temp.wal)
        #expect(opened.replayed.count == 3)
        #expect(opened.report.truncatedTail?.offset == Int64(last))
        try await expectWritableAfterRepair(opened, directory: temp.wal, expectedLast: 4)
    }

    @Test func badLengthInTheMiddleRefusesToStart() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 10)
        let path = segmentPaths(temp.wal)[0]
        let third = recordOffsets(path)[2]
        setUInt32(path, at: third + 4, to: 10)
        fixChecksum(path, recordAt: third, payloadLength: 10)
        expectCorruptRecord(temp.wal, segment: path, offset: third, lsn: 3, reasonContains: "length 10 is outside")
    }

    @Test func flippedByteMidActiveSegmentWithValidRecordAfterRefusesToStart() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 10)
        let path = segmentPaths(temp.wal)[0]
        let offsets = recordOffsets(path)
        incrementByte(path, at: offsets[4] + 20)
        expectCorruptRecord(
            temp.wal,
            segment: path,
            offset: offsets[4],
            lsn: 5,
            reasonContains: "and a valid record follows at offset \(offsets[5]), so it is not a torn write"
        )
        // Refusing changed nothing.
        #expect(!fileExists(path + ".broken"))
        #expect(recordOffsets(path).count == 10)
    }

    @Test func flippedByteInASealedSegmentRefusesToStart() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 200, valueBytes: 50, maxFileSizeBytes: 4096)
        let paths = segmentPaths(temp.wal)
        #expect(paths.count > 2)
        let sealed = paths[1]
        let firstLSN = try #require(RecordFormat.firstLSN(segmentName: String(sealed.split(separator: "/").last ?? "")))
        let offsets = recordOffsets(sealed)
        incrementByte(sealed, at: offsets[3] + 30)
        expectCorruptRecord(
            temp.wal,
            segment: sealed,
            offset: offsets[3],
            lsn: firstLSN + 3,
            reasonContains: "in a sealed segment"
        )
    }

    @Test func tornTailOfASealedSegmentRefusesToStart() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 200, valueBytes: 50, maxFileSizeBytes: 4096)
        let sealed = segmentPaths(temp.wal)[0]
        let last = try #require(recordOffsets(sealed).last)
        shrinkSize(sealed, to: last + 10)
        expectCorruptRecord(
            temp.wal, segment: sealed, offset: last, lsn: UInt64(recordOffsets(sealed).count + 1),
            reasonContains: "cut short")
    }

    @Test func partialHeaderInANewNewestSegmentIsRemoved() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 120, valueBytes: 50, maxFileSizeBytes: 4096)
        let before = segmentPaths(temp.wal)
        // The process died while creating the next segment: only part of its header is there.
        let torn = temp.wal + "/" + RecordFormat.segmentName(firstLSN: 121)
        let header = RecordFormat.encodeHeader(.init(firstLSN: 121, replicationID: [UInt8](repeating: 9, count: 16)))
        writeFile(torn, Array(header[..<17]))

        let opened = try openLog(temp.wal, maxFileSizeBytes: 4096)
        #expect(!fileExists(torn))
        #expect(segmentPaths(temp.wal) == before)
        #expect(opened.replayed.map(\.lsn) == Array(1...120))
        try await expectWritableAfterRepair(opened, directory: temp.wal, expectedLast: 121)
    }

    @Test func partialHeaderOfTheOnlySegmentStartsAFreshLog() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        mkdir(temp.path + "/data", 0o755)
        mkdir(temp.wal, 0o755)
        let path = temp.wal + "/" + RecordFormat.segmentName(firstLSN: 1)
        writeFile(path, Array("ERDTW".utf8))
        let opened = try openLog(temp.wal)
        #expect(opened.replayed.isEmpty)
        #expect(fileSize(path) == RecordFormat.headerSize)
        try await expectWritableAfterRepair(opened, directory: temp.wal, expectedLast: 1)
    }

    @Test func badHeaderRefusesToStart() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 100, valueBytes: 50, maxFileSizeBytes: 4096)
        let first = segmentPaths(temp.wal)[0]
        setByte(first, at: 2, to: 0x58)
        #expect(throws: WALError.badSegmentHeader(segment: first, reason: "the magic is not ERDTWAL1")) {
            _ = try openLog(temp.wal, maxFileSizeBytes: 4096)
        }
    }

    @Test func missingSegmentRefusesToStart() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 200, valueBytes: 50, maxFileSizeBytes: 4096)
        let paths = segmentPaths(temp.wal)
        unlink(paths[1])
        do {
            _ = try openLog(temp.wal, maxFileSizeBytes: 4096)
            Issue.record("opened a log with a missing segment")
        } catch let error as WALError {
            guard case .badSegmentHeader(let segment, let reason) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(segment == paths[2])
            #expect(reason.contains("but the previous segment ends at LSN"))
        }
    }

    @Test func segmentFromAnotherHistoryRefusesToStart() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 200, valueBytes: 50, maxFileSizeBytes: 4096)
        let paths = segmentPaths(temp.wal)
        var bytes = readFile(paths[1])
        let firstLSN = try #require(
            RecordFormat.firstLSN(segmentName: String(paths[1].split(separator: "/").last ?? "")))
        let header = RecordFormat.encodeHeader(
            .init(firstLSN: firstLSN, replicationID: [UInt8](repeating: 1, count: 16)))
        bytes.replaceSubrange(0..<header.count, with: header)
        writeFile(paths[1], bytes)
        do {
            _ = try openLog(temp.wal, maxFileSizeBytes: 4096)
            Issue.record("opened a log mixing two histories")
        } catch let error as WALError {
            guard case .badSegmentHeader(let segment, let reason) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(segment == paths[1])
            #expect(reason.contains("replication id 01010101010101010101010101010101 differs"))
        }
    }

    @Test func repeatedLSNRefusesToStart() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        try await writeClosedLog(temp, count: 5)
        let path = segmentPaths(temp.wal)[0]
        let offsets = recordOffsets(path)
        // Record 4 claims LSN 3, with a valid checksum.
        var bytes = readFile(path)
        bytes[offsets[3] + 8] = 3
        writeFile(path, bytes)
        fixChecksum(path, recordAt: offsets[3], payloadLength: offsets[4] - offsets[3] - 8)
        expectCorruptRecord(temp.wal, segment: path, offset: offsets[3], lsn: 3, reasonContains: "LSN 3 is where LSN 4")
    }
}
