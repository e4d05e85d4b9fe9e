"""durable: Set with wal.sync_interval "always" against etcd Put and Redis appendfsync always;
Set with "1s" against Redis appendfsync everysec (those two loads are the grpc suite's).

What one durable append costs on this disk is measured once and printed under the table:
both "always" sides wait for an fsync per batch.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench import servers
from bench.console import note
from bench.loads import Load
from bench.servers import Instance
from bench.suites.grpc import SET

if TYPE_CHECKING:
    from bench.run import Bench

INSTANCES = [
    Instance("erdtree_always", "erdtree", servers.erdtree("always"), servers.erdtree_recheck),
    Instance("redis_always", "redis", servers.redis("always"), servers.redis_recheck),
    Instance("redis_everysec", "redis", servers.redis("everysec"), servers.redis_recheck),
]

DURABLE = frozenset({"durable"})
LOADS = [
    Load("set_always", "erdtree_always", "Erdtree Set 100 B, wal always (c4 m32)", DURABLE, SET, "set"),
    Load("redis_always", "redis_always", "Redis SET 100 B, appendfsync always (c128)", DURABLE, clients=128,
         streams=1),
    Load("redis_everysec", "redis_everysec", "Redis SET 100 B, appendfsync everysec (c128)", DURABLE, clients=128,
         streams=1),
]

FSYNC_SAMPLES = 200


def fsync_latency(directory: Path, count: int = FSYNC_SAMPLES) -> tuple[int, int]:
    """Median and p99 µs of writing 100 bytes to the end of a file in `directory`, then fsyncing it.

    The durable rows are bounded by this (a server can ack a group-committed batch no sooner
    than one fsync after it was written)."""
    path = directory / "fsync-probe.bin"
    record = b"r" * 100
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        # One unmeasured append first: creating the file's first block costs
        # a metadata update the later appends do not pay.
        os.write(fd, record)
        os.fsync(fd)
        for _ in range(count):
            start = time.perf_counter_ns()
            os.write(fd, record)
            os.fsync(fd)
            samples.append((time.perf_counter_ns() - start) / 1000)
    finally:
        os.close(fd)
        path.unlink()
    samples.sort()
    return round(statistics.median(samples)), round(samples[max(0, math.ceil(0.99 * len(samples)) - 1)])


def measure_fsync(bench: Bench) -> str:
    p50, p99 = fsync_latency(bench.tmp)
    device = subprocess.run(["df", "--output=source", str(bench.tmp)], capture_output=True,
                            text=True).stdout.split()[-1]
    note(f"fsync: median {p50} µs, p99 {p99} µs")
    return (f"write+fsync of 100 bytes in the bench temp dir ({device}),\n"
            f"{FSYNC_SAMPLES} times: median {p50} µs, p99 {p99} µs")


def report(bench: Bench) -> None:
    """Under the summary table."""
    if bench.fsync_figure:
        print()
        print("Durable rows: fsync on this virtual disk is fast, far faster than on a physical disk,")
        print(f'which flatters every "always" figure: {bench.fsync_figure}.')
