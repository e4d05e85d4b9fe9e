import ErdtreeSync
import Glibc
import Testing

@testable import ErdtreeWAL

/// What a slave's log needs beyond a master's: appends at given LSNs, taking the master's
/// history id while empty, and being replaced by a snapshot (full resync).
@Suite struct WALReplicaTests {
    @Test func appendsAtGivenLSNsMustContinueTheLog() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal).log
        defer { log.close() }
        #expect(try await append(log, lsn: 1).get() == 1)
        #expect(try await append(log, lsn: 2).get() == 2)
        let skipped = await append(log, lsn: 5)
        #expect(throws: WALError.lsnMismatch(expected: 3, got: 5)) { try skipped.get() }
        let repeated = await append(log, lsn: 2)
        #expect(throws: WALError.lsnMismatch(expected: 3, got: 2)) { try repeated.get() }
        #expect(log.lastLSN == 2, "a refused append writes nothing")
        #expect(try await append(log, lsn: 3).get() == 3)
    }

    @Test func anEmptyLogTakesAnotherHistorysIDAndKeepsIt() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let master = String(repeating: "ab", count: 16)
        var log = try openLog(temp.wal).log
        try log.adoptReplicationID(master)
        #expect(log.replicationID == master)
        #expect(throws: WALError.self) { try log.adoptReplicationID("not hex") }
        _ = try await append(log, lsn: 1).get()
        #expect(throws: WALError.self) { try log.adoptReplicationID(String(repeating: "cd", count: 16)) }
        log.close()
        log = try openLog(temp.wal).log
        defer { log.close() }
        #expect(log.replicationID == master, "the adopted id is in the segment header")
    }

    @Test func resetReplacesTheLogWithASnapshotThatSurvivesARestart() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        var log = try openLog(temp.wal, maxFileSizeBytes: 2048).log
        for index in 0..<50 { _ = try await log.appendAndWait(key: testRecord(index).key, value: [1]).get() }
        let history = String(repeating: "0f", count: 16)
        let snapshot = [3, 7, 90].map { lsn in
            WALRecord(
                lsn: UInt64(lsn), timestampMs: 0, op: .set, expiresAtMs: 0, key: Array("k\(lsn)".utf8),
                value: Array("v\(lsn)".utf8))
        }
        let locations = try log.reset(replicationID: history, snapshot: snapshot, through: 100)
        for (record, location) in zip(snapshot, locations) { #expect(try log.read(at: location) == record) }
        #expect(log.lastLSN == 100)
        #expect(log.replicationID == history)
        #expect(log.oldestStreamableLSN == 101)
        #expect(try await append(log, lsn: 101).get() == 101)
        log.close()

        let reopened = try openLog(temp.wal, maxFileSizeBytes: 2048)
        log = reopened.log
        defer { log.close() }
        #expect(reopened.replayed.map(\.lsn) == [3, 7, 90, 101])
        #expect(log.replicationID == history)
        #expect(throws: WALError.self) {
            _ = try log.reset(replicationID: history, snapshot: Array(snapshot.reversed()), through: 100)
        }
    }

    @Test func aReplicatedBatchIsWrittenAndAppliedOnTheCallersThread() throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal).log
        defer { log.close() }
        let records = (1...3).map { lsn in
            WALRecord(lsn: UInt64(lsn), timestampMs: 0, op: .set, expiresAtMs: 0, key: [UInt8(lsn)], value: [9])
        }
        var seen: [(Int, WALLocation)] = []
        try log.append(replicated: records) { index, location in
            // Applied before the log counts the record completed.
            #expect(log.completedLSN < records[index].lsn)
            seen.append((index, location))
        }
        #expect(seen.map(\.0) == [0, 1, 2])
        #expect(log.lastLSN == 3)
        #expect(log.completedLSN == 3)
        for (index, location) in seen { #expect(try log.read(at: location) == records[index]) }

        // A batch that does not continue the log writes nothing and applies no record.
        var applied = 0
        let gap = [WALRecord(lsn: 9, timestampMs: 0, op: .set, expiresAtMs: 0, key: [1], value: [])]
        #expect(throws: WALError.lsnMismatch(expected: 4, got: 9)) {
            try log.append(replicated: gap) { _, _ in applied += 1 }
        }
        #expect(applied == 0)
        #expect(log.lastLSN == 3)
    }

    @Test func aReplicatedBatchUnderAlwaysBecomesDurableWithoutTheCallerWaiting() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal, syncPolicy: .always).log
        defer { log.close() }
        let durable = Locked<[UInt64]>([])
        log.onDurable { lsn in durable.withLock { $0.append(lsn) } }
        let records = (1...2).map { lsn in
            WALRecord(lsn: UInt64(lsn), timestampMs: 0, op: .set, expiresAtMs: 0, key: [UInt8(lsn)], value: [9])
        }
        try log.append(replicated: records) { _, _ in }
        // The writer thread fsyncs it; wait (bounded) for the durable LSN to reach the batch.
        let deadline = ContinuousClock.now + .seconds(5)
        while log.durableLSN < 2, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
        #expect(log.durableLSN == 2)
        #expect(durable.withLock { $0.last } == 2)
    }

    @Test func aReplicatedBatchAfterCloseIsRefused() throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal).log
        log.close()
        let record = WALRecord(lsn: 1, timestampMs: 0, op: .set, expiresAtMs: 0, key: [1], value: [2])
        #expect(throws: WALError.closed) { try log.append(replicated: [record]) { _, _ in } }
    }

    private func append(_ log: WriteAheadLog, lsn: UInt64) async -> Result<UInt64, WALError> {
        await withCheckedContinuation { continuation in
            log.append(op: .set, key: [1], value: [2], expiresAtMs: 0, timestampMs: 0, lsn: lsn) {
                continuation.resume(returning: $0.map(\.lsn))
            }
        }
    }
}
