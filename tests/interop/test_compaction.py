"""WAL compaction against the real binary: overwrites stop costing disk, every value
survives (also when read back from disk after eviction, and after a restart), and a
kill -9 at each step of a compaction loses and corrupts nothing.

The crash steps are reached through the server's test hook
ERDTREE_TEST_COMPACTION_CRASH=<step>, which sends the process SIGKILL at that point
(Sources/ErdtreeWAL/WALFailpoints.swift lists the steps). The hook exists only in a failpoint
build (ERDTREE_FAILPOINTS=1 swift build, as `make test` builds); against any other binary
those tests are skipped, saying so."""

from __future__ import annotations

import mmap
import time

import grpc
import pytest

from conftest import ERDTREE_BIN, _failed, start_server, stop_server

# Segments of the smallest allowed size and the smallest retention, so that a few
# hundred KB of writes make many sealed segments outside the retention window.
SMALL_LOG = {"max_file_size": "64KB", "retention": "64KB", "sync_interval": "1s"}
RECORD_OVERHEAD = 41  # docs/wal-format.md: CRC, length, LSN, timestamp, op, expiry, two lengths

CRASH_STEPS = [
    "parts-written",
    "committed",
    "relocated",
    "old-segment-deleted",
    "old-segments-deleted",
    "part-renamed",
    "parts-renamed",
]


def _has_crash_hook(binary) -> bool:
    """Whether `binary` was built with the failpoints: only then does it hold the hook's name."""
    try:
        with open(binary, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(b"ERDTREE_TEST_COMPACTION_CRASH") >= 0
    except (OSError, ValueError):
        return False


needs_crash_hook = pytest.mark.skipif(
    not _has_crash_hook(ERDTREE_BIN),
    reason=f"{ERDTREE_BIN} is not a failpoint build: build with ERDTREE_FAILPOINTS=1 swift build (make test does)")


def key_of(index: int) -> bytes:
    return b"key-%04d" % index


def value_of(index: int, round_: int) -> bytes:
    head = b"value-%04d-round-%04d-" % (index, round_)
    return (head * 8)[:100]


def status(pb, channel):
    return pb.kv_grpc.AdminStub(channel).Status(pb.kv.StatusRequest(), timeout=10)


def write_round(pb, stub, keys: int, round_: int) -> None:
    """Sets every key to its value of `round_`, all at once, and waits for every answer."""
    futures = [
        stub.Set.future(pb.kv.SetRequest(key=key_of(i), value=value_of(i, round_)), timeout=30) for i in range(keys)
    ]
    for future in futures:
        future.result()


def check_values(pb, stub, keys: int, expected) -> None:
    """`expected(i)` is the set of values key i may hold."""
    for i in range(keys):
        reply = stub.Get(pb.kv.GetRequest(key=key_of(i)), timeout=10)
        assert reply.found, f"{key_of(i)!r} is missing"
        assert reply.value in expected(i), f"{key_of(i)!r} reads {reply.value!r}"


def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def test_overwrites_keep_disk_a_small_multiple_of_live_data(pb, tmp_path, request):
    keys, rounds = 1000, 200
    live_bytes = keys * (RECORD_OVERHEAD + len(key_of(0)) + len(value_of(0, 0)))
    # max_entries below the key count: most values are read back from disk, through the
    # locations compaction moved them to.
    server = start_server(tmp_path / "node", wal=SMALL_LOG, storage={"max_entries": 100})
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb.kv_grpc.KVStoreStub(channel)
            for round_ in range(rounds):
                write_round(pb, stub, keys, round_)
            written = keys * rounds * (live_bytes // keys)

            def compacted():
                s = status(pb, channel)
                return s if s.compactions >= 1 and s.disk_bytes <= 4 * live_bytes else None

            s = wait_for(compacted, f"disk use to fall under 4 x the {live_bytes} live bytes")
            print(
                f"wrote {written} bytes of records; disk {s.disk_bytes} bytes in {s.segments} segments "
                f"= {s.disk_bytes / live_bytes:.2f} x live data; dead {s.dead_bytes}; compactions {s.compactions}"
            )
            assert s.keys == keys
            assert s.resident_values <= 100
            assert s.oldest_streamable_lsn > 1
            assert s.last_compaction_ms > 0
            check_values(pb, stub, keys, lambda i: {value_of(i, rounds - 1)})
            assert status(pb, channel).disk_reads > 0, "the bound should have sent reads to disk"

            # History compaction dropped is gone from GetUpdates: the caller must resync.
            updates = stub.GetUpdates(pb.kv.GetUpdatesRequest(since_lsn=0), timeout=10)
            assert updates.resync_required and not updates.entries
            tail = stub.GetUpdates(pb.kv.GetUpdatesRequest(since_lsn=s.oldest_streamable_lsn - 1), timeout=10)
            assert not tail.resync_required and tail.entries[0].lsn == s.oldest_streamable_lsn
    finally:
        stop_server(server, _failed(request.node))

    server = start_server(tmp_path / "node", wal=SMALL_LOG, storage={"max_entries": 100})
    try:
        with grpc.insecure_channel(server.address) as channel:
            check_values(pb, pb.kv_grpc.KVStoreStub(channel), keys, lambda i: {value_of(i, rounds - 1)})
            s = status(pb, channel)
            assert s.keys == keys
            assert s.disk_bytes <= 4 * live_bytes
    finally:
        stop_server(server, _failed(request.node))


@needs_crash_hook
@pytest.mark.parametrize("step", CRASH_STEPS)
def test_kill_9_during_compaction_loses_nothing(pb, tmp_path, request, step):
    keys = 50
    workdir = tmp_path / "node"
    server = start_server(
        workdir, env={"ERDTREE_TEST_COMPACTION_CRASH": step}, wal=SMALL_LOG, storage={"max_entries": 20}
    )
    acked = {}  # key index -> the value of its last acknowledged round
    unanswered = {}  # key index -> values sent since that ack, answered with an error or not at all
    cold = 30  # keys written once, first: compaction always has live records to move
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb.kv_grpc.KVStoreStub(channel)
            for i in range(cold):
                stub.Set(pb.kv.SetRequest(key=b"cold-%d" % i, value=b"cold value %d" % i), timeout=10)
            deadline = time.monotonic() + 60
            round_ = 0
            while server.alive():
                assert time.monotonic() < deadline, f"no compaction reached step {step} within 60 s"
                futures = [
                    stub.Set.future(pb.kv.SetRequest(key=key_of(i), value=value_of(i, round_)), timeout=10)
                    for i in range(keys)
                ]
                for i, future in enumerate(futures):
                    try:
                        future.result()
                        acked[i] = value_of(i, round_)
                        unanswered[i] = set()
                    except grpc.RpcError:
                        # Killed mid-call: the write may or may not have been logged.
                        unanswered.setdefault(i, set()).add(value_of(i, round_))
                round_ += 1
        server.proc.wait(timeout=10)
        assert server.proc.returncode == -9, f"exit {server.proc.returncode}; log:\n{server.log_tail()}"
    finally:
        server.kill()

    wal = workdir / "wal"
    server = start_server(workdir, wal=SMALL_LOG, storage={"max_entries": 20})
    try:
        log = server.log()
        if step == "parts-written":
            assert "interrupted before it committed" in log, log
        else:
            assert "interrupted after it committed; finished it" in log, log
        leftovers = [p.name for p in wal.iterdir() if p.name.endswith(".compacting") or "compaction" in p.name]
        assert leftovers == [], leftovers

        def may_hold(i):
            return ({acked[i]} if i in acked else set()) | unanswered.get(i, set())

        with grpc.insecure_channel(server.address) as channel:
            stub = pb.kv_grpc.KVStoreStub(channel)
            check_values(pb, stub, keys, may_hold)
            for i in range(cold):
                assert stub.Get(pb.kv.GetRequest(key=b"cold-%d" % i), timeout=10).value == b"cold value %d" % i
            # The log keeps working: more overwrites, and the next compaction runs to the end.
            before = status(pb, channel).compactions
            round_ = 10_000
            while status(pb, channel).compactions == before:
                write_round(pb, stub, keys, round_)
                round_ += 1
                assert round_ < 12_000, "no compaction after the restart"
            check_values(pb, stub, keys, lambda i: {value_of(i, round_ - 1)})
    finally:
        stop_server(server, _failed(request.node))
