"""cluster: replication across hosts, in tests/cluster's topology (tests/cluster/hosts.py): the
master and two slaves in network namespaces of their own, each with its address, behind a
bridge this process is on as a client host. The slaves dial the master through
tests/cluster/delay_relay.py, which adds 1 ms each way (the kernel has no tc netem); clients
reach the master directly. Per round: master Set throughput with both slaves attached (h2load
c4 m32 over the bridge), then lag probes as in the replication suite (repl_probe, the same
background write rate). Needs root; skipped, saying why, otherwise."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench import h2load
from bench import report as tables
from bench.console import Fatal, note, show_file
from bench.records import ClusterRound
from bench.servers import erdtree_sections
from bench.suites.replication import GAP_MS, LAG_LIMIT_S, Rates, lag_samples
from harness import node as harness
from harness.node import ROOT

if TYPE_CHECKING:
    from bench.run import Bench

DELAY_S = 0.001


@dataclass
class Outcome:
    skipped: str = ""


def hosts_module():
    sys.path.insert(0, str(ROOT / "tests" / "cluster"))
    import hosts

    return hosts


def run(bench: Bench) -> Outcome:
    if os.geteuid() != 0:
        return Outcome("network namespaces need root")
    hosts = hosts_module()
    net = hosts.Network(["master", "slave1", "slave2"])
    try:
        net.create()
    except RuntimeError as error:
        net.destroy()
        return Outcome(f"could not build the hosts: {error}")
    bench.on_cleanup(net.destroy)
    tmp = bench.tmp / "cluster"
    tmp.mkdir()
    master_ip = net.address["master"]

    def node(name: str, role: str, port: int, master: str | None = None) -> harness.Node:
        config = {"server": {"address": "0.0.0.0", "port": port}, "wal": {"directory": str(tmp / name / "wal")}}
        for section, values in erdtree_sections(bench, "1s", master=master).items():
            config.setdefault(section, {}).update(values)
        started = hosts.start_node(net, name, role, config, tmp / name, port, bench.erdtree_bin)
        bench.processes.adopt(started.proc, follower=role == "slave")
        return started

    def serving(started: harness.Node) -> None:
        try:
            if harness.wait_serving(started, timeout=300, poll_s=0.01):
                return
        except harness.NodeError as error:
            raise Fatal(f"the cluster's {started.name}: {error}") from None
        show_file(started.log_path, 20)
        raise Fatal(f"the cluster's {started.name}: the server exited (log above: {started.log_path})")

    master = node("master", "master", hosts.MASTER_PORT)
    delay = tmp / "delay"
    delay.write_text(f"{DELAY_S}\n")
    relay = hosts.start_relay(net, "master", hosts.RELAY_PORT, f"127.0.0.1:{hosts.MASTER_PORT}", delay,
                              tmp / "relay.log")
    bench.processes.adopt(relay)
    serving(master)
    slaves = [node(name, "slave", hosts.SLAVE_PORT + i, f"{master_ip}:{hosts.RELAY_PORT}")
              for i, name in enumerate(("slave1", "slave2"))]
    for slave in slaves:
        serving(slave)
    rates = Rates(bench)
    url = f"{master.url}/erdtree.v1.KVStore/Set"
    for rnd in range(1, bench.settings.rounds + 1):
        out = tmp / f"set.{rnd}.out"
        bench.processes.run_client(h2load.argv(url, bench.bodies.set.path, 4, 32, "grpc", "-D",
                                               f"{bench.settings.seconds}s"), out,
                                   "h2load failed on the cluster's master")
        rps = h2load.parse(out.read_text()).rps
        out = tmp / f"lag.{rnd}.out"
        background = bench.processes.start_client(
            h2load.argv(url, bench.bodies.set.path, 4, 32, "grpc", "--rps", str(rates.per_client), "-D",
                        f"{rates.load_ms}ms"), out.with_name(out.name + ".load"))
        time.sleep(0.5)
        probes = bench.probe.run(out, "erdtree-lag", master.address, ",".join(s.address for s in slaves),
                                 rates.per_round, GAP_MS, f"cluster-{rnd}", LAG_LIMIT_S)
        if bench.processes.finish_client(background) != 0:
            show_file(out.with_name(out.name + ".load"))
            raise Fatal("the cluster's background load failed")
        lags = [s.lag_us for s in lag_samples(rnd, "erdtree", probes)]
        p50, p99 = tables.nearest_rank(lags, 0.50), tables.nearest_rank(lags, 0.99)
        bench.records.cluster.append(ClusterRound(rnd, rps, p50, p99))
        note(f"round {rnd}/{bench.settings.rounds}  cluster (3 hosts, +1 ms each way): Set with 2 slaves "
             f"{rps:.0f} req/s; lag p50 {p50} µs, p99 {p99} µs")
    for started in [*slaves, master]:
        bench.processes.stop(started.proc)
    bench.processes.stop(relay)
    net.destroy()
    return Outcome()


def report(bench: Bench, outcome: Outcome) -> None:
    rates = Rates(bench)
    print()
    print("### Replication across hosts: a master and 2 slaves in network namespaces")
    print()
    if outcome.skipped:
        print(f"Skipped: {outcome.skipped}.")
        return
    print("Three hosts (network namespaces, each with its address) behind a bridge, the load generator and")
    print("the probe on a fourth; the slaves reach the master through a relay adding 1 ms each way (this")
    print(f"kernel has no tc netem), clients reach it directly. Same configs, background rate ({rates.target}")
    print(f"writes/s) and probes ({rates.per_round} per round) as the replication suite; still one machine's "
          f"{bench.cores} cores.")
    print()
    tables.cluster(bench.records.cluster, bench.records.lags, bench.records.runs)
