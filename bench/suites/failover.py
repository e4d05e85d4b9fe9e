"""failover: automatic failover after kill -9 of the master, Erdtree (`erdtree node`, etcd
decides the role) against Redis 7 with Sentinel, and Erdtree's Set throughput with ha on and off.

Erdtree: one etcd and three `erdtree node`s (ha.lease_ttl 2s, wal.sync_interval always,
replication.min_acks 1). Redis: a master and two replicas (appendfsync always) watched by
three Sentinels (down-after-milliseconds 2000, failover-timeout SENTINEL_FAILOVER_TIMEOUT_MS).

BENCH_FAILOVERS trials per system, alternating systems. In each, `repl_probe
erdtree-failover|redis-failover` writes unique keys at BENCH_FAILOVER_RATE for LOAD_S seconds
over 4 connections to the master (the switchover suite's load), kills the master with SIGKILL
KILL_AT_S into it, sends the writes in flight on the dead connections again, asks for the
master until one is named (Erdtree: Admin/Status on the other nodes; Redis: SENTINEL
get-master-addr-by-name), follows refusals as the switchover load does, and once every write is
acknowledged reads each back from the new master:

    failover time = first ack from the new master - the kill

Then the killed node is started again with its own config (Redis: `--replicaof` the new
master, as Sentinel would reconfigure it) and the next trial waits until it follows.

The throughput comparison is two loads of the rounds (`set` on `erdtree master`, `set_ha_on`
on an `erdtree node` that etcd made master, alone in its cluster; both wal 1s), alternated,
compared in the summary table.
"""

from __future__ import annotations

import collections
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from bench import checks, redis_tools
from bench import report as tables
from bench.console import Fatal, note
from bench.loads import Load
from bench.records import Failover
from bench.servers import (
    LISTEN_TIMEOUT_S, Instance, Running, erdtree_preload, erdtree_recheck, erdtree_sections, launch_etcd,
    start_erdtree, start_redis, wait_listening, wait_until,
)
from bench.suites.grpc import SET
from bench.suites.switchover import erdtree_settle, port, settle, summary_lines, twice_acked, write_log
from harness import node as harness

if TYPE_CHECKING:
    from bench.run import Bench

LOAD_S = 8.0
KILL_AT_S = 1.0
LEASE_TTL = "2s"
DOWN_AFTER_MS = 2000
# Sentinel takes any failover-timeout above 0; shorter ones than this were not tried. It bounds
# each step of a failover (the promotion waits for the replica's INFO, asked once a second), and
# no failover starts again within twice it (the default, 180 s, would block the next trial).
SENTINEL_FAILOVER_TIMEOUT_MS = 1000
CLUSTER_LIMIT_S = 60  # a cluster formed, or whole again after a restart, within
GOAL_S = 3.0
MASTER_NAME = "bench"  # Sentinel's name for the master (repl_probe asks for it by this name)


def selected(s) -> bool:
    return s.suite("failover") and (s.has("erdtree") or s.has("redis"))


# --- Set throughput with ha on ----------------------------------------------------------


def start_erdtree_ha(bench: Bench, name: str) -> Running:
    """An `erdtree node` alone in its cluster (its own etcd), wal 1s, preloaded once it is master."""
    etcd = launch_etcd(bench, f"{name}_etcd")
    workdir, node_port = bench.tmp / name, harness.free_port()
    node = start_erdtree(bench, workdir, name, role="node", port=node_port, timeout=LISTEN_TIMEOUT_S, sync="1s",
                         ha=ha_section(etcd.address, name, node_port))
    settle(lambda: erdtree_role(bench, node.address) == "master", f"{name}: the node did not become master",
           CLUSTER_LIMIT_S)
    erdtree_preload(bench, node.address, f"{name} (erdtree node, master, wal.sync_interval 1s)")
    return Running(name, "erdtree", node.proc, node.port, wal_dir=workdir / "wal")


INSTANCES = [Instance("erdtree_ha", "erdtree", start_erdtree_ha, erdtree_recheck)]
LOADS = [Load("set_ha_on", "erdtree_ha", "Erdtree Set 100 B, wal 1s, ha on: node + etcd (c4 m32)",
              frozenset({"failover"}), SET, "set")]


# --- Erdtree: three nodes and etcd ----------------------------------------------------------


def ha_section(etcd: str, name: str, node_port: int) -> dict:
    return {"etcd": {"endpoints": [etcd]}, "cluster": "bench", "name": name,
            "advertise": f"127.0.0.1:{node_port}", "lease_ttl": LEASE_TTL}


def erdtree_role(bench: Bench, address: str) -> str:
    """`erdtree status`'s role (master, slave, …); "" while the node does not answer."""
    try:
        return checks.erdtree_status(bench.erdtree_bin, address).get("role", "")
    except Fatal:
        return ""


class ErdtreeCluster:
    """Three `erdtree node`s under one etcd; a killed node restarts with the same config."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        etcd = launch_etcd(bench, "failover_etcd")
        self.ports = [harness.free_port() for _ in range(3)]
        self.procs: dict[str, subprocess.Popen] = {}
        self.configs = {}  # address -> workdir, port, config sections
        for i, node_port in enumerate(self.ports):
            sections = erdtree_sections(bench, sync="always", replication={"min_acks": 1},
                                        ha=ha_section(etcd.address, f"n{i}", node_port))
            self.configs[f"127.0.0.1:{node_port}"] = (bench.tmp / f"failover_n{i}", node_port, sections)
            self.launch(f"127.0.0.1:{node_port}")
        self.master = self.settle()

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    def launch(self, address: str) -> None:
        workdir, node_port, sections = self.configs[address]
        node = harness.launch(workdir, node_port, binary=self.bench.erdtree_bin, role="node", defaults={},
                              **sections)
        self.bench.processes.adopt(node.proc)
        self.procs[node.address] = node.proc

    def settle(self) -> str:
        """The master, once there is one and the other nodes follow it."""
        def whole() -> bool:
            masters = [a for a in self.nodes if erdtree_role(self.bench, a) == "master"]
            return len(masters) == 1 and all(
                checks.erdtree_slaves(self.bench.erdtree_bin, masters[0]).get(a) == "connected"
                for a in self.nodes if a != masters[0])

        settle(whole, "erdtree: the three nodes did not settle on one master followed by the other two",
               CLUSTER_LIMIT_S)
        return next(a for a in self.nodes if erdtree_role(self.bench, a) == "master")

    def trial(self, rnd: int, lsns: collections.Counter) -> Failover:
        master = self.master
        peers = [a for a in self.nodes if a != master]
        row = probe(self.bench, rnd, "erdtree", master, self.procs[master], ",".join(peers), lsns)
        self.bench.processes.stop(self.procs.pop(master))
        self.launch(master)
        erdtree_settle(self.bench, self.nodes, row.new_master)
        self.master = row.new_master
        return row


# --- Redis: a master, two replicas, three Sentinels -------------------------------------------


def sentinel_fields(sentinel: int, *args: str) -> list[dict[str, str]]:
    """A Sentinel's answer of flat name/value lists (SENTINEL replicas|sentinels|master), as dicts;
    redis-cli prints one item a line, and an entity's list starts again at `name`."""
    items, found = redis_tools.cli(sentinel, "sentinel", *args).splitlines(), []
    for name, value in zip(items[::2], items[1::2]):
        if name == "name":
            found.append({})
        if found:
            found[-1][name] = value
    return found


class RedisCluster:
    """Three redis-servers (AOF always) and three Sentinels; a killed one restarts as a replica."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.ports = [harness.free_port() for _ in range(3)]
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts = 0
        self.master = f"127.0.0.1:{self.ports[0]}"
        for i in range(3):
            self.launch(i, None if i == 0 else self.master)
        self.sentinels = [harness.free_port() for _ in range(3)]
        for i, sentinel in enumerate(self.sentinels):
            directory = bench.tmp / f"failover_sentinel{i}"
            directory.mkdir()
            conf = directory / "sentinel.conf"
            conf.write_text(f"port {sentinel}\nbind 127.0.0.1\ndir {directory}\n"
                            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.ports[0]} 2\n"
                            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                            f"sentinel failover-timeout {MASTER_NAME} {SENTINEL_FAILOVER_TIMEOUT_MS}\n")
            proc = bench.processes.start_server(["redis-sentinel", str(conf)], directory, directory / "sentinel.log")
            wait_listening(proc, sentinel, f"sentinel {i}", directory / "sentinel.log")
        self.settle(None)

    def launch(self, i: int, master: str | None) -> None:
        """Node i (AOF always), following `master` if given, once its link is up."""
        node_port, directory = self.ports[i], self.bench.tmp / f"failover_redis{i}"
        more = ["--repl-diskless-sync-delay", "0"]
        if master:
            more += ["--replicaof", *master.split(":")]
        self.starts += 1
        log = directory / f"server.{self.starts}.log"
        proc = start_redis(self.bench, directory, node_port, "always", *more, log=log.name)
        wait_listening(proc, node_port, f"redis {i}", log)
        if master:
            wait_until(proc, lambda: redis_tools.linked(node_port), f"redis {i}: sync with {master}", log)
        self.procs[f"127.0.0.1:{node_port}"] = proc

    def settle(self, old: str | None) -> None:
        """Every Sentinel names the master, sees both replicas up and the two other Sentinels."""
        def whole() -> bool:
            for sentinel in self.sentinels:
                named = redis_tools.cli(sentinel, "sentinel", "get-master-addr-by-name", MASTER_NAME).split()
                if ":".join(named) != self.master or self.master == old:
                    return False
                replicas = sentinel_fields(sentinel, "replicas", MASTER_NAME)
                up = [r for r in replicas if r.get("flags") == "slave" and r.get("master-link-status") == "ok"]
                if len(up) < 2 or len(sentinel_fields(sentinel, "sentinels", MASTER_NAME)) < 2:
                    return False
            return True

        settle(whole, f"redis: the Sentinels did not all see the master {self.master} with 2 replicas up and "
               "each other", CLUSTER_LIMIT_S)

    def trial(self, rnd: int, lsns: collections.Counter) -> Failover:
        master = self.master
        row = probe(self.bench, rnd, "redis", master, self.procs[master], ",".join(map(str, self.sentinels)), lsns)
        self.bench.processes.stop(self.procs.pop(master))
        self.master = row.new_master
        self.launch(self.ports.index(port(master)), row.new_master)
        self.settle(master)
        return row


# --- one trial, measured --------------------------------------------------------------------


def probe(bench: Bench, rnd: int, system: str, master: str, proc: subprocess.Popen, peers: str,
          lsns: collections.Counter) -> Failover:
    s = bench.settings
    out = bench.tmp / f"failover.{rnd}.{system}"
    summary = bench.probe.run(out.with_name(out.name + ".summary"), f"{system}-failover", master, proc.pid,
                              s.failover_rate, LOAD_S, KILL_AT_S, f"fail{rnd}", out, peers)
    return analyse(rnd, system, master, out, summary, lsns)


def analyse(rnd: int, system: str, master: str, out: Path, summary: str, lsns: collections.Counter) -> Failover:
    """One trial from repl_probe's per-write log and summary (see repl_probe.c)."""
    lines = summary_lines(summary)
    killed_us = int(lines["switchover"].split()[0])
    writes, _, _, unnamed, _, last = map(int, lines["writes"].split())
    _, lost, wrong = map(int, lines["readback"].split())
    dropped, polls = map(int, lines["failover"].split())
    old = port(master)
    if last == old:
        raise Fatal(f"{system} failover {rnd}: the writes still went to the killed master {master} at the end")
    rows = write_log(out)  # id due sent refused acked first node attempts lsn epoch
    after = [r[4] for r in rows if r[6] == last and r[4] >= killed_us]
    if not after:
        raise Fatal(f"{system} failover {rnd}: no write acknowledged by the new master after the kill")
    epochs = sorted({r[9] for r in rows if r[6] == last})
    return Failover(rnd, system, min(after) - killed_us, round(writes / (max(r[2] for r in rows) / 1e6), 1), writes,
                    sum(r[3] >= 0 for r in rows), dropped, lost + wrong,
                    twice_acked(rows, lsns) if system == "erdtree" else 0, unnamed, polls,
                    sum(r[2] - r[1] > 10_000 for r in rows if r[1] < killed_us),
                    f"127.0.0.1:{last}", epochs[-1] if epochs else 0)


def run(bench: Bench) -> None:
    s = bench.settings
    clusters = {}
    if s.has("erdtree"):
        clusters["erdtree"] = ErdtreeCluster(bench)
    if s.has("redis"):
        clusters["redis"] = RedisCluster(bench)
    lsns: collections.Counter = collections.Counter()
    for rnd in range(1, s.failovers + 1):
        for system, cluster in clusters.items():
            master = cluster.master
            row = cluster.trial(rnd, lsns)
            bench.records.failovers.append(row)
            note(f"failover {rnd}/{s.failovers}  {system} {master} killed -> {row.new_master}: first write acked "
                 f"{row.failover_us / 1e6:.2f} s after the kill, {row.lost} acked writes lost, "
                 f"{row.rate:.0f} writes/s sent")
    bench.processes.stop_servers()


def report(bench: Bench) -> None:
    s = bench.settings
    print()
    print(f"### Failover after kill -9 of the master, at {s.failover_rate:,} writes/s, 2 followers")
    print()
    print(f"{s.failovers} trials per system, alternating. Erdtree: three `erdtree node`s and one etcd (ha.lease_ttl "
          f"{LEASE_TTL},")
    print("wal always, replication.min_acks 1). Redis: a master and two replicas (AOF always) and three Sentinels")
    print(f"(down-after-milliseconds {DOWN_AFTER_MS}, failover-timeout {SENTINEL_FAILOVER_TIMEOUT_MS}). repl_probe "
          f"writes unique 100-byte keys for {LOAD_S:g} s (4 connections),")
    print(f"SIGKILLs the master {KILL_AT_S:g} s in, sends the writes in flight on its connections again, asks for "
          "the master")
    print("(Erdtree: Admin/Status on the other nodes; Redis: SENTINEL get-master-addr-by-name) every 2 ms while it "
          "knows")
    print("none, follows refusals, then reads every acknowledged write back from the new master. Failover time: "
          "from the")
    print("kill to the first write the new master acknowledged. The killed node restarts (Redis: as a replica of "
          "the new")
    print("master) and follows before the next trial.")
    print()
    tables.failover(bench.records.failovers, GOAL_S)
