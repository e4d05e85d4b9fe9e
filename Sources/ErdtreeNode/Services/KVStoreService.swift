import ErdtreeRPC
import ErdtreeStorage
import NIOCore
import Synchronization

/// `erdtree.v1.KVStore` on a master: validates requests, assigns LSNs to writes and
/// applies them to the in-memory store.
///
/// Handlers answer inline on the connection's event loop: a Get is a shard lock and a
/// dictionary lookup, with no hop to another thread.
public final class KVStoreService: Sendable {
    public static let serviceName = "erdtree.v1.KVStore"

    let store: KeyValueStore
    let limits: NodeConfig.Limits
    /// The last LSN handed out. Kept in memory until the WAL makes it durable.
    private let lastLSN = Atomic<UInt64>(0)

    public init(store: KeyValueStore, limits: NodeConfig.Limits) {
        self.store = store
        self.limits = limits
    }

    public var currentLSN: UInt64 { lastLSN.load(ordering: .relaxed) }

    public func register(in router: inout RPCRouter) {
        router.register(
            "/erdtree.v1.KVStore/Get",
            .unary { [self] request, call in
                answer(call) { () throws(RPCStatus) in try get(request, allocator: call.allocator) }
            })
        router.register(
            "/erdtree.v1.KVStore/Set",
            .unary { [self] request, call in
                answer(call) { () throws(RPCStatus) in try set(request, allocator: call.allocator) }
            })
        router.register(
            "/erdtree.v1.KVStore/Delete",
            .unary { [self] request, call in
                answer(call) { () throws(RPCStatus) in try delete(request, allocator: call.allocator) }
            })
        router.register(
            "/erdtree.v1.KVStore/GetUpdates",
            .unary { request, call in
                answer(call) { () throws(RPCStatus) in
                    _ = try GetUpdatesRequest(decoding: request)
                    throw RPCStatus(
                        .unimplemented,
                        "GetUpdates reads the write-ahead log, which this version of erdtree does not keep yet")
                }
            })
    }

    func get(_ request: ByteBuffer, allocator: ByteBufferAllocator) throws(RPCStatus) -> ByteBuffer {
        let message = try GetRequest(decoding: request)
        try validate(key: message.key)
        let applied = currentLSN
        if message.minLSN > applied {
            throw RPCStatus(
                .unavailable,
                "min_lsn \(message.minLSN) is ahead of this node, which has applied up to LSN \(applied)")
        }
        let response =
            if let stored = store.get(StoreKey(message.key), nowMs: WallClock.nowMs()) {
                GetResponse(value: stored.value, found: true, lsn: stored.lsn, expiresAtMs: stored.expiresAtMs)
            } else {
                GetResponse(value: [], found: false, lsn: 0, expiresAtMs: 0)
            }
        return response.encode(allocator: allocator)
    }

    func set(_ request: ByteBuffer, allocator: ByteBufferAllocator) throws(RPCStatus) -> ByteBuffer {
        let message = try SetRequest(decoding: request)
        try validate(key: message.key)
        if message.value.count > limits.maxValueBytes {
            throw RequestError.valueTooLarge(limit: limits.maxValueBytes, actual: message.value.count).status
        }
        let expiresAtMs = try expiry(ttlMs: message.ttlMs)
        let lsn = lastLSN.add(1, ordering: .relaxed).newValue
        store.set(StoreKey(message.key), value: message.value, lsn: lsn, expiresAtMs: expiresAtMs)
        return SetResponse(lsn: lsn).encode(allocator: allocator)
    }

    func delete(_ request: ByteBuffer, allocator: ByteBufferAllocator) throws(RPCStatus) -> ByteBuffer {
        let message = try DeleteRequest(decoding: request)
        try validate(key: message.key)
        let key = StoreKey(message.key)
        let nowMs = WallClock.nowMs()
        // Deleting a missing key writes nothing, so it takes no LSN (the proto's contract).
        guard store.get(key, nowMs: nowMs) != nil else {
            return DeleteResponse(deleted: false, lsn: 0).encode(allocator: allocator)
        }
        let lsn = lastLSN.add(1, ordering: .relaxed).newValue
        let deleted = store.delete(key, lsn: lsn, nowMs: nowMs)
        return DeleteResponse(deleted: deleted, lsn: lsn).encode(allocator: allocator)
    }

    private func validate(key: [UInt8]) throws(RPCStatus) {
        if key.isEmpty { throw RequestError.emptyKey(limit: limits.maxKeyBytes).status }
        if key.count > limits.maxKeyBytes {
            throw RequestError.keyTooLong(limit: limits.maxKeyBytes, actual: key.count).status
        }
        if !Self.isValidUTF8(key) { throw RequestError.keyNotUTF8.status }
    }

    private func expiry(ttlMs: Int64) throws(RPCStatus) -> Int64 {
        if ttlMs < 0 { throw RequestError.negativeTTL(ttlMs).status }
        if ttlMs == 0 { return 0 }
        // 253402300800000 ms is 10000-01-01T00:00:00Z.
        let (expires, overflow) = WallClock.nowMs().addingReportingOverflow(ttlMs)
        if overflow || expires >= 253_402_300_800_000 { throw RequestError.ttlTooLarge(ttlMs).status }
        return expires
    }

    /// Validates without allocating: the stdlib's UTF-8 decoder over the bytes.
    static func isValidUTF8(_ bytes: [UInt8]) -> Bool {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}

/// Runs a handler body and answers the call with its result or its error status.
func answer(_ call: ServerCall, _ body: () throws(RPCStatus) -> ByteBuffer) {
    do {
        call.respond(try body())
    } catch {
        call.finish(error)
    }
}
