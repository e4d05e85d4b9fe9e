import CErdtreeSystem

/// A lock that guards no value of its own: the state it orders lives elsewhere (a class's
/// stored properties, a file descriptor's writes).
///
/// Not `Locked<Void>`: its `withLock` makes a Swift access to the empty value, which has no
/// storage of its own, so the address ThreadSanitizer checks is one the object does not own; TSan
/// reported such accesses as races although both sides held the lock (8 reports in one run of
/// the tests). This lock makes no access TSan checks.
public final class Lock: @unchecked Sendable {
    /// Allocated separately, like `Locked.word`.
    @usableFromInline let word: UnsafeMutablePointer<UInt32>

    public init() {
        word = .allocate(capacity: 1)
        word.initialize(to: 0)
    }

    deinit {
        word.deallocate()
    }

    /// Runs `body` while holding the lock.
    @inlinable
    public func withLock<Result: ~Copyable, E: Error>(
        _ body: () throws(E) -> sending Result
    ) throws(E) -> sending Result {
        erdtree_lock(word)
        defer { erdtree_unlock(word) }
        return try body()
    }
}
