/*
 * LD_PRELOAD shim for profiling Erdtree under valgrind 3.19 (Debian 12).
 *
 * dispatchMain() parks the main thread in libdispatch's _dispatch_sigsuspend,
 * which passes sigsuspend() a `static const sigset_t`, so the mask lives in
 * read-only memory. Valgrind 3.19 edits the mask in place (to keep its own
 * signals deliverable) and dies with SIGSEGV on the write. Handing the real
 * sigsuspend a writable copy changes nothing for the program and lets
 * valgrind do its edit.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>

int sigsuspend(const sigset_t *mask) {
    static int (*real_sigsuspend)(const sigset_t *);
    if (real_sigsuspend == NULL) {
        real_sigsuspend = (int (*)(const sigset_t *))dlsym(RTLD_NEXT, "sigsuspend");
        if (real_sigsuspend == NULL) {
            errno = ENOSYS;
            return -1;
        }
    }
    sigset_t writable = *mask;
    return real_sigsuspend(&writable);
}
