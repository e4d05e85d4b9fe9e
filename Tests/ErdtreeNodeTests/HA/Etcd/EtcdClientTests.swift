import ErdtreeRPC
import Foundation
import NIOCore
import Testing

@testable import ErdtreeNode

/// The etcd client against a real etcd (Debian's etcd-server, started per test by `TestEtcd`):
/// every call a coordinator makes, and how the client fails.
@Suite struct EtcdClientTests {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// What a test's keys start with, so that no two tests' keys meet.
    private func prefix(_ name: String) -> [UInt8] { Array("/erdtree-test/\(name)/".utf8) }

    // MARK: Keys

    @Test func getReadsWhatPutWroteWithItsRevisions() async throws {
        try await withTestEtcd { _, client in
            let key = prefix("get") + bytes("a")
            #expect(try await client.get(key) == nil, "a missing key is nil, not an error")

            try await client.put(key, bytes("one"))
            let first = try #require(try await client.get(key))
            #expect(first.key == key)
            #expect(first.value == bytes("one"))
            #expect(first.createRevision > 0)
            #expect(first.modRevision == first.createRevision)
            #expect(first.version == 1)
            #expect(first.lease == 0)

            try await client.put(key, bytes("two"))
            let second = try #require(try await client.get(key))
            #expect(second.value == bytes("two"))
            #expect(second.createRevision == first.createRevision, "an update keeps the creation revision")
            #expect(second.modRevision > first.modRevision)
            #expect(second.version == 2)
        }
    }

    @Test func getPrefixReturnsExactlyTheKeysUnderItInKeyOrder() async throws {
        try await withTestEtcd { _, client in
            let base = prefix("range")
            try await client.put(base + bytes("b"), bytes("2"))
            try await client.put(base + bytes("a"), bytes("1"))
            try await client.put(base + [0xff], bytes("3"))
            // Keys beside the prefix: one that sorts just before, one just after.
            try await client.put(Array(base.dropLast()), bytes("outside"))
            try await client.put(Array(base.dropLast()) + [UInt8(ascii: "0")], bytes("outside"))

            let found = try await client.get(prefix: base)
            #expect(found.map(\.key) == [base + bytes("a"), base + bytes("b"), base + [0xff]])
            #expect(found.map(\.value) == [bytes("1"), bytes("2"), bytes("3")])
            #expect(try await client.get(prefix: prefix("nothing-here")).isEmpty)
        }
    }

    @Test func createTakesAnAbsentKeyOnceAndThenReportsTheHolder() async throws {
        try await withTestEtcd { _, client in
            let key = prefix("create") + bytes("leader")
            let first = try await client.create(key, bytes("node-a"), lease: 0)
            #expect(first.created)
            #expect(first.existing == nil)

            let second = try await client.create(key, bytes("node-b"), lease: 0)
            #expect(!second.created)
            let holder = try #require(second.existing)
            #expect(holder.value == bytes("node-a"))
            let stored = try #require(try await client.get(key))
            #expect(holder == stored, "the holder as etcd has it, createRevision included")
            #expect(holder.createRevision > 0)
        }
    }

    @Test func deleteIfValueDeletesOnlyTheExpectedValue() async throws {
        try await withTestEtcd { _, client in
            let key = prefix("delete") + bytes("leader")
            try await client.put(key, bytes("node-a"))

            #expect(try await client.delete(key, ifValue: bytes("node-b")) == false)
            #expect(try await client.get(key)?.value == bytes("node-a"), "another value is left alone")

            #expect(try await client.delete(key, ifValue: bytes("node-a")) == true)
            #expect(try await client.get(key) == nil)

            #expect(try await client.delete(key, ifValue: bytes("node-a")) == false, "nothing left to delete")
        }
    }

    // MARK: Leases

    @Test func aLeaseIsKeptAliveAndRevokedWithItsKeys() async throws {
        try await withTestEtcd { _, client in
            let lease = try await client.grantLease(ttl: .seconds(5))
            #expect(lease != 0)
            #expect(try await client.keepAlive(lease: lease) == .seconds(5))
            #expect(try await client.keepAlive(lease: lease) == .seconds(5), "the stream stays open for the next")

            let member = prefix("lease") + bytes("member")
            let leader = prefix("lease") + bytes("leader")
            try await client.put(member, bytes("a"), lease: lease)
            #expect(try await client.create(leader, bytes("a"), lease: lease).created)
            #expect(try await client.get(member)?.lease == lease)

            try await client.revokeLease(lease)
            #expect(try await client.get(member) == nil, "a key under a revoked lease is gone")
            #expect(try await client.get(leader) == nil)

            await #expect(throws: EtcdError.leaseExpired(lease)) { _ = try await client.keepAlive(lease: lease) }
            await #expect(throws: EtcdError.leaseExpired(lease)) { try await client.revokeLease(lease) }
            await #expect(throws: EtcdError.leaseExpired(lease)) { try await client.put(member, [1], lease: lease) }
            await #expect(throws: EtcdError.leaseExpired(lease)) {
                _ = try await client.create(leader, [1], lease: lease)
            }
        }
    }

    @Test func grantRoundsATTLUpToWholeSeconds() async throws {
        try await withTestEtcd { _, client in
            let lease = try await client.grantLease(ttl: .milliseconds(2_500))
            #expect(try await client.keepAlive(lease: lease) == .seconds(3))
        }
    }

    @Test func keepAlivesOfSeveralLeasesShareTheStream() async throws {
        try await withTestEtcd { _, client in
            let leases = [
                try await client.grantLease(ttl: .seconds(4)), try await client.grantLease(ttl: .seconds(6)),
            ]
            let ttls = try await withThrowingTaskGroup(of: (Int64, Duration).self) { group in
                for _ in 0..<3 {
                    for lease in leases { group.addTask { (lease, try await client.keepAlive(lease: lease)) } }
                }
                var ttls: [Int64: Set<Duration>] = [:]
                for try await (lease, ttl) in group { ttls[lease, default: []].insert(ttl) }
                return ttls
            }
            #expect(ttls == [leases[0]: [.seconds(4)], leases[1]: [.seconds(6)]])
        }
    }

    @Test func callsAndKeepAlivesRecoverWhenEtcdComesBack() async throws {
        try await withTestEtcd(clientTimeout: .seconds(2)) { etcd, client in
            let lease = try await client.grantLease(ttl: .seconds(30))
            #expect(try await client.keepAlive(lease: lease) > .zero)
            let key = prefix("restart") + bytes("k")
            try await client.put(key, bytes("v"), lease: lease)

            await etcd.stop(keepingData: true)
            await #expect(throws: EtcdError.self) { _ = try await client.keepAlive(lease: lease) }
            await #expect(throws: EtcdError.self) { _ = try await client.get(key) }

            try await etcd.restart()
            // The connection is dialled again, and the keep-alive stream opened again on it.
            #expect(try await client.get(key)?.value == bytes("v"))
            #expect(try await client.keepAlive(lease: lease) > .zero)
        }
    }

    // MARK: Watches

    @Test func aWatchSeesPutsAndDeletesUnderItsPrefixUntilCancelled() async throws {
        try await withTestEtcd { _, client in
            let base = prefix("watch")
            let events = LockedBox<[EtcdEvent]>([])
            let ends = LockedBox<[String]>([])
            let watch = try await client.watch(
                prefix: base, fromRevision: 0, onEvents: { batch in events.mutate { $0 += batch } },
                onEnd: { error in ends.mutate { $0.append(error.map { "\($0)" } ?? "nil") } })

            try await client.put(base + bytes("a"), bytes("1"))
            try await client.put(prefix("elsewhere") + bytes("a"), bytes("x"))
            #expect(try await client.delete(base + bytes("a"), ifValue: bytes("1")))
            try await waitUntil { events.value.count >= 2 }
            let seen = events.value
            #expect(seen.map(\.kind) == [.put, .delete])
            #expect(seen.map(\.kv.key) == [base + bytes("a"), base + bytes("a")])
            #expect(seen[0].kv.value == bytes("1"))
            #expect(seen[1].kv.modRevision > seen[0].kv.modRevision, "a delete carries its own revision")

            watch.cancel()
            try await waitUntil { !ends.value.isEmpty }
            #expect(ends.value == ["nil"], "a cancelled watch ends once, without an error")
            try await client.put(base + bytes("b"), bytes("2"))
            try await Task.sleep(for: .milliseconds(300))
            #expect(events.value.count == 2, "no events after cancel")
            watch.cancel()
            #expect(ends.value == ["nil"], "cancelling twice ends it once")
        }
    }

    @Test func aWatchFromAPastRevisionReplaysWhatHappenedSince() async throws {
        try await withTestEtcd { _, client in
            let base = prefix("history")
            try await client.put(base + bytes("a"), bytes("1"))
            let created = try #require(try await client.get(base + bytes("a"))).modRevision
            try await client.put(base + bytes("a"), bytes("2"))

            let events = LockedBox<[EtcdEvent]>([])
            let watch = try await client.watch(
                prefix: base, fromRevision: created, onEvents: { batch in events.mutate { $0 += batch } },
                onEnd: { _ in })
            try await waitUntil { events.value.count >= 2 }
            #expect(events.value.map(\.kv.value) == [bytes("1"), bytes("2")])
            watch.cancel()
        }
    }

    @Test func aLeaseRevokedUnderAWatchShowsAsDeletes() async throws {
        try await withTestEtcd { _, client in
            let base = prefix("expiry")
            let lease = try await client.grantLease(ttl: .seconds(10))
            try await client.put(base + bytes("member"), bytes("a"), lease: lease)
            let events = LockedBox<[EtcdEvent]>([])
            let watch = try await client.watch(
                prefix: base, fromRevision: 0, onEvents: { batch in events.mutate { $0 += batch } },
                onEnd: { _ in })
            try await client.revokeLease(lease)
            try await waitUntil { !events.value.isEmpty }
            #expect(events.value.map(\.kind) == [.delete])
            #expect(events.value.first?.kv.key == base + bytes("member"))
            watch.cancel()
        }
    }

    @Test func closingTheClientEndsItsWatchesAndCalls() async throws {
        try await withTestEtcd { _, client in
            let ends = LockedBox<[EtcdError?]>([])
            _ = try await client.watch(
                prefix: prefix("close"), fromRevision: 0, onEvents: { _ in },
                onEnd: { error in ends.mutate { $0.append(error as? EtcdError) } })
            await client.close()
            try await waitUntil { !ends.value.isEmpty }
            #expect(ends.value == [.closed])
            await #expect(throws: EtcdError.closed) { _ = try await client.get(bytes("k")) }
            await #expect(throws: EtcdError.closed) { _ = try await client.keepAlive(lease: 1) }
        }
    }

    // MARK: Endpoints

    @Test func aDeadEndpointIsUnreachableNamingIt() async throws {
        _ = try TestEtcd.executable()  // the same precondition as every other test here
        let dead = "127.0.0.1:\(try await TestEtcd.freePort())"
        do {
            _ = try await EtcdClient.connect(endpoints: [dead], group: TestEtcd.group, timeout: .seconds(2))
            Issue.record("connected to \(dead), where nothing listens")
        } catch let error as EtcdError {
            guard case .unreachable(let endpoints, let reason) = error else {
                Issue.record("expected .unreachable, got \(error)")
                return
            }
            #expect(endpoints == [dead])
            #expect(reason.contains(dead))
        }
    }

    @Test func anEndpointThatIsNotHostAndPortIsRefused() async throws {
        await #expect(throws: EtcdError.self) {
            _ = try await EtcdClient.connect(
                endpoints: ["http://127.0.0.1:2379"], group: TestEtcd.group, timeout: .seconds(1))
        }
    }

    @Test func connectSkipsADeadFirstEndpoint() async throws {
        try await withTestEtcd { etcd, _ in
            let dead = "127.0.0.1:\(try await TestEtcd.freePort())"
            let client = try await EtcdClient.connect(
                endpoints: [dead, etcd.endpoint], group: TestEtcd.group, timeout: .seconds(2))
            #expect(client.currentEndpoint == etcd.endpoint)
            try await client.put(prefix("endpoints") + bytes("k"), bytes("v"))
            await client.close()
        }
    }
}

/// Polls `condition` every 10 ms until it holds, or fails after `patience`.
private func waitUntil(
    patience: Duration = .seconds(5), _ condition: () -> Bool, sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let deadline = ContinuousClock.now + patience
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("not within \(patience)", sourceLocation: sourceLocation)
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}
