#!/usr/bin/env python3
"""Writes the data sets the recovery and compacted rows of bench.sh start from.

The first two hold the same N writes: key "bench:%09d" % i, a 100-byte value
that names i, for i in 0..N-1, each written once.

  recovery_data.py redis-aof DIR N
      DIR/appendonlydir/ as Redis 7 lays it out: a manifest naming one base
      file in AOF format (a SET command per key, RESP), so Redis replays
      commands at startup the way Erdtree replays its WAL (an RDB base would
      be a binary snapshot instead).

  recovery_data.py erdtree-wal DIR N
      DIR/ holding WAL segment files as docs/wal-format.md lays them out,
      rotated at 100 MiB like the default wal.max_file_size. See
      erdtree_wal.py for the record encoding and the CRC32C.

  recovery_data.py erdtree-wal-overwritten DIR N SEGMENT_BYTES
      The same keys, each written twice, in two passes: keys 0..N-1 with an
      old 100-byte value (old_value(i)), then keys 0..N-1 again with the
      final value(i), LSNs 1..2N, segments sealed once they reach
      SEGMENT_BYTES (the wal.max_file_size the server is given). Half the
      log's records are dead: the data set the server compacts itself in the
      compacted suite.
"""
import os
import sys

VALUE_BYTES = 100


def key(i: int) -> bytes:
    return b"bench:%09d" % i


def value(i: int) -> bytes:
    head = b"erdtree-recovery-value-%09d-" % i
    return (head + b"v" * VALUE_BYTES)[:VALUE_BYTES]


def old_value(i: int) -> bytes:
    """What key i holds before its second write: as long as value(i), and not containing it."""
    head = b"erdtree-recovery-old-value-%09d-" % i
    return (head + b"o" * VALUE_BYTES)[:VALUE_BYTES]


def redis_aof(directory: str, count: int) -> None:
    aof_dir = os.path.join(directory, "appendonlydir")
    os.makedirs(aof_dir, exist_ok=True)
    base = "appendonly.aof.1.base.aof"
    with open(os.path.join(aof_dir, base), "wb", buffering=1 << 20) as f:
        # RESP arrays: *3, then $len + bulk string for SET, the key, the value.
        chunk = []
        for i in range(count):
            k = key(i)
            chunk.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, VALUE_BYTES, value(i)))
            if len(chunk) == 10000:
                f.write(b"".join(chunk))
                chunk.clear()
        f.write(b"".join(chunk))
    # Redis 7.0's manifest; a base file in AOF format (not starting with
    # "REDIS") is replayed command by command.
    with open(os.path.join(aof_dir, "appendonly.aof.manifest"), "w") as f:
        f.write(f"file {base} seq 1 type b\n")


def overwritten(count: int):
    yield from ((key(i), old_value(i)) for i in range(count))
    yield from ((key(i), value(i)) for i in range(count))


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[1] == "erdtree-wal-overwritten":
        directory, count, segment_bytes = argv[2], int(argv[3]), int(argv[4])
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import erdtree_wal

        erdtree_wal.write_segments(directory, overwritten(count), segment_bytes=segment_bytes)
        return 0
    if len(argv) == 4 and argv[1] in ("redis-aof", "erdtree-wal"):
        directory, count = argv[2], int(argv[3])
        if argv[1] == "redis-aof":
            redis_aof(directory, count)
        else:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import erdtree_wal

            erdtree_wal.write_segments(directory, ((key(i), value(i)) for i in range(count)))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
