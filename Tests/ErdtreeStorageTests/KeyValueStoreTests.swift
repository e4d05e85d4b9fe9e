import Testing

@testable import ErdtreeStorage

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite struct KeyValueStoreTests {
    // MARK: Reads and writes

    @Test func setThenGetReturnsValueLSNAndExpiry() {
        let store = KeyValueStore()
        #expect(store.set(StoreKey("a"), value: bytes("one"), lsn: 1, expiresAtMs: 0))
        #expect(store.set(StoreKey("b"), value: bytes("two"), lsn: 2, expiresAtMs: 9_000))

        #expect(store.get(StoreKey("a"), nowMs: 100) == StoredValue(value: bytes("one"), lsn: 1, expiresAtMs: 0))
        #expect(store.get(StoreKey("b"), nowMs: 100) == StoredValue(value: bytes("two"), lsn: 2, expiresAtMs: 9_000))
        #expect(store.get(StoreKey("missing"), nowMs: 100) == nil)
        #expect(store.count == 2)
    }

    @Test func newerWriteOverwritesValueAndExpiry() {
        let store = KeyValueStore()
        store.set(StoreKey("k"), value: bytes("old"), lsn: 1, expiresAtMs: 500)
        #expect(store.set(StoreKey("k"), value: bytes("new"), lsn: 2, expiresAtMs: 0))

        #expect(store.get(StoreKey("k"), nowMs: 1_000) == StoredValue(value: bytes("new"), lsn: 2, expiresAtMs: 0))
        #expect(store.count == 1)
    }

    @Test func payloadBytesFollowSetsOverwritesDeletesAndSweeps() {
        let store = KeyValueStore()
        store.set(StoreKey("ab"), value: bytes("12345"), lsn: 1, expiresAtMs: 0)
        #expect(store.payloadBytes == 7)
        store.set(StoreKey("ab"), value: bytes("1"), lsn: 2, expiresAtMs: 0)
        #expect(store.payloadBytes == 3)
        store.set(StoreKey("ab"), value: bytes("stale"), lsn: 1, expiresAtMs: 0)
        #expect(store.payloadBytes == 3, "a write that loses last-writer-wins changes nothing")
        store.set(StoreKey("ttl"), value: bytes("xy"), lsn: 3, expiresAtMs: 100)
        #expect(store.payloadBytes == 8)
        #expect(store.sweepExpired(nowMs: 200, maxPerShard: 10) == 1)
        #expect(store.payloadBytes == 3)
        #expect(store.delete(StoreKey("ab"), lsn: 4, nowMs: 200))
        #expect(store.payloadBytes == 0)
    }

    @Test func emptyValueIsStoredAndFound() {
        let store = KeyValueStore()
        store.set(StoreKey("k"), value: [], lsn: 1, expiresAtMs: 0)
        #expect(store.get(StoreKey("k"), nowMs: 0)?.value?.bytes == [])
    }

    // MARK: Last writer wins by LSN

    @Test func olderLSNDoesNotOverwrite() {
        let store = KeyValueStore()
        store.set(StoreKey("k"), value: bytes("v5"), lsn: 5, expiresAtMs: 0)

        #expect(!store.set(StoreKey("k"), value: bytes("v3"), lsn: 3, expiresAtMs: 0))
        #expect(store.get(StoreKey("k"), nowMs: 0) == StoredValue(value: bytes("v5"), lsn: 5, expiresAtMs: 0))
    }

    @Test func replayingTheSameLSNIsANoOp() {
        let store = KeyValueStore()
        store.set(StoreKey("k"), value: bytes("v"), lsn: 7, expiresAtMs: 0)
        #expect(!store.set(StoreKey("k"), value: bytes("other"), lsn: 7, expiresAtMs: 0))
        #expect(store.get(StoreKey("k"), nowMs: 0)?.value?.bytes == bytes("v"))
    }

    @Test func newerLSNReplacesAnExpiredButUnsweptKey() {
        let store = KeyValueStore()
        store.set(StoreKey("k"), value: bytes("old"), lsn: 1, expiresAtMs: 10)
        #expect(store.set(StoreKey("k"), value: bytes("new"), lsn: 2, expiresAtMs: 0))
        #expect(store.get(StoreKey("k"), nowMs: 100)?.value?.bytes == bytes("new"))
    }

    // MARK: Delete

    @Test func deletingAMissingKeyReturnsFalse() {
        let store = KeyValueStore()
        #expect(!store.delete(StoreKey("nope"), lsn: 1, nowMs: 0))
    }

    @Test func deletingALiveKeyRemovesItAndReturnsTrue() {
        let store = KeyValueStore()
        store.set(StoreKey("k"), value: bytes("v"), lsn: 1, expiresAtMs: 0)

        #expect(store.delete(StoreKey("k"), lsn: 2, nowMs: 0))
        #expect(store.get(StoreKey("k"), nowMs: 0) == nil)
        #expect(store.count == 0)
        #expect(!store.delete(StoreKey("k"), lsn: 3, nowMs: 0))
    }

    @Test func deleteWithOlderLSNLeavesTheKey() {
        let store = KeyValueStore()
        store.set(StoreKey("k"), value: bytes("v"), lsn: 10, expiresAtMs: 0)

        #expect(!store.delete(StoreKey("k"), lsn: 4, nowMs: 0))
        #expect(store.get(StoreKey("k"), nowMs: 0)?.lsn == 10)
    }

    @Test func deletingAnExpiredKeyReturnsFalseAndRemovesIt() {
        let store = KeyValueStore()
        store.set(StoreKey("k"), value: bytes("v"), lsn: 1, expiresAtMs: 50)

        #expect(!store.delete(StoreKey("k"), lsn: 2, nowMs: 50))
        #expect(store.count == 0)
    }

    @Test func keyCanBeWrittenAgainAfterDelete() {
        let store = KeyValueStore()
        store.set(StoreKey("k"), value: bytes("first"), lsn: 1, expiresAtMs: 0)
        store.delete(StoreKey("k"), lsn: 2, nowMs: 0)
        #expect(store.set(StoreKey("k"), value: bytes("second"), lsn: 3, expiresAtMs: 0))
        #expect(store.get(StoreKey("k"), nowMs: 0)?.value?.bytes == bytes("second"))
    }

    // MARK: TTL

    @Test func keyExpiresExactlyAtItsDeadline() {
        let store = KeyValueStore()
        store.set(StoreKey("k"), value: bytes("v"), lsn: 1, expiresAtMs: 1_000)

        #expect(store.get(StoreKey("k"), nowMs: 999)?.value?.bytes == bytes("v"))
        #expect(store.get(StoreKey("k"), nowMs: 1_000) == nil)
        // The read that found it expired also removed it.
        #expect(store.count == 0)
        #expect(store.get(StoreKey("k"), nowMs: 0) == nil)
    }

    @Test func zeroExpiryNeverExpires() {
        let store = KeyValueStore()
        store.set(StoreKey("k"), value: bytes("v"), lsn: 1, expiresAtMs: 0)
        #expect(store.get(StoreKey("k"), nowMs: .max)?.value?.bytes == bytes("v"))
    }

    @Test func countIncludesExpiredKeysUntilSwept() {
        let store = KeyValueStore()
        store.set(StoreKey("k"), value: bytes("v"), lsn: 1, expiresAtMs: 10)
        #expect(store.count == 1)
        #expect(store.sweepExpired(nowMs: 10, maxPerShard: 100) == 1)
        #expect(store.count == 0)
    }

    // MARK: Sweeping

    @Test func sweepRemovesOnlyExpiredKeys() {
        let store = KeyValueStore()
        for i in 0..<50 {
            store.set(StoreKey("soon-\(i)"), value: bytes("s"), lsn: UInt64(1 + i), expiresAtMs: 1_000)
            store.set(StoreKey("later-\(i)"), value: bytes("l"), lsn: UInt64(100 + i), expiresAtMs: 2_000)
            store.set(StoreKey("never-\(i)"), value: bytes("n"), lsn: UInt64(200 + i), expiresAtMs: 0)
        }

        #expect(store.sweepExpired(nowMs: 1_500, maxPerShard: 1_000) == 50)
        #expect(store.count == 100)
        #expect(store.get(StoreKey("later-7"), nowMs: 1_500)?.value?.bytes == bytes("l"))
        #expect(store.get(StoreKey("never-7"), nowMs: 1_500)?.value?.bytes == bytes("n"))

        #expect(store.sweepExpired(nowMs: 2_000, maxPerShard: 1_000) == 50)
        #expect(store.count == 50)
    }

    @Test func sweepDoesNoMoreThanTheBoundPerShard() {
        let store = KeyValueStore(shardCount: 1)
        for i in 0..<100 {
            store.set(StoreKey("k\(i)"), value: bytes("v"), lsn: UInt64(i + 1), expiresAtMs: 10)
        }

        #expect(store.sweepExpired(nowMs: 10, maxPerShard: 10) == 10)
        #expect(store.count == 90)

        var rounds = 1
        while store.sweepExpired(nowMs: 10, maxPerShard: 10) > 0 { rounds += 1 }
        #expect(rounds == 10)
        #expect(store.count == 0)
    }

    @Test func sweepBoundAppliesToEachShard() {
        let store = KeyValueStore(shardCount: 4)
        for i in 0..<400 {
            store.set(StoreKey("k\(i)"), value: bytes("v"), lsn: UInt64(i + 1), expiresAtMs: 10)
        }
        // ~100 keys per shard, so every shard has at least 5 to remove.
        #expect(store.sweepExpired(nowMs: 10, maxPerShard: 5) == 20)
        #expect(store.count == 380)
    }

    @Test func sweepKeepsKeysWhoseExpiryWasReplaced() {
        let store = KeyValueStore()
        store.set(StoreKey("k"), value: bytes("ttl"), lsn: 1, expiresAtMs: 100)
        store.set(StoreKey("k"), value: bytes("forever"), lsn: 2, expiresAtMs: 0)
        store.set(StoreKey("j"), value: bytes("ttl"), lsn: 3, expiresAtMs: 100)
        store.set(StoreKey("j"), value: bytes("extended"), lsn: 4, expiresAtMs: 5_000)

        #expect(store.sweepExpired(nowMs: 1_000, maxPerShard: 100) == 0)
        #expect(store.get(StoreKey("k"), nowMs: 1_000)?.value?.bytes == bytes("forever"))
        #expect(store.get(StoreKey("j"), nowMs: 1_000)?.value?.bytes == bytes("extended"))

        #expect(store.sweepExpired(nowMs: 5_000, maxPerShard: 100) == 1)
        #expect(store.get(StoreKey("j"), nowMs: 0) == nil)
    }

    @Test func sweepSkipsKeysDeletedOrReadAfterExpiring() {
        let store = KeyValueStore(shardCount: 1)
        store.set(StoreKey("deleted"), value: bytes("v"), lsn: 1, expiresAtMs: 100)
        store.set(StoreKey("read"), value: bytes("v"), lsn: 2, expiresAtMs: 100)
        store.set(StoreKey("swept"), value: bytes("v"), lsn: 3, expiresAtMs: 100)
        store.delete(StoreKey("deleted"), lsn: 4, nowMs: 0)
        _ = store.get(StoreKey("read"), nowMs: 100)

        #expect(store.sweepExpired(nowMs: 100, maxPerShard: 100) == 1)
        #expect(store.count == 0)
    }

    @Test func rewritingKeysWithExpiryKeepsTheExpiryQueueBounded() {
        let store = KeyValueStore(shardCount: 1)
        // Refreshing a session-style key pushes a new deadline each time; the
        // superseded ones must not pile up until their (far) deadlines pass.
        for lsn in 1...10_000 as ClosedRange<UInt64> {
            store.set(StoreKey("session-\(lsn % 10)"), value: bytes("v"), lsn: lsn, expiresAtMs: 1_000_000_000)
        }
        #expect(store.count == 10)
        #expect(store.scheduledExpiryCount <= 2 * 10 + 64 + 1)
    }

    // MARK: Keys are bytes

    @Test func binaryKeysWithNULAndNonASCIIBytesAreDistinct() {
        let store = KeyValueStore()
        let keys: [[UInt8]] = [
            [0x00],
            [0x00, 0x00],
            [0x61, 0x00, 0x62],
            [0x61, 0x00, 0x63],
            [0xff, 0xfe, 0x00, 0x80],
            Array("naïve-日本".utf8),
            [],
        ]
        for (index, key) in keys.enumerated() {
            store.set(StoreKey(key), value: [UInt8(index)], lsn: UInt64(index + 1), expiresAtMs: 0)
        }

        #expect(store.count == keys.count)
        for (index, key) in keys.enumerated() {
            #expect(store.get(StoreKey(key), nowMs: 0)?.value?.bytes == [UInt8(index)], "key \(StoreKey(key))")
        }
    }

    @Test func keysFromStringBytesAndBufferAreTheSameKey() {
        let store = KeyValueStore()
        let text = "clé\u{0}日本"
        store.set(StoreKey(text), value: bytes("v"), lsn: 1, expiresAtMs: 0)

        let utf8 = Array(text.utf8)
        #expect(store.get(StoreKey(utf8), nowMs: 0)?.value?.bytes == bytes("v"))
        let fromBuffer = utf8.withUnsafeBytes { StoreKey($0) }
        #expect(store.get(fromBuffer, nowMs: 0)?.value?.bytes == bytes("v"))
        #expect(fromBuffer == StoreKey(text))
    }

    // MARK: Iteration

    @Test func forEachVisitsEveryLiveKeyOnce() {
        let store = KeyValueStore(shardCount: 8)
        for i in 0..<200 {
            store.set(StoreKey("k\(i)"), value: bytes("\(i)"), lsn: UInt64(i + 1), expiresAtMs: i < 50 ? 10 : 0)
        }

        var seen: [StoreKey: StoredValue] = [:]
        store.forEach(nowMs: 10) { key, stored in
            #expect(seen.updateValue(stored, forKey: key) == nil)
        }
        #expect(seen.count == 150)
        #expect(seen[StoreKey("k199")] == StoredValue(value: bytes("199"), lsn: 200, expiresAtMs: 0))
        #expect(seen[StoreKey("k0")] == nil)
    }

    @Test func forEachBodyMayWriteToTheStore() {
        let store = KeyValueStore(shardCount: 2)
        for i in 0..<20 {
            store.set(StoreKey("k\(i)"), value: bytes("v"), lsn: UInt64(i + 1), expiresAtMs: 0)
        }
        var visited = 0
        store.forEach(nowMs: 0) { key, stored in
            visited += 1
            store.set(key, value: bytes("rewritten"), lsn: stored.lsn + 100, expiresAtMs: 0)
        }
        #expect(visited == 20)
        #expect(store.get(StoreKey("k3"), nowMs: 0)?.value?.bytes == bytes("rewritten"))
    }

    // MARK: Sharding

    @Test func keysSpreadEvenlyOverShards() {
        let store = KeyValueStore()
        let keyCount = 64_000
        for i in 0..<keyCount {
            store.set(StoreKey("user:\(i)"), value: [], lsn: UInt64(i + 1), expiresAtMs: 0)
        }

        let perShard = store.shardCounts
        #expect(perShard.count == 64)
        #expect(perShard.reduce(0, +) == keyCount)
        // 1000 expected per shard, standard deviation about 31: these bounds
        // are eight deviations out, so only a broken hash fails them.
        #expect(perShard.allSatisfy { (750...1_250).contains($0) }, "per-shard counts: \(perShard)")
    }

    @Test func shardCountIsConfigurable() {
        let store = KeyValueStore(shardCount: 8)
        #expect(store.shardCount == 8)
        #expect(store.shardCounts.count == 8)
    }

    // MARK: Concurrency

    /// 8 tasks × 10k mixed operations. Each task owns a range of keys (so it
    /// can predict every read and the final value exactly) and also writes a
    /// set of keys shared by all tasks, where LSNs are globally unique and the
    /// highest LSN written to a key must win regardless of interleaving.
    @Test func concurrentMixedOperationsEndInTheExpectedState() async {
        let store = KeyValueStore(shardCount: 8)
        let taskCount = 8
        let opsPerTask = 10_000
        let ownKeysPerTask = 64
        let sharedKeyCount = 32

        struct TaskOutcome: Sendable {
            var task: Int
            var ownModel: [Int: UInt64] = [:]
            var highestSharedLSN: [Int: UInt64] = [:]
            var mismatches: [String] = []
        }

        func encode(_ lsn: UInt64) -> [UInt8] { withUnsafeBytes(of: lsn.littleEndian) { Array($0) } }
        func ownKey(_ task: Int, _ index: Int) -> StoreKey { StoreKey("own/\(task)/\(index)") }
        func sharedKey(_ index: Int) -> StoreKey { StoreKey("shared/\(index)") }

        let outcomes = await withTaskGroup(of: TaskOutcome.self) { group in
            for task in 0..<taskCount {
                group.addTask {
                    var outcome = TaskOutcome(task: task)
                    var random = SplitMix64(seed: UInt64(task) &+ 0x5eed)
                    for op in 0..<opsPerTask {
                        // Unique across tasks, increasing within a task.
                        let lsn = UInt64(op * taskCount + task + 1)
                        let dice = Int(random.next() % 100)
                        let own = Int(random.next() % UInt64(ownKeysPerTask))
                        let shared = Int(random.next() % UInt64(sharedKeyCount))
                        switch dice {
                        case 0..<35:
                            store.set(ownKey(task, own), value: encode(lsn), lsn: lsn, expiresAtMs: 0)
                            outcome.ownModel[own] = lsn
                        case 35..<50:
                            let deleted = store.delete(ownKey(task, own), lsn: lsn, nowMs: 0)
                            if deleted != (outcome.ownModel[own] != nil) {
                                outcome.mismatches.append("delete own/\(task)/\(own) returned \(deleted)")
                            }
                            outcome.ownModel[own] = nil
                        case 50..<70:
                            let read = store.get(ownKey(task, own), nowMs: 0)
                            let expected = outcome.ownModel[own].map {
                                StoredValue(value: encode($0), lsn: $0, expiresAtMs: 0)
                            }
                            if read != expected {
                                outcome.mismatches.append("get own/\(task)/\(own): \(String(describing: read))")
                            }
                        case 70..<92:
                            store.set(sharedKey(shared), value: encode(lsn), lsn: lsn, expiresAtMs: 0)
                            outcome.highestSharedLSN[shared] = lsn
                        default:
                            // Whatever wins, value and LSN must come from the same write.
                            if let read = store.get(sharedKey(shared), nowMs: 0), read.value?.bytes != encode(read.lsn) {
                                outcome.mismatches.append("get shared/\(shared) torn: \(read)")
                            }
                        }
                    }
                    return outcome
                }
            }
            var all: [TaskOutcome] = []
            for await outcome in group { all.append(outcome) }
            return all
        }

        #expect(outcomes.count == taskCount)
        #expect(outcomes.flatMap(\.mismatches).isEmpty, "\(outcomes.flatMap(\.mismatches).prefix(5))")

        var expectedCount = 0
        for outcome in outcomes {
            for own in 0..<ownKeysPerTask {
                let expected = outcome.ownModel[own].map { StoredValue(value: encode($0), lsn: $0, expiresAtMs: 0) }
                #expect(store.get(ownKey(outcome.task, own), nowMs: 0) == expected, "own/\(outcome.task)/\(own)")
                if expected != nil { expectedCount += 1 }
            }
        }
        for shared in 0..<sharedKeyCount {
            let winner = outcomes.compactMap { $0.highestSharedLSN[shared] }.max()
            let expected = winner.map { StoredValue(value: encode($0), lsn: $0, expiresAtMs: 0) }
            #expect(store.get(sharedKey(shared), nowMs: 0) == expected, "shared/\(shared)")
            if expected != nil { expectedCount += 1 }
        }
        #expect(store.count == expectedCount)
    }
}

/// A tiny deterministic generator so each test's operation mix is reproducible.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
