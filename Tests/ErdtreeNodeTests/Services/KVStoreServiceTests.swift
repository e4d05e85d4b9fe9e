import ErdtreeRPC
import Foundation
import NIOCore
import Testing

@testable import ErdtreeNode

/// KVStore, Health and the request limits as a client sees them: a real master node on a
/// loopback port, reached through KVClient and RPCClient.
@Suite struct KVStoreServiceTests {
    // MARK: Set, Get, Delete

    @Test func setThenGetThenDelete() async throws {
        try await withTestNode { node, client throws in
            let setLSN = try await client.set("alpha", value: Array("one".utf8))
            #expect(setLSN == 1)

            let value = try #require(try await client.get("alpha"))
            #expect(value.bytes == Array("one".utf8))
            #expect(value.lsn == setLSN)
            #expect(value.expiresAtMs == 0)

            let (deleted, deleteLSN) = try await client.delete("alpha")
            #expect(deleted)
            #expect(deleteLSN == 2)
            #expect(try await client.get("alpha") == nil)
        }
    }

    @Test func overwriteReplacesTheValueAndItsLSN() async throws {
        try await withTestNode { node, client throws in
            _ = try await client.set("k", value: [1])
            let second = try await client.set("k", value: [2, 2])
            let value = try #require(try await client.get("k"))
            #expect(value.bytes == [2, 2])
            #expect(value.lsn == second)
        }
    }

    @Test func emptyValueIsAValue() async throws {
        try await withTestNode { node, client throws in
            _ = try await client.set("empty", value: [])
            let value = try #require(try await client.get("empty"), "an empty value reads as a missing key")
            #expect(value.bytes.isEmpty)
        }
    }

    @Test func binaryValueRoundTrips() async throws {
        try await withTestNode { node, client throws in
            let bytes = (0...255).map(UInt8.init) + [0, 0, 0]
            _ = try await client.set("binary", value: bytes)
            #expect(try await client.get("binary")?.bytes == bytes)
        }
    }

    @Test func unicodeKeysAreDistinctByTheirBytes() async throws {
        try await withTestNode { node, client throws in
            _ = try await client.set("café", value: [1])  // precomposed é
            _ = try await client.set("cafe\u{301}", value: [2])  // e + combining acute
            #expect(try await client.get("café")?.bytes == [1])
            #expect(try await client.get("cafe\u{301}")?.bytes == [2])
            _ = try await client.set("🌳 ключ", value: [3])
            #expect(try await client.get("🌳 ключ")?.bytes == [3])
        }
    }

    @Test func missingKeyIsNotFoundWithStatusOK() async throws {
        try await withTestNode { node, client throws in
            #expect(try await client.get("never-written") == nil)
            // On the wire: OK, found = false, nothing else set.
            let raw = try await client.rpc.unary(
                path: "/erdtree.v1.KVStore/Get",
                request: GetRequest(key: Array("never-written".utf8)).encode(allocator: client.rpc.channel.allocator))
            let response = try GetResponse(decoding: raw)
            #expect(!response.found)
            #expect(response.lsn == 0)
            #expect(response.value.count == 0)
        }
    }

    @Test func deletingAMissingKeyIsNotDeletedWithLSNZeroAndWritesNothing() async throws {
        try await withTestNode { node, client throws in
            let (deleted, lsn) = try await client.delete("ghost")
            #expect(!deleted)
            #expect(lsn == 0)
            #expect(node.node.engine.lastLSN == 0)
            // The next real write still gets LSN 1.
            #expect(try await client.set("real", value: [1]) == 1)
        }
    }

    @Test func deletingTwiceDeletesOnce() async throws {
        try await withTestNode { node, client throws in
            _ = try await client.set("k", value: [1])
            #expect(try await client.delete("k") == (true, 2))
            #expect(try await client.delete("k") == (false, 0))
        }
    }

    @Test func lsnsIncreaseWithEveryWrite() async throws {
        try await withTestNode { node, client throws in
            var lsns: [UInt64] = []
            for i in 0..<10 {
                lsns.append(try await client.set("key-\(i % 3)", value: [UInt8(i)]))
                if i % 4 == 3 { lsns.append(try await client.delete("key-\(i % 3)").lsn) }
            }
            #expect(lsns == Array(1...UInt64(lsns.count)), "LSNs are not 1, 2, 3, …: \(lsns)")
            #expect(node.node.engine.lastLSN == UInt64(lsns.count))
        }
    }

    @Test func getWithMinLSNAheadOfTheNodeIsUnavailable() async throws {
        try await withTestNode { node, client throws in
            let lsn = try await client.set("k", value: [1])
            #expect(try await client.get("k", minLSN: lsn)?.bytes == [1])
            let status = await statusOf { try await client.get("k", minLSN: lsn + 1) }
            #expect(status?.code == .unavailable)
            #expect(status?.message.contains("\(lsn + 1)") == true, "\(String(describing: status))")
        }
    }

    // MARK: TTL

    @Test func keyWithTTLExpires() async throws {
        try await withTestNode { node, client throws in
            let before = nowMs()
            _ = try await client.set("short-lived", value: [1], ttlMs: 200)
            let value = try await client.get("short-lived")
            let elapsedMs = nowMs() - before
            if let value {
                #expect(value.bytes == [1])
                #expect(value.expiresAtMs >= before + 200)
                #expect(value.expiresAtMs <= before + elapsedMs + 200)
            } else {
                // On a loaded machine the read may come after the TTL; before it, the key must be there.
                #expect(elapsedMs >= 200, "gone \(elapsedMs) ms after a Set with a 200 ms TTL")
            }

            try await Task.sleep(for: .milliseconds(400))
            #expect(try await client.get("short-lived") == nil, "still there after its TTL")
            #expect(try await client.delete("short-lived") == (false, 0))
        }
    }

    @Test func overwritingWithoutTTLMakesTheKeyPermanent() async throws {
        try await withTestNode { node, client throws in
            _ = try await client.set("k", value: [1], ttlMs: 100)
            _ = try await client.set("k", value: [2])
            try await Task.sleep(for: .milliseconds(200))
            let value = try #require(try await client.get("k"))
            #expect(value.bytes == [2])
            #expect(value.expiresAtMs == 0)
        }
    }

    @Test func negativeTTLIsInvalidArgumentAndWritesNothing() async throws {
        try await withTestNode { node, client throws in
            let status = await statusOf { try await client.set("k", value: [1], ttlMs: -1) }
            #expect(status?.code == .invalidArgument)
            #expect(status?.message.contains("-1") == true, "\(String(describing: status))")
            #expect(try await client.get("k") == nil)
            #expect(node.node.engine.lastLSN == 0)
        }
    }

    @Test func ttlPastTheYear9999IsInvalidArgument() async throws {
        try await withTestNode { node, client throws in
            let status = await statusOf { try await client.set("k", value: [1], ttlMs: .max) }
            #expect(status?.code == .invalidArgument)
            #expect(try await client.get("k") == nil)
        }
    }

    // MARK: Limits

    @Test func emptyKeyIsInvalidArgumentNamingTheLimit() async throws {
        try await withTestNode { node, client throws in
            for (operation, call) in keyOperations(client, key: "") {
                let status = await statusOf(call)
                #expect(status?.code == .invalidArgument, "\(operation)")
                #expect(status?.message.contains("4096") == true, "\(operation): \(String(describing: status))")
            }
            #expect(node.node.engine.lastLSN == 0)
        }
    }

    @Test func keyOfTheLimitIsAccepted() async throws {
        try await withTestNode { node, client throws in
            let key = String(repeating: "k", count: 4096)
            _ = try await client.set(key, value: [1])
            #expect(try await client.get(key)?.bytes == [1])
            #expect(try await client.delete(key).deleted)
        }
    }

    @Test func keyOverTheLimitIsInvalidArgumentNamingTheLimit() async throws {
        try await withTestNode { node, client throws in
            let key = String(repeating: "k", count: 4097)
            for (operation, call) in keyOperations(client, key: key) {
                let status = await statusOf(call)
                #expect(status?.code == .invalidArgument, "\(operation)")
                #expect(status?.message.contains("4096") == true, "\(operation): \(String(describing: status))")
                #expect(status?.message.contains("4097") == true, "\(operation): \(String(describing: status))")
            }
            #expect(node.node.engine.lastLSN == 0)
        }
    }

    @Test func multiByteKeyIsMeasuredInBytes() async throws {
        try await withTestNode { node, client throws in
            // 1366 × "é" (2 bytes each) = 2732 bytes: fine. 2049 × "é" = 4098 bytes: too long.
            _ = try await client.set(String(repeating: "é", count: 1366), value: [1])
            let status = await statusOf { try await client.set(String(repeating: "é", count: 2049), value: [1]) }
            #expect(status?.code == .invalidArgument)
            #expect(status?.message.contains("4098") == true, "\(String(describing: status))")
        }
    }

    @Test func valueOfTheLimitIsAccepted() async throws {
        try await withTestNode { node, client throws in
            var value = [UInt8](repeating: 0xAB, count: 1 << 20)
            value[0] = 1
            value[value.count - 1] = 2
            _ = try await client.set("big", value: value)
            let stored = try await client.get("big")
            #expect(stored?.bytes.count == value.count)
            #expect(stored?.bytes == value)
        }
    }

    @Test func valueOverTheLimitIsInvalidArgumentNamingTheLimit() async throws {
        try await withTestNode { node, client throws in
            let status = await statusOf {
                try await client.set("big", value: Array(repeating: 7, count: (1 << 20) + 1))
            }
            #expect(status?.code == .invalidArgument)
            #expect(status?.message.contains("1048576") == true, "\(String(describing: status))")
            #expect(try await client.get("big") == nil)
            #expect(node.node.engine.lastLSN == 0)
        }
    }

    @Test func configuredLimitsAreTheOnesEnforcedAndNamed() async throws {
        try await withTestNode(limits: NodeConfig.Limits(maxKeyBytes: 8, maxValueBytes: 16)) { node, client throws in
            _ = try await client.set("12345678", value: Array(repeating: 1, count: 16))
            let longKey = await statusOf { try await client.set("123456789", value: [1]) }
            #expect(longKey?.code == .invalidArgument)
            #expect(longKey?.message.contains("8 bytes") == true, "\(String(describing: longKey))")
            let bigValue = await statusOf { try await client.set("k", value: Array(repeating: 1, count: 17)) }
            #expect(bigValue?.code == .invalidArgument)
            #expect(bigValue?.message.contains("16") == true, "\(String(describing: bigValue))")
            let empty = await statusOf { try await client.set("", value: [1]) }
            #expect(empty?.code == .invalidArgument)
            #expect(
                empty?.message.contains("4096") == false,
                "the message names a limit that is not configured: \(String(describing: empty))")
            #expect(empty?.message.contains("1 to 8 bytes") == true, "\(String(describing: empty))")
        }
    }

    @Test func messageOverTheMessageLimitIsResourceExhaustedAndTheConnectionGoesOn() async throws {
        try await withTestNode { node, client throws in
            let status = await statusOf {
                try await client.set("huge", value: Array(repeating: 1, count: (4 << 20) + 1))
            }
            #expect(status?.code == .resourceExhausted)
            #expect(status?.message.contains("4194304") == true, "\(String(describing: status))")
            #expect(node.node.engine.lastLSN == 0)
            // Same connection, next call.
            #expect(try await client.set("small", value: [1]) == 1)
        }
    }

    // MARK: Malformed requests

    @Test(
        arguments: [
            [0xC3, 0x28],  // a lead byte followed by ASCII
            [0xFF],  // never valid in UTF-8
            [0xC0, 0x80],  // overlong NUL
            [0xED, 0xA0, 0x80],  // a UTF-16 surrogate
            [0x61, 0xE2, 0x82],  // truncated sequence at the end
        ] as [[UInt8]])
    func keyThatIsNotUTF8IsInvalidArgument(key: [UInt8]) async throws {
        try await withTestNode { node, client throws in
            let get = await rawCall(client, "/erdtree.v1.KVStore/Get", RawProto.bytesField(1, key))
            #expect(get?.code == .invalidArgument)
            #expect(get?.message.contains("UTF-8") == true, "\(String(describing: get))")

            let set = await rawCall(
                client, "/erdtree.v1.KVStore/Set", RawProto.bytesField(1, key) + RawProto.bytesField(2, [1]))
            #expect(set?.code == .invalidArgument)
            #expect(node.node.engine.lastLSN == 0, "a key that is not UTF-8 was written")
        }
    }

    @Test(arguments: [
        ("/erdtree.v1.KVStore/Get", "erdtree.v1.GetRequest"),
        ("/erdtree.v1.KVStore/Set", "erdtree.v1.SetRequest"),
        ("/erdtree.v1.KVStore/Delete", "erdtree.v1.DeleteRequest"),
        ("/grpc.health.v1.Health/Check", "grpc.health.v1.HealthCheckRequest"),
    ])
    func garbageBytesAreInvalidArgumentNamingTheMessageType(path: String, typeName: String) async throws {
        try await withTestNode { node, client throws in
            for garbage: [UInt8] in [[0xFF, 0xFF, 0xFF], [0x0A, 0x10, 0x61], [0x0F]] {
                let status = await rawCall(client, path, garbage)
                #expect(status?.code == .invalidArgument, "\(garbage)")
                #expect(status?.message.contains(typeName) == true, "\(String(describing: status))")
            }
            #expect(node.node.engine.lastLSN == 0)
        }
    }

    @Test func unknownFieldsAreIgnored() async throws {
        try await withTestNode { node, client throws in
            _ = try await client.set("k", value: [9])
            // key = "k", then field 111 (varint) that a newer client might send.
            let request = RawProto.bytesField(1, Array("k".utf8)) + [0xF8, 0x06, 0x01]
            let response = try await client.rpc.unary(
                path: "/erdtree.v1.KVStore/Get", request: ByteBuffer(bytes: request))
            let decoded = try GetResponse(decoding: response)
            #expect(decoded.found)
            #expect(decoded.value == [9])
        }
    }

    @Test func keyWithANULByteIsNeverStoredUnderATruncatedKey() async throws {
        try await withTestNode { node, client throws in
            // "a\0b" is valid UTF-8 of 3 bytes. protobuf-c hands strings over NUL-terminated, so
            // the server must either keep all 3 bytes or refuse the key; writing "a" is wrong.
            let status = await rawCall(
                client, "/erdtree.v1.KVStore/Set",
                RawProto.bytesField(1, [0x61, 0x00, 0x62]) + RawProto.bytesField(2, [1]))
            #expect(status?.code == .invalidArgument)
            #expect(status?.message.contains("NUL") == true, "\(String(describing: status))")
            #expect(try await client.get("a") == nil, "Set of key \"a\\0b\" wrote key \"a\"")
        }
    }

    @Test func kvClientDoesNotTruncateAKeyWithANULByte() async throws {
        try await withTestNode { node, client throws in
            _ = try await client.set("a", value: [1])
            // Whatever the server does with "a\0b", it must not be the key "a".
            let refused = await statusOf { try await client.set("a\u{0}b", value: [2]) }
            #expect(refused?.code == .invalidArgument)
            #expect(try await client.get("a")?.bytes == [1], "KVClient sent \"a\\0b\" as \"a\"")
            _ = await statusOf { try await client.delete("a\u{0}b") }
            #expect(try await client.get("a")?.bytes == [1], "KVClient deleted \"a\" for \"a\\0b\"")
        }
    }

    // MARK: Health

    @Test func healthCheckIsServingForTheServerAndEachService() async throws {
        try await withTestNode { node, client throws in
            #expect(try await client.health() == .serving)
            for service in ["erdtree.v1.KVStore", "erdtree.v1.Admin", "grpc.health.v1.Health"] {
                #expect(try await client.health(service: service) == .serving, "\(service)")
            }
        }
    }

    @Test func healthCheckOfAnUnknownServiceIsNotFound() async throws {
        try await withTestNode { node, client throws in
            let status = await statusOf { try await client.health(service: "no.such.Service") }
            #expect(status?.code == .notFound)
            #expect(status?.message.contains("no.such.Service") == true, "\(String(describing: status))")
        }
    }

    @Test func healthWatchStreamsServingThenNotServingWhenTheNodeStops() async throws {
        let node = try await TestNode.start()
        let client = try await node.connect()
        let watch = HealthWatch(client: client, service: "")
        #expect(await watch.next() == .status(.serving))

        let stopping = Task { await node.stop() }
        #expect(await watch.next() == .status(.notServing))
        #expect(await watch.next() == .finished(.ok))
        await stopping.value
        await client.rpc.close()
    }

    @Test func healthWatchOfAnUnknownServiceSaysServiceUnknown() async throws {
        try await withTestNode { node, client throws in
            let watch = HealthWatch(client: client, service: "no.such.Service")
            #expect(await watch.next() == .status(.serviceUnknown))
            watch.call.cancel()
            #expect(await watch.next() == .finished(RPCStatus(.cancelled, "cancelled by the client")))
        }
    }

    // MARK: Concurrency

    @Test func sixteenConcurrentClientsSeeConsistentData() async throws {
        try await withTestNode { node, _ throws in
            let clientCount = 16
            let opsPerClient = 100
            let results = try await withThrowingTaskGroup(of: ClientRun.self) { group in
                for c in 0..<clientCount {
                    group.addTask {
                        let client = try await node.connect()
                        do {
                            let run = try await runClient(c, client: client, ops: opsPerClient)
                            await client.rpc.close()
                            return run
                        } catch {
                            await client.rpc.close()
                            throw error
                        }
                    }
                }
                var results: [ClientRun] = []
                for try await run in group { results.append(run) }
                return results
            }
            #expect(results.count == clientCount)
            #expect(results.allSatisfy { $0.mismatches.isEmpty }, "\(results.flatMap(\.mismatches).prefix(5))")

            // Every write got its own LSN, and no LSN was handed out without a write.
            let lsns = results.flatMap(\.writeLSNs)
            #expect(Set(lsns).count == lsns.count, "two writes share an LSN")
            #expect(lsns.max() == node.node.engine.lastLSN)
            #expect(UInt64(lsns.count) == node.node.engine.lastLSN)
            for run in results {
                #expect(run.writeLSNs == run.writeLSNs.sorted(), "one client's writes got decreasing LSNs")
            }

            // The final state is exactly what each client last wrote.
            let checker = try await node.connect()
            for run in results {
                for (key, expected) in run.model {
                    let stored = try await checker.get(key)
                    #expect(stored?.bytes == expected, "\(key)")
                }
            }
            await checker.rpc.close()
        }
    }

    /// Keys are checked eight ASCII bytes at a time, then by the decoder: every length around the
    /// word size, and a bad or multi-byte sequence in the word part and in the tail.
    @Test func keyUTF8CheckAgreesWithTheStandardLibrary() {
        var cases: [[UInt8]] = (0...17).map { Array(repeating: UInt8(ascii: "k"), count: $0) }
        for length in [1, 7, 8, 9, 16, 17] {
            for position in [0, length / 2, length - 1] {
                for bad: [UInt8] in [[0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xE2, 0x82]] {
                    var key = Array(repeating: UInt8(ascii: "k"), count: length)
                    key.replaceSubrange(position..<position + 1, with: bad)
                    cases.append(key)
                }
                var accented = Array(repeating: UInt8(ascii: "k"), count: length)
                accented.replaceSubrange(position..<position + 1, with: Array("é€😀".utf8))
                cases.append(accented)
            }
        }
        for key in cases {
            #expect(KVStoreService.isValidUTF8(key) == (String(validating: key, as: UTF8.self) != nil), "\(key)")
        }
    }
}

// MARK: Helpers

private func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

/// Get, Set and Delete of `key`, each as a closure that throws the call's status.
private func keyOperations(_ client: KVClient, key: String) -> [(String, () async throws -> Void)] {
    [
        ("Get", { _ = try await client.get(key) }),
        ("Set", { _ = try await client.set(key, value: [1]) }),
        ("Delete", { _ = try await client.delete(key) }),
    ]
}

/// Sends `bytes` as the request message of a unary call, as they are.
/// - Returns: the status the call failed with, or nil when it succeeded.
private func rawCall(_ client: KVClient, _ path: String, _ bytes: [UInt8]) async -> RPCStatus? {
    await statusOf {
        try await client.rpc.unary(path: path, request: ByteBuffer(bytes: bytes), timeout: patience(.seconds(5)))
    }
}

/// What one of the concurrent clients did and saw.
private struct ClientRun: Sendable {
    var writeLSNs: [UInt64] = []
    var model: [String: [UInt8]?] = [:]
    var mismatches: [String] = []
}

/// 100 operations over 10 keys of the client's own: sets, reads checked against what it
/// wrote last, and deletes.
private func runClient(_ c: Int, client: KVClient, ops: Int) async throws -> ClientRun {
    var run = ClientRun()
    for i in 0..<ops {
        let key = "client-\(c)/key-\(i % 10)"
        switch i % 5 {
        case 0, 1, 2:
            let value = Array("\(c):\(i)".utf8)
            run.writeLSNs.append(try await client.set(key, value: value))
            run.model[key] = .some(value)
        case 3:
            let stored = try await client.get(key)?.bytes
            let expected = run.model[key] ?? nil
            if stored != expected {
                run.mismatches.append(
                    "\(key): read \(String(describing: stored)), wrote \(String(describing: expected))")
            }
        default:
            let (deleted, lsn) = try await client.delete(key)
            let existed = (run.model[key] ?? nil) != nil
            if deleted != existed { run.mismatches.append("\(key): deleted=\(deleted) but existed=\(existed)") }
            if deleted { run.writeLSNs.append(lsn) }
            run.model[key] = .some(nil)
        }
    }
    return run
}

/// A `grpc.health.v1.Health/Watch` call, read one event at a time by one test task.
private final class HealthWatch {
    enum Event: Sendable, Equatable {
        case status(ServingStatus?)
        case finished(RPCStatus)
    }

    let call: ClientCall
    private var iterator: AsyncStream<Event>.Iterator

    init(client: KVClient, service: String) {
        let (events, continuation) = AsyncStream<Event>.makeStream()
        iterator = events.makeAsyncIterator()
        call = client.rpc.makeCall(
            path: "/grpc.health.v1.Health/Watch", timeout: patience(.seconds(5)),
            onMessage: { continuation.yield(.status(try? HealthCheckResponse(decoding: $0).status)) },
            onFinish: {
                continuation.yield(.finished($0))
                continuation.finish()
            })
        call.send(HealthCheckRequest(service: service).encode(allocator: client.rpc.channel.allocator))
        call.closeSend()
    }

    func next() async -> Event? { await iterator.next() }
}
