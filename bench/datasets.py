"""The data sets the recovery, memory, compacted and replication (catch-up) suites start from,
written once per run straight into the files each server would have written.

Loading a million distinct keys through a server would take longer than replaying them
(h2load sends one body over and over, a Python gRPC client manages a few thousand calls a
second), so the benchmark writes the files and times the servers reading them back.

The recovery data set holds N writes: key "bench:%09d" % i, a 100-byte value that names i,
for i in 0..N-1, each written once:
  - Redis: DIR/appendonlydir/ as Redis 7 lays it out: a manifest naming one base file in AOF
    format (a SET command per key, RESP), so Redis replays commands at startup the way Erdtree
    replays its WAL (an RDB base would be a binary snapshot instead);
  - Erdtree: WAL segment files as docs/wal-format.md lays them out, rotated at 100 MiB like
    the default wal.max_file_size (bench/erdtree_wal.py).
The compacted suite's holds the same keys, each written twice, in two passes: keys 0..N-1
with an old 100-byte value (old_value(i)), then keys 0..N-1 again with the final value(i),
LSNs 1..2N, segments sealed at the wal.max_file_size the server is given. Half the log's
records are dead: the data set the server compacts itself.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench import erdtree_wal
from bench.console import note
from bench.servers import start_erdtree, start_redis_loaded
from harness.node import Node, free_port

if TYPE_CHECKING:
    from bench.run import Bench

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


@dataclass
class DataSets:
    """The recovery data set, written once for the recovery, memory and replication suites."""

    directory: Path
    records: int
    systems: list[str] = field(default_factory=list)  # the systems that have theirs, in run order
    notes: list[str] = field(default_factory=list)  # why a system is not measured

    @property
    def erdtree_dir(self) -> Path:
        return self.directory / "erdtree"

    @property
    def redis_dir(self) -> Path:
        return self.directory / "redis"

    def start_erdtree(self, bench: Bench, what: str, port: int | None = None) -> Node:
        """An Erdtree on the data set, once it says SERVING (it has replayed every record);
        storage.max_entries 2N, so every value stays resident."""
        return start_erdtree(bench, self.erdtree_dir, what, port=port, sync="1s", max_entries=self.records * 2)

    def start_redis(self, bench: Bench, what: str, log: str, *more: str) -> tuple[subprocess.Popen, int]:
        """A redis-server (appendfsync everysec) on the data set once it has loaded every key; and its port."""
        port = free_port()
        return start_redis_loaded(bench, self.redis_dir, port, what, *more, log=log), port


def du(path: Path) -> str:
    return subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True).stdout.split("\t")[0]


def write(bench: Bench, wal_problem: str | None) -> DataSets:
    """Writes the recovery data set of each selected system (Erdtree's only if the WAL
    generator passed its self-test: `wal_problem` says why not)."""
    data = DataSets(bench.tmp / "recovery", bench.settings.recovery_records)
    n = data.records
    if bench.settings.has("erdtree"):
        if wal_problem is None:
            t0 = time.monotonic()
            erdtree_wal.write_segments(str(data.erdtree_dir / "wal"), ((key(i), value(i)) for i in range(n)))
            note(f"data set: wrote {n} WAL records ({du(data.erdtree_dir / 'wal')}) in "
                 f"{(time.monotonic() - t0) * 1000:.0f} ms")
            data.systems.append("erdtree")
        else:
            data.notes.append(f"Erdtree not measured (recovery, memory, replication catch-up): "
                              f"{wal_problem.splitlines()[-1]}")
            note(data.notes[-1])
    if bench.settings.has("redis"):
        t0 = time.monotonic()
        redis_aof(str(data.redis_dir), n)
        note(f"data set: wrote {n} SETs to an AOF ({du(data.redis_dir)}) in {(time.monotonic() - t0) * 1000:.0f} ms")
        data.systems.append("redis")
    return data
