#define _GNU_SOURCE
#include <sys/uio.h>

#include "CErdtreeSystem.h"

ssize_t erdtree_pread_nowait(int fd, void *buffer, size_t count, off_t offset) {
    struct iovec vector = {.iov_base = buffer, .iov_len = count};
    return preadv2(fd, &vector, 1, offset, RWF_NOWAIT);
}
