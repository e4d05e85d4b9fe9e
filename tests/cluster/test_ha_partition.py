"""Automatic failover across hosts, through a real partition: etcd and three `erdtree node`s,
each in its own network namespace (hosts.py), started from deploy/node*-config.yaml with only
addresses and data directories changed, and `replication.min_acks: 0` so that the master cut off
from everyone can still acknowledge what it takes before its lease runs out."""

from __future__ import annotations

import shutil
import subprocess
import time

import grpc
import pytest
import yaml

from hosts import DEPLOY, ERDTREE_BIN, Network, compile_stubs, netns_unavailable, sh, start_node, wait_serving
from test_cluster import wait_until

ROOT_API = DEPLOY.parent / "api"
PORT, ETCD_PORT, LEASE_TTL_S = 8080, 2379, 2
NODES = ["n1", "n2", "n3"]


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"multi-host failover test skipped: {reason}")
    if shutil.which("etcd") is None:
        pytest.fail("etcd not found: run scripts/install-deps.sh test (Debian's etcd-server)")
    tmp = tmp_path_factory.mktemp("ha")
    pb = compile_stubs(ROOT_API, tmp_path_factory.mktemp("stubs"))
    net = Network(["etcd", *NODES])
    etcd, nodes = None, {}
    try:
        net.create()
        address = net.address["etcd"]
        client, peer = f"http://{address}:{ETCD_PORT}", f"http://{address}:2380"
        with open(tmp / "etcd.log", "wb") as log:
            etcd = subprocess.Popen(
                ["ip", "netns", "exec", net.ns("etcd"), "etcd", "--name", "e", "--data-dir", str(tmp / "etcd"),
                 "--listen-client-urls", client, "--advertise-client-urls", client, "--listen-peer-urls", peer,
                 "--initial-advertise-peer-urls", peer, "--initial-cluster", f"e={peer}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        for i, name in enumerate(NODES, start=1):
            config = yaml.safe_load((DEPLOY / f"node{i}-config.yaml").read_text())
            config["wal"]["directory"] = str(tmp / name / "wal")
            config["replication"]["min_acks"] = 0
            config["ha"]["etcd"]["endpoints"] = [f"{address}:{ETCD_PORT}"]
            config["ha"]["advertise"] = f"{net.address[name]}:{PORT}"
            config["ha"]["lease_ttl"] = f"{LEASE_TTL_S}s"
            nodes[name] = start_node(net, name, "node", config, tmp / name, PORT)
        yield net, nodes, pb, tmp
    finally:
        for node in nodes.values():
            node.stop(timeout=15)
        if etcd is not None:
            etcd.kill()
            etcd.wait()
        net.destroy()


def status(pb, address):
    with grpc.insecure_channel(address) as channel:
        return pb.kv_grpc.AdminStub(channel).Status(pb.kv.StatusRequest(), timeout=5)


def local(net: Network, host: str, *args: str) -> subprocess.CompletedProcess:
    """The erdtree CLI run on `host` itself, against its own node (its link may be down)."""
    return sh("ip", "netns", "exec", net.ns(host), str(ERDTREE_BIN), *args, "--server", f"127.0.0.1:{PORT}",
              "--timeout", "2s", check=False)


def test_a_master_cut_off_stops_taking_writes_a_new_one_is_elected_and_the_old_tail_is_set_aside(ha):
    net, nodes, pb, tmp = ha
    for node in nodes.values():
        wait_serving(node)

    def master():
        for name, node in nodes.items():
            try:
                if status(pb, node.address).role == pb.kv.ROLE_MASTER:
                    return name
            except grpc.RpcError:
                pass
        return None

    old = wait_until("a master", master, 30)
    others = [n for n in NODES if n != old]
    wait_until("every node to follow it", lambda: all(
        status(pb, nodes[n].address).master_address == nodes[old].address for n in others), 30)
    with grpc.insecure_channel(nodes[old].address) as channel:
        kv = pb.kv_grpc.KVStoreStub(channel)

        def takes_writes():
            try:
                return kv.Set(pb.kv.SetRequest(key="shared-probe", value=b"p"), timeout=5).lsn
            except grpc.RpcError:
                return 0

        wait_until("the master to take writes", takes_writes, 30)
        shared = [kv.Set(pb.kv.SetRequest(key=f"shared-{i}", value=b"s"), timeout=5).lsn for i in range(10)]
    wait_until("the slaves to have every write", lambda: all(
        status(pb, nodes[n].address).applied_lsn >= shared[-1] for n in others), 30)

    net.cut(old)
    cut_at = time.monotonic()
    # Written on the master's own host right after the cut: acknowledged (min_acks 0) but never
    # replicated — the tail the new history will not have.
    tail = []
    for i in range(5):
        done = local(net, old, "set", f"tail-{i}", "t")
        if done.returncode == 0:
            tail.append(f"tail-{i}")
    assert tail, "the master took no write right after the cut: its lease should still hold"

    # Within the ttl it stops taking writes (asked on its own host); what it still
    # acknowledged until then is part of its tail.
    probes = iter(range(1000))

    def refusing():
        key = f"late-{next(probes)}"
        done = local(net, old, "set", key, "x")
        if done.returncode == 0:
            tail.append(key)
        return done.returncode != 0 and ("lease" in done.stderr or "UNAVAILABLE" in done.stderr)

    wait_until("the cut-off master to refuse writes", refusing, LEASE_TTL_S + 2, every=0.1)
    assert time.monotonic() - cut_at <= LEASE_TTL_S + 1
    new = wait_until("a new master among the others", lambda: next(
        (n for n in others if status(pb, nodes[n].address).role == pb.kv.ROLE_MASTER), None), 30)
    with grpc.insecure_channel(nodes[new].address) as channel:
        kv = pb.kv_grpc.KVStoreStub(channel)
        after = kv.Set(pb.kv.SetRequest(key="after", value=b"a"), timeout=5)
        assert after.epoch > status(pb, nodes[new].address).epoch - 1

    net.heal(old)
    wait_until("the old master to follow the new one", lambda: status(
        pb, nodes[old].address).master_address == nodes[new].address, 30)
    keys = [f"shared-{i}" for i in range(10)] + tail + ["after"]

    def converged():
        states = []
        for node in nodes.values():
            with grpc.insecure_channel(node.address) as channel:
                kv = pb.kv_grpc.KVStoreStub(channel)
                states.append({k: kv.Get(pb.kv.GetRequest(key=k), timeout=5) for k in keys})
        flat = [{k: (r.found, r.value, r.lsn) for k, r in s.items()} for s in states]
        return flat[0] if all(f == flat[0] for f in flat) else None

    state = wait_until("every node to hold the same keys", converged, 30)
    assert all(state[k][0] for k in keys if k not in tail), state
    assert not any(state[k][0] for k in tail), "the old master's unreplicated writes are not in the new history"
    # (A slave that redialled the old master after the heal, before it heard of the new one,
    # may hold part of that tail too, and sets it aside the same way.)
    divergent = list((tmp / old / "wal" / "divergent").glob("*.log"))
    assert len(divergent) == 1, divergent
    dumped = subprocess.run([str(ERDTREE_BIN), "wal", "dump", str(divergent[0])], capture_output=True, text=True)
    assert sorted(line.split("key=")[1].split()[0].strip('"') for line in dumped.stdout.splitlines()
                  if line.startswith("lsn=")) == sorted(tail)
    assert status(pb, nodes[old].address).divergent_records == len(tail)
