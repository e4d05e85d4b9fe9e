"""switchover: write unavailability during a planned switchover, Erdtree (Admin/Failover)
against Redis 7 (FAILOVER), each a master with 2 followers set up as in the replication suite.

BENCH_SWITCHOVERS switchovers per system, alternating systems, each on the cluster the last
one left: the master hands over to the next node in turn (node i to node i+1 mod 3), so every
node is master in turn. For each, `repl_probe erdtree-switchover|redis-switchover` writes
unique keys at BENCH_SWITCHOVER_RATE for LOAD_S seconds (4 connections, at most SW_WINDOW
writes in flight on each), calls Failover / FAILOVER on the master SWITCH_AT_S into it, follows
refusals to the master they name (Erdtree: the erdtree-master trailer; Redis: -READONLY, then
INFO replication on the node that refused), and once every write is acknowledged reads each
back from the node the writes went to last. Its per-write log (due, sent, first refused, acked,
by whom, LSN, epoch) is what this module measures:

    unavailability = first ack from the new master - send time of the first write the old
                     master did not acknowledge (refused, or held and then refused)

Then the cluster is made whole for the next switchover: Erdtree's third node must follow the
new master by itself; Redis's is pointed there with REPLICAOF (FAILOVER leaves it replicating
from the old master; Sentinel would re-point it).
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench import checks, redis_tools
from bench import report as tables
from bench.console import Fatal, note
from bench.records import Switchover
from bench.servers import Running
from bench.suites.replication import start_erdtree_repl, start_redis_repl

if TYPE_CHECKING:
    from bench.run import Bench
    from bench.settings import Settings

LOAD_S = 3.0
SWITCH_AT_S = 1.0
SETTLE_LIMIT_S = 30  # the cluster whole again (all followers on the new master) within
GOAL_MS = 50


def selected(s: Settings) -> bool:
    return s.suite("switchover") and (s.has("erdtree") or s.has("redis"))


def nodes(running: Running) -> list[str]:
    return [running.address, *(f"127.0.0.1:{p}" for p in running.follower_ports)]


def port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def summary_lines(summary: str) -> dict[str, str]:
    """repl_probe's switchover/failover summary: first word -> the rest of its line."""
    return {f[0]: f[1] for f in (line.split(" ", 1) for line in summary.splitlines()) if len(f) == 2}


def write_log(out: Path) -> list[tuple[int, ...]]:
    """repl_probe's per-write log: id due sent refused acked first node attempts lsn epoch."""
    return [tuple(map(int, line.split())) for line in out.read_text().splitlines()]


def twice_acked(rows: list[tuple[int, ...]], lsns: collections.Counter) -> int:
    """Writes whose LSN an earlier acknowledgement of the run already carried (Erdtree)."""
    twice = 0
    for r in rows:
        twice += lsns[r[8]] > 0
        lsns[r[8]] += 1
    return twice


def analyse(rnd: int, system: str, master: str, target: str, out: Path, summary: str,
            lsns: collections.Counter) -> Switchover:
    """One switchover from repl_probe's per-write log and summary (see repl_probe.c)."""
    lines = summary_lines(summary)
    sent_us, answered_us, status, answer = lines["switchover"].split(" ", 3)
    writes, _, _, unnamed, backoffs, last = map(int, lines["writes"].split())
    _, lost, wrong = map(int, lines["readback"].split())
    named = [line.split()[1:] for line in summary.splitlines() if line.startswith("named ")]
    old, new = port(master), port(target)
    if status != "0" or last != new:
        raise Fatal(f"{system} switchover {rnd} from {master} to {target}: the switchover answered "
                    f"'{answer}' (status {status}) and the writes went to port {last} last")
    rows = write_log(out)
    not_old = [r[2] for r in rows if r[5] == old and r[6] != old]
    start = min(not_old, default=0)
    unavailable = min(r[4] for r in rows if r[6] == new) - start if not_old else 0
    redirected = min((r[3] for r in rows if r[3] >= 0), default=start) - start
    twice = twice_acked(rows, lsns) if system == "erdtree" else 0
    return Switchover(rnd, system, unavailable, redirected, round(writes / (max(r[2] for r in rows) / 1e6), 1), writes,
                      sum(r[3] >= 0 for r in rows), lost + wrong, twice, unnamed,
                      sum(int(count) for named_port, count in named if int(named_port) != new), backoffs,
                      (int(answered_us) - int(sent_us)) / 1000, sum(r[2] - r[1] > 10_000 for r in rows),
                      tuple(f"{kind} {lines[kind]}" for kind in ("unhinted", "bounced") if kind in lines))


def erdtree_settle(bench: Bench, cluster: list[str], new: str) -> None:
    """The new master says so, and lists both other nodes as connected slaves."""
    def whole() -> bool:
        slaves = checks.erdtree_slaves(bench.erdtree_bin, new)
        return checks.erdtree_status(bench.erdtree_bin, new).get("role") == "master" and all(
            slaves.get(other) == "connected" for other in set(cluster) - {new})

    settle(whole, f"erdtree: after the switchover to {new}, the other nodes did not all follow it")


def redis_settle(bench: Bench, cluster: list[str], old: str, new: str) -> None:
    """The third node (FAILOVER leaves it on the old master) is pointed at the new one; both
    replicas linked."""
    settle(lambda: redis_tools.info(port(new), "replication").get("role") == "master",
           f"redis: {new} did not become the master")
    for other in set(cluster) - {old, new}:
        redis_tools.cli(port(other), "replicaof", *new.rsplit(":", 1))
    settle(lambda: redis_tools.info(port(new), "replication").get("connected_slaves") == "2"
           and all(redis_tools.linked(port(other)) for other in set(cluster) - {new}),
           f"redis: the replicas did not link to the new master {new}")


def settle(ready, what: str, limit_s: float = SETTLE_LIMIT_S) -> None:
    deadline = time.monotonic() + limit_s
    while not ready():
        if time.monotonic() > deadline:
            raise Fatal(f"{what} within {limit_s:g} s")
        time.sleep(0.05)


def run(bench: Bench) -> None:
    s = bench.settings
    clusters = {}
    if s.has("erdtree"):
        clusters["erdtree"] = nodes(start_erdtree_repl(bench, "erdtree_switch"))
    if s.has("redis"):
        clusters["redis"] = nodes(start_redis_repl(bench, "redis_switch"))
    lsns: collections.Counter = collections.Counter()
    for rnd in range(1, s.switchovers + 1):
        for system, cluster in clusters.items():
            master, target = cluster[(rnd - 1) % 3], cluster[rnd % 3]
            out = bench.tmp / f"switchover.{rnd}.{system}"
            summary = bench.probe.run(out.with_name(out.name + ".summary"), f"{system}-switchover", master, target,
                                      s.switchover_rate, LOAD_S, SWITCH_AT_S, f"switch{rnd}", out)
            row = analyse(rnd, system, master, target, out, summary, lsns)
            bench.records.switchovers.append(row)
            note(f"switchover {rnd}/{s.switchovers}  {system} {master} -> {target}: unavailable "
                 f"{row.unavailable_us / 1000:.1f} ms, {row.refused} writes refused, {row.lost} acked writes lost, "
                 f"{row.rate:.0f} writes/s sent")
            if system == "erdtree":
                erdtree_settle(bench, cluster, target)
            else:
                redis_settle(bench, cluster, master, target)
    bench.processes.stop_servers()


def report(bench: Bench) -> None:
    s = bench.settings
    print()
    print(f"### Planned switchover: writes unavailable at {s.switchover_rate:,} writes/s, 2 followers")
    print()
    print(f"{s.switchovers} switchovers per system, alternating, each node master in turn: Erdtree `Admin/Failover`")
    print("(a master and 2 slaves, wal 1s) against Redis `FAILOVER TO` (a master and 2 replicas, AOF everysec).")
    print(f"repl_probe writes unique 100-byte keys at the rate above for {LOAD_S:g} s (4 connections), switches")
    print(f"{SWITCH_AT_S:g} s in, follows each refusal to the master it names, then reads every acknowledged")
    print("write back from the new master. Unavailable: from the send of the first write the old master did")
    print("not acknowledge to the first acknowledgement from the new master.")
    print()
    tables.switchover(bench.records.switchovers, GOAL_MS)
