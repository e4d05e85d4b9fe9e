import ErdtreeRPC
import ErdtreeSync
import NIOCore

/// One watch on a key prefix: its own Watch stream, on which etcd streams the prefix's events.
///
/// `EtcdClient.watch` opens it and returns once etcd has confirmed the watcher. From then on
/// `onEvents` runs for each answer that carries events, in revision order, and `onEnd` runs once
/// when the watch ends: with nil after `cancel()`, else with why (`EtcdError.watchCanceled` when
/// etcd canceled it, e.g. a start revision compacted away; `.failed` when the stream or the
/// connection broke; `.closed` when the client was closed). Both run on the connection's event
/// loop, one at a time, `onEnd` last. A watch that is not cancelled lives as long as its
/// connection.
public final class EtcdWatch: Sendable {
    typealias Creation = CheckedContinuation<Result<Void, EtcdError>, Never>

    private enum Phase {
        /// Waiting for etcd's `created`; the caller of `watch` waits on the continuation.
        case creating(Creation)
        case watching
        case ended
    }

    private struct State {
        var phase: Phase = .ended
        var call: ClientCall?
        /// Set by `cancel()`: no events are delivered after, and `onEnd` gets nil.
        var cancelled = false
        /// Why the watch ends, when it is this side that ends the stream for etcd's reason.
        var endError: EtcdError?
    }

    private let state = Locked(State())
    private let onEvents: @Sendable ([EtcdEvent]) -> Void
    private let onEnd: @Sendable ((any Error)?) -> Void
    private let isClosed: @Sendable () -> Bool

    private init(
        onEvents: @escaping @Sendable ([EtcdEvent]) -> Void, onEnd: @escaping @Sendable ((any Error)?) -> Void,
        isClosed: @escaping @Sendable () -> Bool
    ) {
        self.onEvents = onEvents
        self.onEnd = onEnd
        self.isClosed = isClosed
    }

    /// Stops the watch: no `onEvents` starts after this returns, unless one was already being
    /// delivered, and `onEnd(nil)` follows. Does nothing once the watch has ended.
    public func cancel() {
        let call = state.withLock { state -> ClientCall? in
            guard case .watching = state.phase, !state.cancelled else { return nil }
            state.cancelled = true
            return state.call
        }
        // The reset reaches etcd, which drops the watcher; the call's end runs `onEnd`.
        call?.cancel()
    }

    /// Opens a Watch stream on `rpc`, asks for `request` (a create) and waits up to `timeout`
    /// for etcd to confirm it.
    ///
    /// - Throws: `EtcdError.watchCanceled` when etcd refused the watcher; `.failed` when the
    ///   stream failed or etcd did not confirm in time. Neither callback runs then.
    static func open(
        on rpc: RPCClient, request: EtcdWatchRequest, timeout: Duration, isClosed: @escaping @Sendable () -> Bool,
        onEvents: @escaping @Sendable ([EtcdEvent]) -> Void, onEnd: @escaping @Sendable ((any Error)?) -> Void
    ) async throws(EtcdError) -> EtcdWatch {
        let watch = EtcdWatch(onEvents: onEvents, onEnd: onEnd, isClosed: isClosed)
        let created = await withCheckedContinuation { (continuation: Creation) in
            watch.state.withLock { $0.phase = .creating(continuation) }
            let call = rpc.makeCall(
                path: EtcdMethod.watch.path, onMessage: { message in watch.received(message) },
                onFinish: { status in watch.finished(status) })
            watch.state.withLock { $0.call = call }
            call.send(request.encode(allocator: rpc.channel.allocator))
            call.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
                watch.creationTimedOut(after: timeout)
            }
        }
        try created.get()
        return watch
    }

    // MARK: Stream events (on the connection's event loop)

    private enum Step {
        case none
        case confirm(Creation)
        case refuse(Creation, EtcdError)
        case deliver([EtcdEvent])
        case end(ClientCall?)
    }

    private func received(_ message: ByteBuffer) {
        let step: Step
        do {
            let response = try EtcdWatchResponse(decoding: message)
            step = state.withLock { state in Self.step(&state, for: response) }
        } catch {
            step = state.withLock { state in Self.fail(&state, with: error) }
        }
        switch step {
        case .none: break
        case .confirm(let creation): creation.resume(returning: .success(()))
        case .refuse(let creation, let error):
            creation.resume(returning: .failure(error))
            state.withLock { $0.call }?.cancel()
        case .deliver(let events): onEvents(events)
        case .end(let call): call?.cancel()
        }
    }

    /// What to do with an answer of etcd's.
    private static func step(_ state: inout State, for response: EtcdWatchResponse) -> Step {
        let canceled = EtcdError.watchCanceled(
            reason: response.cancelReason, compactRevision: response.compactRevision)
        switch state.phase {
        case .creating(let creation):
            if response.canceled || response.compactRevision != 0 {
                state.phase = .ended
                return .refuse(creation, canceled)
            }
            guard response.created else { return .none }
            state.phase = .watching
            return .confirm(creation)
        case .watching:
            if state.cancelled { return .none }
            if response.canceled || response.compactRevision != 0 {
                state.endError = canceled
                return .end(state.call)
            }
            return response.events.isEmpty ? .none : .deliver(response.events)
        case .ended:
            return .none
        }
    }

    /// Ends the watch for `error` (an answer that did not decode).
    private static func fail(_ state: inout State, with error: EtcdError) -> Step {
        switch state.phase {
        case .creating(let creation):
            state.phase = .ended
            return .refuse(creation, error)
        case .watching:
            if state.endError == nil { state.endError = error }
            return .end(state.call)
        case .ended:
            return .none
        }
    }

    private func finished(_ status: RPCStatus) {
        enum Last {
            case none
            case refuse(Creation, EtcdError)
            case end((any Error)?)
        }
        let closed = isClosed()
        let last = state.withLock { state -> Last in
            let error = state.endError ?? EtcdClient.error(status, method: .watch, lease: 0, closed: closed)
            switch state.phase {
            case .creating(let creation):
                state.phase = .ended
                return .refuse(creation, error)
            case .watching:
                state.phase = .ended
                return .end(state.cancelled ? nil : error)
            case .ended:
                return .none
            }
        }
        switch last {
        case .none: break
        case .refuse(let creation, let error): creation.resume(returning: .failure(error))
        case .end(let error): onEnd(error)
        }
    }

    private func creationTimedOut(after timeout: Duration) {
        let (creation, call) = state.withLock { state -> (Creation?, ClientCall?) in
            guard case .creating(let creation) = state.phase else { return (nil, nil) }
            state.phase = .ended
            return (creation, state.call)
        }
        guard let creation else { return }
        creation.resume(
            returning: .failure(
                .failed(
                    method: EtcdMethod.watch.rawValue,
                    status: RPCStatus(.deadlineExceeded, "etcd did not confirm the watch within \(timeout)"))))
        call?.cancel()
    }
}

extension EtcdClient {
    /// Watches every key that starts with `prefix`, from `revision` (0: from now). See
    /// `EtcdWatch` for when `onEvents` and `onEnd` run. A revision etcd has compacted away ends
    /// the watch at once with `EtcdError.watchCanceled` carrying the compact revision (etcd
    /// confirms such a watcher first, then cancels it).
    ///
    /// - Returns: once etcd has confirmed the watch, the handle that cancels it.
    /// - Throws: `EtcdError`; neither callback runs then.
    public func watch(
        prefix: [UInt8], fromRevision revision: Int64, onEvents: @escaping @Sendable ([EtcdEvent]) -> Void,
        onEnd: @escaping @Sendable (Error?) -> Void
    ) async throws -> EtcdWatch {
        let rpc = try await connection()
        return try await EtcdWatch.open(
            on: rpc, request: .create(key: prefix, rangeEnd: etcdPrefixEnd(prefix), startRevision: revision),
            timeout: timeout, isClosed: { [weak self] in self?.isClosed ?? true }, onEvents: onEvents, onEnd: onEnd)
    }
}
