"""High availability, part 1, with real processes on loopback: epochs, manual promotion,
divergent tails, a planned switchover under load, refusals that name the master, and a stale
master that comes back (docs/high-availability.md).

Clients are grpcio (writers, Admin calls), grpcurl, curl (Connect) and the erdtree CLI. Every
acknowledged write is checked afterwards on every node, value and LSN, key by key."""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from conftest import API_DIR, ERDTREE_BIN, _failed, start_server, stop_server
from harness import node as harness
from support import run, tool

MASTER_HEADER = "erdtree-master"


# --------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------


def stubs(pb, address):
    channel = grpc.insecure_channel(address)
    return channel, pb.kv_grpc.KVStoreStub(channel), pb.kv_grpc.AdminStub(channel)


def admin(pb, address, method, request, timeout=15):
    channel, _, stub = stubs(pb, address)
    with channel:
        return getattr(stub, method)(request, timeout=timeout)


def status(pb, address):
    return admin(pb, address, "Status", pb.kv.StatusRequest())


def trailer(error: grpc.RpcError, name: str) -> str | None:
    return dict(error.trailing_metadata() or ()).get(name)


def read_all(pb, address, keys):
    """{key: (value, lsn)} for the keys found on the node at `address`."""
    channel, kv, _ = stubs(pb, address)
    with channel:
        futures = {key: kv.Get.future(pb.kv.GetRequest(key=key), timeout=30) for key in keys}
        found = {key: f.result() for key, f in futures.items()}
    return {key: (r.value, r.lsn) for key, r in found.items() if r.found}


def wait_until(what, check, timeout=30.0, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every)


def wait_converged(pb, nodes, keys, timeout=30.0):
    """Every node holds the same keys with the same values and LSNs; returns that state."""

    def same():
        states = [read_all(pb, n.address, keys) for n in nodes]
        return states[0] if all(s == states[0] for s in states) else None

    return wait_until("every node to hold the same keys, values and LSNs", same, timeout, every=0.2)


def erdtree(*args, check=True, timeout=30):
    done = subprocess.run([str(ERDTREE_BIN), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"erdtree {' '.join(map(str, args))} failed: {done.stdout}{done.stderr}"
    return done


class Writers:
    """`count` threads writing unique keys as fast as answers come, each to the node it believes
    is the master; a refusal naming the master (`erdtree-master`) sends the writer there and the
    same key is tried again. Records every acknowledged write and every refusal."""

    def __init__(self, pb, address, count=4, prefix="w"):
        self.pb, self.target, self.count, self.prefix = pb, address, count, prefix
        self.acked: dict[str, tuple[bytes, int, int]] = {}  # key -> (value, lsn, epoch)
        self.refusals: list[tuple[grpc.StatusCode, str, str | None]] = []
        self.attempted: set[str] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True) for n in range(count)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def run(self, n):
        address, i = self.target, 0
        channels = {}
        try:
            while not self.stop.is_set():
                if address not in channels:
                    channels[address] = stubs(self.pb, address)
                _, kv, _ = channels[address]
                key, value = f"{self.prefix}{n}-{i}", f"value-{n}-{i}".encode()
                with self.lock:
                    self.attempted.add(key)
                try:
                    reply = kv.Set(self.pb.kv.SetRequest(key=key, value=value), timeout=10)
                except grpc.RpcError as error:
                    master = trailer(error, MASTER_HEADER)
                    with self.lock:
                        self.refusals.append((error.code(), error.details() or "", master))
                    if master:
                        address = master
                    else:
                        time.sleep(0.05)
                    continue
                with self.lock:
                    self.acked[key] = (value, reply.lsn, reply.epoch)
                i += 1
        finally:
            for channel, _, _ in channels.values():
                channel.close()

    def wait_for(self, acked: int, timeout=30.0):
        wait_until(f"{acked} acknowledged writes", lambda: len(self.acked) >= acked, timeout)


def check_acked_everywhere(pb, nodes, acked):
    """Every acknowledged write is on every node with its value and LSN."""
    for n in nodes:
        state = read_all(pb, n.address, list(acked))
        missing = [k for k, (value, lsn, _) in acked.items() if state.get(k) != (value, lsn)]
        assert not missing, f"{len(missing)} acknowledged writes missing or different on {n.address}: {missing[:5]}"


# --------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------

SYNC = {"sync_interval": "always"}


def slave_sections(master_address, min_acks=1):
    return {
        "master": {"address": master_address, "sync_interval": "100ms"},
        "wal": SYNC,
        "replication": {"min_acks": min_acks, "ack_timeout": "2s"},
    }


def launch_slave(workdir: Path, port: int, master_address: str, min_acks=1):
    """A slave whose master may be gone: started without waiting for its first sync (it reports
    NOT_SERVING until then), only until it listens."""
    node = harness.launch(workdir, port, role="slave", **slave_sections(master_address, min_acks))
    wait_until(f"{node.address} to listen", lambda: harness.port_accepts(node.host, node.port), 20)
    return node


@pytest.fixture
def nodes(request):
    """Every node a test starts, stopped at its end (a killed one is skipped)."""
    started = []
    yield started
    for n in reversed(started):
        if n.alive():
            stop_server(n, _failed(request.node))


def start_cluster(pb, tmp, nodes, min_acks=1, slaves=2):
    master = start_server(tmp / "n0", wal=SYNC, replication={"min_acks": min_acks, "ack_timeout": "2s"})
    nodes.append(master)
    for i in range(1, slaves + 1):
        nodes.append(start_server(tmp / f"n{i}", role="slave", **slave_sections(master.address, min_acks)))
    return master, nodes[1:]


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_a_fresh_history_is_epoch_1_and_writes_say_so(pb, tmp_path, nodes):
    master, slaves = start_cluster(pb, tmp_path, nodes, min_acks=0, slaves=1)
    channel, kv, _ = stubs(pb, master.address)
    with channel:
        assert kv.Set(pb.kv.SetRequest(key="k", value=b"v"), timeout=10).epoch == 1
        assert kv.Delete(pb.kv.DeleteRequest(key="k"), timeout=10).epoch == 1
    for n in (master, *slaves):
        assert status(pb, n.address).epoch == 1
    assert status(pb, master.address).master_address == master.address
    assert status(pb, slaves[0].address).master_address == master.address
    assert "epoch:             1" in erdtree("status", "--server", master.address).stdout


def test_manual_promotion_keeps_every_acknowledged_write(pb, tmp_path, nodes):
    master, slaves = start_cluster(pb, tmp_path, nodes, min_acks=1)
    with Writers(pb, master.address, prefix="before") as writers:
        writers.wait_for(300)
        master.kill()  # kill -9
    acked = dict(writers.acked)
    assert acked and all(epoch == 1 for _, _, epoch in acked.values())

    # The operator promotes the most up-to-date slave (`erdtree status` shows last lsn):
    # with min_acks 1 it holds every acknowledged write.
    slave1, slave2 = sorted(slaves, key=lambda s: status(pb, s.address).last_lsn, reverse=True)
    promoted = admin(pb, slave1.address, "Promote", pb.kv.PromoteRequest())
    assert promoted.epoch == 2
    assert status(pb, slave1.address).epoch == 2
    assert status(pb, slave1.address).role == pb.kv.ROLE_MASTER

    admin(pb, slave2.address, "Follow", pb.kv.FollowRequest(master_address=slave1.address))
    # The old master comes back as a slave of the new one (its data dir, its port).
    old = start_server(
        tmp_path / "n0", role="slave", port=master.port, **slave_sections(slave1.address, min_acks=1))
    nodes.append(old)

    channel, kv, _ = stubs(pb, slave1.address)
    with channel:
        reply = kv.Set(pb.kv.SetRequest(key="after-promotion", value=b"new"), timeout=10)
    assert reply.epoch == 2 and reply.lsn > promoted.first_lsn
    acked["after-promotion"] = (b"new", reply.lsn, 2)

    # The marker is in the log like any write: GetUpdates streams it.
    channel, kv, _ = stubs(pb, slave1.address)
    with channel:
        updates = kv.GetUpdates(pb.kv.GetUpdatesRequest(since_lsn=promoted.first_lsn - 1, limit=1), timeout=10)
    assert [(e.lsn, e.op, e.epoch, e.key) for e in updates.entries] == [
        (promoted.first_lsn, pb.kv.OP_EPOCH, 2, "")]

    everyone = [slave1, slave2, old]
    check_acked_everywhere(pb, everyone, acked)
    attempted = list(writers.attempted | {"after-promotion"})
    wait_converged(pb, everyone, attempted)
    for n in everyone:
        s = status(pb, n.address)
        assert (s.epoch, s.master_address) == (2, slave1.address), (n.address, s)


def test_a_divergent_tail_is_set_aside_and_the_old_master_converges(pb, tmp_path, nodes):
    master, (slave,) = start_cluster(pb, tmp_path, nodes, min_acks=0, slaves=1)
    channel, kv, _ = stubs(pb, master.address)
    with channel:
        shared = {f"shared-{i}": kv.Set(pb.kv.SetRequest(key=f"shared-{i}", value=b"s"), timeout=10).lsn
                  for i in range(20)}
        wait_until("the slave to catch up", lambda: status(pb, slave.address).applied_lsn == max(shared.values()))
        slave.kill()  # its stream stops; the master goes on alone (min_acks 0)
        lost = [kv.Set(pb.kv.SetRequest(key=f"lost-{i}", value=b"x"), timeout=10).lsn for i in range(50)]
    master.kill()

    revived = launch_slave(tmp_path / "n1", slave.port, master.address, min_acks=0)
    nodes.append(revived)
    promoted = admin(pb, revived.address, "Promote", pb.kv.PromoteRequest())
    assert (promoted.epoch, promoted.first_lsn) == (2, max(shared.values()) + 1)

    old = start_server(tmp_path / "n0", role="slave", port=master.port, **slave_sections(revived.address, 0))
    nodes.append(old)
    keys = list(shared) + [f"lost-{i}" for i in range(50)]
    state = wait_converged(pb, [revived, old], keys)
    assert set(state) == set(shared), "the old master converged to the new history, without the 50 keys"

    s = status(pb, old.address)
    assert (s.epoch, s.divergent_records) == (2, 50)
    first = lost[0]
    divergent = tmp_path / "n0" / "wal" / "divergent" / f"1-{first}.log"
    assert divergent.is_file(), sorted(p.name for p in divergent.parent.glob("*"))
    assert "records=50" in old.log() or "records: 50" in old.log() or "50" in old.log()

    dumped = erdtree("wal", "dump", divergent).stdout.splitlines()
    records = [dict(field.split("=", 1) for field in shlex.split(line)) for line in dumped if line.startswith("lsn=")]
    assert [r["key"] for r in records] == [f"lost-{i}" for i in range(50)]
    assert [int(r["lsn"]) for r in records] == lost

    # verify passes on every WAL directory and on the divergent file, and names a flipped byte.
    for n in ("n0", "n1"):
        erdtree("wal", "verify", tmp_path / n / "wal")
    erdtree("wal", "verify", divergent)
    damaged = tmp_path / "damaged.log"
    data = bytearray(divergent.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    failed = erdtree("wal", "verify", damaged, check=False)
    assert failed.returncode != 0 and str(damaged) in failed.stderr + failed.stdout, failed


def test_switchover_under_load_loses_nothing_and_refusals_name_the_new_master(pb, tmp_path, nodes):
    master, slaves = start_cluster(pb, tmp_path, nodes, min_acks=1)
    with Writers(pb, master.address, count=4, prefix="sw") as writers:
        writers.wait_for(200)
        reply = admin(pb, master.address, "Failover", pb.kv.FailoverRequest(timeout_ms=5000))
        target = reply.master_address
        assert target in {s.address for s in slaves} and reply.epoch == 2
        before = len(writers.acked)
        writers.wait_for(before + 200)
    acked = dict(writers.acked)

    # Refusals during the switch all name the new master, in the trailer and the message.
    assert writers.refusals, "writes were sent during the switchover, so some must have been refused"
    for code, message, master_hint in writers.refusals:
        assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION), (code, message)
        assert master_hint == target and target in message, (code, message, master_hint)

    lsns = [lsn for _, lsn, _ in acked.values()]
    assert len(lsns) == len(set(lsns)), "no LSN is acknowledged twice"
    assert {epoch for _, lsn, epoch in acked.values() if lsn > reply.last_lsn} == {2}
    assert {epoch for _, lsn, epoch in acked.values() if lsn <= reply.last_lsn} == {1}
    everyone = [master, *slaves]
    check_acked_everywhere(pb, everyone, acked)
    wait_converged(pb, everyone, list(acked))
    for n in everyone:
        s = status(pb, n.address)
        assert (s.epoch, s.master_address) == (2, target), (n.address, s)
    assert status(pb, master.address).role == pb.kv.ROLE_SLAVE
    listed = admin(pb, target, "ListSlaves", pb.kv.ListSlavesRequest())
    assert sorted(i.address for i in listed.slaves) == sorted(n.address for n in everyone if n.address != target)


def test_failover_that_times_out_or_loses_its_target_changes_nothing(pb, tmp_path, nodes):
    master, (slave1, slave2) = start_cluster(pb, tmp_path, nodes, min_acks=0)
    channel, kv, _ = stubs(pb, master.address)
    with channel:
        kv.Set(pb.kv.SetRequest(key="k", value=b"v"), timeout=10)
        slave1.proc.send_signal(19)  # SIGSTOP: it acks nothing more
        try:
            kv.Set(pb.kv.SetRequest(key="k1", value=b"v"), timeout=10)
            failover = threading.Thread(
                target=lambda: results.append(call_failover(pb, master.address, slave1.address, 1500)))
            results: list = []
            failover.start()
            time.sleep(0.3)
            # Meanwhile a write is held, a second role change is refused.
            held = kv.Set.future(pb.kv.SetRequest(key="held", value=b"h"), timeout=10)
            with pytest.raises(grpc.RpcError) as busy:
                admin(pb, master.address, "Promote", pb.kv.PromoteRequest())
            assert busy.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            with pytest.raises(grpc.RpcError) as busy:
                admin(pb, master.address, "Failover", pb.kv.FailoverRequest(to=slave2.address))
            assert busy.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "already under way" in busy.value.details()
            failover.join(timeout=10)
            (code, details), = results
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "takes writes again" in details, details
            # The held write went through once the master resumed, in epoch 1.
            assert held.result().epoch == 1
            assert kv.Set(pb.kv.SetRequest(key="k2", value=b"v"), timeout=10).epoch == 1

            # A target that dies during the wait: the switchover is abandoned too.
            results.clear()
            failover = threading.Thread(
                target=lambda: results.append(call_failover(pb, master.address, slave1.address, 5000)))
            failover.start()
            time.sleep(0.3)
            slave1.kill()
            failover.join(timeout=10)
            (code, details), = results
            assert code == grpc.StatusCode.UNAVAILABLE and "disconnected before it could be promoted" in details
        finally:
            if slave1.alive():
                slave1.proc.send_signal(18)  # SIGCONT
        assert kv.Set(pb.kv.SetRequest(key="k3", value=b"v"), timeout=10).epoch == 1
    assert status(pb, master.address).role == pb.kv.ROLE_MASTER


def call_failover(pb, master, to, timeout_ms):
    """(code, details) of an Admin/Failover call that is expected to fail."""
    try:
        admin(pb, master, "Failover", pb.kv.FailoverRequest(to=to, timeout_ms=timeout_ms))
    except grpc.RpcError as error:
        return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def test_refusals_name_the_master_over_grpc_and_connect_and_wrong_role_calls_are_refused(pb, tmp_path, nodes):
    master, (slave,) = start_cluster(pb, tmp_path, nodes, min_acks=0, slaves=1)
    channel, kv, _ = stubs(pb, slave.address)
    with channel:
        with pytest.raises(grpc.RpcError) as refused:
            kv.Set(pb.kv.SetRequest(key="k", value=b"v"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert trailer(refused.value, MASTER_HEADER) == master.address

    # grpcurl shows the trailer too.
    done = run([tool("grpcurl"), "-plaintext", "-v", "-import-path", str(API_DIR), "-proto", "erdtree/v1/kvstore.proto",
                "-d", '{"key": "k", "value": "dg=="}', slave.address, "erdtree.v1.KVStore/Set"])
    assert done.returncode != 0
    assert f"{MASTER_HEADER}: {master.address}" in done.stdout.decode() + done.stderr.decode()

    # Connect (unary, JSON over HTTP/1.1): a response header.
    done = run(["curl", "-s", "-D", "-", "-o", "/dev/null", "-H", "content-type: application/json",
                "--data", '{"key":"k","value":"dg=="}', f"http://{slave.address}/erdtree.v1.KVStore/Set"])
    headers = done.stdout.decode().lower()
    assert " 412" in headers.splitlines()[0] or " 400" in headers.splitlines()[0], headers
    assert f"{MASTER_HEADER}: {master.address}".lower() in headers, headers

    # The erdtree CLI follows the header once, for set and del.
    done = erdtree("set", "via-slave", "v", "--server", slave.address)
    assert "OK lsn=" in done.stdout and master.address in done.stderr
    done = erdtree("del", "via-slave", "--server", slave.address)
    assert "deleted lsn=" in done.stdout and master.address in done.stderr
    # A master with no slave has nobody to hand over to.
    master_alone = start_server(tmp_path / "alone")
    nodes.append(master_alone)
    with pytest.raises(grpc.RpcError) as refused:
        admin(pb, master_alone.address, "Failover", pb.kv.FailoverRequest())
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no slave is connected" in refused.value.details()

    cases = [
        (master.address, "Promote", pb.kv.PromoteRequest(), grpc.StatusCode.FAILED_PRECONDITION, "already the master"),
        (master.address, "Follow", pb.kv.FollowRequest(master_address=master.address),
         grpc.StatusCode.INVALID_ARGUMENT, "cannot follow itself"),
        (slave.address, "Failover", pb.kv.FailoverRequest(), grpc.StatusCode.FAILED_PRECONDITION,
         f"this node is a slave of {master.address}"),
        (master.address, "Failover", pb.kv.FailoverRequest(to="nobody:1"), grpc.StatusCode.NOT_FOUND,
         "no connected slave is named nobody:1"),
        (master.address, "Follow", pb.kv.FollowRequest(master_address="no-port"), grpc.StatusCode.INVALID_ARGUMENT,
         "FollowRequest.master_address"),
    ]
    for address, method, request, code, words in cases:
        with pytest.raises(grpc.RpcError) as refused:
            admin(pb, address, method, request)
        assert refused.value.code() == code and words in refused.value.details(), (method, refused.value)


def test_a_stale_master_steps_down_when_a_slave_of_the_newer_epoch_reaches_it(pb, tmp_path, nodes):
    master, (slave1, slave2) = start_cluster(pb, tmp_path, nodes, min_acks=1)
    channel, kv, _ = stubs(pb, master.address)
    with channel:
        last = max(kv.Set(pb.kv.SetRequest(key=f"k{i}", value=b"v"), timeout=10).lsn for i in range(10))
    wait_until("both slaves to catch up", lambda: all(status(pb, s.address).applied_lsn == last for s in (slave1, slave2)))
    master.kill()
    admin(pb, slave1.address, "Promote", pb.kv.PromoteRequest())
    admin(pb, slave2.address, "Follow", pb.kv.FollowRequest(master_address=slave1.address))
    wait_until("slave2 in epoch 2", lambda: status(pb, slave2.address).epoch == 2)

    # The old master comes back with its static config: a master, of epoch 1.
    stale = start_server(tmp_path / "n0", port=master.port, wal=SYNC, replication={"min_acks": 1, "ack_timeout": "1s"})
    nodes.append(stale)
    assert status(pb, stale.address).role == pb.kv.ROLE_MASTER
    # Before any peer reaches it, it takes writes in epoch 1, but with min_acks 1 and no slave it
    # cannot acknowledge one (docs/high-availability.md: the window part 2 closes).
    channel, kv, _ = stubs(pb, stale.address)
    with channel:
        with pytest.raises(grpc.RpcError) as unacked:
            kv.Set(pb.kv.SetRequest(key="stale", value=b"x"), timeout=10)
        assert unacked.value.code() == grpc.StatusCode.UNAVAILABLE and "0 of the 1" in unacked.value.details()

        # slave2 restarts from its static config alone (its saved role removed, as a re-deployed
        # node might), which names the old master: its Hello carries epoch 2, and the old master
        # steps down.
        slave2.stop()
        nodes.remove(slave2)
        (tmp_path / "n2" / "wal" / "role").unlink()
        back = launch_slave(tmp_path / "n2", slave2.port, master.address)
        nodes.append(back)
        wait_until("the stale master to step down", lambda: status(pb, stale.address).role == pb.kv.ROLE_SLAVE)
        # The slave was told why its stream was refused (FAILED_PRECONDITION from the stale master).
        wait_until("the slave to log the refusal", lambda: "has been replaced, so it stepped down" in back.log())
        s = status(pb, stale.address)
        assert "epoch 2" in s.fenced_reason, s
        with pytest.raises(grpc.RpcError) as refused:
            kv.Set(pb.kv.SetRequest(key="stale-2", value=b"x"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "stepped down" in refused.value.details()

    # The operator points it at the new master: it sets aside its stale write and converges.
    erdtree("follow", slave1.address, "--server", stale.address)
    keys = [f"k{i}" for i in range(10)] + ["stale", "stale-2"]
    state = wait_converged(pb, [slave1, stale], keys)
    assert "stale" not in state and "stale-2" not in state
    assert status(pb, stale.address).divergent_records == 1


def test_roles_taken_at_run_time_survive_a_restart(pb, tmp_path, nodes):
    master, (slave1, slave2) = start_cluster(pb, tmp_path, nodes, min_acks=0)
    reply = admin(pb, master.address, "Failover", pb.kv.FailoverRequest(to=slave1.address))
    assert reply.master_address == slave1.address
    wait_until("slave2 to follow the new master", lambda: status(pb, slave2.address).master_address == slave1.address)
    assert (tmp_path / "n0" / "wal" / "role").read_text() == f"follow {slave1.address}\n"
    assert (tmp_path / "n1" / "wal" / "role").read_text() == "master\n"

    # Every node restarts with the config it was started with: the old master's says master,
    # the new master's says slave of the old one. The saved roles win, so nothing is split.
    for n in (master, slave1):
        stop_server(n, False)
        nodes.remove(n)
    new_master = start_server(tmp_path / "n1", role="slave", port=slave1.port, **slave_sections(master.address, 0))
    nodes.append(new_master)
    old_master = start_server(tmp_path / "n0", port=master.port, wal=SYNC)
    nodes.append(old_master)
    assert status(pb, new_master.address).role == pb.kv.ROLE_MASTER
    s = status(pb, old_master.address)
    assert (s.role, s.master_address, s.epoch) == (pb.kv.ROLE_SLAVE, slave1.address, 2)
    assert "starting in the role saved at run time" in old_master.log()
    channel, kv, _ = stubs(pb, new_master.address)
    with channel:
        lsn = kv.Set(pb.kv.SetRequest(key="after-restart", value=b"v"), timeout=10).lsn
    wait_until("the old master to get the write", lambda: status(pb, old_master.address).applied_lsn >= lsn)

    # A role file that says something else stops the node, naming the file.
    stop_server(old_master, False)
    nodes.remove(old_master)
    (tmp_path / "n0" / "wal" / "role").write_text("boss\n")
    done = subprocess.run([str(ERDTREE_BIN), "master", "--config", str(tmp_path / "n0" / "erdtree.yaml")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "role says \"boss\"" in done.stdout + done.stderr, done.stdout + done.stderr
