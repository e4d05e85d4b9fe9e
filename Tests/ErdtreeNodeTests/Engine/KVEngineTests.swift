import ErdtreeRPC
import ErdtreeStorage
import ErdtreeWAL
import Foundation
import NIOCore
import Synchronization
import Testing

@testable import ErdtreeNode

/// The engine on its own, on a WAL in a temporary directory: the one apply's rules, recovery
/// through it, reads of evicted values (also across a compaction), and waiting for an LSN.
@Suite struct KVEngineTests {
    private static let nowhere = WALLocation(segment: 1, offset: 40, length: 50)

    private static func record(_ lsn: UInt64, _ op: WALOp, _ key: String, _ value: [UInt8] = [], expiresAtMs: Int64 = 0)
        -> WALRecord
    {
        WALRecord(lsn: lsn, timestampMs: 0, op: op, expiresAtMs: expiresAtMs, key: Array(key.utf8), value: value)
    }

    // MARK: The one apply

    @Test func anExpiredSetActsAsADelete() {
        let store = KeyValueStore()
        let now = WallClock.nowMs()
        KVEngine.apply(Self.record(1, .set, "k", [1]), at: Self.nowhere, to: store, epochs: EpochHistory(), nowMs: now)
        let changed = KVEngine.apply(
            Self.record(2, .set, "k", [2], expiresAtMs: now - 1), at: Self.nowhere, to: store, epochs: EpochHistory(),
            nowMs: now)
        #expect(changed, "the expired set removed the live key")
        #expect(store.get(StoreKey("k"), nowMs: now) == nil)
        #expect(store.count == 0, "an expired set is not held until the sweep")
        // On a key never seen it leaves nothing behind either.
        KVEngine.apply(
            Self.record(3, .set, "new", [3], expiresAtMs: now - 1), at: Self.nowhere, to: store, epochs: EpochHistory(),
            nowMs: now)
        #expect(store.count == 0)
    }

    @Test func lastWriterWinsByLSN() {
        let store = KeyValueStore()
        #expect(
            KVEngine.apply(
                Self.record(5, .set, "k", [5]), at: Self.nowhere, to: store, epochs: EpochHistory(), nowMs: 0))
        #expect(
            !KVEngine.apply(
                Self.record(3, .set, "k", [3]), at: Self.nowhere, to: store, epochs: EpochHistory(), nowMs: 0))
        #expect(
            !KVEngine.apply(Self.record(4, .delete, "k"), at: Self.nowhere, to: store, epochs: EpochHistory(), nowMs: 0)
        )
        #expect(
            !KVEngine.apply(
                Self.record(5, .set, "k", [9]), at: Self.nowhere, to: store, epochs: EpochHistory(), nowMs: 0))
        let stored = store.get(StoreKey("k"), nowMs: 0)
        #expect(stored?.value == [5])
        #expect(stored?.lsn == 5)
        #expect(
            KVEngine.apply(Self.record(6, .delete, "k"), at: Self.nowhere, to: store, epochs: EpochHistory(), nowMs: 0))
        #expect(store.get(StoreKey("k"), nowMs: 0) == nil)
    }

    @Test func recoveryReplaysTheLogInLSNOrderThroughApply() async throws {
        let first = try TestEngine.open()
        let soon = WallClock.nowMs() + 150
        #expect(try await first.set("a", [1]) == 1)
        #expect(try await first.set("b", [2]) == 2)
        #expect(try await first.set("a", [3]) == 3)
        #expect(
            await first.write(.delete(key: Array("b".utf8)))
                == .success(KVEngine.Written(lsn: 4, deleted: true, epoch: 1)))
        #expect(try await first.set("b", [5]) == 5)
        #expect(try await first.set("short", [6], expiresAtMs: soon) == 6)
        first.close(keepingData: true)
        while WallClock.nowMs() <= soon { try await Task.sleep(for: .milliseconds(20)) }

        let second = try TestEngine.open(directory: first.directory)
        defer { second.close() }
        #expect(second.engine.recovery.records == 6)
        #expect(second.engine.lastLSN == 6)
        #expect(second.engine.appliedLSN == 6)
        guard case .found(let a) = second.engine.get(StoreKey("a")) else { return #expect(Bool(false), "a is missing") }
        #expect(a == KVEngine.Found(value: [3], lsn: 3, expiresAtMs: 0))
        guard case .found(let b) = second.engine.get(StoreKey("b")) else { return #expect(Bool(false), "b is missing") }
        #expect(b.lsn == 5, "the set after the delete wins, as it did live")
        // The set whose expiry passed while the node was down is replayed as a delete.
        #expect(second.engine.statistics().keys == 2)
    }

    @Test func aDeleteOfAMissingKeyTakesNoLSN() async throws {
        let opened = try TestEngine.open()
        defer { opened.close() }
        #expect(
            await opened.write(.delete(key: Array("ghost".utf8)))
                == .success(KVEngine.Written(lsn: 0, deleted: false, epoch: 1)))
        #expect(opened.engine.lastLSN == 0)
        #expect(try await opened.set("real", [1]) == 1)
    }

    @Test func aNewKeyPastTheBoundUnderNoevictionIsRefusedBeforeItIsLogged() async throws {
        let opened = try TestEngine.open(storage: NodeConfig.Storage(maxEntries: 1, evictionPolicy: .noeviction))
        defer { opened.close() }
        #expect(try await opened.set("one", [1]) == 1)
        let refused = await opened.write(.set(key: Array("two".utf8), value: [2], expiresAtMs: 0))
        #expect(refused == .failure(.storeFull(.limitExceeded(name: "storage.max_entries", limit: 1, actual: 1))))
        #expect(opened.engine.lastLSN == 1)
    }

    @Test func writesUnderSyncAlwaysAreDurableWhenAnswered() async throws {
        let opened = try TestEngine.open(syncInterval: .always)
        defer { opened.close() }
        let lsn = try await opened.set("k", [1])
        #expect(opened.engine.durableLSN >= lsn)
        #expect(opened.engine.appliedLSN >= lsn)
    }

    /// A writer answered at LSN n reads `appliedLSN` ≥ n at once: the master's Get with
    /// `min_lsn` and its Status compare with it. The log counts a batch completed only after
    /// answering every write in it, and under `always` those answers run on the event loops while
    /// the writer thread is still in the batch, so the position must come from the announcement
    /// each write makes before its answer (found under ThreadSanitizer's slower scheduling).
    @Test func everyAnsweredWriteIsCountedApplied() async throws {
        let opened = try TestEngine.open(syncInterval: .always)
        defer { opened.close() }
        let engine = opened.engine
        let behind = LockedBox<[String]>([])
        // Checked in the answer itself, on the event loop, as the service would answer.
        let checkAnswer: @Sendable (Result<KVEngine.Written, NodeError>) -> Void = { result in
            let applied = engine.appliedLSN
            guard case .success(let written) = result, applied < written.lsn else { return }
            behind.mutate { $0.append("answered at LSN \(written.lsn) with appliedLSN \(applied)") }
        }
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<400 {
                let eventLoop = TestEngine.eventLoop
                let write = KVEngine.Write.set(key: Array("k\(index % 20)".utf8), value: [1], expiresAtMs: 0)
                group.addTask {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        eventLoop.execute {
                            engine.write(write, on: eventLoop) { result in
                                checkAnswer(result)
                                continuation.resume()
                            }
                        }
                    }
                }
            }
        }
        let ahead = behind.value
        #expect(ahead.count == 0, "\(ahead.count) of 400 answers ran ahead of appliedLSN, e.g. \(ahead.prefix(3))")
        #expect(engine.appliedLSN == 400)
    }

    // MARK: Evicted values

    @Test func anEvictedValueIsReadBackFromDiskAndCounted() async throws {
        let opened = try TestEngine.open(storage: NodeConfig.Storage(maxEntries: 1, evictionPolicy: .lru))
        defer { opened.close() }
        let engine = opened.engine
        let lsn = try await opened.set("cold", [7, 7, 7])
        _ = try await opened.set("hot", [1])
        let found: KVEngine.Found?
        switch engine.get(StoreKey("cold")) {
        case .found(let value):
            found = value  // its record was in the page cache
        case .onDisk(let evicted):
            found = try await withCheckedThrowingContinuation { continuation in
                engine.readFromDisk(evicted) { continuation.resume(with: $0) }
            }
        case .missing:
            found = nil
        }
        #expect(found == KVEngine.Found(value: [7, 7, 7], lsn: lsn, expiresAtMs: 0))
        #expect(engine.diskReads == 1)
    }

    @Test func anEvictedValueIsFoundAgainAfterACompactionMovedItsRecord() async throws {
        // Segments of the smallest size, and one value resident: "cold" is evicted at once and
        // its record sits in the first segment, which the overwrites of "filler" make dead.
        let opened = try TestEngine.open(
            storage: NodeConfig.Storage(maxEntries: 1, evictionPolicy: .lru), maxFileSizeBytes: 64 << 10)
        defer { opened.close() }
        let engine = opened.engine
        _ = try await opened.set("cold", Array(repeating: 9, count: 100))
        for round in 0..<2_000 { _ = try await opened.set("filler", Array(repeating: UInt8(round % 256), count: 100)) }
        let before = try #require(engine.store.get(StoreKey("cold"), nowMs: 0))
        #expect(before.value == nil, "cold should be evicted")
        let sealed = engine.segments.count - 1
        #expect(sealed >= 2)
        let compacted = try #require(try engine.compact(segments: sealed))
        #expect(compacted.recordsKept >= 1)
        #expect(throws: WALError.segmentGone(before.location.segment)) {
            _ = try engine.wal.read(at: WALLocation(before.location))
        }

        // The location looked up before the compaction names a segment that is gone: the key is
        // looked up again and read from where its record moved.
        let read = try #require(try engine.readEvicted(StoreKey("cold"), before))
        #expect(read.0 == ValueBytes(Array(repeating: 9, count: 100)))
        #expect(read.1.lsn == 1)
        #expect(read.1.location != before.location)
    }

    // MARK: Waiting for an LSN

    @Test func waitForAppliedAnswersAtOnceWhenTheLSNIsApplied() async throws {
        let opened = try TestEngine.open()
        defer { opened.close() }
        _ = try await opened.set("k", [1])
        let result = await wait(opened.engine, for: 1, within: patience(.seconds(5)))
        #expect(result.outcome == .success(true))
    }

    @Test func waitForAppliedWakesWhenTheLSNIsApplied() async throws {
        let opened = try TestEngine.open()
        defer { opened.close() }
        let started = ContinuousClock.now
        async let waited = wait(opened.engine, for: 2, within: patience(.seconds(5)))
        try await Task.sleep(for: .milliseconds(50))
        _ = try await opened.set("a", [1])
        _ = try await opened.set("b", [2])
        let result = await waited
        #expect(result.outcome == .success(true))
        #expect(ContinuousClock.now - started < patience(.seconds(4)), "woken by the apply, not by the time limit")
    }

    @Test func waitForAppliedWakesOnAReplicatedBatch() async throws {
        let opened = try TestEngine.open()
        defer { opened.close() }
        async let waited = wait(opened.engine, for: 3, within: patience(.seconds(5)))
        try await Task.sleep(for: .milliseconds(50))
        try opened.engine.append(replicated: (1...3).map { Self.record($0, .set, "key-\($0)", [UInt8($0)]) })
        #expect(await waited.outcome == .success(true))
        guard case .found(let value) = opened.engine.get(StoreKey("key-3")) else {
            return #expect(Bool(false), "the replicated entry was not applied")
        }
        #expect(value.lsn == 3)
    }

    @Test func waitForAppliedRunsOutNamingBothLSNs() async throws {
        let opened = try TestEngine.open()
        defer { opened.close() }
        _ = try await opened.set("k", [1])
        let result = await wait(opened.engine, for: 9, within: .milliseconds(100))
        #expect(result.outcome == .failure(.minLSNAhead(minLSN: 9, appliedLSN: 1)))
        #expect(result.outcome.failure?.status.code == .unavailable)
        #expect(result.outcome.failure?.status.message.contains("min_lsn 9") == true)
        #expect(result.outcome.failure?.status.message.contains("LSN 1") == true)
    }

    @Test func waitForAppliedEndsWithDeadlineExceededWhenTheCallsDeadlineComesFirst() async throws {
        let opened = try TestEngine.open()
        defer { opened.close() }
        let result = await wait(opened.engine, for: 1, within: .seconds(5), callDeadline: .milliseconds(100))
        #expect(result.outcome == .failure(.minLSNDeadlinePassed(minLSN: 1)))
        #expect(result.outcome.failure?.status.code == .deadlineExceeded)
    }

    @Test func waitForAppliedAnswersOnTheEventLoopItWasGiven() async throws {
        let opened = try TestEngine.open()
        defer { opened.close() }
        let result = await wait(opened.engine, for: 1, within: .milliseconds(50))
        #expect(result.onEventLoop)
    }

    /// Waits for `lsn` as the KVStore service does, from an event loop.
    private func wait(
        _ engine: KVEngine, for lsn: UInt64, within limit: Duration, callDeadline: Duration? = nil
    ) async -> (outcome: Result<Bool, NodeError>, onEventLoop: Bool) {
        let eventLoop = TestEngine.eventLoop
        return await withCheckedContinuation { continuation in
            eventLoop.execute {
                engine.waitForApplied(
                    lsn, until: .now() + TimeAmount(limit), callDeadline: callDeadline.map { .now() + TimeAmount($0) },
                    on: eventLoop
                ) { result in
                    continuation.resume(returning: (result.map { true }, eventLoop.inEventLoop))
                }
            }
        }
    }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
