// Linux calls Swift's Glibc module does not show (it is built without _GNU_SOURCE), and the CPU's
// CRC-32C instruction, which Swift cannot emit. Shims in the manner of SwiftNIO's CNIOLinux.
#ifndef C_ERDTREE_SYSTEM_H
#define C_ERDTREE_SYSTEM_H

#include <stdint.h>
#include <sys/types.h>

// pread that never waits for the disk: preadv2 with RWF_NOWAIT. Returns the bytes read, or -1
// with errno EAGAIN when any of them is not in the page cache (EOPNOTSUPP on kernels or file
// systems without RWF_NOWAIT for buffered reads).
ssize_t erdtree_pread_nowait(int fd, void *buffer, size_t count, off_t offset);

// 1 when this CPU has the SSE4.2 crc32 instruction (erdtree_crc32c_extend may be called), else 0.
int erdtree_crc32c_available(void);

// Feeds `count` bytes into a CRC-32C register `crc` (no pre- or post-inversion) with the crc32
// instruction. Only when erdtree_crc32c_available() returned 1.
uint32_t erdtree_crc32c_extend(uint32_t crc, const void *data, size_t count);

// A mutex in one 32-bit word that starts at 0 (ErdtreeSync.Locked): a futex, like Swift's Mutex,
// but every hand-over is an atomic on the word in this file, which SwiftPM builds with the
// sanitizer, so ThreadSanitizer sees each unlock happen before the next lock.
void erdtree_lock(uint32_t *word);
void erdtree_unlock(uint32_t *word);

#endif
