"""replication: a master with 2 followers, Erdtree (`erdtree master` and two `erdtree slave`s,
all wal 1s) against Redis (a master and two `--replicaof` replicas, all AOF everysec).

- Lag at a fixed write rate (the lag loads): wait until the followers hold everything (a
  barrier), start a background write load at BENCH_REPL_RATE on the master (h2load --rps for
  Erdtree, 4 clients × m32, the grpc suite's shape; `repl_probe redis-load` for Redis, 4
  connections with at most 32 SETs in flight each: redis-benchmark has no rate option), let
  it run 0.5 s, then repl_probe writes its own keys on the master and reads each back from a
  follower (alternately) until it shows; the load runs on past the last probe.
- Catch-up of an empty follower on the recovery data set (`catchup`, after the rounds).
- Master Set throughput with its 2 followers attached and without (the grpc suite's and
  the durable suite's everysec shapes), timed, with the CPU each side spends per write, and
  how long the followers took to hold a write made right after (a drain barrier).

A slave is ready once Health says SERVING (its first sync done), a replica once its link is
up. repl-diskless-sync-delay 0: Redis 7 would otherwise wait 5 s for more replicas before a
full sync.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from bench import checks, datasets, h2load, redis_tools
from bench.bodies import WRITE_KEY
from bench import report as tables
from bench.console import Fatal, note, show_file
from bench.loads import Load, Measurement, url
from bench.records import Catchup, Drain, LagLoad, LagSample
from bench.servers import (
    LISTEN_TIMEOUT_S, Instance, Running, erdtree_preload, erdtree_read, erdtree_recheck, launch_erdtree,
    redis_recheck, start_erdtree, start_redis, wait_listening, wait_until,
)
from bench.suites.grpc import SET
from harness.node import free_port

if TYPE_CHECKING:
    from bench.datasets import DataSets
    from bench.run import Bench

FOLLOWERS = 2
GAP_MS = 20  # between probes, ± 50 %
LAG_LIMIT_S = 10  # a probe not seen on its follower by then stops the run
BARRIER_LIMIT_S = 120
CATCHUP_LIMIT_S = 300


def start_erdtree_repl(bench: Bench, name: str) -> Running:
    master = start_erdtree(bench, bench.tmp / name, name, sync="1s", timeout=LISTEN_TIMEOUT_S)
    erdtree_preload(bench, master.address, f"{name} (master, wal.sync_interval 1s)")
    running = Running(name, "erdtree", master.proc, master.port, wal_dir=master.workdir / "wal")
    for i in range(1, FOLLOWERS + 1):
        slave = start_erdtree(bench, bench.tmp / f"{name}_slave{i}", f"{name}_slave{i}: first sync", role="slave",
                              follower=True, sync="1s", master=master.address)
        running.followers.append(slave.proc)
        running.follower_ports.append(slave.port)
        erdtree_read(bench, slave.address, f"{name}_slave{i} (slave of {name})")
    return running


def start_redis_repl(bench: Bench, name: str) -> Running:
    port = free_port()
    proc = start_redis(bench, bench.tmp / name, port, "everysec", "--repl-diskless-sync-delay", "0")
    wait_listening(proc, port, name, bench.tmp / name / "server.log")
    checks.redis_set(port, f"{name} (master, appendfsync everysec)")
    checks.redis_get(port, f"{name} (master, appendfsync everysec)")
    running = Running(name, "redis", proc, port)
    for i in range(1, FOLLOWERS + 1):
        replica_port, directory = free_port(), bench.tmp / f"{name}_replica{i}"
        replica = start_redis(bench, directory, replica_port, "everysec", "--replicaof", "127.0.0.1", str(port),
                              follower=True)
        wait_listening(replica, replica_port, f"{name}_replica{i}", directory / "server.log")
        wait_until(replica, lambda: redis_tools.linked(replica_port), f"{name}_replica{i}: sync",
                   directory / "server.log")
        checks.redis_get(replica_port, f"{name}_replica{i} (replica of {name})")
        running.followers.append(replica)
        running.follower_ports.append(replica_port)
    return running


INSTANCES = [
    Instance("erdtree_repl", "erdtree", start_erdtree_repl, erdtree_recheck),
    Instance("redis_repl", "redis", start_redis_repl, redis_recheck),
]

REPLICATION = frozenset({"replication"})
LOADS = [
    Load("lag_erdtree", "erdtree_repl", "Erdtree lag, 2 slaves", REPLICATION, SET, "set", lag=True),
    Load("lag_redis", "redis_repl", "Redis lag, 2 replicas", REPLICATION, lag=True),
    Load("set_alone", "erdtree", "Erdtree Set 100 B, wal 1s, no slaves (c4 m32)", REPLICATION, SET, "set",
         timed=True, cpu=True),
    Load("set_slaves", "erdtree_repl", "Erdtree Set 100 B, wal 1s, 2 slaves (c4 m32)", REPLICATION, SET, "set",
         timed=True, cpu=True),
    Load("redis_alone", "redis_everysec", "Redis SET 100 B, everysec, no replicas (c128)", REPLICATION, clients=128,
         streams=1, cpu=True),
    Load("redis_replicas", "redis_repl", "Redis SET 100 B, everysec, 2 replicas (c128)", REPLICATION, clients=128,
         streams=1, cpu=True),
]
# After each run of these, how long until both followers show a write made once it ended.
DRAINED = ("set_slaves", "redis_replicas")


class Rates:
    """The lag runs' shape: probes per round, and the background rate (h2load's --rps is per client: 4 clients)."""

    def __init__(self, bench: Bench) -> None:
        s = bench.settings
        self.per_round = math.ceil(s.repl_samples / s.rounds)
        self.per_client = math.ceil(s.repl_rate / 4)
        self.target = self.per_client * 4
        # The probes take about per_round × (gap + a few ms); the load runs half as long
        # again, and 1.5 s more.
        self.load_ms = 500 + self.per_round * (GAP_MS + 2) * 3 // 2 + 1000


def followers(running: Running, host: str = "127.0.0.1") -> str:
    return ",".join(f"{host}:{p}" for p in running.follower_ports)


def barrier(bench: Bench, running: Running, tag: str) -> int:
    """Writes one key per follower on the master and waits until each follower returns it:
    entries apply in order, so then the followers hold everything the master had before.
    Milliseconds it took."""
    t0 = time.monotonic()
    bench.probe.run(bench.tmp / "barrier.out", f"{running.system}-lag", running.port, followers(running), 2, 0, tag,
                    BARRIER_LIMIT_S)
    return int((time.monotonic() - t0) * 1000)


def lag_samples(rnd: int, system: str, probe_output: str) -> list[LagSample]:
    """repl_probe *-lag lines: i slave lag_us polls set_rtt_us get_rtt_us at_us."""
    return [LagSample(rnd, system, int(f[2]), int(f[3]), int(f[4]), int(f[5]))
            for f in (line.split() for line in probe_output.splitlines()) if len(f) >= 6]


def measure_lag(bench: Bench, load: Load, rnd: int) -> Measurement:
    rates = Rates(bench)
    running = bench.instances.running[load.instance]
    system = running.system
    out = bench.tmp / f"lag.{rnd}.{load.id}"
    background = out.with_name(out.name + ".load")
    barrier(bench, running, f"barrier-{rnd}-{load.id}")
    if system == "erdtree":
        argv = h2load.argv(url(bench, load), bench.bodies.set.path, 4, 32, "grpc", "--rps", str(rates.per_client),
                           "-D", f"{rates.load_ms}ms")
    else:
        argv = bench.probe.argv("redis-load", running.port, rates.target, rates.load_ms / 1000, 4, WRITE_KEY)
    load_proc = bench.processes.start_client(argv, background)
    time.sleep(0.5)
    probes = bench.probe.run(out, f"{system}-lag", running.port, followers(running), rates.per_round, GAP_MS,
                             f"lag-{rnd}", LAG_LIMIT_S)
    outlasted = int(load_proc.poll() is not None)
    if bench.processes.finish_client(load_proc) != 0:
        show_file(background)
        raise Fatal(f"{load.label}: the background load failed (output above)")
    if system == "erdtree":
        achieved = h2load.check(background, load.label, None).rps
    else:
        fields = background.read_text().split()
        if len(fields) != 3 or fields[0] != fields[1]:
            show_file(background)
            raise Fatal(f"{load.label}: the background load did not finish cleanly")
        achieved = round(int(fields[1]) / float(fields[2]), 2)
    samples = lag_samples(rnd, system, probes)
    if not samples:
        raise Fatal(f"no probes in {out}")
    bench.records.lags.extend(samples)
    bench.records.lag_loads.append(LagLoad(rnd, system, rates.target, achieved, outlasted))
    lags = [s.lag_us for s in samples]
    return Measurement(achieved, tables.nearest_rank(lags, 0.50), tables.nearest_rank(lags, 0.99))


def drain(bench: Bench, load: Load, rnd: int) -> None:
    """How far the followers fell behind: the time until both show a write made once the
    load (and its latency run) ended."""
    ms = barrier(bench, bench.instances.running[load.instance], f"drain-{rnd}-{load.id}")
    bench.records.drains.append(Drain(rnd, load.id, ms))


# --- catch-up -----------------------------------------------------------------------------
# A master on the recovery data set (Erdtree: its WAL of BENCH_RECOVERY_RECORDS entries,
# complete from LSN 1; Redis: its AOF, loaded), started once; each round starts a follower on
# an empty dir and times it from the exec to the moment it returns the last key written
# (repl_probe *-catchup reads it every 5 ms; entries apply in order, so everything is there by
# then). Erdtree's slave streams every entry from LSN 1 (incrementally, the master's log being
# complete); a Redis replica has only a full sync: the master forks and streams an RDB
# snapshot (diskless), which the replica writes to disk and loads. Afterwards Erdtree's
# Admin/Status must say lag 0, the master's last LSN and every key; Redis's DBSIZE every key.
# Status is not what the clock polls: on a million keys each call takes about 0.2 s (its
# dead-bytes figure walks every key), and polling it every few ms slowed the slave's catch-up
# about threefold when this was written.


def wall_us() -> int:
    return time.time_ns() // 1000  # CLOCK_REALTIME, as repl_probe's catch-up answer


def catchup_erdtree(bench: Bench, data: DataSets, master: str, rnd: int) -> None:
    n = data.records
    k, v = datasets.key(n - 1).decode(), datasets.value(n - 1).decode()
    port = free_port()
    t0 = wall_us()
    slave = launch_erdtree(bench, bench.tmp / "catchup" / f"erdtree-slave.{rnd}", port, "slave", sync="1s",
                           max_entries=n * 2, master=master)
    t1 = int(bench.probe.run(bench.tmp / "catchup.out", "erdtree-catchup", port, k, v, CATCHUP_LIMIT_S).split()[0])
    status = checks.erdtree_status(bench.erdtree_bin, slave.address)
    bench.processes.stop(slave.proc)
    last, lag, keys = status.get("last lsn"), status.get("lag"), status.get("keys")
    if last != str(n) or lag != "0" or keys != str(n):
        raise Fatal(f"erdtree slave after catching up: last lsn {last} (master: {n}), lag {lag}, {keys} keys "
                    f"(want {n})")
    bench.records.catchups.append(Catchup(rnd, "erdtree", n, (t1 - t0) // 1000))
    note(f"catch-up round {rnd}/{bench.settings.rounds}  erdtree slave: {(t1 - t0) // 1000} ms to the last of "
         f"{n} entries")


def catchup_redis(bench: Bench, data: DataSets, master: str, rnd: int) -> None:
    n = data.records
    k, v = datasets.key(n - 1).decode(), datasets.value(n - 1).decode()
    port, directory = free_port(), bench.tmp / "catchup" / f"redis-replica.{rnd}"
    t0 = wall_us()
    proc = start_redis(bench, directory, port, "everysec", "--replicaof", *master.split(":"))
    t1 = int(bench.probe.run(bench.tmp / "catchup.out", "redis-catchup", port, k, v, CATCHUP_LIMIT_S).split()[0])
    keys = redis_tools.cli(port, "dbsize")
    if not redis_tools.linked(port):
        raise Fatal(f"redis replica after catching up: its link to the master is not up (log: {directory}/server.log)")
    bench.processes.stop(proc)
    if keys != str(n):
        raise Fatal(f"redis replica after catching up holds {keys} keys, want {n}")
    bench.records.catchups.append(Catchup(rnd, "redis", n, (t1 - t0) // 1000))
    note(f"catch-up round {rnd}/{bench.settings.rounds}  redis replica: {(t1 - t0) // 1000} ms to the last of "
         f"{n} keys")


def catchup(bench: Bench, data: DataSets) -> None:
    masters = {}
    if "erdtree" in data.systems:
        node = data.start_erdtree(bench, "erdtree master for the catch-up")
        last = checks.erdtree_status(bench.erdtree_bin, node.address).get("last lsn")
        if last != str(data.records):
            raise Fatal(f"erdtree master for the catch-up: last lsn {last}, want {data.records}")
        masters["erdtree"] = (node.proc, node.address, catchup_erdtree)
    if "redis" in data.systems:
        proc, port = data.start_redis(bench, "redis master for the catch-up", "server.catchup-master.log",
                                      "--repl-diskless-sync-delay", "0")
        masters["redis"] = (proc, f"127.0.0.1:{port}", catchup_redis)
    for rnd in range(1, bench.settings.rounds + 1):
        for _, address, run in masters.values():
            run(bench, data, address, rnd)
    for proc, _, _ in masters.values():
        bench.processes.stop(proc)


def report(bench: Bench, data: DataSets | None) -> None:
    rates = Rates(bench)
    print()
    print("### Replication: a master with 2 followers, Erdtree vs Redis")
    print()
    print("Erdtree: a master (wal 1s) and two `erdtree slave`s (wal 1s); Redis: a master and two")
    print(f"`--replicaof` replicas (AOF, appendfsync everysec). All on this machine's {bench.cores} cores, with")
    print("the load generator and the probe: followers here take CPU from their master, which they would")
    print(f"not on their own machines. Lag: {rates.per_round} probes per round and system (a key written on the")
    print(f"master, then read back from one follower, alternately, until it shows; probes {GAP_MS} ms ± 50 % apart),")
    print(f"under a background write load of {rates.target} writes/s on the master (Erdtree: h2load c4 m32")
    print(f"--rps {rates.per_client} per client; Redis: repl_probe redis-load, 4 connections, ≤ 32 in flight each).")
    print()
    r = bench.records
    tables.replication(r.lags, r.lag_loads, r.catchups, r.runs, r.drains, r.cpu)
    if not bench.settings.suite("recovery") and not bench.settings.suite("memory"):
        for line in data.notes if data else []:
            print()
            print(line)
