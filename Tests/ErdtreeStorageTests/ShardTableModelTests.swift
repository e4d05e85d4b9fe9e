import Testing

@testable import ErdtreeStorage

/// The open-addressing table against a plain dictionary: random sets, deletes, expiries,
/// restores, relocations and sweeps on one shard (so every key shares one table, its growth and
/// its removal shifts), checked after every operation.
@Suite struct ShardTableModelTests {
    private struct Model {
        var lsn: UInt64
        var value: [UInt8]
        var expiresAtMs: Int64
        var location: DiskLocation
    }

    @Test(arguments: [nil, 7] as [Int?], [1, 2, 3] as [UInt64])
    func randomOperationsMatchADictionary(bound: Int?, seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let store = KeyValueStore(shardCount: 1, maxResidentValues: bound)
        var model: [Int: Model] = [:]
        var lsn: UInt64 = 0
        var nowMs: Int64 = 1_000
        for step in 0..<6_000 {
            let index = Int.random(in: 0..<300, using: &random)
            let key = StoreKey("k\(index)")
            lsn += 1
            switch Int.random(in: 0..<10, using: &random) {
            case 0...4:
                let value = (0..<Int.random(in: 0..<40, using: &random)).map { _ in
                    UInt8.random(in: 0...255, using: &random)
                }
                let expires: Int64 = Bool.random(using: &random) ? 0 : nowMs + Int64.random(in: 1...50, using: &random)
                let location = DiskLocation(segment: 1, offset: UInt32(step), length: UInt32(value.count + 41))
                #expect(store.set(key, value: value, lsn: lsn, expiresAtMs: expires, location: location))
                model[index] = Model(lsn: lsn, value: value, expiresAtMs: expires, location: location)
            case 5, 6:
                let live = model[index].map { $0.expiresAtMs == 0 || $0.expiresAtMs > nowMs } ?? false
                #expect(store.delete(key, lsn: lsn, nowMs: nowMs) == live, "step \(step)")
                model[index] = nil
            case 7:
                if let entry = model[index] {
                    _ = store.restore(key, value: entry.value, lsn: entry.lsn)
                    let moved = DiskLocation(segment: 2, offset: UInt32(step), length: entry.location.length)
                    #expect(store.relocate(key, lsn: entry.lsn, to: moved))
                    model[index]?.location = moved
                }
            case 8:
                nowMs += Int64.random(in: 0...20, using: &random)
                _ = store.sweepExpired(nowMs: nowMs, maxPerShard: 5)
            default:
                break
            }
            model = model.filter { $0.value.expiresAtMs == 0 || $0.value.expiresAtMs > nowMs }
            // Every key reads as the model says (an evicted one with its fields and no value).
            for probe in [index, Int.random(in: 0..<300, using: &random)] {
                let got = store.get(StoreKey("k\(probe)"), nowMs: nowMs)
                if let entry = model[probe] {
                    #expect(got?.lsn == entry.lsn, "step \(step) key \(probe)")
                    #expect(got?.expiresAtMs == entry.expiresAtMs)
                    #expect(got?.location == entry.location)
                    if let value = got?.value {
                        #expect(value.bytes == entry.value, "step \(step) key \(probe)")
                    } else {
                        #expect(bound != nil, "step \(step) key \(probe): evicted from an unbounded store")
                    }
                } else {
                    #expect(got == nil, "step \(step) key \(probe) should be gone")
                }
            }
            if let bound { #expect(store.residentCount <= bound) }
        }
        // The whole table, once more, through a snapshot.
        var seen: [StoreKey: StoredValue] = [:]
        store.forEach(nowMs: nowMs) { seen[$0] = $1 }
        #expect(seen.count == model.count)
        for (index, entry) in model {
            #expect(seen[StoreKey("k\(index)")]?.lsn == entry.lsn)
        }
        #expect(store.count >= model.count, "unswept expired keys still count")
        if bound == nil { #expect(store.residentCount == store.count) }
    }
}
