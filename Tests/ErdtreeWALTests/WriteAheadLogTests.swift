import ErdtreeSync
import Glibc
import Synchronization
import Testing

@testable import ErdtreeWAL

/// The log through its public API, on real files: appends, restarts, rotation, reads, concurrency,
/// durability and failed writes.
@Suite struct WriteAheadLogTests {
    @Test func emptyDirectoryStartsAFreshLogAtLSNOne() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let opened = try openLog(temp.wal)
        defer { opened.log.close() }
        #expect(opened.replayed.isEmpty)
        #expect(opened.report.records == 0)
        #expect(opened.report.lastLSN == 0)
        #expect(opened.report.truncatedTail == nil)
        #expect(opened.log.lastLSN == 0)
        #expect(opened.log.replicationID.count == 32)
        #expect(opened.log.replicationID.allSatisfy { "0123456789abcdef".contains($0) })
        #expect(segmentNames(temp.wal) == ["00000000000000000001.log"])
        #expect(try await opened.log.appendAndWait(key: [1], value: [2]).get() == 1)
    }

    @Test func appendedRecordsAreReplayedAfterReopenAndLSNsContinue() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let first = try openLog(temp.wal)
        var expected: [WALRecord] = []
        for index in 0..<100 {
            let (key, value) = testRecord(index)
            let op: WALOp = index % 5 == 4 ? .delete : .set
            let value2 = op == .delete ? [] : value
            let lsn = try await first.log.appendAndWait(
                op: op,
                key: key,
                value: value2,
                expiresAtMs: Int64(index) * 1000,
                timestampMs: 1_700_000_000_000 + Int64(index)
            ).get()
            #expect(lsn == UInt64(index + 1))
            expected.append(
                WALRecord(
                    lsn: lsn,
                    timestampMs: 1_700_000_000_000 + Int64(index),
                    op: op,
                    expiresAtMs: Int64(index) * 1000,
                    key: key,
                    value: value2
                )
            )
        }
        let replicationID = first.log.replicationID
        first.log.close()

        let second = try openLog(temp.wal)
        #expect(second.replayed == expected)
        #expect(second.report.records == 100)
        #expect(second.report.lastLSN == 100)
        #expect(second.report.segments == 1)
        #expect(second.log.lastLSN == 100)
        #expect(second.log.replicationID == replicationID)
        #expect(try await second.log.appendTestRecords(100..<103) == [101, 102, 103])
        second.log.close()

        let third = try openLog(temp.wal)
        defer { third.log.close() }
        #expect(third.replayed.map(\.lsn) == Array(1...103))
        #expect(third.log.replicationID == replicationID)
    }

    @Test func smallSegmentsRotateAndKeepLSNsContinuousAcrossRestarts() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let maxSize: Int64 = 4096
        let recordSize = RecordFormat.recordSize(keyCount: 7, valueCount: 60)
        let first = try openLog(temp.wal, maxFileSizeBytes: maxSize)
        try await first.log.appendTestRecords(100..<400, valueBytes: 60)
        first.log.close()

        let paths = segmentPaths(temp.wal)
        #expect(paths.count >= 5)
        var nextLSN: UInt64 = 1
        for path in paths {
            let name = String(path.split(separator: "/").last ?? "")
            // Each segment is named after the LSN of its first record.
            #expect(name == RecordFormat.segmentName(firstLSN: nextLSN))
            let size = fileSize(path)
            #expect(size <= Int(maxSize) + recordSize, "\(name) is \(size) bytes")
            nextLSN += UInt64(recordOffsets(path).count)
        }
        #expect(nextLSN == 301)

        let second = try openLog(temp.wal, maxFileSizeBytes: maxSize)
        #expect(second.replayed.map(\.lsn) == Array(1...300))
        #expect(second.replayed.map(\.key) == (100..<400).map { testRecord($0).key })
        #expect(second.report.segments == paths.count)
        try await second.log.appendTestRecords(400..<500, valueBytes: 60)
        second.log.close()

        let third = try openLog(temp.wal, maxFileSizeBytes: maxSize)
        defer { third.log.close() }
        #expect(third.replayed.map(\.lsn) == Array(1...400))
        #expect(segmentPaths(temp.wal).count > paths.count)
    }

    @Test func entriesReadAcrossSegmentsWithLimitAndSince() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let opened = try openLog(temp.wal, maxFileSizeBytes: 4096)
        defer { opened.log.close() }
        try await opened.log.appendTestRecords(0..<250, valueBytes: 50)
        #expect(segmentNames(temp.wal).count > 3)

        let all = try opened.log.entries(since: 0, limit: 10_000)
        #expect(all.records.map(\.lsn) == Array(1...250))
        #expect(all.records.map(\.key) == (0..<250).map { testRecord($0).key })
        #expect(all.records.map(\.value) == (0..<250).map { testRecord($0, valueBytes: 50).value })
        #expect(!all.resyncRequired)
        #expect(all.lastLSN == 250)

        let page = try opened.log.entries(since: 57, limit: 100)
        #expect(page.records.map(\.lsn) == Array(58...157))

        // A page that starts just before a segment boundary and ends after it.
        let boundary = RecordFormat.firstLSN(segmentName: segmentNames(temp.wal)[2]) ?? 0
        let across = try opened.log.entries(since: boundary - 3, limit: 5)
        #expect(across.records.map(\.lsn) == Array((boundary - 2)...(boundary + 2)))

        #expect(try opened.log.entries(since: 250, limit: 10).records.isEmpty)
        #expect(try opened.log.entries(since: 250, limit: 10).lastLSN == 250)
        #expect(try opened.log.entries(since: 249, limit: 10).records.map(\.lsn) == [250])
        #expect(try opened.log.entries(since: 0, limit: 0).records.isEmpty)
        #expect(try opened.log.entries(since: 1000, limit: 10).records.isEmpty)
    }

    @Test func entriesUseTheSparseIndexInLargeSegments() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let opened = try openLog(temp.wal, maxFileSizeBytes: 64 << 20)
        try await opened.log.appendTestRecords(0..<3000, valueBytes: 200)
        for since: UInt64 in [0, 1, 999, 1500, 2998, 2999] {
            let page = try opened.log.entries(since: since, limit: 3)
            #expect(page.records.map(\.lsn) == Array((since + 1)...min(3000, since + 3)), "since \(since)")
        }
        opened.log.close()
        // Recovery rebuilds the same index.
        let reopened = try openLog(temp.wal, maxFileSizeBytes: 64 << 20)
        defer { reopened.log.close() }
        #expect(try reopened.log.entries(since: 2500, limit: 2).records.map(\.lsn) == [2501, 2502])
    }

    @Test func eightThreadsAppendingAtOnceGetUniqueConsecutiveLSNs() throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let opened = try openLog(temp.wal, maxFileSizeBytes: 256 << 10)
        let log = opened.log
        let completions = CompletionLog()
        let keysByLSN = Locked<[UInt64: [UInt8]]>([:])
        let badReads = Locked(0)
        runOnThreads(8) { thread in
            for index in 0..<1000 {
                let key = Array("t\(thread)-\(index)".utf8)
                log.append(op: .set, key: key, value: [UInt8(thread)], expiresAtMs: 0, timestampMs: 0) { result in
                    completions.record(result.map(\.lsn))
                    if case .success(let appended) = result { keysByLSN.withLock { $0[appended.lsn] = key } }
                }
            }
            // Readers run alongside the writer and see only whole records.
            if thread % 2 == 0 {
                let page = try? log.entries(since: 0, limit: 100_000)
                let whole = page.map { $0.records.map(\.lsn) == Array(1..<UInt64($0.records.count + 1)) } ?? false
                if !whole { badReads.withLock { $0 += 1 } }
            }
        }
        #expect(badReads.withLock { $0 } == 0, "a concurrent read failed or returned a gap")
        log.close()  // completes everything still queued

        let results = completions.all
        #expect(results.count == 8000)
        let lsns = results.compactMap { try? $0.get() }
        #expect(lsns.count == 8000)
        #expect(Set(lsns) == Set(1...8000))
        #expect(lsns == lsns.sorted(), "completions run in LSN order")

        let reopened = try openLog(temp.wal, maxFileSizeBytes: 256 << 10)
        defer { reopened.log.close() }
        #expect(reopened.replayed.count == 8000)
        let keys = keysByLSN.withLock { $0 }
        for record in reopened.replayed where keys[record.lsn] != record.key {
            Issue.record("LSN \(record.lsn) holds \(record.key) on disk but was acknowledged for another key")
        }
    }

    @Test func alwaysPolicyCompletesOnlyAfterFsync() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let opened = try openLog(temp.wal, syncPolicy: .always)
        let log = opened.log
        let durableAtCompletion = Locked<[UInt64]>([])
        let lsns = try await withThrowingTaskGroup(of: UInt64.self) { group in
            for index in 0..<50 {
                group.addTask {
                    let (key, value) = testRecord(index)
                    return try await withCheckedThrowingContinuation { continuation in
                        log.append(op: .set, key: key, value: value, expiresAtMs: 0, timestampMs: 0) { result in
                            durableAtCompletion.withLock { $0.append(log.durableLSN) }
                            continuation.resume(with: result.map(\.lsn))
                        }
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(Set(lsns) == Set(1...50))
        // Completions run in LSN order, each after the fsync that covered its batch.
        let durable = durableAtCompletion.withLock { $0 }
        for (lsn, seen) in zip(lsns.sorted(), durable) {
            #expect(seen >= lsn, "LSN \(lsn) completed when only \(seen) was durable")
        }
        #expect(log.durableLSN == 50)
        // The bytes are in the file before close.
        #expect(recordOffsets(segmentPaths(temp.wal)[0]).count == 50)
        log.close()
        let reopened = try openLog(temp.wal, syncPolicy: .always)
        defer { reopened.log.close() }
        #expect(reopened.replayed.map(\.lsn) == Array(1...50))
    }

    @Test func intervalPolicySyncsAnIdleLog() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let opened = try openLog(temp.wal, syncPolicy: .interval(.milliseconds(50)))
        defer { opened.log.close() }
        try await opened.log.appendTestRecords(0..<3)
        #expect(opened.log.lastLSN == 3)
        let deadline = ContinuousClock.now + .seconds(5)
        while opened.log.durableLSN < 3, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(opened.log.durableLSN == 3)
    }

    @Test(.enabled(if: FailpointBuild.isEnabled, FailpointBuild.skipReason))
    func failedWriteIsRolledBackAndItsLSNIsReused() async throws {
        #if ERDTREE_FAILPOINTS
            let temp = TemporaryDirectory()
            defer { temp.remove() }
            let opened = try openLog(temp.wal)
            let log = opened.log
            try await log.appendTestRecords(0..<5, valueBytes: 100)
            let path = segmentPaths(temp.wal)[0]
            let sizeBefore = fileSize(path)

            log.failNextWrite(errno: ENOSPC)
            let failed = await log.appendAndWait(key: Array("lost".utf8), value: [UInt8](repeating: 1, count: 100))
            #expect(failed == .failure(.io(call: "write", path: path, errno: ENOSPC)))
            if case .failure(let error) = failed {
                #expect(error.description.hasPrefix("write(\(path)) failed: No space left on device"))
            }
            // Half the batch reached the file before the failure; none of it is left.
            #expect(fileSize(path) == sizeBefore)
            #expect(log.lastLSN == 5)

            #expect(try await log.appendAndWait(key: Array("kept".utf8), value: [2]).get() == 6)
            let read = try log.entries(since: 4, limit: 10).records
            #expect(read.map(\.lsn) == [5, 6])
            #expect(read.last?.key == Array("kept".utf8))
            log.close()

            let reopened = try openLog(temp.wal)
            defer { reopened.log.close() }
            #expect(reopened.replayed.map(\.lsn) == Array(1...6))
            #expect(reopened.replayed.last?.key == Array("kept".utf8))
            #expect(reopened.report.truncatedTail == nil)
        #endif
    }

    @Test func closeCompletesQueuedAppendsAndLaterAppendsFailAsClosed() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let opened = try openLog(temp.wal)
        let completions = CompletionLog()
        for index in 0..<200 {
            let (key, value) = testRecord(index)
            opened.log.append(op: .set, key: key, value: value, expiresAtMs: 0, timestampMs: 0) {
                completions.record($0.map(\.lsn))
            }
        }
        opened.log.close()
        #expect(completions.all.compactMap { try? $0.get() } == Array(1...200))
        opened.log.close()  // idempotent
        #expect(await opened.log.appendAndWait(key: [1], value: []) == .failure(.closed))

        let reopened = try openLog(temp.wal)
        defer { reopened.log.close() }
        #expect(reopened.replayed.count == 200)
    }

    @Test func errorsReadAsSentencesNamingWhere() {
        let corrupt = WALError.corruptRecord(
            segment: "/data/wal/00000000000000000001.log",
            offset: 4096,
            lsn: 57,
            reason: "checksum mismatch"
        )
        #expect(
            corrupt.description
                == "WAL segment /data/wal/00000000000000000001.log is corrupt at offset 4096 (LSN 57): checksum mismatch."
        )
        #expect(
            WALError.io(call: "fsync", path: "/data/wal", errno: EIO).description
                == "fsync(/data/wal) failed: Input/output error (errno 5)."
        )
        #expect(WALError.closed.description == "The write-ahead log is closed.")
    }
}
