import Testing

@testable import ErdtreeStorage

/// `storage.max_entries`: CLOCK eviction under `.lru`, refusal under `.noeviction`.
@Suite struct KeyValueStoreEvictionTests {
    private func key(_ index: Int) -> StoreKey { StoreKey("key-\(index)") }
    private func value(_ index: Int) -> [UInt8] { Array("value-\(index)".utf8) }

    @Test func residentValuesNeverExceedTheBound() {
        let store = KeyValueStore(shardCount: 4, maxResidentValues: 10)
        for index in 0..<1_000 {
            store.set(key(index), value: value(index), lsn: UInt64(index + 1), expiresAtMs: 0)
            #expect(store.residentCount <= 10)
            if index % 7 == 0 { _ = store.get(key(index / 2), nowMs: 0) }
        }
        #expect(store.count == 1_000, "every key stays indexed")
        #expect(store.residentCount == 10)
        #expect(store.evictions == 990, "each value that left memory counted once")
    }

    @Test func evictedKeyKeepsItsLSNAndExpiry() {
        let store = KeyValueStore(shardCount: 1, maxResidentValues: 1)
        store.set(key(1), value: value(1), lsn: 1, expiresAtMs: 9_000)
        store.set(key(2), value: value(2), lsn: 2, expiresAtMs: 0)
        let evicted = store.get(key(1), nowMs: 0)
        #expect(evicted == StoredValue(value: nil, lsn: 1, expiresAtMs: 9_000))
        #expect(evicted?.isEvicted == true)
        #expect(store.get(key(2), nowMs: 0)?.value?.bytes == value(2))
        // An evicted key still expires and can still be deleted.
        #expect(store.get(key(1), nowMs: 9_000) == nil)
        #expect(store.count == 1)
    }

    @Test func clockKeepsRecentlyReadKeys() {
        let store = KeyValueStore(shardCount: 1, maxResidentValues: 100)
        for index in 0..<100 {
            store.set(key(index), value: value(index), lsn: UInt64(index + 1), expiresAtMs: 0)
        }
        let hot = Set(0..<100).filter { $0 % 10 == 0 }
        var lsn: UInt64 = 100
        // Each round reads the hot keys (putting back any evicted, as a Get does) and
        // writes 10 new ones.
        for round in 0..<20 {
            for index in hot {
                let stored = store.get(key(index), nowMs: 0)
                if stored?.isEvicted == true { store.restore(key(index), value: value(index), lsn: UInt64(index + 1)) }
            }
            for offset in 0..<10 {
                lsn += 1
                let index = 1_000 + round * 10 + offset
                store.set(key(index), value: value(index), lsn: lsn, expiresAtMs: 0)
            }
        }
        for index in hot {
            #expect(store.get(key(index), nowMs: 0)?.isEvicted == false, "hot key \(index) was evicted")
        }
        let coldResident = (0..<100).filter { !hot.contains($0) && store.get(key($0), nowMs: 0)?.isEvicted == false }
        #expect(coldResident.isEmpty, "keys never read are evicted first")
        #expect(store.residentCount == 100)
    }

    @Test func restorePutsTheValueBackOnlyAtTheSameLSN() {
        let store = KeyValueStore(shardCount: 1, maxResidentValues: 1)
        store.set(key(1), value: value(1), lsn: 1, expiresAtMs: 0)
        store.set(key(2), value: value(2), lsn: 2, expiresAtMs: 0)
        #expect(store.get(key(1), nowMs: 0)?.isEvicted == true)

        #expect(!store.restore(key(1), value: [9], lsn: 5), "a different LSN is a different value")
        #expect(!store.restore(key(3), value: [9], lsn: 1), "a missing key is not created")
        #expect(store.restore(key(1), value: value(1), lsn: 1))
        #expect(store.get(key(1), nowMs: 0) == StoredValue(value: value(1), lsn: 1, expiresAtMs: 0))
        #expect(!store.restore(key(1), value: value(1), lsn: 1), "already resident")
        // Restoring evicted the other value to stay within the bound.
        #expect(store.residentCount == 1)
        #expect(store.get(key(2), nowMs: 0)?.isEvicted == true)
    }

    @Test func restoreAfterARewriteIsIgnored() {
        let store = KeyValueStore(shardCount: 1, maxResidentValues: 1)
        store.set(key(1), value: value(1), lsn: 1, expiresAtMs: 0)
        store.set(key(2), value: value(2), lsn: 2, expiresAtMs: 0)
        store.set(key(1), value: [7], lsn: 3, expiresAtMs: 0)
        #expect(!store.restore(key(1), value: value(1), lsn: 1))
        #expect(store.get(key(1), nowMs: 0)?.value?.bytes == [7])
    }

    @Test func payloadBytesCountOnlyResidentValues() {
        let store = KeyValueStore(shardCount: 1, maxResidentValues: 1)
        store.set(StoreKey("a"), value: [1, 2, 3], lsn: 1, expiresAtMs: 0)
        store.set(StoreKey("b"), value: [1, 2], lsn: 2, expiresAtMs: 0)
        // Both keys, one resident two-or-three-byte value.
        let payload = store.payloadBytes
        #expect(payload == 2 + 3 || payload == 2 + 2)
        store.delete(StoreKey("a"), lsn: 3, nowMs: 0)
        store.delete(StoreKey("b"), lsn: 4, nowMs: 0)
        #expect(store.payloadBytes == 0)
        #expect(store.residentCount == 0)
    }

    @Test func deletesAndExpiryKeepTheRingConsistent() {
        let store = KeyValueStore(shardCount: 2, maxResidentValues: 8)
        var lsn: UInt64 = 0
        for index in 0..<200 {
            lsn += 1
            store.set(key(index), value: value(index), lsn: lsn, expiresAtMs: index % 3 == 0 ? 50 : 0)
            if index % 5 == 0 {
                lsn += 1
                store.delete(key(index / 2), lsn: lsn, nowMs: 0)
            }
        }
        #expect(store.sweepExpired(nowMs: 50, maxPerShard: 1_000) > 0)
        #expect(store.residentCount <= 8)
        for index in 0..<200 {
            if let stored = store.get(key(index), nowMs: 100), let stored = stored.value?.bytes {
                #expect(stored == value(index))
            }
        }
    }

    @Test func unboundedStoreKeepsEveryValue() {
        let store = KeyValueStore(shardCount: 4)
        for index in 0..<100 { store.set(key(index), value: value(index), lsn: UInt64(index + 1), expiresAtMs: 0) }
        #expect(store.residentCount == 100)
        #expect(store.get(key(0), nowMs: 0)?.value?.bytes == value(0))
    }

    @Test func noevictionRefusesNewKeysAtTheBound() throws {
        let store = KeyValueStore(shardCount: 4, maxResidentValues: 3, evictionPolicy: .noeviction)
        for index in 0..<3 {
            try store.admit(key(index), nowMs: 0)
            store.set(key(index), value: value(index), lsn: UInt64(index + 1), expiresAtMs: 0)
        }
        #expect(throws: StorageError.limitExceeded(name: "storage.max_entries", limit: 3, actual: 3)) {
            try store.admit(key(3), nowMs: 0)
        }
        // Overwrites are admitted; nothing was evicted.
        try store.admit(key(1), nowMs: 0)
        #expect(store.residentCount == 3)
        // A delete makes room again.
        store.delete(key(0), lsn: 10, nowMs: 0)
        try store.admit(key(3), nowMs: 0)
    }

    @Test func noevictionCountsExpiredKeysAsGone() throws {
        let store = KeyValueStore(shardCount: 1, maxResidentValues: 1, evictionPolicy: .noeviction)
        store.set(key(0), value: value(0), lsn: 1, expiresAtMs: 10)
        store.sweepExpired(nowMs: 10, maxPerShard: 10)
        try store.admit(key(1), nowMs: 10)
    }

    @Test func refusalNamesTheSettingAndLimit() {
        let error = StorageError.limitExceeded(name: "storage.max_entries", limit: 1000, actual: 1000)
        #expect(error.description.contains("storage.max_entries"))
        #expect(error.description.contains("max: 1000"))
    }

    @Test func boundSmallerThanShardCountStillHolds() {
        let store = KeyValueStore(shardCount: 8, maxResidentValues: 3)
        for index in 0..<100 { store.set(key(index), value: value(index), lsn: UInt64(index + 1), expiresAtMs: 0) }
        #expect(store.residentCount <= 3)
        #expect(store.count == 100)
    }
}
