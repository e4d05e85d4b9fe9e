"""Replication across hosts, through real network faults: a master and two slaves in three
network namespaces (see conftest.py). The tests run in order on one cluster; each heals
what it broke."""

from __future__ import annotations

import time

import grpc
import pytest

from hosts import ERDTREE_BIN, Cluster, Node, sh


def wait_until(what: str, check, timeout: float = 30.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Client:
    """grpcio stubs to one node, from the test's own host on the bridge."""

    def __init__(self, cluster: Cluster, node: Node):
        self.pb = cluster.pb
        self.channel = grpc.insecure_channel(node.address)
        self.kv = cluster.pb.kv_grpc.KVStoreStub(self.channel)
        self.admin = cluster.pb.kv_grpc.AdminStub(self.channel)

    def set(self, key: str, value: bytes) -> int:
        return self.kv.Set(self.pb.kv.SetRequest(key=key, value=value), timeout=10).lsn

    def get(self, key: str, min_lsn: int = 0):
        return self.kv.Get(self.pb.kv.GetRequest(key=key, min_lsn=min_lsn), timeout=10)

    def status(self):
        return self.admin.Status(self.pb.kv.StatusRequest(), timeout=10)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture(scope="module")
def clients(cluster):
    made = {node.name: Client(cluster, node) for node in [cluster.master, *cluster.slaves]}
    yield made
    for client in made.values():
        client.close()


def local_status(cluster: Cluster, host: str, port: int) -> dict[str, str]:
    """`erdtree status` run on the host itself (its link may be down), as key → value."""
    done = sh("ip", "netns", "exec", cluster.net.ns(host), str(ERDTREE_BIN), "status",
              "--server", f"127.0.0.1:{port}", "--timeout", "2s")
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in done.stdout.splitlines())}


def caught_up(client: Client, lsn: int) -> bool:
    status = client.status()
    return status.applied_lsn >= lsn and status.lag_entries == 0


def test_writes_replicate_across_hosts(cluster, clients):
    master = clients["master"]
    last = 0
    for i in range(50):
        last = master.set(f"host-{i}", f"value-{i}".encode())
    for name in ("slave1", "slave2"):
        slave = clients[name]
        # Read-your-writes on a slave: it waits until it has applied the master's LSN.
        assert slave.get("host-49", min_lsn=last).value == b"value-49"
        assert all(slave.get(f"host-{i}").value == f"value-{i}".encode() for i in range(50))
        status = slave.status()
        assert status.role == cluster.pb.kv.ROLE_SLAVE
        assert status.master_address == f"{cluster.net.address['master']}:8090"
        assert status.replication_id == master.status().replication_id
    # They listen on every interface (deploy's config), so they name themselves by hostname.
    listed = master.admin.ListSlaves(cluster.pb.kv.ListSlavesRequest(), timeout=10).slaves
    assert sorted(s.slave_id for s in listed) == ["slave1:8081", "slave2:8081"]


def test_a_slave_cut_off_while_writes_go_on_catches_up_when_its_link_returns(cluster, clients):
    master, slave1, slave2 = clients["master"], clients["slave1"], clients["slave2"]
    cluster.net.cut("slave1")
    try:
        last = 0
        for i in range(300):
            last = master.set(f"cut-{i}", f"during-cut-{i}".encode())
        # The other slave keeps up; the cut one is behind, and says so on its own host.
        assert slave2.get("cut-299", min_lsn=last).value == b"during-cut-299"
        seen = local_status(cluster, "slave1", 8081)
        assert int(seen["applied lsn"]) < last, seen
        wait_until("the cut slave to report its lag", lambda: local_status(cluster, "slave1", 8081)["lag"] != "0 entries, 0 ms")
    finally:
        cluster.net.heal("slave1")
    wait_until("the healed slave to catch up", lambda: caught_up(slave1, last), timeout=60)
    assert all(slave1.get(f"cut-{i}").value == f"during-cut-{i}".encode() for i in range(300))
    assert slave1.status().last_lsn == master.status().last_lsn


def test_replication_works_over_a_200ms_link_and_reports_the_lag(cluster, clients):
    master = clients["master"]
    cluster.set_delay(0.2)
    try:
        largest = {"status lag_ms": 0, "status lag_entries": 0, "ListSlaves lag_ms": 0}
        last = 0
        for i in range(40):
            last = master.set(f"slow-{i}", b"x" * 100)
            status = master.status()
            slaves = master.admin.ListSlaves(cluster.pb.kv.ListSlavesRequest(), timeout=10).slaves
            for name, value in [("status lag_ms", status.lag_ms), ("status lag_entries", status.lag_entries),
                                *(("ListSlaves lag_ms", s.lag_ms) for s in slaves)]:
                largest[name] = max(largest[name], value)
            time.sleep(0.025)
        # Acks come back 400 ms after the writes they ack: the master sees its slaves behind,
        # by entries and by the age of the oldest one they have not applied.
        assert largest["status lag_ms"] >= 150 and largest["ListSlaves lag_ms"] >= 150, largest
        assert largest["status lag_entries"] >= 2, largest
        for name in ("slave1", "slave2"):
            started = time.monotonic()
            assert clients[name].get("slow-39", min_lsn=last).value == b"x" * 100
            assert time.monotonic() - started < 5
    finally:
        cluster.set_delay(0)
    for name in ("slave1", "slave2"):
        wait_until(f"{name} to catch up", lambda name=name: caught_up(clients[name], last))


def test_slaves_serve_reads_while_the_master_is_cut_off_and_resume_when_it_returns(cluster, clients):
    master = clients["master"]
    before = master.set("before-master-cut", b"old")
    for name in ("slave1", "slave2"):
        assert clients[name].get("before-master-cut", min_lsn=before).value == b"old"
    cluster.net.cut("master")
    try:
        # Writes go on on the master's own host; nobody else can reach it.
        for i in range(20):
            sh("ip", "netns", "exec", cluster.net.ns("master"), str(ERDTREE_BIN), "set", f"island-{i}", f"v{i}",
               "--server", "127.0.0.1:8080", "--timeout", "2s")
        for name in ("slave1", "slave2"):
            slave = clients[name]
            assert slave.get("before-master-cut").value == b"old"
            assert not slave.get("island-0").found
            # Cut off from the master, a slave cannot know what it misses: its lag is the
            # time since it last heard from it, and grows.
            first = wait_until(f"{name} to report its lag", lambda slave=slave: slave.status().lag_ms or None)
            wait_until(f"{name}'s lag to grow", lambda slave=slave, first=first: slave.status().lag_ms > first + 500)
    finally:
        cluster.net.heal("master")
    last = master.status().last_lsn
    for name in ("slave1", "slave2"):
        wait_until(f"{name} to resume", lambda name=name: caught_up(clients[name], last), timeout=60)
        assert clients[name].get("island-19").value == b"v19"
        assert clients[name].status().lag_ms == 0
