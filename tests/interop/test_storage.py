"""`storage.max_entries` against the real binary: values past the bound leave memory
but every key still reads back (from the WAL), before and after a restart; under
`noeviction` new keys are refused before anything is logged."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from conftest import ERDTREE_BIN, start_server, stop_server
from test_cli import cli

KEYS = 200_000
MAX_ENTRIES = 1000
WRITERS = 8
BATCH = 256


def value_of(index: int) -> bytes:
    """1 KiB, different per key, so a value read back for the wrong key shows."""
    stamp = f"value-{index:06d}-".encode()
    return (stamp * (1024 // len(stamp) + 1))[:1024]


def resident_values(address: str) -> int:
    done = cli("status", "--server", address)
    assert done.returncode == 0, done.stderr
    match = re.search(r"^resident values:\s+(\d+)$", done.stdout, re.MULTILINE)
    assert match, f"`erdtree status` prints no resident values:\n{done.stdout}"
    return int(match.group(1))


class StatusSampler:
    """Polls `erdtree status` in the background and keeps the highest resident count."""

    def __init__(self, address: str):
        self.address = address
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(resident_values(self.address))
            self._stop.wait(0.2)

    def __enter__(self) -> StatusSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _for_all_keys(work) -> None:
    """Runs `work(stub, indices)` over all keys in batches on several threads, one channel each."""
    batches = [range(start, min(start + BATCH, KEYS)) for start in range(0, KEYS, BATCH)]
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        list(pool.map(work, batches))


def _write_all(pb, address: str) -> None:
    local = threading.local()

    def write(indices):
        if not hasattr(local, "stub"):
            local.stub = pb.kv_grpc.KVStoreStub(grpc.insecure_channel(address))
        futures = [local.stub.Set.future(pb.kv.SetRequest(key=f"key-{i}", value=value_of(i))) for i in indices]
        for future in futures:
            assert future.result(timeout=60).lsn > 0

    _for_all_keys(write)


def _check_all(pb, address: str) -> None:
    local = threading.local()

    def check(indices):
        if not hasattr(local, "stub"):
            local.stub = pb.kv_grpc.KVStoreStub(grpc.insecure_channel(address))
        futures = [(i, local.stub.Get.future(pb.kv.GetRequest(key=f"key-{i}"))) for i in indices]
        for i, future in futures:
            reply = future.result(timeout=60)
            assert reply.found, f"key-{i} is missing"
            assert reply.value == value_of(i), f"key-{i} read back the wrong value"

    _for_all_keys(check)


@pytest.mark.timeout(300)
def test_every_key_reads_back_under_max_entries_and_after_a_restart(pb, tmp_path, request):
    storage = {"max_entries": MAX_ENTRIES, "eviction_policy": "lru"}
    server = start_server(tmp_path / "node", storage=storage)
    failed = True
    try:
        with StatusSampler(server.address) as sampler:
            started = time.monotonic()
            _write_all(pb, server.address)
            wrote = time.monotonic() - started
            _check_all(pb, server.address)
        print(f"wrote {KEYS} keys in {wrote:.1f}s, checked them in {time.monotonic() - started - wrote:.1f}s")
        assert sampler.samples, "status was never sampled"
        assert max(sampler.samples) <= MAX_ENTRIES, sampler.samples
        assert resident_values(server.address) <= MAX_ENTRIES
        failed = False
    finally:
        stop_server(server, failed)

    server = start_server(tmp_path / "node", storage=storage)
    failed = True
    try:
        assert resident_values(server.address) <= MAX_ENTRIES, "replay evicts as it goes"
        with StatusSampler(server.address) as sampler:
            _check_all(pb, server.address)
        assert max(sampler.samples) <= MAX_ENTRIES, sampler.samples
        done = cli("status", "--server", server.address)
        assert re.search(rf"^keys:\s+{KEYS}$", done.stdout, re.MULTILINE), done.stdout
        failed = False
    finally:
        stop_server(server, failed)


def test_noeviction_refuses_new_keys_and_logs_nothing(pb, tmp_path):
    server = start_server(tmp_path / "node", storage={"max_entries": 3, "eviction_policy": "noeviction"})
    failed = True
    try:
        with grpc.insecure_channel(server.address) as channel:
            kv = pb.kv_grpc.KVStoreStub(channel)
            for i in range(3):
                kv.Set(pb.kv.SetRequest(key=f"k{i}", value=b"v"))
            with pytest.raises(grpc.RpcError) as refused:
                kv.Set(pb.kv.SetRequest(key="k3", value=b"v"))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            details = refused.value.details()
            assert "storage.max_entries" in details and "max: 3" in details, details
            assert "noeviction" in details, details

            updates = kv.GetUpdates(pb.kv.GetUpdatesRequest(since_lsn=0))
            assert [e.key for e in updates.entries] == ["k0", "k1", "k2"], "the refused key was logged"
            assert updates.master_lsn == 3
            assert not kv.Get(pb.kv.GetRequest(key="k3")).found

            # Overwrites and deletes still work, and a delete makes room.
            assert kv.Set(pb.kv.SetRequest(key="k1", value=b"new")).lsn == 4
            assert kv.Get(pb.kv.GetRequest(key="k1")).value == b"new"
            assert kv.Delete(pb.kv.DeleteRequest(key="k0")).deleted
            assert kv.Set(pb.kv.SetRequest(key="k3", value=b"v")).lsn == 6
        failed = False
    finally:
        stop_server(server, failed)
