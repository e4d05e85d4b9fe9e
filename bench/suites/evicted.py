"""evicted: Get of keys whose values were evicted (storage.max_entries 1: one shard holding one
value, the keys evict one another, a Get reads its value back from the WAL) against the same
Gets with every key resident. Erdtree against Erdtree.

16 processes × c1 m2 (32 in flight): each connection has at most 2 Gets of its key
outstanding, so nearly every Get finds its value evicted. 4 × c1 m32 has the 128 in flight
of c4 m32, but the server reads a connection's Gets in bursts, and after the first read-back
the rest of a burst finds the value resident: from a tenth to three quarters of its Gets go
to disk, so that row is shown without a goal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import checks, report as tables
from bench.bodies import EVICTED_KEYS, evicted_key, evicted_value
from bench.console import Fatal
from bench.loads import Load
from bench.servers import LISTEN_TIMEOUT_S, Instance, Running, start_erdtree
from bench.suites.grpc import GET, SET

if TYPE_CHECKING:
    from bench.run import Bench

RESIDENT_MAX_ENTRIES = 1_000_000


def start(max_entries: int):
    def start(bench: Bench, name: str) -> Running:
        node = start_erdtree(bench, bench.tmp / name, name, sync="1s", max_entries=max_entries,
                             timeout=LISTEN_TIMEOUT_S)
        what = f"{name} (storage.max_entries {max_entries})"
        # Set in order, so that under max_entries 1 only the last stays resident, then each read back.
        for i, body in enumerate(bench.bodies.evicted_sets):
            checks.grpc_call(node.address, SET, body, f"{what} Set {evicted_key(i)}")
        running = Running(name, "erdtree", node.proc, node.port, wal_dir=node.workdir / "wal")
        read_back(bench, running)
        status = checks.erdtree_status(bench.erdtree_bin, node.address)
        resident = status.get("resident values")
        reads = checks.erdtree_count(bench.erdtree_bin, node.address, "disk reads")
        # The read-back above must have gone to disk on the bounded one and never on the
        # other, or the comparison measures something else.
        if max_entries == 1 and (resident != "1" or reads < 1):
            raise Fatal(f"{name}: {resident} resident values and {reads} disk reads after Setting and Getting "
                        f"{EVICTED_KEYS} keys, want 1 and at least 1")
        if max_entries != 1 and (resident != str(EVICTED_KEYS) or reads != 0):
            raise Fatal(f"{name}: {resident} resident values and {reads} disk reads after Setting and Getting "
                        f"{EVICTED_KEYS} keys, want {EVICTED_KEYS} and 0")
        return running

    return start


def read_back(bench: Bench, running: Running) -> None:
    for i, body in enumerate(bench.bodies.evicted_gets):
        checks.grpc_call(running.address, GET, body, f"{running.name} Get {evicted_key(i)}", evicted_value(i))


INSTANCES = [
    Instance("erdtree_evicted", "erdtree", start(1), read_back),
    Instance("erdtree_resident", "erdtree", start(RESIDENT_MAX_ENTRIES), read_back),
]

EVICTED = frozenset({"evicted"})
LOADS = [
    Load("get_evicted", "erdtree_evicted", "Erdtree Get, 16 keys, max_entries 1 (16 × c1 m2)", EVICTED, GET,
         "evicted_gets", clients=1, streams=2, procs=16),
    Load("get_resident", "erdtree_resident", "Erdtree Get, 16 keys, all resident (16 × c1 m2)", EVICTED, GET,
         "evicted_gets", clients=1, streams=2, procs=16),
    Load("get_evicted4", "erdtree_evicted", "Erdtree Get, 4 keys, max_entries 1 (4 × c1 m32)", EVICTED, GET,
         "evicted_gets", clients=1, streams=32, procs=4),
    Load("get_resident4", "erdtree_resident", "Erdtree Get, 4 keys, all resident (4 × c1 m32)", EVICTED, GET,
         "evicted_gets", clients=1, streams=32, procs=4),
]


def report(bench: Bench) -> None:
    """Under the summary table, with the share of each load's Gets that were disk reads."""
    if not bench.records.disk_reads:
        return
    print()
    print(f"Evicted rows: {EVICTED_KEYS} keys Set once; N h2load processes at once (N × c1 mM), process i")
    print("Getting key i, against Erdtree with storage.max_entries 1 (one shard holding one value) and")
    print(f"with {RESIDENT_MAX_ENTRIES} (every key resident). req/s: every Get that succeeded over the time until")
    print("the last process ended. Disk reads: Admin/Status disk_reads, after the run minus before.")
    print("The WAL holds a few records just written, so the read-backs hit the page cache. A goal is")
    print("judged only when most Gets (over half) were disk reads.")
    tables.disk_reads(bench.records.disk_reads, bench.labels)
