import ErdtreeStorage
import ErdtreeWAL
import Foundation
import NIOCore
import Testing

@testable import ErdtreeNode

/// Epochs in the engine: the marker is logged and applied like a write, survives a restart and a
/// compaction, goes into snapshots and GetUpdates, and a divergent tail is set aside.
@Suite struct KVEngineEpochTests {
    private static func startEpoch(_ engine: KVEngine, _ epoch: UInt64) async throws -> EpochStart {
        try await withCheckedContinuation { continuation in
            engine.startEpoch(epoch) { continuation.resume(returning: $0) }
        }.get()
    }

    @Test func aMarkerStartsTheEpochAtTheNextLSNAndSurvivesARestart() async throws {
        let opened = try TestEngine.open()
        _ = try await opened.set("a", [1])
        let start = try await Self.startEpoch(opened.engine, 2)
        #expect(start == EpochStart(epoch: 2, firstLSN: 2))
        #expect(opened.engine.epoch == 2)
        let written = try await opened.write(.set(key: Array("b".utf8), value: [2], expiresAtMs: 0)).get()
        #expect((written.lsn, written.epoch) == (3, 2))
        #expect(opened.engine.store.count == 2, "the marker is no key")
        opened.close(keepingData: true)

        let reopened = try TestEngine.open(directory: opened.directory)
        defer { reopened.close() }
        #expect(reopened.engine.epoch == 2)
        #expect(reopened.engine.epochStarts == [EpochStart(epoch: 2, firstLSN: 2)])
        // It streams like any entry (GetUpdates, replication).
        let entries = try reopened.engine.entries(since: 0, limit: 10).records
        #expect(entries.map(\.lsn) == [1, 2, 3])
        #expect(entries[1].markedEpoch == 2)
    }

    @Test func compactionKeepsTheMarkerAndSnapshotsCarryIt() async throws {
        let opened = try TestEngine.open(maxFileSizeBytes: 64 << 10)
        defer { opened.close() }
        let engine = opened.engine
        _ = try await Self.startEpoch(engine, 2)
        for round in 0..<2_000 { _ = try await opened.set("filler", Array(repeating: UInt8(round % 256), count: 100)) }
        let sealed = engine.segments.count - 1
        #expect(sealed >= 2)
        let compacted = try #require(try engine.compact(segments: sealed))
        #expect(compacted.recordsKept >= 1)
        opened.close(keepingData: true)
        let reopened = try TestEngine.open(maxFileSizeBytes: 64 << 10, directory: opened.directory)
        #expect(reopened.engine.epochStarts == [EpochStart(epoch: 2, firstLSN: 1)], "the marker outlived compaction")

        var snapshot: [WALRecord] = []
        try reopened.engine.snapshot(through: reopened.engine.appliedLSN) {
            snapshot.append($0)
            return true
        }
        #expect(snapshot.first?.markedEpoch == 2 && snapshot.first?.lsn == 1)
        #expect(snapshot.dropFirst().map { String(decoding: $0.key, as: UTF8.self) } == ["filler"])
        reopened.engine.close()
    }

    @Test func aDivergentTailIsSavedAsASegmentAndTheStoreIsRebuiltWithoutIt() async throws {
        let opened = try TestEngine.open()
        defer { opened.close() }
        let engine = opened.engine
        _ = try await opened.set("kept", [1])
        _ = try await opened.set("changed", [1])
        _ = try await opened.set("changed", [2])  // LSN 3: diverges
        _ = try await opened.set("gone", [3])  // LSN 4: diverges

        let truncation = try engine.setAsideDivergentTail(after: 2)
        #expect(truncation.saved == 2)
        let path = try #require(truncation.savedPath)
        #expect(path.hasSuffix("/wal/divergent/1-3.log"))
        #expect(engine.lastLSN == 2 && engine.appliedLSN == 2)
        #expect(engine.store.get(StoreKey("changed"), nowMs: 0)?.value?.bytes == [1], "the older value is back")
        #expect(engine.store.get(StoreKey("gone"), nowMs: 0) == nil)
        #expect(engine.divergentRecordCount == 2)
        #expect(WriteAheadLog.recordCount(inFilesOf: opened.walDirectory + "/divergent") == 2)

        // The log goes on from the branch point, as the new master's batches will.
        try engine.append(replicated: [.epochMarker(2, lsn: 3, timestampMs: 0)])
        #expect(engine.epoch == 2 && engine.lastLSN == 3)

        // Past the log's end, nothing is cut.
        #expect(throws: WALError.self) { _ = try engine.setAsideDivergentTail(after: 99) }
    }
}
