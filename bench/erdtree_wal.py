"""Writes Erdtree WAL segments directly, for the data sets of the benchmark (bench.datasets).

Loading a million distinct keys through the server would take longer than
replaying them (h2load sends one body over and over, a Python gRPC client
manages a few thousand calls a second), so the benchmark writes the segment
files the server would have written and times the server reading them back.

The layout follows docs/wal-format.md (Sources/ErdtreeWAL/RecordFormat.swift
is its code). All integers little-endian:

    segment file  <first LSN, 20 decimal digits>.log
    segment := header record*
    header  := magic "ERDTWAL1" version:u32=1 firstLSN:u64 replicationID[16] crc:u32   (40 bytes)
    record  := crc:u32 length:u32 payload[length]
    payload := lsn:u64 timestampMs:i64 op:u8 expiresAtMs:i64 keyLength:u32 valueLength:u32 key value

The header CRC covers the 36 bytes before it; a record's CRC covers its length
field and payload. CRC-32C is Castagnoli (reflected 0x82F63B78), computed by
crc32c.c (compiled here with cc and loaded with ctypes; pure Python would take
a minute per million records). op 1 is a set, expiresAtMs 0 never expires.

  selftest()          checks the CRC against known values and the C checksum
                      against the Python one; says why when the generator
                      cannot be used
  segments(DIR)       the WAL directory DIR's *.log segment files, their total
                      size, how many of them have a version 2 header (written by
                      compaction), and the other files (an unfinished
                      compaction's *.compacting or compaction.commit, *.broken)
"""
import ctypes
import os
import shutil
import struct
import subprocess
import tempfile
import time

MAGIC = b"ERDTWAL1"
VERSION = 1
OP_SET = 1
HEADER = struct.Struct("<8sIQ16s")  # the 36 bytes the header CRC covers
RECORD_FIXED = struct.Struct("<IIQqBqII")  # crc, length, lsn, timestamp, op, expiry, key len, value len
FIXED_PAYLOAD = 33
# The default wal.max_file_size (100MB, which the server reads as 100 MiB);
# the reader takes segments of any size.
SEGMENT_BYTES = 100 << 20

HERE = os.path.dirname(os.path.abspath(__file__))

# Known answers: the CRC-32C check value (RFC 3720 appendix and every CRC
# catalogue) and the iSCSI test vectors of 32 zero bytes and 32 0xFF bytes.
KNOWN = [
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
]


def crc32c_python(data: bytes, previous: int = 0) -> int:
    crc = ~previous & 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return ~crc & 0xFFFFFFFF


class CLibrary:
    """crc32c.c, compiled into a temp dir for this process."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="erdtree-crc32c.")
        so = os.path.join(self.dir, "crc32c.so")
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if cc is None:
            raise RuntimeError("no C compiler (cc, gcc or clang) to build crc32c.c: run scripts/install-deps.sh bench")
        result = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", so, os.path.join(HERE, "crc32c.c")],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{cc} could not compile crc32c.c: {result.stderr.strip()}")
        self.lib = ctypes.CDLL(so)
        self.lib.erdtree_crc32c.restype = ctypes.c_uint32
        self.lib.erdtree_crc32c.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32]
        self.lib.erdtree_crc32c_records.restype = ctypes.c_long
        self.lib.erdtree_crc32c_records.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def crc(self, data: bytes) -> int:
        return self.lib.erdtree_crc32c(data, len(data), 0)

    def fill_records(self, buffer: bytearray) -> int:
        """Writes each record's CRC into its first 4 bytes; returns the record count."""
        address = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
        count = self.lib.erdtree_crc32c_records(address, len(buffer))
        if count < 0:
            raise RuntimeError("erdtree_crc32c_records: a record length runs past the buffer")
        return count


def header(first_lsn: int, replication_id: bytes, crc) -> bytes:
    body = HEADER.pack(MAGIC, VERSION, first_lsn, replication_id)
    return body + struct.pack("<I", crc(body))


def record_without_crc(lsn: int, timestamp_ms: int, key: bytes, value: bytes, op: int = OP_SET) -> bytes:
    length = FIXED_PAYLOAD + len(key) + len(value)
    return RECORD_FIXED.pack(0, length, lsn, timestamp_ms, op, 0, len(key), len(value)) + key + value


# The worked example of docs/wal-format.md: replication id 00 01 … 0f,
# Set("user:42", "hello") at 1700000000000 ms, Delete("user:42") 250 ms later.
WORKED_EXAMPLE = bytes.fromhex(
    "4552445457414c31" "01000000" "0100000000000000" "000102030405060708090a0b0c0d0e0f" "62ff65d5"
    "d8795415" "2d000000" "0100000000000000" "0068e5cf8b010000" "01" "0000000000000000" "07000000" "05000000"
    "757365723a3432" "68656c6c6f"
    "de2bcd7a" "28000000" "0200000000000000" "fa68e5cf8b010000" "02" "0000000000000000" "07000000" "00000000"
    "757365723a3432"
)


def write_segments(directory: str, entries, first_lsn: int = 1, segment_bytes: int = SEGMENT_BYTES) -> int:
    """Writes (key, value) pairs as set records with LSNs from first_lsn; returns the count."""
    os.makedirs(directory, exist_ok=True)
    lib = CLibrary()
    try:
        replication_id = os.urandom(16)
        timestamp_ms = int(time.time() * 1000)
        lsn = first_lsn
        out = None
        size = 0
        pending = []
        pending_bytes = 0

        def flush() -> None:
            nonlocal pending, pending_bytes
            if pending:
                buffer = bytearray(b"".join(pending))
                lib.fill_records(buffer)
                out.write(buffer)
                pending, pending_bytes = [], 0

        for key, value in entries:
            if out is None or size >= segment_bytes:
                # Like the writer, seal a segment once it reaches the size, at
                # a record boundary, and name the next after its first LSN.
                if out is not None:
                    flush()
                    out.close()
                name = os.path.join(directory, "%020d.log" % lsn)
                out = open(name, "wb")
                out.write(header(lsn, replication_id, lib.crc))
                size = 40
            rec = record_without_crc(lsn, timestamp_ms, key, value)
            pending.append(rec)
            pending_bytes += len(rec)
            size += len(rec)
            lsn += 1
            if pending_bytes >= 1 << 20:
                flush()
        if out is not None:
            flush()
            out.close()
        return lsn - first_lsn
    finally:
        lib.close()


def selftest() -> str | None:
    """None if the generator can be used, else why not."""
    for data, want in KNOWN:
        got = crc32c_python(data)
        if got != want:
            return f"erdtree_wal.py: CRC-32C of {data[:12]!r}… is {got:#010x}, want {want:#010x}"
    try:
        lib = CLibrary()
    except (RuntimeError, OSError) as error:
        return f"erdtree_wal.py: {error}"
    try:
        for data, want in KNOWN:
            if lib.crc(data) != want:
                return f"erdtree_wal.py: crc32c.c gives {lib.crc(data):#010x} for {data[:12]!r}…, want {want:#010x}"
        # The documented bytes, header and records, CRCs filled in by the batch path.
        example = bytearray(header(1, bytes(range(16)), lib.crc)
                            + record_without_crc(1, 1_700_000_000_000, b"user:42", b"hello")
                            + record_without_crc(2, 1_700_000_000_250, b"user:42", b"", op=2))
        lib.fill_records(memoryview(example)[40:])
        if bytes(example) != WORKED_EXAMPLE:
            return ("erdtree_wal.py: the worked example of docs/wal-format.md comes out as\n"
                    f"  {bytes(example).hex()}\nwant\n  {WORKED_EXAMPLE.hex()}")
        # The batch path must give the record CRC the format defines.
        records = [record_without_crc(1, 1_700_000_000_000, b"user:42", b"hello"),
                   record_without_crc(2, 1_700_000_000_250, b"user:42", b"", op=2)]
        buffer = bytearray(b"".join(records))
        lib.fill_records(buffer)
        if buffer[0:4] != bytes.fromhex("d8795415") or buffer[53:57] != bytes.fromhex("de2bcd7a"):
            return (f"erdtree_wal.py: worked-example record CRCs {buffer[0:4].hex()} {buffer[53:57].hex()}, "
                    "want d8795415 de2bcd7a")
        records = [record_without_crc(lsn, 1_700_000_000_000, b"k%d" % lsn, b"v" * lsn) for lsn in (1, 2, 77)]
        buffer = bytearray(b"".join(records))
        if lib.fill_records(buffer) != len(records):
            return "erdtree_wal.py: crc32c.c did not walk the record batch"
        offset = 0
        for rec in records:
            want = crc32c_python(rec[4:])
            got = struct.unpack_from("<I", buffer, offset)[0]
            if got != want:
                return f"erdtree_wal.py: record CRC {got:#010x} from crc32c.c, want {want:#010x}"
            offset += len(rec)
    finally:
        lib.close()
    return None


class NotASegment(Exception):
    pass


def segments(directory: str) -> tuple[int, int, int, int]:
    """(segments, their bytes, segments with a version 2 header, other files) of a WAL directory."""
    count = total = compacted = other = 0
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not name.endswith(".log"):
            other += 1
            continue
        with open(path, "rb") as f:
            head = f.read(HEADER.size)
        if len(head) < HEADER.size or head[:8] != MAGIC:
            raise NotASegment(f"{path} has no segment header")
        version = struct.unpack_from("<I", head, 8)[0]
        count += 1
        total += os.path.getsize(path)
        compacted += version == 2
    return count, total, compacted, other
