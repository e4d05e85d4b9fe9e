import ErdtreeRPC
import ErdtreeStorage
import Foundation
import Testing

@testable import ErdtreeNode

/// `storage.max_entries` end to end: values past the bound are evicted from memory and
/// read back from the WAL, across a restart; noeviction refuses new keys before logging.
@Suite struct EvictionTests {
    private static func value(_ index: Int) -> [UInt8] {
        // 1 KiB, different per key, so a value read back for the wrong key shows.
        let stamp = Array("value-\(index)-".utf8)
        return (0..<1024).map { stamp[$0 % stamp.count] }
    }

    private func writeAndCheck(_ client: KVClient, count: Int) async throws {
        for index in 0..<count {
            _ = try await client.set("key-\(index)", value: Self.value(index))
        }
        try await checkAll(client, count: count)
    }

    private func checkAll(_ client: KVClient, count: Int) async throws {
        for index in 0..<count {
            let stored = try #require(try await client.get("key-\(index)"), "key-\(index) is missing")
            #expect(stored.bytes == Self.value(index), "key-\(index) read back the wrong value")
        }
    }

    @Test func everyKeyReadsBackUnderTheBoundAndAfterARestart() async throws {
        let storage = NodeConfig.Storage(maxEntries: 100, evictionPolicy: .lru)
        let first = try await TestNode.start(storage: storage)
        do {
            let client = try await first.connect()
            try await writeAndCheck(client, count: 2_000)
            let status = try await client.status()
            #expect(status.store.keys == 2_000)
            #expect(status.store.residentValues <= 100)
            #expect(status.store.residentValues > 0)
            await client.rpc.close()
        } catch {
            await first.stop()
            throw error
        }
        await first.stop(keepingData: true)

        let second = try await TestNode.start(storage: storage, dataDirectory: first.dataDirectory)
        do {
            let client = try await second.connect()
            #expect(second.node.engine.statistics().residentValues <= 100, "replay evicts as it goes")
            try await checkAll(client, count: 2_000)
            let status = try await client.status()
            #expect(status.store.keys == 2_000)
            #expect(status.store.residentValues <= 100)
            await client.rpc.close()
        } catch {
            await second.stop()
            throw error
        }
        await second.stop()
    }

    @Test func evictedValueKeepsItsLSNAndExpiry() async throws {
        try await withTestNode(storage: NodeConfig.Storage(maxEntries: 1, evictionPolicy: .lru)) { node, client in
            let lsn = try await client.set("ttl", value: [1, 2, 3], ttlMs: 3_600_000)
            _ = try await client.set("other", value: [4])
            let stored = try #require(try await client.get("ttl"))
            #expect(stored.bytes == [1, 2, 3])
            #expect(stored.lsn == lsn)
            #expect(stored.expiresAtMs > 0)
        }
    }

    @Test func noevictionRefusesNewKeysBeforeLoggingThem() async throws {
        try await withTestNode(storage: NodeConfig.Storage(maxEntries: 3, evictionPolicy: .noeviction)) {
            node, client in
            for index in 0..<3 { _ = try await client.set("key-\(index)", value: [UInt8(index)]) }
            let status = await statusOf { _ = try await client.set("key-3", value: [3]) }
            #expect(status?.code == .resourceExhausted)
            #expect(status?.message.contains("storage.max_entries") == true, "\(String(describing: status))")
            #expect(status?.message.contains("max: 3") == true, "\(String(describing: status))")
            #expect(node.node.engine.lastLSN == 3, "the refused write took no LSN")
            #expect(try await client.get("key-3") == nil)
            // Overwrites still work.
            let lsn = try await client.set("key-1", value: [9])
            #expect(lsn == 4)
            #expect(try await client.get("key-1")?.bytes == [9])
        }
    }

    @Test func readBackChecksTheRecordAtTheLocation() async throws {
        try await withTestNode { node, client in
            _ = try await client.set("a", value: [1])
            let engine = node.node.engine
            let a = try #require(engine.store.get(StoreKey("a"), nowMs: 0))
            #expect(a.location.length > 0)
            #expect(try engine.readEvicted(StoreKey("a"), a)?.0 == [1])

            func refusal(_ key: String, _ stored: StoredValue) -> RPCStatus? {
                do throws(NodeError) {
                    _ = try engine.readEvicted(StoreKey(key), stored)
                    return nil
                } catch {
                    return error.status
                }
            }
            let otherKey = refusal("b", a)
            #expect(otherKey?.code == .internal)
            #expect(
                otherKey?.message.contains("is a set of key \"a\" at LSN 1") == true, "\(String(describing: otherKey))")
            let otherLSN = refusal("a", StoredValue(value: nil, lsn: 7, expiresAtMs: 0, location: a.location))
            #expect(otherLSN?.code == .internal)
            #expect(
                otherLSN?.message.contains("evicted from memory at LSN 7") == true, "\(String(describing: otherLSN))")
            var pastTheEnd = a.location
            pastTheEnd.offset += 1_000_000
            let outside = refusal("a", StoredValue(value: nil, lsn: 1, expiresAtMs: 0, location: pastTheEnd))
            #expect(outside?.code == .internal)
            #expect(outside?.message.contains("lies outside the") == true, "\(String(describing: outside))")
            var misaligned = a.location
            misaligned.offset += 1
            let torn = refusal("a", StoredValue(value: nil, lsn: 1, expiresAtMs: 0, location: misaligned))
            #expect(torn?.code == .internal, "\(String(describing: torn))")

            // A segment compaction replaced: the key is looked up again (here: gone, or resident).
            var gone = a.location
            gone.segment = 999_999
            #expect(
                try engine.readEvicted(
                    StoreKey("missing"), StoredValue(value: nil, lsn: 1, expiresAtMs: 0, location: gone))
                    == nil)
            #expect(
                try engine.readEvicted(StoreKey("a"), StoredValue(value: nil, lsn: 1, expiresAtMs: 0, location: gone))?
                    .0
                    == [1])
        }
    }
}
