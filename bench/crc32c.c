/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) for erdtree_wal.py,
 * which loads it with ctypes: computing a million record checksums in pure
 * Python takes about a minute, this takes a fraction of a second.
 *
 *   cc -O2 -shared -fPIC -o crc32c.so crc32c.c
 *
 * erdtree_crc32c_records() fills in the checksums of a run of WAL records in
 * place (docs/wal-format.md: record := crc:u32 length:u32 payload[length],
 * little-endian, the CRC covering the length field and the payload), so
 * Python crosses into C once per batch of records rather than once per record.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint32_t table[8][256];
static int table_ready;

static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t crc = i;
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        table[0][i] = crc;
    }
    for (int s = 1; s < 8; s++)
        for (int i = 0; i < 256; i++) table[s][i] = (table[s - 1][i] >> 8) ^ table[0][table[s - 1][i] & 0xFF];
    table_ready = 1;
}

uint32_t erdtree_crc32c(const uint8_t *p, size_t n, uint32_t previous) {
    if (!table_ready) build_table();
    uint32_t crc = ~previous;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8); /* little-endian hosts only, like the server */
        w ^= crc;
        crc = table[7][w & 0xFF] ^ table[6][(w >> 8) & 0xFF] ^ table[5][(w >> 16) & 0xFF]
            ^ table[4][(w >> 24) & 0xFF] ^ table[3][(w >> 32) & 0xFF] ^ table[2][(w >> 40) & 0xFF]
            ^ table[1][(w >> 48) & 0xFF] ^ table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* Returns how many records it filled in, or -1 if a length runs past the end. */
long erdtree_crc32c_records(uint8_t *buffer, size_t size) {
    size_t offset = 0;
    long count = 0;
    while (offset + 8 <= size) {
        uint32_t length, crc;
        memcpy(&length, buffer + offset + 4, 4);
        if (offset + 8 + (size_t)length > size) return -1;
        crc = erdtree_crc32c(buffer + offset + 4, 4 + (size_t)length, 0);
        memcpy(buffer + offset, &crc, 4);
        offset += 8 + (size_t)length;
        count++;
    }
    return offset == size ? count : -1;
}
