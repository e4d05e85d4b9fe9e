// Leases: grant, keep alive, revoke. A key put under a lease goes when the lease does.

extension EtcdClient {
    /// Grants a lease of `ttl`, rounded up to whole seconds (etcd's unit; etcd may raise a TTL
    /// below its minimum, about 1.5 × its election timeout).
    ///
    /// - Returns: the lease ID.
    /// - Throws: `EtcdError`.
    public func grantLease(ttl: Duration) async throws -> Int64 {
        let (seconds, attoseconds) = ttl.components
        let ttlSeconds = max(1, seconds + (attoseconds > 0 ? 1 : 0))
        let buffer = try await unary(.leaseGrant) {
            EtcdLeaseGrantRequest(ttlSeconds: ttlSeconds).encode(allocator: $0)
        }
        return try EtcdLeaseGrantResponse(decoding: buffer).id
    }

    /// Renews `lease` once: one round trip on the LeaseKeepAlive stream the client keeps open
    /// (opened on first use, and again after it broke).
    ///
    /// - Returns: the TTL etcd reports from now.
    /// - Throws: `EtcdError.leaseExpired` when etcd answers a TTL of 0 or less (it does not have
    ///   the lease); `EtcdError.failed` when the stream broke or gave no answer within `timeout`
    ///   (the next call opens a new one); other `EtcdError`s.
    public func keepAlive(lease: Int64) async throws -> Duration {
        let rpc = try await connection()
        let ttlSeconds = try await keepAlives.renew(lease, on: rpc, timeout: timeout) { [weak self] in
            self?.isClosed ?? true
        }
        guard ttlSeconds > 0 else { throw EtcdError.leaseExpired(lease) }
        return .seconds(ttlSeconds)
    }

    /// Revokes `lease`: etcd deletes every key attached to it.
    ///
    /// - Throws: `EtcdError.leaseExpired` when etcd does not have it (any more); other `EtcdError`s.
    public func revokeLease(_ id: Int64) async throws {
        let buffer = try await unary(.leaseRevoke, lease: id) { EtcdLeaseRevokeRequest(id: id).encode(allocator: $0) }
        try EtcdLeaseRevokeResponse.check(buffer)
    }
}
