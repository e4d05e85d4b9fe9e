import ErdtreeSync
import Glibc
import Testing

@testable import ErdtreeWAL

/// Appends committed by their caller (`append(byCaller:)` + `commitQueued()`, a master's event
/// loop under an interval policy) and replicated batches: written on the calling thread, yet
/// fsynced by the writer thread within the interval.
@Suite struct WALCallerCommitTests {
    @Test func theFirstAppendClaimsTheCommitAndItsCallerRunsTheCompletions() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        // A long interval, and the writer thread given time to fall asleep after a first write:
        // otherwise it may take the queued records itself (as it may in production: they ride
        // along with whoever commits first), and this test is about the caller's commit.
        let log = try openLog(temp.wal, syncPolicy: .interval(.seconds(3600))).log
        defer { log.close() }
        _ = try await log.appendAndWait(key: [0], value: [0]).get()
        try await Task.sleep(for: .milliseconds(100))
        #expect(log.callersCommit, "an interval policy lets callers commit")
        let caller = pthread_self()
        let completed = Locked<[(UInt64, Bool)]>([])
        func append(_ key: UInt8) -> Bool {
            log.append(op: .set, key: [key], value: [1], expiresAtMs: 0, timestampMs: 0, byCaller: true) { result in
                let lsn = (try? result.get().lsn) ?? 0
                completed.withLock { $0.append((lsn, pthread_equal(pthread_self(), caller) != 0)) }
            }
        }
        #expect(append(1), "the first append since a commit must see to it")
        #expect(!append(2), "later ones ride along")
        #expect(completed.withLock { $0.isEmpty }, "nothing is written before the caller commits")
        log.commitQueued()
        #expect(completed.withLock { $0.map(\.0) } == [2, 3])
        #expect(completed.withLock { $0.allSatisfy(\.1) }, "completions run on the committing thread")
        #expect(log.completedLSN == 3)
        #expect(append(3), "after a commit the next append claims the next one")
        log.commitQueued()
        #expect(log.lastLSN == 4)
    }

    @Test func closingWritesWhatCallersLeftQueued() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        var log = try openLog(temp.wal).log
        let result = Locked<Result<WALAppended, WALError>?>(nil)
        log.append(op: .set, key: [7], value: [8], expiresAtMs: 0, timestampMs: 0, byCaller: true) { outcome in
            result.withLock { $0 = outcome }
        }
        log.close()
        #expect(try result.withLock { $0 }?.get().lsn == 1)
        log = try openLog(temp.wal).log
        defer { log.close() }
        #expect(log.lastLSN == 1)
    }

    @Test func callerCommitsAreFsyncedWithinTheInterval() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal, syncPolicy: .interval(.milliseconds(50))).log
        defer { log.close() }
        // Let the writer thread fall asleep with nothing to sync (no deadline).
        try await Task.sleep(for: .milliseconds(100))
        log.append(op: .set, key: [1], value: [1], expiresAtMs: 0, timestampMs: 0, byCaller: true) { _ in }
        log.commitQueued()
        #expect(await durable(log, reaches: 1))
    }

    @Test func replicatedBatchesAreFsyncedWithinTheInterval() async throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal, syncPolicy: .interval(.milliseconds(50))).log
        defer { log.close() }
        try await Task.sleep(for: .milliseconds(100))
        let record = WALRecord(lsn: 1, timestampMs: 0, op: .set, expiresAtMs: 0, key: [1], value: [2])
        try log.append(replicated: [record]) { _, _ in }
        #expect(await durable(log, reaches: 1))
    }

    @Test func underAlwaysCallersLeaveTheCommitToTheWriterThread() throws {
        let temp = TemporaryDirectory()
        defer { temp.remove() }
        let log = try openLog(temp.wal, syncPolicy: .always).log
        defer { log.close() }
        #expect(!log.callersCommit)
    }

    /// Waits (at most 5 s) for the log's durable LSN to reach `lsn`.
    private func durable(_ log: WriteAheadLog, reaches lsn: UInt64) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(5)
        while log.durableLSN < lsn, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        return log.durableLSN >= lsn
    }
}
