import ErdtreeRPC
import ErdtreeSync
import NIOCore

/// A client of etcd's v3 gRPC API, for the node's coordinator: keys, transactions on them,
/// leases and watches (DESIGN §10, docs/etcd-client.md).
///
/// It speaks gRPC through the project's own client (`RPCClient`, nghttp2) with the protobuf-c
/// messages generated from `api/etcd`, over one HTTP/2 connection to one endpoint at a time.
/// When that connection breaks, the call under way fails and the next one dials the endpoints
/// again, in order. Calls are not retried: a Txn that may or may not have been applied is the
/// caller's to check.
///
/// Every call may come from any task and is bounded by `timeout`: a unary call by its gRPC
/// deadline, a keep-alive round trip and a watch's creation by a timer. None of this is on the
/// write path.
public final class EtcdClient: Sendable {
    /// The endpoints as given, `host:port` each.
    public let endpoints: [String]
    /// How every endpoint is dialled; nil for cleartext.
    let tls: ClientTLS?
    /// Each call's bound.
    public let timeout: Duration
    private let addresses: [SocketAddressSpec]
    private let group: any EventLoopGroup
    private let state: Locked<State>
    let keepAlives = EtcdLeaseKeepAlive()

    private struct State {
        var rpc: RPCClient
        var endpoint: String
        var closed = false
    }

    private init(
        endpoints: [String], addresses: [SocketAddressSpec], group: any EventLoopGroup, timeout: Duration,
        tls: ClientTLS?, rpc: RPCClient, endpoint: String
    ) {
        self.endpoints = endpoints
        self.tls = tls
        self.addresses = addresses
        self.group = group
        self.timeout = timeout
        self.state = Locked(State(rpc: rpc, endpoint: endpoint))
    }

    /// Connects to the first endpoint (`host:port`) that answers: one that accepts the
    /// connection and answers a linearizable Range, which a member cut off from its cluster's
    /// quorum does not. Each call of the client then has `timeout`.
    ///
    /// - Throws: `EtcdError.invalidEndpoint` for an endpoint that is not `host:port`;
    ///   `EtcdError.unreachable` naming each endpoint's failure when none answered.
    public static func connect(
        endpoints: [String], group: any EventLoopGroup, timeout: Duration, tls: ClientTLS? = nil
    ) async throws -> EtcdClient {
        var addresses: [SocketAddressSpec] = []
        for endpoint in endpoints {
            do {
                addresses.append(try SocketAddressSpec(parsing: endpoint))
            } catch {
                throw EtcdError.invalidEndpoint(endpoint, reason: error.description)
            }
        }
        let (rpc, endpoint) = try await dial(
            endpoints: endpoints, addresses: addresses, group: group, timeout: timeout, tls: tls)
        return EtcdClient(
            endpoints: endpoints, addresses: addresses, group: group, timeout: timeout, tls: tls, rpc: rpc,
            endpoint: endpoint)
    }

    /// The endpoint the client is connected to now (or was last).
    public var currentEndpoint: String { state.withLock { $0.endpoint } }

    /// Closes the connection: open watches end with `EtcdError.closed`, as do keep-alives
    /// waiting and every later call.
    public func close() async {
        let rpc = state.withLock { state in
            state.closed = true
            return state.rpc
        }
        keepAlives.close()
        await rpc.close()
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    // MARK: Connection

    /// The connection to use: the current one while it is open, else a new one to the first
    /// endpoint that answers.
    func connection() async throws(EtcdError) -> RPCClient {
        let current = try state.withLock { state throws(EtcdError) in
            guard !state.closed else { throw .closed }
            return state.rpc
        }
        if current.channel.isActive { return current }
        let (fresh, endpoint) = try await Self.dial(
            endpoints: endpoints, addresses: addresses, group: group, timeout: timeout, tls: tls)
        // Two calls that found the connection broken both redial; the first to get here wins.
        let (use, drop) = state.withLock { state -> (RPCClient?, RPCClient?) in
            if state.closed { return (nil, fresh) }
            if state.rpc.channel.isActive { return (state.rpc, fresh) }
            state.rpc = fresh
            state.endpoint = endpoint
            return (fresh, nil)
        }
        if let drop { await drop.close() }
        guard let use else { throw .closed }
        return use
    }

    /// Tries the endpoints in order; see `connect`.
    private static func dial(
        endpoints: [String], addresses: [SocketAddressSpec], group: any EventLoopGroup, timeout: Duration,
        tls: ClientTLS?
    ) async throws(EtcdError) -> (RPCClient, String) {
        var failures: [String] = []
        for (endpoint, address) in zip(endpoints, addresses) {
            let rpc: RPCClient
            do {
                rpc = try await RPCClient.connect(
                    host: address.host, port: address.port, group: group, connectTimeout: timeout, tls: tls)
            } catch {
                failures.append("\(endpoint): \(error)")
                continue
            }
            do {
                // etcdctl's health check reads the key "health" the same way.
                let probe = EtcdRangeRequest(key: Array("health".utf8)).encode(allocator: rpc.channel.allocator)
                _ = try await rpc.unary(path: EtcdMethod.range.path, request: probe, timeout: timeout)
                return (rpc, endpoint)
            } catch {
                await rpc.close()
                failures.append("\(endpoint): \(error)")
            }
        }
        throw .unreachable(
            endpoints: endpoints, reason: failures.isEmpty ? "no endpoints given" : failures.joined(separator: "; "))
    }

    // MARK: Calls

    /// One unary call of `method` on the current connection.
    ///
    /// - Parameter lease: the lease the call names, if any: etcd's "lease not found" for it is
    ///   `EtcdError.leaseExpired`.
    func unary(
        _ method: EtcdMethod, lease: Int64 = 0, _ request: (ByteBufferAllocator) -> ByteBuffer
    ) async throws(EtcdError) -> ByteBuffer {
        let rpc = try await connection()
        do {
            return try await rpc.unary(path: method.path, request: request(rpc.channel.allocator), timeout: timeout)
        } catch let status as RPCStatus {
            throw error(status, method: method, lease: lease)
        } catch {
            throw .failed(method: method.rawValue, status: RPCStatus(.unknown, "\(error)"))
        }
    }

    /// The error a call of `method` that ended with `status` throws.
    func error(_ status: RPCStatus, method: EtcdMethod, lease: Int64 = 0) -> EtcdError {
        Self.error(status, method: method, lease: lease, closed: isClosed)
    }

    static func error(_ status: RPCStatus, method: EtcdMethod, lease: Int64, closed: Bool) -> EtcdError {
        if closed { return .closed }
        // etcdserver's ErrGRPCLeaseNotFound: NOT_FOUND "etcdserver: requested lease not found".
        if lease != 0, status.code == .notFound, status.message.contains("lease not found") {
            return .leaseExpired(lease)
        }
        if status.code == .ok {
            return .failed(method: method.rawValue, status: RPCStatus(.unavailable, "etcd ended the stream"))
        }
        return .failed(method: method.rawValue, status: status)
    }
}
