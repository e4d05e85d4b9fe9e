// CRC-32C with the SSE4.2 crc32 instruction, which Swift cannot emit by itself. The WAL checks
// erdtree_crc32c_available() once and keeps its table-driven Swift version for other CPUs.
#include <stdint.h>
#include <string.h>

#include "CErdtreeSystem.h"

#if defined(__x86_64__)
#include <nmmintrin.h>

int erdtree_crc32c_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
}

__attribute__((target("sse4.2"))) uint32_t erdtree_crc32c_extend(uint32_t crc, const void *data, size_t count) {
    const unsigned char *bytes = data;
    uint64_t wide = crc;
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, bytes, sizeof word);  // unaligned load
        wide = _mm_crc32_u64(wide, word);
        bytes += 8;
        count -= 8;
    }
    uint32_t narrow = (uint32_t)wide;
    while (count > 0) {
        narrow = _mm_crc32_u8(narrow, *bytes);
        bytes += 1;
        count -= 1;
    }
    return narrow;
}

#else

int erdtree_crc32c_available(void) { return 0; }

uint32_t erdtree_crc32c_extend(uint32_t crc, const void *data, size_t count) {
    (void)data;
    (void)count;
    return crc;  // never called: erdtree_crc32c_available() is 0
}

#endif
