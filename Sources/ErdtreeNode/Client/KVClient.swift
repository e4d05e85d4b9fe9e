import ErdtreeRPC
import NIOCore

/// A typed KVStore and Health client over `RPCClient`, for the CLI and tests.
public struct KVClient: Sendable {
    public struct Value: Sendable, Equatable {
        public var bytes: [UInt8]
        public var lsn: UInt64
        public var expiresAtMs: Int64
    }

    public let rpc: RPCClient
    public var timeout: Duration

    public init(rpc: RPCClient, timeout: Duration = .seconds(10)) {
        self.rpc = rpc
        self.timeout = timeout
    }

    /// - Returns: the value, or nil when the key does not exist.
    public func get(_ key: String, minLSN: UInt64 = 0) async throws -> Value? {
        try Self.checkKey(key)
        let request = GetRequest(key: Array(key.utf8), minLSN: minLSN).encode(allocator: rpc.channel.allocator)
        let response = try GetResponse(
            decoding: try await rpc.unary(path: "/erdtree.v1.KVStore/Get", request: request, timeout: timeout))
        return response.found
            ? Value(bytes: response.value.bytes, lsn: response.lsn, expiresAtMs: response.expiresAtMs) : nil
    }

    /// - Returns: the write's LSN.
    public func set(_ key: String, value: [UInt8], ttlMs: Int64 = 0) async throws -> UInt64 {
        try await write(key, value: value, ttlMs: ttlMs).lsn
    }

    /// `set`, also returning the epoch the write was logged in.
    public func write(_ key: String, value: [UInt8], ttlMs: Int64 = 0) async throws -> (lsn: UInt64, epoch: UInt64) {
        try Self.checkKey(key)
        let request = SetRequest(key: Array(key.utf8), value: value, ttlMs: ttlMs).encode(
            allocator: rpc.channel.allocator)
        let response = try SetResponse(
            decoding: try await rpc.unary(path: "/erdtree.v1.KVStore/Set", request: request, timeout: timeout))
        return (response.lsn, response.epoch)
    }

    /// - Returns: whether the key existed, and the delete's LSN (0 when it did not).
    public func delete(_ key: String) async throws -> (deleted: Bool, lsn: UInt64) {
        try Self.checkKey(key)
        let request = DeleteRequest(key: Array(key.utf8)).encode(allocator: rpc.channel.allocator)
        let response = try DeleteResponse(
            decoding: try await rpc.unary(path: "/erdtree.v1.KVStore/Delete", request: request, timeout: timeout))
        return (response.deleted, response.lsn)
    }

    /// Refuses before sending what protobuf-c would truncate at the NUL: a key "a\0b"
    /// must not become a write to "a".
    private static func checkKey(_ key: String) throws(RPCStatus) {
        if key.utf8.contains(0) { throw RequestError.keyContainsNUL.status }
    }

    /// The node's `Admin/Status`.
    public func status() async throws -> NodeStatus {
        try NodeStatus(
            decoding: try await rpc.unary(
                path: "/erdtree.v1.Admin/Status", request: encodeStatusRequest(allocator: rpc.channel.allocator),
                timeout: timeout))
    }

    public func health(service: String = "") async throws -> ServingStatus {
        let request = HealthCheckRequest(service: service).encode(allocator: rpc.channel.allocator)
        return try HealthCheckResponse(
            decoding: try await rpc.unary(path: "/grpc.health.v1.Health/Check", request: request, timeout: timeout)
        ).status
    }
}
