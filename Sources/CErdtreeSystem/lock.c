#include <linux/futex.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "CErdtreeSystem.h"

// The word is 0 when free, 1 when held, 2 when held and someone may sleep on it (Drepper,
// "Futexes Are Tricky", mutex 3; Rust's std futex mutex is the same). Only an unlock stores 0, with
// release ordering, and every lock takes the word from 0 with acquire ordering, so each holder
// synchronizes with the previous one through the word itself: no hand-over inside the kernel,
// which is what hid Swift's Mutex (a priority-inheritance futex) from ThreadSanitizer.

void erdtree_lock(uint32_t *word) {
    uint32_t seen = 0;
    if (__atomic_compare_exchange_n(word, &seen, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        return;
    }
    // Contended: mark the word as having sleepers (2) before sleeping, so the unlock wakes one. A
    // lock taken this way leaves the word at 2 although there may be no sleeper left: the cost
    // is one needless wake-up call, never a missed one.
    if (seen != 2) {
        seen = __atomic_exchange_n(word, 2, __ATOMIC_ACQUIRE);
    }
    while (seen != 0) {
        // Returns at once if the word is no longer 2 (EAGAIN), or on a wake-up or a signal.
        syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
        seen = __atomic_exchange_n(word, 2, __ATOMIC_ACQUIRE);
    }
}

void erdtree_unlock(uint32_t *word) {
    if (__atomic_exchange_n(word, 0, __ATOMIC_RELEASE) == 2) {
        syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
}
