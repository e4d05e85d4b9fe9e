import ErdtreeStorage
import Testing

@testable import ErdtreeNode

@Suite struct ExpirySweeperTests {
    @Test func oneTickReclaimsExpiredKeysAndCountsThem() throws {
        let opened = try TestEngine.open()
        defer { opened.close() }
        // Keys that expired but are still held: put in the store directly, as no write path
        // stores an already expired set.
        let store = opened.engine.store
        let past = WallClock.nowMs() - 1
        for i in 0..<500 {
            store.set(StoreKey("gone-\(i)"), value: [1], lsn: UInt64(i + 1), expiresAtMs: past)
        }
        store.set(StoreKey("kept"), value: [2], lsn: 1000, expiresAtMs: 0)
        store.set(StoreKey("later"), value: [3], lsn: 1001, expiresAtMs: WallClock.nowMs() + 60_000)
        let sweeper = ExpirySweeper(engine: opened.engine)

        // 500 deadlines over 64 shards is more than one pass of 20 per shard can take for some
        // shards; the tick keeps passing while passes find work.
        #expect(sweeper.sweepOnce() == 500)
        #expect(sweeper.expiredReclaimed == 500)
        #expect(store.count == 2)
        #expect(sweeper.sweepOnce() == 0, "nothing left to reclaim")
    }
}
