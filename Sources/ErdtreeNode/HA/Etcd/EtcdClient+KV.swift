// Keys: reads, writes, and the two transactions a coordinator needs (create a key only if it is
// absent; delete it only if it still holds one's own value).

extension EtcdClient {
    /// The key's current value and revisions, or nil when it does not exist (a linearizable read).
    ///
    /// - Throws: `EtcdError`.
    public func get(_ key: [UInt8]) async throws -> EtcdKeyValue? {
        let buffer = try await unary(.range) { EtcdRangeRequest(key: key).encode(allocator: $0) }
        return try EtcdRangeResponse(decoding: buffer).kvs.first
    }

    /// Every key that starts with `prefix`, in key order (a linearizable read).
    ///
    /// - Throws: `EtcdError`.
    public func get(prefix: [UInt8]) async throws -> [EtcdKeyValue] {
        let buffer = try await unary(.range) {
            EtcdRangeRequest(key: prefix, rangeEnd: etcdPrefixEnd(prefix)).encode(allocator: $0)
        }
        return try EtcdRangeResponse(decoding: buffer).kvs
    }

    /// Sets `key` to `value`, attached to `lease` (0: none, and a lease it had is dropped).
    ///
    /// - Throws: `EtcdError.leaseExpired` when etcd does not have `lease`; other `EtcdError`s.
    public func put(_ key: [UInt8], _ value: [UInt8], lease: Int64 = 0) async throws {
        let buffer = try await unary(.put, lease: lease) {
            EtcdPutRequest(key: key, value: value, lease: lease).encode(allocator: $0)
        }
        try EtcdPutResponse.check(buffer)
    }

    /// One transaction: if `key`'s create_revision is 0 (it does not exist), put `value` under
    /// `lease`; else read it. How a leader key is taken: exactly one of many callers creates it.
    ///
    /// - Returns: `created` true when this call created the key; else false, with the key as it
    ///   is (`existing`, never nil then).
    /// - Throws: `EtcdError.leaseExpired` when etcd does not have `lease`; other `EtcdError`s.
    public func create(_ key: [UInt8], _ value: [UInt8], lease: Int64) async throws -> (
        created: Bool, existing: EtcdKeyValue?
    ) {
        let txn = EtcdTxnRequest(
            compare: [.createRevision(key: key, equals: 0)],
            success: [.put(EtcdPutRequest(key: key, value: value, lease: lease))],
            failure: [.range(EtcdRangeRequest(key: key))])
        let buffer = try await unary(.txn, lease: lease) { txn.encode(allocator: $0) }
        let response = try EtcdTxnResponse(decoding: buffer)
        if response.succeeded { return (true, nil) }
        // The comparison failed because the key exists, and the same revision's read found it.
        guard case .range(let kvs) = response.responses.first, let existing = kvs.first else {
            throw EtcdError.badResponse("KV/Txn: the key exists, but the read of it in the same transaction found none")
        }
        return (false, existing)
    }

    /// One transaction: if `key`'s value is `expected`, delete it. How a leader gives its key up
    /// without deleting a key someone else has taken since.
    ///
    /// - Returns: whether this call deleted the key (false when it does not exist or holds
    ///   another value).
    /// - Throws: `EtcdError`.
    public func delete(_ key: [UInt8], ifValue expected: [UInt8]) async throws -> Bool {
        let txn = EtcdTxnRequest(
            compare: [.value(key: key, equals: expected)], success: [.deleteRange(key: key)], failure: [])
        let buffer = try await unary(.txn) { txn.encode(allocator: $0) }
        let response = try EtcdTxnResponse(decoding: buffer)
        guard response.succeeded else { return false }
        guard case .deleteRange(let deleted) = response.responses.first else {
            throw EtcdError.badResponse("KV/Txn: the delete ran but its answer is missing")
        }
        return deleted > 0
    }
}
