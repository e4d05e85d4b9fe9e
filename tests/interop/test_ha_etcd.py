"""High availability, part 2: `erdtree node`s whose roles a real etcd decides (loopback, real
processes). Leases fence: a master that cannot renew stops taking writes before anyone else can
be elected (docs/high-availability.md, part 2).

etcd is Debian's etcd-server (scripts/install-deps.sh test installs it), started per test."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from conftest import ERDTREE_BIN, _failed, start_server, stop_server
from harness import node as harness
from test_high_availability import check_acked_everywhere, read_all, status, stubs, wait_converged, wait_until

LEASE_TTL_S = 2
MASTER_HEADER = "erdtree-master"


class Etcd:
    """One etcd member on free loopback ports, in its own data directory."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.client_port, self.peer_port = harness.free_port(), harness.free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> None:
        binary = shutil.which("etcd")
        if binary is None:
            pytest.fail("etcd not found: run scripts/install-deps.sh test (Debian's etcd-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        client, peer = f"http://127.0.0.1:{self.client_port}", f"http://127.0.0.1:{self.peer_port}"
        log = open(self.workdir / "etcd.log", "ab")
        self.proc = subprocess.Popen(
            [*harness.DIE_WITH_PARENT, binary, "--name", "e0", "--data-dir", str(self.workdir / "data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"e0={peer}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until("etcd to listen", lambda: harness.port_accepts("127.0.0.1", self.client_port), 20)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def ctl(self, *args: str) -> str:
        done = subprocess.run(["etcdctl", "--endpoints", self.endpoint, *args], capture_output=True, text=True,
                              timeout=10, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def etcd(tmp_path):
    server = Etcd(tmp_path / "etcd")
    server.start()
    yield server
    server.kill()


class Cluster:
    """Three `erdtree node`s sharing one etcd and one cluster name."""

    def __init__(self, pb, tmp: Path, etcd: Etcd, min_acks: int):
        self.pb, self.tmp, self.etcd, self.min_acks = pb, tmp, etcd, min_acks
        self.ports = [harness.free_port() for _ in range(3)]
        self.nodes: dict[int, harness.Node] = {}

    def address(self, i: int) -> str:
        return f"127.0.0.1:{self.ports[i]}"

    def launch(self, i: int) -> harness.Node:
        node = harness.launch(
            self.tmp / f"n{i}", self.ports[i], role="node",
            wal={"sync_interval": "always"},
            replication={"min_acks": self.min_acks, "ack_timeout": "2s"},
            ha={"etcd": {"endpoints": [self.etcd.endpoint]}, "cluster": "test", "name": f"n{i}",
                "advertise": self.address(i), "lease_ttl": f"{LEASE_TTL_S}s"})
        wait_until(f"n{i} to listen", lambda: harness.port_accepts(node.host, node.port), 20)
        self.nodes[i] = node
        return node

    def start_all(self) -> int:
        """Starts the three nodes; returns the master's index once every node follows it."""
        for i in range(3):
            self.launch(i)
        master = self.master()
        wait_until("every node to follow the elected master", lambda: all(
            status(self.pb, n.address).master_address == self.address(master) for n in self.alive()), 15)
        return master

    def master(self, timeout=15.0, excluding: int | None = None) -> int:
        """The index of the node that says it is the master, waiting for one."""

        def find():
            for i, n in self.nodes.items():
                if i != excluding and n.alive():
                    try:
                        if status(self.pb, n.address).role == self.pb.kv.ROLE_MASTER:
                            return i + 1  # truthy
                    except grpc.RpcError:
                        pass
            return 0

        return wait_until("a master", find, timeout, every=0.05) - 1

    def alive(self) -> list[harness.Node]:
        return [n for n in self.nodes.values() if n.alive()]

    def stop(self, failed: bool) -> None:
        for n in self.nodes.values():
            if n.alive():
                stop_server(n, failed)


@pytest.fixture
def cluster(pb, tmp_path, etcd, request):
    made = Cluster(pb, tmp_path, etcd, min_acks=1)
    yield made
    made.stop(_failed(request.node))


class Writers:
    """4 threads writing unique keys to whichever node is the master: a refusal naming one
    (`erdtree-master`) is followed, any other failure asks the nodes' Status who leads."""

    def __init__(self, pb, cluster: Cluster, prefix: str, count=4):
        self.pb, self.cluster, self.prefix = pb, cluster, prefix
        self.acked: dict[str, tuple[bytes, int, int, str]] = {}  # key -> (value, lsn, epoch, by)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True) for n in range(count)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def find_master(self) -> str | None:
        for n in self.cluster.alive():
            try:
                s = status(self.pb, n.address)
            except grpc.RpcError:
                continue
            if s.role == self.pb.kv.ROLE_MASTER:
                return n.address
        return None

    def run(self, n):
        address, i = None, 0
        while not self.stop.is_set():
            address = address or self.find_master()
            if address is None:
                time.sleep(0.05)
                continue
            key, value = f"{self.prefix}{n}-{i}", f"v{n}-{i}".encode()
            channel, kv, _ = stubs(self.pb, address)
            try:
                with channel:
                    reply = kv.Set(self.pb.kv.SetRequest(key=key, value=value), timeout=5)
            except grpc.RpcError as error:
                address = dict(error.trailing_metadata() or ()).get(MASTER_HEADER)
                if address is None:
                    time.sleep(0.05)
                continue
            with self.lock:
                self.acked[key] = (value, reply.lsn, reply.epoch, address)
            i += 1

    def acked_by(self, address: str, after: float = 0) -> int:
        with self.lock:
            return sum(1 for (_, _, _, by) in self.acked.values() if by == address)

    def wait_for(self, count: int, timeout=30.0):
        wait_until(f"{count} acknowledged writes", lambda: len(self.acked) >= count, timeout)


def check_converged(pb, cluster: Cluster, acked: dict):
    nodes = cluster.alive()
    check_acked_everywhere(pb, nodes, {k: v[:3] for k, v in acked.items()})
    wait_converged(pb, nodes, list(acked))


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_five_rounds_of_automatic_failover_under_load_lose_no_acknowledged_write(pb, cluster):
    master = cluster.start_all()
    assert status(pb, cluster.address(master)).epoch >= 2, "the first master was elected into a new epoch"
    with Writers(pb, cluster, prefix="r") as writers:
        for round_ in range(5):
            writers.wait_for(len(writers.acked) + 100)
            killed = master
            cluster.nodes[killed].kill()  # kill -9
            started = time.monotonic()
            master = cluster.master(timeout=15, excluding=killed)
            new_address = cluster.address(master)
            wait_until("the new master to acknowledge a write", lambda: writers.acked_by(new_address) > 0, 15)
            took = time.monotonic() - started
            assert took < 3 * LEASE_TTL_S + 3, f"round {round_}: no master took writes within {took:.1f} s"
            snapshot = dict(writers.acked)
            state = read_all(pb, new_address, list(snapshot))
            missing = [k for k, (v, lsn, _, _) in snapshot.items() if state.get(k) != (v, lsn)]
            assert not missing, f"round {round_}: {len(missing)} acknowledged writes missing on the new master"
            # The killed node comes back as a node, and etcd makes it a slave of the new master.
            cluster.launch(killed)
            wait_until(f"n{killed} to follow {new_address}",
                       lambda: status(pb, cluster.address(killed)).master_address == new_address, 20)
    check_converged(pb, cluster, writers.acked)
    epochs = {status(pb, n.address).epoch for n in cluster.alive()}
    assert len(epochs) == 1 and epochs.pop() >= 7, "five elections after the first, one epoch each"


def test_a_stopped_master_acknowledges_nothing_after_its_lease_and_steps_down(pb, cluster):
    master = cluster.start_all()
    old = cluster.nodes[master]
    channel, kv, _ = stubs(pb, old.address)
    with channel:
        kv.Set(pb.kv.SetRequest(key="before", value=b"b"), timeout=10)
        old.proc.send_signal(signal.SIGSTOP)
        # Queued while it is stopped: read only when it wakes, after its lease lapsed.
        queued = [kv.Set.future(pb.kv.SetRequest(key=f"queued-{i}", value=b"q"), timeout=30) for i in range(20)]
        new = cluster.master(timeout=15, excluding=master)
        old.proc.send_signal(signal.SIGCONT)
        answers = []
        for future in queued:
            try:
                answers.append(("ok", future.result().lsn))
            except grpc.RpcError as error:
                answers.append((error.code(), error.details()))
    assert all(a[0] != "ok" for a in answers), f"the stopped master acknowledged writes after its lease: {answers}"
    assert any("lease" in str(a[1]) or "master" in str(a[1]) for a in answers), answers
    wait_until("the old master to follow the new one",
               lambda: status(pb, old.address).master_address == cluster.address(new), 20)
    wait_converged(pb, cluster.alive(), ["before"] + [f"queued-{i}" for i in range(20)])


def test_with_etcd_down_writes_stop_within_the_lease_reads_go_on_and_writes_resume(pb, cluster, etcd):
    master = cluster.start_all()
    address = cluster.address(master)
    channel, kv, _ = stubs(pb, address)
    with channel:
        kv.Set(pb.kv.SetRequest(key="k", value=b"v"), timeout=10)
        etcd.kill()
        killed_at = time.monotonic()

        def refused():
            try:
                kv.Set(pb.kv.SetRequest(key="during", value=b"x"), timeout=5)
                return False
            except grpc.RpcError as error:
                return error.code() == grpc.StatusCode.UNAVAILABLE

        wait_until("writes to be refused", refused, LEASE_TTL_S + 2, every=0.05)
        assert time.monotonic() - killed_at <= LEASE_TTL_S + 1
        # Reads go on everywhere while etcd is down.
        wait_until("every node to serve k", lambda: all(
            read_all(pb, n.address, ["k"]).get("k", (None,))[0] == b"v" for n in cluster.alive()), 10)
        etcd.start()
        wait_until("writes to resume", lambda: not refused(), 20, every=0.2)


def test_bad_coordinator_data_is_ignored_and_roles_hold(pb, cluster, etcd):
    master = cluster.start_all()
    roles = lambda: {i: (status(pb, n.address).role, status(pb, n.address).master_address)
                     for i, n in cluster.nodes.items()}
    before = roles()
    # Garbage beside the members, and keys of another cluster: ignored.
    etcd.ctl("put", "/erdtree/test/members/intruder", "not json")
    etcd.ctl("put", "/erdtree/other/leader", '{"name":"x","address":"10.9.9.9:1","epoch":99,"cluster":"other"}')
    time.sleep(1.0)
    assert roles() == before
    channel, kv, _ = stubs(pb, cluster.address(master))
    assert kv.Set(pb.kv.SetRequest(key="still", value=b"ok"), timeout=10).lsn > 0

    # Garbage in the leader key itself: nobody follows it or runs for the key (it exists, so no
    # one else can create it), and the master keeps its role and its writes.
    etcd.ctl("put", "/erdtree/test/leader", "garbage")
    time.sleep(LEASE_TTL_S + 0.5)
    assert roles() == before
    assert any("unreadable" in n.log() for n in cluster.alive())
    assert kv.Set(pb.kv.SetRequest(key="while-garbage", value=b"x"), timeout=10).lsn > 0
    channel.close()
    # Once the key is cleared, a master is elected again and writes resume.
    etcd.ctl("del", "/erdtree/test/leader")
    leader = cluster.master(timeout=15)
    channel, kv, _ = stubs(pb, cluster.address(leader))
    with channel:
        wait_until("writes to resume", lambda: writes(kv, pb), 10)

    # Role changes by hand are etcd's on a coordinated node.
    from test_high_availability import admin
    with pytest.raises(grpc.RpcError) as refused:
        admin(pb, cluster.address(leader), "Promote", pb.kv.PromoteRequest())
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "decided through etcd" in refused.value.details()


def writes(kv, pb) -> bool:
    """Whether a Set is acknowledged now."""
    try:
        return kv.Set(pb.kv.SetRequest(key="probe", value=b"p"), timeout=5).lsn > 0
    except grpc.RpcError:
        return False
