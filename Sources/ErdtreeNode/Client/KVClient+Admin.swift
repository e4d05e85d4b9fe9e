import ErdtreeRPC
import NIOCore

/// Admin's listing and role changes, for the CLI and tests.
extension KVClient {
    /// One slave as `Admin/ListSlaves` shows it.
    public struct Slave: Sendable, Equatable {
        public var slaveID: String
        public var address: String
        public var appliedLSN: UInt64
        public var durableLSN: UInt64
        public var lagEntries: UInt64
        public var lagMs: Int64
        public var connected: Bool
    }

    public func listSlaves() async throws -> [Slave] {
        let response = try ListSlavesResponse(
            decoding: try await rpc.unary(
                path: "/erdtree.v1.Admin/ListSlaves",
                request: ListSlavesResponse.encodeRequest(allocator: rpc.channel.allocator), timeout: timeout))
        return response.slaves.map {
            Slave(
                slaveID: $0.slaveID, address: $0.address, appliedLSN: $0.appliedLSN, durableLSN: $0.durableLSN,
                lagEntries: $0.lagEntries, lagMs: $0.lagMs, connected: $0.connected)
        }
    }

    /// `Admin/Failover` on the master: hands its role to `to` (empty: the most up-to-date slave).
    public func failover(to: String, timeoutMs: UInt32) async throws -> FailoverResponse {
        let request = FailoverRequest(to: to, timeoutMs: timeoutMs).encode(allocator: rpc.channel.allocator)
        return try FailoverResponse(
            decoding: try await rpc.unary(path: "/erdtree.v1.Admin/Failover", request: request, timeout: timeout))
    }

    /// `Admin/Promote` on a slave. - Returns: the epoch it started.
    public func promote() async throws -> EpochStart {
        try PromoteMessages.decodeResponse(
            try await rpc.unary(
                path: "/erdtree.v1.Admin/Promote",
                request: PromoteMessages.encodeRequest(allocator: rpc.channel.allocator), timeout: timeout))
    }

    /// `Admin/Follow`: the node follows `masterAddress`.
    public func follow(_ masterAddress: String) async throws {
        _ = try await rpc.unary(
            path: "/erdtree.v1.Admin/Follow",
            request: FollowMessages.encodeRequest(masterAddress: masterAddress, allocator: rpc.channel.allocator),
            timeout: timeout)
    }
}
