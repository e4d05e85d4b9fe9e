import Glibc

/// A one-bit event the writer thread sleeps on: appenders and `close` raise it, the writer
/// consumes it.
///
/// A pthread condition variable rather than a semaphore so that repeated signals collapse into
/// one wake-up, and on `CLOCK_MONOTONIC` so that the `.interval` sync timer ignores wall-clock jumps.
final class WakeupSignal: @unchecked Sendable {
    // Guarded by `mutex`; the pointers themselves never change.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var raised = false

    init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func raise() {
        pthread_mutex_lock(mutex)
        if !raised {
            raised = true
            pthread_cond_signal(condition)
        }
        pthread_mutex_unlock(mutex)
    }

    /// Waits until the signal is raised or `timeout` passes (nil: no timeout), then lowers it.
    func wait(timeout: Duration?) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard !raised else {
            raised = false
            return
        }
        guard let timeout else {
            while !raised { pthread_cond_wait(condition, mutex) }
            raised = false
            return
        }
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let (seconds, attoseconds) = timeout.components
        var nanoseconds = Int(deadline.tv_nsec) + Int(attoseconds / 1_000_000_000)
        deadline.tv_sec += Int(seconds) + nanoseconds / 1_000_000_000
        nanoseconds %= 1_000_000_000
        deadline.tv_nsec = nanoseconds
        while !raised {
            if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { break }
        }
        raised = false
    }
}
