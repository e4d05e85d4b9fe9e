// Linux calls Swift's Glibc module does not show: it is built without _GNU_SOURCE.
// Shims in the manner of SwiftNIO's CNIOLinux.
#ifndef C_ERDTREE_SYSTEM_H
#define C_ERDTREE_SYSTEM_H

#include <sys/types.h>

// pread that never waits for the disk: preadv2 with RWF_NOWAIT. Returns the bytes read, or -1
// with errno EAGAIN when any of them is not in the page cache (EOPNOTSUPP on kernels or file
// systems without RWF_NOWAIT for buffered reads).
ssize_t erdtree_pread_nowait(int fd, void *buffer, size_t count, off_t offset);

#endif
