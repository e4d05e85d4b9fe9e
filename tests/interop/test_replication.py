"""Replication with real processes on loopback: a master and two `erdtree slave`s.

Convergence is checked by reading every key the test wrote from every node and
comparing values and LSNs."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from conftest import _failed, start_server, stop_server

STREAM_TIMEOUT_S = 30


def kv_stub(pb, address):
    channel = grpc.insecure_channel(address)
    return channel, pb.kv_grpc.KVStoreStub(channel)


def write_many(pb, address, keys, prefix="key", round_=0):
    """Sets prefix-i for i in keys, all in flight at once; returns {key: lsn}."""
    channel, stub = kv_stub(pb, address)
    with channel:
        futures = {
            f"{prefix}-{i}": stub.Set.future(
                pb.kv.SetRequest(key=f"{prefix}-{i}", value=f"value-{i}-{round_}".encode()), timeout=30
            )
            for i in keys
        }
        return {key: future.result().lsn for key, future in futures.items()}


def read_all(pb, address, keys):
    channel, stub = kv_stub(pb, address)
    with channel:
        futures = {key: stub.Get.future(pb.kv.GetRequest(key=key), timeout=30) for key in keys}
        return {key: (f.result().value, f.result().lsn) if f.result().found else None for key, f in futures.items()}


def status(pb, address):
    with grpc.insecure_channel(address) as channel:
        return pb.kv_grpc.AdminStub(channel).Status(pb.kv.StatusRequest(), timeout=10)


def wait_converged(pb, master, slaves, keys, timeout=STREAM_TIMEOUT_S):
    want = read_all(pb, master.address, keys)
    deadline = time.monotonic() + timeout
    while True:
        behind = [s.address for s in slaves if read_all(pb, s.address, keys) != want]
        if not behind:
            return want
        assert time.monotonic() < deadline, f"slaves {behind} did not converge within {timeout} s"
        time.sleep(0.2)


@pytest.fixture
def cluster(tmp_path, request):
    # "always": every acknowledged write is on disk, so nothing acknowledged may be missing anywhere.
    master = start_server(tmp_path / "master", wal={"sync_interval": "always"})
    slaves = [
        start_server(tmp_path / f"slave{i}", role="slave", master={"address": master.address, "sync_interval": "200ms"})
        for i in (1, 2)
    ]
    nodes = {"master": master, "slaves": slaves, "tmp": tmp_path}
    try:
        yield nodes
    finally:
        for node in nodes["slaves"] + [nodes["master"]]:
            if node.alive():
                stop_server(node, _failed(request.node))


def test_writes_on_the_master_reach_both_slaves_and_slaves_refuse_writes(pb, cluster):
    master, slaves = cluster["master"], cluster["slaves"]
    lsns = write_many(pb, master.address, range(1000))
    state = wait_converged(pb, master, slaves, list(lsns))
    assert all(state[key][1] == lsn for key, lsn in lsns.items()), "slaves must keep the master's LSNs"

    channel, stub = kv_stub(pb, slaves[0].address)
    with channel:
        with pytest.raises(grpc.RpcError) as refused:
            stub.Set(pb.kv.SetRequest(key="on-slave", value=b"x"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert master.address in refused.value.details(), refused.value.details()
        with pytest.raises(grpc.RpcError) as refused:
            stub.Delete(pb.kv.DeleteRequest(key="key-1"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    for slave in slaves:
        s = status(pb, slave.address)
        assert s.role == pb.kv.ROLE_SLAVE and s.master_address == master.address
        assert s.replication_id == status(pb, master.address).replication_id
    with grpc.insecure_channel(master.address) as channel:
        listed = pb.kv_grpc.AdminStub(channel).ListSlaves(pb.kv.ListSlavesRequest(), timeout=10)
    assert len(listed.slaves) == 2
    assert all(info.applied_lsn == 1000 for info in listed.slaves), listed


def test_a_killed_slave_catches_up_incrementally(pb, cluster):
    master, slaves, tmp = cluster["master"], cluster["slaves"], cluster["tmp"]
    first = write_many(pb, master.address, range(100))
    wait_converged(pb, master, slaves, list(first))
    slaves[0].kill()
    more = write_many(pb, master.address, range(5000), prefix="later")
    restarted = start_server(
        tmp / "slave1", role="slave", master={"address": master.address, "sync_interval": "200ms"}
    )
    cluster["slaves"][0] = restarted
    wait_converged(pb, master, cluster["slaves"], list(first) + list(more))
    # Incremental: it resumed right after what it had, with no resync.
    assert "from_lsn=101" in restarted.log(), restarted.log_tail()
    assert "resync" not in restarted.log()


def test_slaves_follow_a_master_killed_under_load_and_restarted(pb, cluster):
    master, slaves, tmp = cluster["master"], cluster["slaves"], cluster["tmp"]
    acked = {}
    stop = threading.Event()

    def writer():
        channel, stub = kv_stub(pb, master.address)
        i = 0
        with channel:
            while not stop.is_set():
                try:
                    acked[f"load-{i}"] = stub.Set(pb.kv.SetRequest(key=f"load-{i}", value=b"v%d" % i), timeout=5).lsn
                except grpc.RpcError:
                    return
                i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(1.0)
    master.kill()
    stop.set()
    thread.join(timeout=10)
    assert acked, "no write was acknowledged before the kill"

    # Same directory and port: the slaves redial the address they were given.
    restarted = start_server(tmp / "master", port=master.port, wal={"sync_interval": "always"})
    cluster["master"] = restarted
    after = write_many(pb, restarted.address, range(50), prefix="after")
    state = wait_converged(pb, restarted, slaves, list(acked) + list(after))
    missing = [key for key in acked if state[key] is None]
    assert not missing, f"acknowledged writes missing after the restart: {missing[:5]}"


def test_bad_peers_are_dropped_and_the_master_keeps_serving(pb, cluster):
    master = cluster["master"]
    with grpc.insecure_channel(master.address) as channel:
        replicate = channel.stream_stream(
            "/erdtree.v1.Replication/Replicate",
            request_serializer=lambda m: m.SerializeToString() if hasattr(m, "SerializeToString") else m,
            response_deserializer=pb.kv.ReplicateResponse.FromString,
        )
        garbage_id = pb.kv.ReplicateRequest(hello=pb.kv.Hello(replication_id="not-hex!", slave_id="evil"))
        with pytest.raises(grpc.RpcError) as dropped:
            list(replicate(iter([garbage_id]), timeout=10))
        assert dropped.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "32 hexadecimal digits" in dropped.value.details()

        with pytest.raises(grpc.RpcError) as dropped:
            list(replicate(iter([b"\xff\xff\xff garbage"]), timeout=10))
        assert dropped.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        ack_first = pb.kv.ReplicateRequest(ack=pb.kv.Ack(applied_lsn=1))
        with pytest.raises(grpc.RpcError) as dropped:
            list(replicate(iter([ack_first]), timeout=10))
        assert dropped.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # A Hello from another history is answered with a full resync: a Welcome saying so,
        # then the snapshot, ending with its last chunk.
        other = pb.kv.ReplicateRequest(hello=pb.kv.Hello(replication_id="0" * 32, last_lsn=5, slave_id="stranger"))
        responses = replicate(iter([other]), timeout=10)
        welcome = next(responses)
        assert welcome.WhichOneof("kind") == "welcome" and welcome.welcome.full_resync
        for response in responses:
            if response.WhichOneof("kind") == "snapshot" and response.snapshot.last:
                break
        responses.cancel()

    # Still serving, and still replicating to the real slaves.
    lsns = write_many(pb, master.address, range(10), prefix="still")
    wait_converged(pb, master, cluster["slaves"], list(lsns))


def test_min_acks_waits_for_a_slave_and_times_out_without_one(pb, tmp_path, request):
    master = start_server(tmp_path / "master", replication={"min_acks": 1, "ack_timeout": "500ms"})
    slave = None
    try:
        channel, stub = kv_stub(pb, master.address)
        with channel:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                stub.Set(pb.kv.SetRequest(key="alone", value=b"1"), timeout=10)
            waited = time.monotonic() - started
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "only 0 of the 1 slave acks" in refused.value.details(), refused.value.details()
            assert waited >= 0.45, f"answered after {waited:.2f} s, before ack_timeout"
            # The write itself stays (as with PostgreSQL synchronous commit).
            assert stub.Get(pb.kv.GetRequest(key="alone"), timeout=10).found

            # Acks are of durability: a slave fsyncing every batch acks at once (with 1s it
            # would ack at its next fsync, up to a second later).
            slave = start_server(
                tmp_path / "slave",
                role="slave",
                master={"address": master.address, "sync_interval": "100ms"},
                wal={"sync_interval": "always"},
            )
            reply = stub.Set(pb.kv.SetRequest(key="acked", value=b"2"), timeout=10)
            assert reply.lsn == 2
            # Acked means durable on the slave: it reads there at once.
            _, slave_stub = kv_stub(pb, slave.address)
            assert slave_stub.Get(pb.kv.GetRequest(key="acked"), timeout=10).value == b"2"
    finally:
        if slave is not None:
            stop_server(slave, _failed(request.node))
        stop_server(master, _failed(request.node))


def test_interval_fsyncs_make_master_and_slave_durable_and_min_acks_waits_for_them(pb, tmp_path, request):
    # Under a sync interval the master writes on its event loop and a slave writes each batch
    # on its connection's loop; the WAL's writer thread must still fsync both within the
    # interval (it once slept through, and durable LSNs stayed at 0).
    master = start_server(
        tmp_path / "master",
        wal={"sync_interval": "300ms"},
        replication={"min_acks": 1, "ack_timeout": "10s"},
    )
    slave = start_server(
        tmp_path / "slave",
        role="slave",
        master={"address": master.address, "sync_interval": "100ms"},
        wal={"sync_interval": "300ms"},
    )
    try:
        channel, stub = kv_stub(pb, master.address)
        with channel:
            for i in range(3):
                started = time.monotonic()
                reply = stub.Set(pb.kv.SetRequest(key=f"durable-{i}", value=b"x"), timeout=15)
                waited = time.monotonic() - started
                # min_acks waits for the slave's fsync: at most one interval, plus scheduling.
                assert waited < 2.0, f"Set {i} waited {waited:.2f} s for the slave's durable ack"
        deadline = time.monotonic() + 5
        while True:
            nodes = {"master": status(pb, master.address), "slave": status(pb, slave.address)}
            if all(s.durable_lsn == reply.lsn and s.last_lsn == reply.lsn for s in nodes.values()):
                break
            assert time.monotonic() < deadline, {
                name: (s.last_lsn, s.durable_lsn) for name, s in nodes.items()
            }
            time.sleep(0.05)
    finally:
        stop_server(slave, _failed(request.node))
        stop_server(master, _failed(request.node))


def test_min_lsn_reads_your_writes_on_a_slave(pb, cluster):
    master, slave = cluster["master"], cluster["slaves"][0]
    m_channel, m_stub = kv_stub(pb, master.address)
    s_channel, s_stub = kv_stub(pb, slave.address)
    with m_channel, s_channel:
        for i in range(20):
            lsn = m_stub.Set(pb.kv.SetRequest(key=f"ryw-{i}", value=b"%d" % i), timeout=10).lsn
            # Asked right after the master answered: the slave waits until it has applied it.
            reply = s_stub.Get(pb.kv.GetRequest(key=f"ryw-{i}", min_lsn=lsn), timeout=10)
            assert reply.found and reply.value == b"%d" % i and reply.lsn == lsn
        # An LSN nobody wrote: the slave waits within the call's deadline, then says so.
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as behind:
            s_stub.Get(pb.kv.GetRequest(key="ryw-0", min_lsn=lsn + 1000), timeout=1.5)
        assert behind.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert time.monotonic() - started >= 1.0
        # The master has every LSN it logged: one ahead of it is refused at once.
        with pytest.raises(grpc.RpcError) as ahead:
            m_stub.Get(pb.kv.GetRequest(key="ryw-0", min_lsn=lsn + 1000), timeout=10)
        assert ahead.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "ahead of this node" in ahead.value.details()


def test_wiped_and_compacted_away_slaves_converge_through_a_full_resync(pb, tmp_path, request):
    import shutil

    # Small segments and retention, so old history is compacted away quickly.
    small = {"max_file_size": "64KB", "retention": "64KB"}
    master = start_server(tmp_path / "master", wal=small)
    slaves = []
    try:
        slaves = [
            start_server(
                tmp_path / f"slave{i}", role="slave", wal=small,
                master={"address": master.address, "sync_interval": "200ms"},
            )
            for i in (1, 2)
        ]
        keys = list(write_many(pb, master.address, range(300)))
        wait_converged(pb, master, slaves, keys)

        # Slave 1 loses its directory; slave 2 falls behind past what the master keeps.
        slaves[0].kill()
        shutil.rmtree(tmp_path / "slave1" / "wal")
        slaves[1].kill()
        for round_ in range(40):
            write_many(pb, master.address, range(300), round_=round_ + 1)
        deadline = time.monotonic() + 30
        while status(pb, master.address).oldest_streamable_lsn <= 300:
            assert time.monotonic() < deadline, "the master never compacted its old history"
            time.sleep(0.2)

        slaves = [
            start_server(
                tmp_path / f"slave{i}", role="slave", wal=small,
                master={"address": master.address, "sync_interval": "200ms"},
            )
            for i in (1, 2)
        ]
        later = list(write_many(pb, master.address, range(20), prefix="after-resync"))
        wait_converged(pb, master, slaves, keys + later)
        for slave in slaves:
            assert "FULL RESYNC" in slave.log(), slave.log_tail()
            assert status(pb, slave.address).replication_id == status(pb, master.address).replication_id
        assert master.log().count("sending a snapshot") >= 2

        # A resynced slave restarts from its own log, incrementally.
        slaves[1].terminate()
        slaves[1] = start_server(
            tmp_path / "slave2", role="slave", wal=small, master={"address": master.address, "sync_interval": "200ms"}
        )
        more = list(write_many(pb, master.address, range(10), prefix="after-restart"))
        wait_converged(pb, master, slaves, keys + later + more)
        assert "FULL RESYNC" not in slaves[1].log()
    finally:
        for node in slaves + [master]:
            if node.alive():
                stop_server(node, _failed(request.node))


def test_add_and_remove_slave(pb, cluster):
    master, slaves = cluster["master"], cluster["slaves"]
    with grpc.insecure_channel(master.address) as channel:
        admin = pb.kv_grpc.AdminStub(channel)
        added = admin.AddSlave(pb.kv.AddSlaveRequest(slave_id="expected", address="10.0.0.9:8081"), timeout=10)
        assert added.slave.state == pb.kv.SLAVE_STATE_DISCONNECTED
        listed = {s.slave_id: s for s in admin.ListSlaves(pb.kv.ListSlavesRequest(), timeout=10).slaves}
        assert listed["expected"].state == pb.kv.SLAVE_STATE_DISCONNECTED
        assert sum(s.state == pb.kv.SLAVE_STATE_CONNECTED for s in listed.values()) == 2

        for bad in (pb.kv.AddSlaveRequest(address="h:1"), pb.kv.AddSlaveRequest(slave_id="x", address="no port")):
            with pytest.raises(grpc.RpcError) as refused:
                admin.AddSlave(bad, timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        assert admin.RemoveSlave(pb.kv.RemoveSlaveRequest(slave_id="expected"), timeout=10).removed
        assert not admin.RemoveSlave(pb.kv.RemoveSlaveRequest(slave_id="never-heard-of"), timeout=10).removed
        # Removing a connected slave drops its stream; it redials and is listed again.
        victim = next(s.slave_id for s in listed.values() if s.state == pb.kv.SLAVE_STATE_CONNECTED)
        assert admin.RemoveSlave(pb.kv.RemoveSlaveRequest(slave_id=victim), timeout=10).removed
        keys = list(write_many(pb, master.address, range(10), prefix="after-remove"))
        wait_converged(pb, master, slaves, keys)

    with grpc.insecure_channel(slaves[0].address) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb.kv_grpc.AdminStub(channel).AddSlave(pb.kv.AddSlaveRequest(slave_id="x", address="h:1"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert master.address in refused.value.details()
        with pytest.raises(grpc.RpcError) as refused:
            pb.kv_grpc.AdminStub(channel).RemoveSlave(pb.kv.RemoveSlaveRequest(slave_id="x"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_slave_that_stops_reading_is_dropped_without_stalling_the_master(pb, cluster):
    from support import RawH2, grpc_frame

    master, slaves = cluster["master"], cluster["slaves"]
    stuck = RawH2(master.host, master.port)
    try:
        stream = stuck.start_grpc("/erdtree.v1.Replication/Replicate")
        hello = pb.kv.ReplicateRequest(hello=pb.kv.Hello(slave_id="stuck", last_lsn=0))
        stuck.send_data(stream, grpc_frame(hello.SerializeToString()), end_stream=False)
        # From here on it reads nothing, so it never opens its HTTP/2 window again.
        started = time.monotonic()
        value = b"x" * 1024
        channel, stub = kv_stub(pb, master.address)
        with channel:
            for round_ in range(8):
                futures = [
                    stub.Set.future(pb.kv.SetRequest(key=f"big-{i}", value=value), timeout=30) for i in range(1000)
                ]
                for future in futures:
                    future.result()
        writing = time.monotonic() - started
        assert writing < 20, f"8,000 writes took {writing:.1f} s with a stuck slave attached"
        deadline = time.monotonic() + 30
        while "kept its send buffer full" not in master.log():
            assert time.monotonic() < deadline, f"the stuck slave was never dropped:\n{master.log_tail()}"
            time.sleep(0.5)
        # The healthy slaves have everything, and the master still answers.
        wait_converged(pb, master, slaves, [f"big-{i}" for i in range(1000)])
        assert status(pb, master.address).last_lsn >= 8000
    finally:
        stuck.close()


def test_a_silent_master_is_given_up_on_and_redialled(pb, cluster):
    import os
    import signal

    master, slaves = cluster["master"], cluster["slaves"]
    keys = list(write_many(pb, master.address, range(20), prefix="before-freeze"))
    wait_converged(pb, master, slaves, keys)
    os.kill(master.proc.pid, signal.SIGSTOP)  # alive but silent, like a cut network
    try:
        deadline = time.monotonic() + 10
        while not all("no word from the master" in s.log() for s in slaves):
            assert time.monotonic() < deadline, "a slave kept waiting on a silent master"
            time.sleep(0.2)
        # Slaves keep serving reads meanwhile, and report their master.
        assert read_all(pb, slaves[0].address, keys[:1])[keys[0]] is not None
    finally:
        os.kill(master.proc.pid, signal.SIGCONT)
    later = list(write_many(pb, master.address, range(20), prefix="after-thaw"))
    wait_converged(pb, master, slaves, keys + later)


def test_a_slave_serves_only_after_its_first_sync(pb, tmp_path, request):
    import subprocess

    from conftest import ERDTREE_BIN, _DIE_WITH_PARENT, _health_serving, write_config
    from support import free_port

    master_port, slave_port = free_port(), free_port()
    workdir = tmp_path / "slave"
    workdir.mkdir()
    write_config(
        workdir / "erdtree.yaml", slave_port, workdir / "wal",
        master={"address": f"127.0.0.1:{master_port}", "sync_interval": "100ms"},
    )
    with open(workdir / "erdtree.log", "wb") as log:
        slave = subprocess.Popen(
            [*_DIE_WITH_PARENT, str(ERDTREE_BIN), "slave", "--config", str(workdir / "erdtree.yaml")],
            cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    master = None
    try:
        time.sleep(1.5)  # up, dialling a master that is not there
        assert slave.poll() is None
        assert not _health_serving(f"127.0.0.1:{slave_port}"), "a slave that never synced reported SERVING"
        # Load balancers see the same over HTTP/1.1.
        from support import run, tool

        probe = [tool("curl"), "--http1.1", "-s", "--max-time", "5", "-w", " %{http_code}",
                 f"http://127.0.0.1:{slave_port}/healthz"]
        assert run(probe).stdout.decode() == "NOT_SERVING\n 503"
        master = start_server(tmp_path / "master", port=master_port)
        deadline = time.monotonic() + 15
        while not _health_serving(f"127.0.0.1:{slave_port}"):
            assert time.monotonic() < deadline, "the slave never became SERVING after the master came up"
            time.sleep(0.1)
        assert run(probe).stdout.decode() == "SERVING\n 200"
    finally:
        slave.terminate()
        assert slave.wait(timeout=10) == 0
        if master is not None:
            stop_server(master, _failed(request.node))


def test_a_wiped_master_forces_slaves_into_a_full_resync(pb, cluster):
    import shutil

    master, slaves, tmp = cluster["master"], cluster["slaves"], cluster["tmp"]
    old = list(write_many(pb, master.address, range(50), prefix="old-history"))
    wait_converged(pb, master, slaves, old)
    old_id = status(pb, master.address).replication_id
    stop_server(master, False)
    shutil.rmtree(tmp / "master" / "wal")
    fresh = start_server(tmp / "master", port=master.port, wal={"sync_interval": "always"})
    cluster["master"] = fresh
    new = list(write_many(pb, fresh.address, range(10), prefix="new-history"))
    state = wait_converged(pb, fresh, slaves, old + new)
    assert all(state[key] is None for key in old), "keys of the wiped history must be gone"
    for slave in slaves:
        assert status(pb, slave.address).replication_id == status(pb, fresh.address).replication_id != old_id
        assert "FULL RESYNC" in slave.log()
