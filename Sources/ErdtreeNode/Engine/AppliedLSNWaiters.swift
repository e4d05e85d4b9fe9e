import ErdtreeSync
import NIOCore
import Synchronization

/// Calls waiting for the node to apply an LSN (a Get with `min_lsn` on a slave), woken by the
/// engine as it applies: no polling.
///
/// The engine announces every applied LSN with `advance(to:)`: after each live write, each
/// replicated batch and each snapshot load. While nobody waits that costs a store and a load;
/// the lock is taken only to wake someone. `wait` and `advance` order their two atomics
/// sequentially consistently, so a waiter either sees the LSN announced or is seen by the
/// announcement, never neither.
final class AppliedLSNWaiters: Sendable {
    /// The last LSN announced: what the waiters compare theirs with. It moves down only when a
    /// full resync replaces the log with an older history's, or a slave sets aside a divergent
    /// tail.
    private let announced: Atomic<UInt64>
    /// How many are waiting, read without the lock by `advance`.
    private let waiting = Atomic<Int>(0)
    private let waiters = Locked<[Waiter]>([])

    init(appliedLSN: UInt64) {
        announced = Atomic(appliedLSN)
    }

    /// The last LSN announced applied. Each write announces its LSN before it is answered, so a
    /// writer that reads this after its answer sees its own write counted.
    var appliedLSN: UInt64 { announced.load(ordering: .sequentiallyConsistent) }

    /// Announces that everything up to `lsn` is applied, and wakes the waiters it satisfies.
    /// Called by the engine on the thread that applied (a commit, a replication stream's event
    /// loop, the blocking pool after a snapshot), one caller at a time.
    func advance(to lsn: UInt64) {
        announced.store(lsn, ordering: .sequentiallyConsistent)
        guard waiting.load(ordering: .sequentiallyConsistent) > 0 else { return }
        for waiter in take(where: { $0.lsn <= lsn }) { waiter.finish(.success(())) }
    }

    /// Calls `body` on `eventLoop` once `lsn` is announced applied, or with an error when the
    /// wait runs out at `deadline` or the call's own deadline; see `KVEngine.waitForApplied`.
    func wait(
        for lsn: UInt64, until deadline: NIODeadline, callDeadline: NIODeadline?, on eventLoop: any EventLoop,
        _ body: @escaping @Sendable (Result<Void, NodeError>) -> Void
    ) {
        let waiter = Waiter(lsn: lsn, eventLoop: eventLoop, body: body)
        // When the caller's deadline comes first it decides the outcome: the transport ends the
        // call with DEADLINE_EXCEEDED then, and the two must not race to answer differently.
        let callDeadlineFirst = callDeadline.map { $0 <= deadline } ?? false
        let end = callDeadline.map { min($0, deadline) } ?? deadline
        if appliedLSN >= lsn { return waiter.finish(.success(())) }
        if NIODeadline.now() >= end { return waiter.finish(timedOut(lsn, callDeadlineFirst: callDeadlineFirst)) }
        waiters.withLock { waiters in
            waiters.append(waiter)
            waiting.add(1, ordering: .sequentiallyConsistent)
        }
        // Announced between the check above and the registration: `advance` may not have seen us.
        if appliedLSN >= lsn {
            if !take(where: { $0 === waiter }).isEmpty { waiter.finish(.success(())) }
            return
        }
        let timer = eventLoop.scheduleTask(deadline: end) { [self] in
            guard !take(where: { $0 === waiter }).isEmpty else { return }
            let applied = appliedLSN >= lsn
            waiter.finish(applied ? .success(()) : timedOut(lsn, callDeadlineFirst: callDeadlineFirst))
        }
        waiter.setTimer(timer)
    }

    /// The failure of a wait for `lsn` that ran out: DEADLINE_EXCEEDED when the call's own
    /// deadline came first, else UNAVAILABLE naming `lsn` and the last one applied.
    private func timedOut(_ lsn: UInt64, callDeadlineFirst: Bool) -> Result<Void, NodeError> {
        if callDeadlineFirst { return .failure(.minLSNDeadlinePassed(minLSN: lsn)) }
        return .failure(.minLSNAhead(minLSN: lsn, appliedLSN: appliedLSN))
    }

    /// Removes and returns the waiters `matching` picks; each is taken exactly once.
    private func take(where matching: (Waiter) -> Bool) -> [Waiter] {
        waiters.withLock { waiters in
            let taken = waiters.filter(matching)
            guard !taken.isEmpty else { return [] }
            waiters.removeAll(where: matching)
            waiting.subtract(taken.count, ordering: .sequentiallyConsistent)
            return taken
        }
    }
}

/// One call waiting for its LSN; answered exactly once, on its event loop.
private final class Waiter: Sendable {
    let lsn: UInt64
    private let eventLoop: any EventLoop
    private let body: @Sendable (Result<Void, NodeError>) -> Void
    /// Whether it was answered, and the timeout to cancel when it is answered first.
    private let state = Locked<(answered: Bool, timer: Scheduled<Void>?)>((false, nil))

    init(lsn: UInt64, eventLoop: any EventLoop, body: @escaping @Sendable (Result<Void, NodeError>) -> Void) {
        self.lsn = lsn
        self.eventLoop = eventLoop
        self.body = body
    }

    func setTimer(_ timer: Scheduled<Void>) {
        let answered = state.withLock { state in
            if !state.answered { state.timer = timer }
            return state.answered
        }
        if answered { timer.cancel() }
    }

    func finish(_ result: Result<Void, NodeError>) {
        let (first, timer) = state.withLock { state in
            defer {
                state.answered = true
                state.timer = nil
            }
            return (!state.answered, state.timer)
        }
        guard first else { return }
        timer?.cancel()
        if eventLoop.inEventLoop {
            body(result)
        } else {
            eventLoop.execute { [body] in body(result) }
        }
    }
}
