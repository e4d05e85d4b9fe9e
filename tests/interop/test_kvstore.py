"""KVStore over grpcio (the gRPC C core): what a user of the API checks first."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

RPC_TIMEOUT_S = 10
KEY_LIMIT = 4096
VALUE_LIMIT = 1048576  # 1 MiB


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=RPC_TIMEOUT_S, **kwargs)
    return info.value


def test_set_get_delete_round_trip(pb, kv):
    kv.Set(pb.kv.SetRequest(key="greeting", value=b"hello"), timeout=RPC_TIMEOUT_S)

    got = kv.Get(pb.kv.GetRequest(key="greeting"), timeout=RPC_TIMEOUT_S)
    assert got.found
    assert got.value == b"hello"

    deleted = kv.Delete(pb.kv.DeleteRequest(key="greeting"), timeout=RPC_TIMEOUT_S)
    assert deleted.deleted

    gone = kv.Get(pb.kv.GetRequest(key="greeting"), timeout=RPC_TIMEOUT_S)
    assert not gone.found
    assert gone.value == b""


def test_set_overwrites_previous_value(pb, kv):
    kv.Set(pb.kv.SetRequest(key="k", value=b"one"), timeout=RPC_TIMEOUT_S)
    kv.Set(pb.kv.SetRequest(key="k", value=b"two"), timeout=RPC_TIMEOUT_S)
    assert kv.Get(pb.kv.GetRequest(key="k"), timeout=RPC_TIMEOUT_S).value == b"two"


def test_get_missing_key_is_not_found_with_status_ok(pb, kv):
    # A plain call (no exception) means grpc-status 0.
    got, call = kv.Get.with_call(pb.kv.GetRequest(key="never-written"), timeout=RPC_TIMEOUT_S)
    assert call.code() == grpc.StatusCode.OK
    assert not got.found
    assert got.value == b""


def test_delete_missing_key_reports_not_deleted(pb, kv):
    reply, call = kv.Delete.with_call(pb.kv.DeleteRequest(key="never-written"), timeout=RPC_TIMEOUT_S)
    assert call.code() == grpc.StatusCode.OK
    assert not reply.deleted


def test_set_returns_increasing_lsn(pb, kv):
    lsns = [kv.Set(pb.kv.SetRequest(key=f"k{i}", value=b"v"), timeout=RPC_TIMEOUT_S).lsn for i in range(5)]
    assert lsns[0] >= 1, f"LSNs start at 1, got {lsns}"
    assert all(a < b for a, b in zip(lsns, lsns[1:])), f"LSNs must strictly increase: {lsns}"

    deleted = kv.Delete(pb.kv.DeleteRequest(key="k0"), timeout=RPC_TIMEOUT_S)
    assert deleted.lsn > lsns[-1], "a delete is a write and gets the next LSN"


def test_get_returns_lsn_of_last_write_and_expiry(pb, kv):
    plain = kv.Set(pb.kv.SetRequest(key="plain", value=b"a"), timeout=RPC_TIMEOUT_S)
    got = kv.Get(pb.kv.GetRequest(key="plain"), timeout=RPC_TIMEOUT_S)
    assert got.lsn == plain.lsn
    assert got.expires_at_ms == 0, "no TTL means no expiry"

    before_ms = int(time.time() * 1000)
    timed = kv.Set(pb.kv.SetRequest(key="timed", value=b"b", ttl_ms=60_000), timeout=RPC_TIMEOUT_S)
    after_ms = int(time.time() * 1000)
    got = kv.Get(pb.kv.GetRequest(key="timed"), timeout=RPC_TIMEOUT_S)
    assert got.found
    assert got.lsn == timed.lsn
    # expires_at_ms is absolute wall-clock ms; allow a little clock granularity slack.
    assert before_ms + 60_000 - 1000 <= got.expires_at_ms <= after_ms + 60_000 + 1000, (
        f"expires_at_ms={got.expires_at_ms}, expected about {before_ms + 60_000}"
    )


def test_ttl_value_visible_then_gone(pb, kv):
    kv.Set(pb.kv.SetRequest(key="ephemeral", value=b"soon gone", ttl_ms=300), timeout=RPC_TIMEOUT_S)
    set_done = time.monotonic()
    got = kv.Get(pb.kv.GetRequest(key="ephemeral"), timeout=RPC_TIMEOUT_S)
    if time.monotonic() - set_done < 0.25:  # a loaded machine may already be past the TTL
        assert got.found and got.value == b"soon gone"

    time.sleep(max(0.0, set_done + 0.5 - time.monotonic()))
    got = kv.Get(pb.kv.GetRequest(key="ephemeral"), timeout=RPC_TIMEOUT_S)
    assert not got.found, f"key with ttl_ms=300 still visible after 0.5 s (expires_at_ms={got.expires_at_ms})"
    assert got.value == b""


def test_binary_value_with_nul_bytes_round_trips(pb, kv):
    value = bytes(range(256)) + b"\x00\x00end\x00"
    kv.Set(pb.kv.SetRequest(key="binary", value=value), timeout=RPC_TIMEOUT_S)
    assert kv.Get(pb.kv.GetRequest(key="binary"), timeout=RPC_TIMEOUT_S).value == value


def test_unicode_key_round_trips(pb, kv):
    key = "ключ/キー/🌳"
    kv.Set(pb.kv.SetRequest(key=key, value=b"x"), timeout=RPC_TIMEOUT_S)
    assert kv.Get(pb.kv.GetRequest(key=key), timeout=RPC_TIMEOUT_S).value == b"x"


def test_value_of_exactly_1_mib_is_accepted(pb, kv):
    value = bytes(i % 251 for i in range(VALUE_LIMIT))
    kv.Set(pb.kv.SetRequest(key="big", value=value), timeout=RPC_TIMEOUT_S)
    got = kv.Get(pb.kv.GetRequest(key="big"), timeout=RPC_TIMEOUT_S)
    assert got.found
    assert got.value == value


def test_value_over_1_mib_is_rejected_naming_the_limit(pb, kv):
    err = rpc_error(kv.Set, pb.kv.SetRequest(key="too-big", value=b"x" * (VALUE_LIMIT + 1)))
    assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), err
    assert str(VALUE_LIMIT) in err.details(), f"message should name the limit: {err.details()!r}"
    # Nothing is written.
    assert not kv.Get(pb.kv.GetRequest(key="too-big"), timeout=RPC_TIMEOUT_S).found


def test_empty_key_is_invalid_argument(pb, kv):
    err = rpc_error(kv.Set, pb.kv.SetRequest(key="", value=b"v"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    details = err.details()
    assert "key" in details.lower(), f"message should say the key is wrong: {details!r}"
    assert str(KEY_LIMIT) in details or "empty" in details.lower(), (
        f"message should name the key limit (1..{KEY_LIMIT} bytes) or say it is empty: {details!r}"
    )

    err = rpc_error(kv.Get, pb.kv.GetRequest(key=""))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err


def test_key_of_4096_bytes_is_accepted(pb, kv):
    key = "k" * KEY_LIMIT
    kv.Set(pb.kv.SetRequest(key=key, value=b"edge"), timeout=RPC_TIMEOUT_S)
    assert kv.Get(pb.kv.GetRequest(key=key), timeout=RPC_TIMEOUT_S).value == b"edge"


def test_key_of_4097_bytes_is_rejected_naming_the_limit(pb, kv):
    key = "k" * (KEY_LIMIT + 1)
    err = rpc_error(kv.Set, pb.kv.SetRequest(key=key, value=b"v"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert str(KEY_LIMIT) in err.details(), f"message should name the limit: {err.details()!r}"

    err = rpc_error(kv.Get, pb.kv.GetRequest(key=key))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert str(KEY_LIMIT) in err.details(), f"message should name the limit: {err.details()!r}"


@pytest.mark.timeout(180)
def test_64_concurrent_clients_stay_consistent(pb, server):
    clients, ops, keys_per_client = 64, 200, 10
    start = threading.Barrier(clients)
    errors: list[str] = []
    expected: dict[str, bytes] = {}
    lock = threading.Lock()

    def client(n: int) -> None:
        # One channel (so one HTTP/2 connection) per client.
        with grpc.insecure_channel(server.address) as channel:
            stub = pb.kv_grpc.KVStoreStub(channel)
            last: dict[str, bytes] = {}
            try:
                start.wait(timeout=60)
                for i in range(ops // 2):
                    key = f"client{n}/key{i % keys_per_client}"
                    value = f"{n}:{i}".encode()
                    stub.Set(pb.kv.SetRequest(key=key, value=value), timeout=30)
                    got = stub.Get(pb.kv.GetRequest(key=key), timeout=30)
                    if not got.found or got.value != value:
                        errors.append(f"{key}: wrote {value!r}, read found={got.found} {got.value!r}")
                    last[key] = value
            except Exception as exc:  # reported below with the client number
                errors.append(f"client {n}: {exc!r}")
            with lock:
                expected.update(last)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=170)
    assert not any(t.is_alive() for t in threads), "some clients did not finish"
    assert not errors, f"{len(errors)} errors, first: {errors[:5]}"
    assert len(expected) == clients * keys_per_client

    with grpc.insecure_channel(server.address) as channel:
        stub = pb.kv_grpc.KVStoreStub(channel)
        for key, value in expected.items():
            got = stub.Get(pb.kv.GetRequest(key=key), timeout=RPC_TIMEOUT_S)
            assert got.found and got.value == value, f"{key}: expected {value!r}, got found={got.found} {got.value!r}"
