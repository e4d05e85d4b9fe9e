import Glibc
import Testing

@testable import ErdtreeWAL

/// Compaction on real segment files: what it keeps, where it puts it, what recovery makes of
/// every state an interrupted compaction can leave (real kill -9 runs are in
/// tests/interop/test_compaction.py).
@Suite struct WALCompactionTests {
    /// Ten keys overwritten `rounds` times each, round-robin; returns each key's latest LSN.
    private func overwrite(_ log: WriteAheadLog, rounds: Int) async throws -> [[UInt8]: UInt64] {
        var latest: [[UInt8]: UInt64] = [:]
        for round in 0..<rounds {
            for key in 0..<10 {
                let name = Array("key-\(key)".utf8)
                let value = Array("value-\(key)-\(round)-".utf8) + [UInt8](repeating: 0x61, count: 40)
                latest[name] = try await log.appendAndWait(key: name, value: value).get()
            }
        }
        return latest
    }

    /// Compacts every sealed segment, keeping each key's latest record.
    private func compactAll(
        _ log: WriteAheadLog, latest: [[UInt8]: UInt64]
    ) throws -> (WALCompactionResult?, [WALRecord], [WALLocation]) {
        var moved: [WALRecord] = []
        var locations: [WALLocation] = []
        let result = try log.compact(
            segments: log.segments.count - 1,
            isLive: { latest[$0.key] == $0.lsn },
            moved: {
                moved.append($0)
                locations.append($1)
            })
        return (result, moved, locations)
    }

    @Test func keepsOnlyLiveRecordsMovesThemAndSurvivesARestart() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let opened = try openLog(temp.wal, maxFileSizeBytes: 2048)
        let log = opened.log
        let cold = try await log.appendAndLocate(key: Array("cold".utf8), value: [7]).get()
        var latest = try await overwrite(log, rounds: 30)
        latest[Array("cold".utf8)] = cold.lsn
        let before = log.diskUsage
        let activeFirstLSN = try #require(log.segments.last?.firstLSN)

        let (compacted, moved, locations) = try compactAll(log, latest: latest)
        let result = try #require(compacted)
        #expect(result.lastLSN == activeFirstLSN - 1)
        #expect(result.recordsIn == Int(activeFirstLSN - 1))
        #expect(moved.first?.key == Array("cold".utf8))
        let liveInRange = latest.values.filter { $0 < activeFirstLSN }.count
        #expect(result.recordsKept == liveInRange)
        #expect(moved.count == liveInRange)
        #expect(log.diskUsage.bytes < before.bytes / 2, "\(log.diskUsage) vs \(before)")
        #expect(log.segments.first?.compacted == true)
        #expect(log.oldestStreamableLSN == activeFirstLSN)
        // The cold record's old segment is gone: its old location says so.
        #expect(throws: WALError.segmentGone(cold.location.segment)) { try log.read(at: cold.location) }
        #expect(log.readIfCached(at: cold.location) == nil)

        // Each moved record reads back from its new location with one positioned read.
        for (record, location) in zip(moved, locations) {
            #expect(try log.read(at: location) == record)
            // Just written, so in the page cache: the read that never waits finds it too.
            #expect(log.readIfCached(at: location) == record)
        }
        // Positions compaction dropped need a snapshot; later ones still stream.
        #expect(try log.entries(since: 0, limit: 10).resyncRequired)
        let tail = try log.entries(since: activeFirstLSN - 1, limit: 1000)
        #expect(!tail.resyncRequired)
        #expect(tail.records.first?.lsn == activeFirstLSN)
        #expect(!fileExists(temp.wal + "/" + WALCompaction.commitName))
        log.close()

        // A restart replays the compacted records, then the rest, and keeps the streamable floor.
        let reopened = try openLog(temp.wal, maxFileSizeBytes: 2048)
        defer { reopened.log.close() }
        #expect(Array(reopened.replayed.prefix(moved.count)) == moved)
        #expect(reopened.replayed.dropFirst(moved.count).first?.lsn == activeFirstLSN)
        #expect(reopened.log.oldestStreamableLSN == activeFirstLSN)
        #expect(reopened.log.lastLSN == 301)
        var state: [[UInt8]: UInt64] = [:]
        for record in reopened.replayed { state[record.key] = record.lsn }
        #expect(state == latest)
        // And it keeps writing after the compacted prefix.
        #expect(try await reopened.log.appendAndWait(key: [1], value: [2]).get() == 302)
    }

    @Test func compactingAgainFoldsTheEarlierOutputIn() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal, maxFileSizeBytes: 2048).log
        defer { log.close() }
        var latest = try await overwrite(log, rounds: 20)
        _ = try #require(try compactAll(log, latest: latest).0)
        latest = try await overwrite(log, rounds: 20)
        let second = try #require(try compactAll(log, latest: latest).0)
        #expect(second.firstLSN == log.segments.first?.firstLSN)
        #expect(log.segments.filter(\.compacted).count == 1)
        #expect(log.oldestStreamableLSN == second.lastLSN + 1)
    }

    @Test func nothingLiveRemovesTheRangeAndTheFirstSegmentStartsLater() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal, maxFileSizeBytes: 2048).log
        _ = try await overwrite(log, rounds: 10)
        let result = try #require(
            try log.compact(segments: log.segments.count - 1, isLive: { _ in false }, moved: { _, _ in }))
        #expect(result.segmentsOut == 0)
        #expect(log.segments.count == 1)
        log.close()
        let reopened = try openLog(temp.wal, maxFileSizeBytes: 2048)
        defer { reopened.log.close() }
        #expect(reopened.replayed.first?.lsn == result.lastLSN + 1)
        #expect(reopened.log.oldestStreamableLSN == result.lastLSN + 1)
        #expect(reopened.log.lastLSN == 100)
    }

    @Test func theActiveSegmentIsNeverCompacted() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal).log
        defer { log.close() }
        _ = try await overwrite(log, rounds: 2)
        #expect(try log.compact(segments: 1, isLive: { _ in false }, moved: { _, _ in }) == nil)
        #expect(try log.compact(segments: 0, isLive: { _ in false }, moved: { _, _ in }) == nil)
        #expect(log.lastLSN == 20)
        #expect(try log.entries(since: 0, limit: 100).records.count == 20)
    }

    /// Every state a crash between the commit point and the end can leave, rebuilt from the files
    /// before and after one real compaction: recovery finishes it and the log reads the same.
    @Test(arguments: ["committed", "old-segment-deleted", "old-segments-deleted", "part-renamed"])
    func recoveryFinishesACommittedCompaction(step: String) async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal, maxFileSizeBytes: 2048).log
        let latest = try await overwrite(log, rounds: 30)
        let oldNames = segmentNames(temp.wal)
        let oldFiles = oldNames.map { ($0, readFile(temp.wal + "/" + $0)) }
        let result = try #require(try compactAll(log, latest: latest).0)
        log.close()
        let expected = try openLog(temp.wal, maxFileSizeBytes: 2048)
        expected.log.close()
        let parts = segmentNames(temp.wal).filter { name in
            RecordFormat.firstLSN(segmentName: name).map { $0 <= result.lastLSN } ?? false
        }
        let partFiles = parts.map { ($0, readFile(temp.wal + "/" + $0)) }

        // Rebuild the crash state.
        for name in segmentNames(temp.wal) { unlink(temp.wal + "/" + name) }
        for (name, bytes) in oldFiles { writeFile(temp.wal + "/" + name, bytes) }
        let oldInRange = oldNames.filter { RecordFormat.firstLSN(segmentName: $0)! <= result.lastLSN }
        switch step {
        case "old-segment-deleted": unlink(temp.wal + "/" + oldInRange[0])
        case "old-segments-deleted", "part-renamed": for name in oldInRange { unlink(temp.wal + "/" + name) }
        default: break
        }
        for (index, (name, bytes)) in partFiles.enumerated() {
            let renamed = step == "part-renamed" && index == 0
            writeFile(temp.wal + "/" + name + (renamed ? "" : WALCompaction.partSuffix), bytes)
        }
        let record = WALCompaction.CommitRecord(firstLSN: result.firstLSN, lastLSN: result.lastLSN, parts: parts)
        writeFile(temp.wal + "/" + WALCompaction.commitName, record.encoded())

        let recovered = try openLog(temp.wal, maxFileSizeBytes: 2048)
        defer { recovered.log.close() }
        #expect(recovered.replayed == expected.replayed)
        #expect(recovered.log.oldestStreamableLSN == result.lastLSN + 1)
        #expect(!fileExists(temp.wal + "/" + WALCompaction.commitName))
        #expect(segmentNames(temp.wal) == parts + oldNames.filter { !oldInRange.contains($0) })
    }

    @Test func recoveryUndoesACompactionThatDidNotCommit() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal, maxFileSizeBytes: 2048).log
        _ = try await overwrite(log, rounds: 10)
        log.close()
        let before = try openLog(temp.wal, maxFileSizeBytes: 2048)
        before.log.close()
        // A half-written part and a commit record that never got its final name.
        writeFile(temp.wal + "/00000000000000000001.log" + WALCompaction.partSuffix, [1, 2, 3])
        writeFile(temp.wal + "/" + WALCompaction.commitTemporaryName, [4])

        let after = try openLog(temp.wal, maxFileSizeBytes: 2048)
        defer { after.log.close() }
        #expect(after.replayed == before.replayed)
        #expect(!fileExists(temp.wal + "/00000000000000000001.log" + WALCompaction.partSuffix))
        #expect(!fileExists(temp.wal + "/" + WALCompaction.commitTemporaryName))
        #expect(after.log.oldestStreamableLSN == 1)
    }

    @Test func aDamagedCommitRecordRefusesToStart() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal).log
        _ = try await overwrite(log, rounds: 1)
        log.close()
        var bytes = WALCompaction.CommitRecord(firstLSN: 1, lastLSN: 5, parts: ["00000000000000000001.log"]).encoded()
        bytes[bytes.count / 2] ^= 1
        writeFile(temp.wal + "/" + WALCompaction.commitName, bytes)
        #expect {
            _ = try openLog(temp.wal)
        } throws: { error in
            guard case .badCompactionRecord(let path, let reason) = error as? WALError else { return false }
            return path.hasSuffix(WALCompaction.commitName) && !reason.isEmpty
        }
    }

    @Test func commitRecordRoundTripsAndRejectsGarbage() throws {
        let record = WALCompaction.CommitRecord(
            firstLSN: 1, lastLSN: 977, parts: ["00000000000000000001.log", "00000000000000000500.log"])
        #expect(try WALCompaction.CommitRecord.decode(record.encoded()).get() == record)
        var cut = record.encoded()
        cut.removeLast(3)
        #expect((try? WALCompaction.CommitRecord.decode(cut).get()) == nil)
        #expect((try? WALCompaction.CommitRecord.decode(Array("hello\n".utf8)).get()) == nil)
    }

    @Test func aCompactedSegmentAfterAWrittenOneIsCorruption() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal, maxFileSizeBytes: 2048).log
        _ = try await overwrite(log, rounds: 10)
        log.close()
        let names = segmentNames(temp.wal)
        // Mark the second segment as compacted (header version 2, checksum fixed).
        let path = temp.wal + "/" + names[1]
        setUInt32(path, at: RecordFormat.headerVersionOffset, to: RecordFormat.compactedVersion)
        let header = Array(readFile(path)[0..<RecordFormat.headerCRCOffset])
        setUInt32(path, at: RecordFormat.headerCRCOffset, to: CRC32C.checksum(header))
        #expect {
            _ = try openLog(temp.wal, maxFileSizeBytes: 2048)
        } throws: { error in
            guard case .badSegmentHeader(let segment, let reason) = error as? WALError else { return false }
            return segment == path && reason.contains("compacted segment after segments the writer wrote")
        }
    }
}
