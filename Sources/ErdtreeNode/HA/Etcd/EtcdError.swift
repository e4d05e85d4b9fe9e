import ErdtreeRPC

/// Why an etcd call failed, said so that a log line reads as a sentence.
///
/// etcd's own refusals arrive as gRPC statuses (`etcdserver: requested lease not found`);
/// `EtcdClient` maps the ones a coordinator acts on to their own cases (a lease that is gone is
/// `.leaseExpired`) and carries the rest as `.failed`, naming the method.
public enum EtcdError: Error, Equatable, CustomStringConvertible {
    /// No endpoint answered: each was refused, timed out or failed its first call; `reason`
    /// says how, per endpoint.
    case unreachable(endpoints: [String], reason: String)
    /// An endpoint is not `host:port`.
    case invalidEndpoint(String, reason: String)
    /// etcd no longer has the lease: it expired or was revoked (a keep-alive answered a TTL of
    /// 0 or less, or a call naming it was refused with "lease not found").
    case leaseExpired(Int64)
    /// An answer that is not a valid encoding of the message expected, or lacks what the call
    /// needs from it.
    case badResponse(String)
    /// etcd, or the connection to it, failed the call (`method` as in `KV/Txn`); a call past
    /// its timeout fails with DEADLINE_EXCEEDED.
    case failed(method: String, status: RPCStatus)
    /// etcd ended the watch: `compactRevision` is set (non-zero) when the revision it was to
    /// start from has been compacted away, so the watcher must read the current state again.
    case watchCanceled(reason: String, compactRevision: Int64)
    /// The client was closed.
    case closed

    public var description: String {
        switch self {
        case .unreachable(let endpoints, let reason):
            return "no etcd endpoint answered (\(endpoints.joined(separator: ", "))): \(reason)"
        case .invalidEndpoint(let endpoint, let reason):
            return "etcd endpoint '\(endpoint)' is not host:port: \(reason)"
        case .leaseExpired(let lease):
            return "etcd lease \(Self.hex(lease)) has expired or was revoked"
        case .badResponse(let reason):
            return "etcd sent an answer the client cannot use: \(reason)"
        case .failed(let method, let status):
            return "etcd \(method) failed: \(status)"
        case .watchCanceled(let reason, let compactRevision):
            let detail = reason.isEmpty ? "" : ": \(reason)"
            return compactRevision > 0
                ? "etcd canceled the watch: its start revision was compacted (now \(compactRevision))\(detail)"
                : "etcd canceled the watch\(detail)"
        case .closed:
            return "the etcd client is closed"
        }
    }

    /// Lease IDs in hex, as etcdctl prints them.
    static func hex(_ lease: Int64) -> String {
        String(UInt64(bitPattern: lease), radix: 16)
    }
}
