import ErdtreeSync
import Glibc
import Testing

@Suite struct LockedTests {
    /// Threads that keep colliding on one lock must each see the others' writes: the count comes
    /// out exact. Under ThreadSanitizer (`make test-sanitize`) this is also the check that the
    /// lock is one TSan sees: with `Synchronization.Mutex`, whose contended hand-over happens in
    /// the kernel, TSan reported the increments here as data races.
    @Test func contendedIncrementsFromManyThreadsAreAllCounted() {
        let counter = Locked(0)
        let threads = 4
        let increments = 20_000
        let workers = (0..<threads).map { _ in
            startThread {
                for _ in 0..<increments { counter.withLock { $0 += 1 } }
            }
        }
        for worker in workers { pthread_join(worker, nil) }
        #expect(counter.withLock { $0 } == threads * increments)
    }

    @Test func aThrownErrorKeepsItsTypeAndReleasesTheLock() {
        struct Refused: Error, Equatable {}
        let value = Locked([1, 2])
        #expect(throws: Refused.self) {
            try value.withLock { (numbers: inout [Int]) throws(Refused) in
                numbers.append(3)
                throw Refused()
            }
        }
        // Not deadlocked, and what the body changed before throwing stays changed.
        #expect(value.withLock { $0 } == [1, 2, 3])
    }
}

/// A plain pthread, so the threads really run at once (a task group may run its tasks on fewer).
private func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    var thread = pthread_t()
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    let result = pthread_create(
        &thread, nil,
        { context in
            guard let context else { return nil }
            Unmanaged<ThreadBody>.fromOpaque(context).takeRetainedValue().body()
            return nil
        }, context)
    precondition(result == 0, "pthread_create failed: \(result)")
    return thread
}

private final class ThreadBody: Sendable {
    let body: @Sendable () -> Void

    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}
