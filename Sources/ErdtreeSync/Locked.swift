import CErdtreeSystem

/// A value behind a lock, with the API of `Synchronization.Mutex`.
///
/// Why not `Mutex`: on Linux it is a priority-inheritance futex. Its uncontended path is an atomic
/// exchange that ThreadSanitizer sees, but a contended lock is handed over inside the kernel
/// (`FUTEX_LOCK_PI`/`FUTEX_UNLOCK_PI`, called from the uninstrumented standard library), so TSan
/// saw no happens-before between the two holders and reported the next access to the guarded
/// value as a race. This lock (`erdtree_lock`, CErdtreeSystem/lock.c) is a plain futex whose every
/// hand-over is an atomic TSan sees. Not a pthread mutex, which TSan also sees: that costs about
/// 50 more instructions per lock and unlock, a tenth of a store `get`.
///
/// A class, not a `~Copyable` struct like `Mutex`: the futex word must not move, and a class
/// instance never does. Holders keep it in a `let`.
///
/// `withLock` takes the same `sending` closure as `Mutex.withLock`, so the compiler checks the
/// same things: a non-`Sendable` value can only leave the lock as a value disconnected from the
/// guarded state. That is what makes the unchecked `Sendable` sound.
public final class Locked<Value: ~Copyable>: @unchecked Sendable {
    /// Allocated separately: its address must stay fixed, and a stored property's address is
    /// only lent for the length of an access.
    @usableFromInline let word: UnsafeMutablePointer<UInt32>
    @usableFromInline var value: Value

    public init(_ initialValue: consuming sending Value) {
        word = .allocate(capacity: 1)
        word.initialize(to: 0)
        value = initialValue
    }

    deinit {
        word.deallocate()
    }

    /// Runs `body` with the value while holding the lock.
    @inlinable
    public func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        erdtree_lock(word)
        defer { erdtree_unlock(word) }
        return try body(&value)
    }
}
