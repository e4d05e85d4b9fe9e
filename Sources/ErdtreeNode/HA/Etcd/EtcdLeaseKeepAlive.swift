import ErdtreeRPC
import ErdtreeSync
import NIOCore

/// The LeaseKeepAlive stream of an `EtcdClient`: one bidirectional gRPC call, opened on the first
/// renewal and again on the first renewal after it broke, on which each renewal sends one
/// request and waits for the answer naming its lease.
///
/// etcd answers a stream's requests in order, each with the lease ID it renewed, so renewals
/// wait per lease, first in first out; several leases may share the stream. A renewal that gets
/// no answer within the client's timeout fails and resets the stream, which is then not to be
/// trusted; every renewal waiting on a stream that ends fails with how it ended.
final class EtcdLeaseKeepAlive: Sendable {
    private typealias Continuation = CheckedContinuation<Result<Int64, EtcdError>, Never>

    private struct Waiter {
        var token: UInt64
        var continuation: Continuation
    }

    private struct State {
        /// The open stream and the connection it is on.
        var call: ClientCall?
        var rpc: RPCClient?
        /// Which stream is open: callbacks of another find another number and do nothing.
        var generation: UInt64 = 0
        var lastGeneration: UInt64 = 0
        /// Streams being opened, and those of them that ended before they were installed (they
        /// could not start), with how.
        var opening: Set<UInt64> = []
        var endedEarly: [UInt64: RPCStatus] = [:]
        /// Renewals sent on the open stream and not yet answered, by lease, oldest first.
        var waiters: [Int64: [Waiter]] = [:]
        var nextToken: UInt64 = 0
        var closed = false

        /// Forgets the open stream; returns it and the renewals waiting on it.
        mutating func drop() -> (ClientCall?, [Waiter]) {
            defer {
                call = nil
                rpc = nil
                waiters = [:]
            }
            return (call, waiters.values.flatMap { $0 })
        }
    }

    private let state = Locked(State())

    /// Sends one renewal of `lease` on the stream over `rpc` and waits for etcd's answer.
    ///
    /// - Parameter isClosed: whether the client has been closed, which makes the end of a
    ///   stream it closed `.closed`.
    /// - Returns: the TTL etcd answered, in seconds (0 or less: it does not have the lease).
    /// - Throws: `.failed(method: "Lease/LeaseKeepAlive", …)` when the stream ended, could not
    ///   open, or gave no answer within `timeout`; `.badResponse`; `.closed`.
    func renew(
        _ lease: Int64, on rpc: RPCClient, timeout: Duration, isClosed: @escaping @Sendable () -> Bool
    ) async throws(EtcdError) -> Int64 {
        let (call, generation) = try stream(on: rpc, isClosed: isClosed)
        let result = await withCheckedContinuation { (continuation: Continuation) in
            let token = state.withLock { state -> UInt64? in
                guard !state.closed, state.generation == generation, state.call != nil else { return nil }
                let token = state.nextToken
                state.nextToken += 1
                state.waiters[lease, default: []].append(Waiter(token: token, continuation: continuation))
                return token
            }
            guard let token else {
                let error = EtcdClient.error(
                    RPCStatus(.unavailable, "the keep-alive stream ended before the renewal was sent"),
                    method: .leaseKeepAlive, lease: 0, closed: isClosed())
                continuation.resume(returning: .failure(error))
                return
            }
            call.send(EtcdLeaseKeepAliveRequest(id: lease).encode(allocator: rpc.channel.allocator))
            call.eventLoop.scheduleTask(in: TimeAmount(timeout)) { [weak self] in
                self?.timedOut(lease: lease, token: token, generation: generation, timeout: timeout)
            }
        }
        return try result.get()
    }

    /// The open stream on `rpc`, or a new one (a stream on another connection is given up on).
    private func stream(on rpc: RPCClient, isClosed: @escaping @Sendable () -> Bool) throws(EtcdError)
        -> (ClientCall, UInt64)
    {
        let (open, generation) = try state.withLock { state throws(EtcdError) -> ((ClientCall, UInt64)?, UInt64) in
            guard !state.closed else { throw .closed }
            if state.rpc === rpc, let call = state.call { return ((call, state.generation), 0) }
            state.lastGeneration += 1
            state.opening.insert(state.lastGeneration)
            return (nil, state.lastGeneration)
        }
        if let open { return open }
        // Opened outside the lock: a call that cannot start may finish at once, and its
        // callback takes the lock.
        let call = rpc.makeCall(
            path: EtcdMethod.leaseKeepAlive.path,
            onMessage: { [weak self] message in self?.received(message, generation: generation) },
            onFinish: { [weak self] status in self?.finished(status, generation: generation, closed: isClosed()) })
        enum Install {
            case installed(replaced: ClientCall?, orphans: [Waiter])
            case joined(ClientCall, UInt64)
            case failed(EtcdError)
        }
        let outcome = state.withLock { state -> Install in
            state.opening.remove(generation)
            let endedEarly = state.endedEarly.removeValue(forKey: generation)
            if state.closed { return .failed(.closed) }
            if let status = endedEarly {
                return .failed(EtcdClient.error(status, method: .leaseKeepAlive, lease: 0, closed: false))
            }
            // Another renewal opened one on this connection meanwhile.
            if state.rpc === rpc, let open = state.call { return .joined(open, state.generation) }
            let (replaced, orphans) = state.drop()
            state.call = call
            state.rpc = rpc
            state.generation = generation
            return .installed(replaced: replaced, orphans: orphans)
        }
        switch outcome {
        case .installed(let replaced, let orphans):
            replaced?.cancel()
            let error = EtcdError.failed(
                method: EtcdMethod.leaseKeepAlive.rawValue,
                status: RPCStatus(.unavailable, "the keep-alive stream was replaced after a reconnect"))
            for orphan in orphans { orphan.continuation.resume(returning: .failure(error)) }
            return (call, generation)
        case .joined(let open, let openGeneration):
            call.cancel()
            return (open, openGeneration)
        case .failed(let error):
            call.cancel()
            throw error
        }
    }

    /// Fails every waiting renewal with `.closed` and resets the stream; later renewals fail too.
    func close() {
        let (call, waiters) = state.withLock { state in
            state.closed = true
            return state.drop()
        }
        call?.cancel()
        for waiter in waiters { waiter.continuation.resume(returning: .failure(.closed)) }
    }

    // MARK: Stream events (on the connection's event loop)

    private func received(_ message: ByteBuffer, generation: UInt64) {
        let response: EtcdLeaseKeepAliveResponse
        do {
            response = try EtcdLeaseKeepAliveResponse(decoding: message)
        } catch {
            reset(generation: generation, error: error)
            return
        }
        let waiter = state.withLock { state -> Waiter? in
            // None: the answer to a renewal that already timed out.
            guard state.generation == generation, var queue = state.waiters[response.id], !queue.isEmpty else {
                return nil
            }
            let first = queue.removeFirst()
            state.waiters[response.id] = queue.isEmpty ? nil : queue
            return first
        }
        waiter?.continuation.resume(returning: .success(response.ttlSeconds))
    }

    private func finished(_ status: RPCStatus, generation: UInt64, closed: Bool) {
        let waiters = state.withLock { state -> [Waiter] in
            guard state.generation == generation else {
                if state.opening.contains(generation) { state.endedEarly[generation] = status }
                return []
            }
            return state.drop().1
        }
        let error = EtcdClient.error(status, method: .leaseKeepAlive, lease: 0, closed: closed)
        for waiter in waiters { waiter.continuation.resume(returning: .failure(error)) }
    }

    private func timedOut(lease: Int64, token: UInt64, generation: UInt64, timeout: Duration) {
        let stillWaiting = state.withLock { state in
            state.generation == generation && state.waiters[lease]?.contains { $0.token == token } == true
        }
        guard stillWaiting else { return }
        reset(
            generation: generation,
            error: .failed(
                method: EtcdMethod.leaseKeepAlive.rawValue,
                status: RPCStatus(.deadlineExceeded, "no keep-alive answer from etcd within \(timeout)")))
    }

    /// Gives up on stream `generation`: its renewals fail with `error`, and the next opens another.
    private func reset(generation: UInt64, error: EtcdError) {
        let (call, waiters) = state.withLock { state -> (ClientCall?, [Waiter]) in
            guard state.generation == generation else { return (nil, []) }
            return state.drop()
        }
        call?.cancel()
        for waiter in waiters { waiter.continuation.resume(returning: .failure(error)) }
    }
}
