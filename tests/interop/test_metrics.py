"""`GET /metrics` (DESIGN §12, docs/metrics.md), read by curl and promtool from real nodes: the same
families over HTTP/1.1, h2c and TLS; promtool's lint on a master and a slave under load; RPC counters
that rise by exactly the calls made; fsync observations under `wal.sync_interval: always`; replication
series on both ends; `auth.metrics`; and no key ever in a label."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import grpc
import pytest

from conftest import _failed, start_server, stop_server
from harness.pki import make_pki
from support import issue_token, run, tool

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def curl(url: str, *args: str) -> tuple[int, dict[str, str], str]:
    """(status, lower-cased headers, body) of one GET."""
    done = run([tool("curl"), "-sS", "--max-time", "10", "-D", "-", *args, url])
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode()
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def scrape(address: str, *args: str, scheme: str = "http") -> str:
    status, headers, body = curl(f"{scheme}://{address}/metrics", *args)
    assert status == 200, body
    assert headers["content-type"] == CONTENT_TYPE
    return body


def samples(body: str) -> dict[tuple[str, frozenset], float]:
    """{(name, labels): value} of every sample line."""
    parsed = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        parsed[(name, frozenset(LABEL.findall(labels or "")))] = float(value)
    return parsed


def families(body: str) -> set[str]:
    return {line.split()[2] for line in body.splitlines() if line.startswith("# TYPE ")}


def value(parsed, name: str, **labels) -> float:
    return parsed.get((name, frozenset(labels.items())), 0.0)


def kv(pb, address):
    channel = grpc.insecure_channel(address)
    return channel, pb.kv_grpc.KVStoreStub(channel)


def promtool_check(body: str) -> None:
    done = run([tool("promtool"), "check", "metrics"], input=body.encode())
    assert done.returncode == 0, (done.stdout + done.stderr).decode()


@pytest.fixture
def master(tmp_path, request):
    srv = start_server(tmp_path / "master", wal={"sync_interval": "always"})
    try:
        yield srv
    finally:
        stop_server(srv, _failed(request.node))


def test_every_family_has_help_and_a_unit_and_is_the_same_over_http1_and_h2c(master):
    http1 = scrape(master.address, "--http1.1")
    h2c = scrape(master.address, "--http2-prior-knowledge")
    assert families(http1) == families(h2c)
    helped = {line.split()[2] for line in http1.splitlines() if line.startswith("# HELP ")}
    assert families(http1) <= helped
    for family in families(http1):
        assert family.startswith("erdtree_"), family
    expected = {
        "erdtree_rpc_requests_total", "erdtree_rpc_duration_seconds", "erdtree_connections",
        "erdtree_wal_appends_total", "erdtree_wal_batch_records", "erdtree_wal_fsync_duration_seconds",
        "erdtree_wal_written_bytes_total", "erdtree_wal_segments", "erdtree_wal_disk_bytes",
        "erdtree_wal_compactions_total", "erdtree_lsn", "erdtree_store_keys", "erdtree_store_resident_values",
        "erdtree_store_data_bytes", "erdtree_store_disk_reads_total", "erdtree_store_expired_keys_total",
        "erdtree_replication_connected_slaves", "erdtree_role", "erdtree_epoch",
        "erdtree_process_resident_memory_bytes", "erdtree_process_open_fds", "erdtree_process_cpu_seconds_total",
        "erdtree_process_start_time_seconds", "erdtree_connections_rejected_total",
    }
    assert expected <= families(http1), expected - families(http1)
    parsed = samples(http1)
    assert value(parsed, "erdtree_role", role="master") == 1
    assert value(parsed, "erdtree_role", role="slave") == 0
    assert value(parsed, "erdtree_process_resident_memory_bytes") > 1 << 20
    assert abs(value(parsed, "erdtree_process_start_time_seconds") - time.time()) < 600
    # Each scrape sees its own connection open.
    assert value(parsed, "erdtree_connections", protocol="http1") >= 1
    assert value(samples(h2c), "erdtree_connections", protocol="http2") >= 1
    promtool_check(http1)


def test_counters_rise_by_exactly_the_calls_made_and_fsyncs_are_timed(pb, master):
    before = samples(scrape(master.address))
    channel, stub = kv(pb, master.address)
    with channel:
        for i in range(7):
            stub.Set(pb.kv.SetRequest(key=f"secret-key-{i}", value=b"v"), timeout=10)
        for i in range(5):
            stub.Get(pb.kv.GetRequest(key=f"secret-key-{i}"), timeout=10)
    # Connect over HTTP/1.1 is counted under its own protocol.
    status, _, _ = curl(f"http://{master.address}/erdtree.v1.KVStore/Get", "--http1.1", "-X", "POST",
                        "-H", "content-type: application/json", "--data", '{"key": "secret-key-0"}')
    assert status == 200
    body = scrape(master.address)
    after = samples(body)

    def rise(method, code="OK", protocol="grpc"):
        labels = dict(service="erdtree.v1.KVStore", method=method, code=code, protocol=protocol)
        return value(after, "erdtree_rpc_requests_total", **labels) - value(before, "erdtree_rpc_requests_total",
                                                                             **labels)

    assert rise("Set") == 7
    assert rise("Get") == 5
    assert rise("Get", protocol="connect") == 1
    count = "erdtree_rpc_duration_seconds_count"
    assert value(after, count, service="erdtree.v1.KVStore", method="Set") - \
        value(before, count, service="erdtree.v1.KVStore", method="Set") == 7
    assert value(after, "erdtree_wal_appends_total") - value(before, "erdtree_wal_appends_total") == 7
    # `always`: every write is fsynced before it is answered.
    fsyncs = value(after, "erdtree_wal_fsync_duration_seconds_count")
    assert fsyncs - value(before, "erdtree_wal_fsync_duration_seconds_count") >= 1
    assert value(after, "erdtree_lsn", kind="durable") == value(after, "erdtree_lsn", kind="last") >= 7
    assert value(after, "erdtree_store_keys") == 7
    assert "secret-key" not in body


def test_unknown_methods_collapse_to_one_label_and_methods_other_than_get_are_refused(master):
    status, _, _ = curl(f"http://{master.address}/no.such.Service/Leak-this-path", "--http1.1", "-X", "POST",
                        "-H", "content-type: application/json", "--data", "{}")
    assert status == 404
    body = scrape(master.address)
    assert "Leak-this-path" not in body and "no.such.Service" not in body
    parsed = samples(body)
    assert value(parsed, "erdtree_rpc_requests_total", service="unknown", method="unknown", code="UNIMPLEMENTED",
                 protocol="connect") == 1
    for args in (["--http1.1", "-X", "POST"], ["--http2-prior-knowledge", "-X", "POST"], ["--http1.1", "-I"]):
        status, headers, _ = curl(f"http://{master.address}/metrics", *args)
        assert status == 405 and headers.get("allow") == "GET", (args, status, headers)


def test_metrics_over_tls_with_alpn_h2_and_http1(tmp_path, request):
    pki = make_pki(tmp_path / "pki")
    from test_tls import start_tls
    srv = start_tls(tmp_path / "node", pki)
    try:
        ca = ["--cacert", str(pki / "ca.pem")]
        host = f"localhost:{srv.port}"
        h2 = scrape(host, *ca, "--http2", scheme="https")
        h1 = scrape(host, *ca, "--http1.1", scheme="https")
        assert families(h2) == families(h1)
        assert {"erdtree_lsn", "erdtree_rpc_duration_seconds", "erdtree_connections"} <= families(h2)
        promtool_check(h2)
        # Handshakes by result: the scrapes above completed theirs; a client trusting another CA
        # and a cleartext one fail theirs.
        before = samples(h1)
        untrusted = run([tool("curl"), "-sS", "--max-time", "10", "--cacert", str(pki / "other-ca.pem"),
                         f"https://{host}/healthz"])
        assert untrusted.returncode != 0
        cleartext = run([tool("curl"), "-sS", "--max-time", "10", f"http://{host}/healthz"])
        assert cleartext.returncode != 0 or b"SERVING" not in cleartext.stdout
        after = samples(scrape(host, *ca, "--http1.1", scheme="https"))
        ok = value(after, "erdtree_tls_handshakes_total", result="ok")
        assert ok == value(before, "erdtree_tls_handshakes_total", result="ok") + 1, "the last scrape's handshake"
        failed = value(after, "erdtree_tls_handshakes_total", result="failed")
        assert failed == value(before, "erdtree_tls_handshakes_total", result="failed") + 2
    finally:
        stop_server(srv, _failed(request.node))


def test_a_promoted_slave_counts_its_promotion(pb, tmp_path, request):
    master = start_server(tmp_path / "master")
    slave = start_server(tmp_path / "slave", role="slave", master={"address": master.address})
    try:
        assert value(samples(scrape(slave.address)), "erdtree_promotions_total") == 0
        assert value(samples(scrape(slave.address)), "erdtree_role", role="slave") == 1
        stop_server(master, False)
        with grpc.insecure_channel(slave.address) as channel:
            pb.kv_grpc.AdminStub(channel).Promote(pb.kv.PromoteRequest(), timeout=15)
        promoted = samples(scrape(slave.address))
        assert value(promoted, "erdtree_promotions_total") == 1
        assert value(promoted, "erdtree_role", role="master") == 1
        assert value(promoted, "erdtree_epoch") == 2
    finally:
        stop_server(slave, _failed(request.node))


def test_master_and_slave_pass_promtool_under_load_and_show_replication(pb, tmp_path, request):
    master = start_server(tmp_path / "master")
    slave = None
    stop = threading.Event()
    try:
        slave = start_server(tmp_path / "slave", role="slave",
                             master={"address": master.address, "sync_interval": "100ms"})

        def load():
            channel, stub = kv(pb, master.address)
            with channel:
                i = 0
                while not stop.is_set():
                    stub.Set(pb.kv.SetRequest(key=f"load-{i % 500}", value=b"x" * 64), timeout=10)
                    stub.Get(pb.kv.GetRequest(key=f"load-{i % 500}"), timeout=10)
                    i += 1

        writers = [threading.Thread(target=load) for _ in range(4)]
        for writer in writers:
            writer.start()
        time.sleep(1.0)
        master_body = scrape(master.address)
        slave_body = scrape(slave.address, "--http2-prior-knowledge")
        promtool_check(master_body)
        promtool_check(slave_body)
        on_master, on_slave = samples(master_body), samples(slave_body)
        assert value(on_master, "erdtree_replication_connected_slaves") == 1
        slave_series = [key for key in on_master if key[0] == "erdtree_replication_slave_lag_entries"]
        assert len(slave_series) == 1, slave_series
        (_, labels), = slave_series
        slave_id = dict(labels)["slave"]
        for name in ("erdtree_replication_slave_lag_seconds", "erdtree_replication_slave_acked_lsn"):
            assert (name, frozenset({("slave", slave_id)})) in on_master, name
        assert value(on_slave, "erdtree_role", role="slave") == 1
        assert ("erdtree_replication_lag_entries", frozenset()) in on_slave
        assert ("erdtree_replication_lag_seconds", frozenset()) in on_slave
        assert value(on_slave, "erdtree_replication_reconnects_total") == 0
        assert value(on_slave, "erdtree_replication_full_resyncs_total") == 0
        assert value(on_slave, "erdtree_lsn", kind="applied") > 0
    finally:
        stop.set()
        if slave:
            stop_server(slave, _failed(request.node))
        stop_server(master, _failed(request.node))


def auth(tmp_path: Path, metrics: str | None) -> tuple[dict, dict[str, str]]:
    tokens, entries = {}, []
    for role in ("read", "replication"):
        tokens[role] = issue_token()
        (tmp_path / f"{role}.token").write_text(tokens[role] + "\n")
        entries.append({"name": f"{role}-client", "role": role, "token_file": str(tmp_path / f"{role}.token")})
    section = {"tokens": entries}
    if metrics:
        section["metrics"] = metrics
    return section, tokens


def test_metrics_stay_open_by_default_when_tokens_are_on(tmp_path, request):
    section, _ = auth(tmp_path, None)
    srv = start_server(tmp_path / "node", auth=section)
    try:
        scrape(srv.address)
        scrape(srv.address, "--http2-prior-knowledge")
    finally:
        stop_server(srv, _failed(request.node))


def test_auth_metrics_token_wants_any_known_token(tmp_path, request):
    section, tokens = auth(tmp_path, "token")
    srv = start_server(tmp_path / "node", auth=section)
    try:
        url = f"http://{srv.address}/metrics"
        for transport in ("--http1.1", "--http2-prior-knowledge"):
            status, headers, _ = curl(url, transport)
            assert status == 401 and headers.get("www-authenticate") == "Bearer"
            status, _, _ = curl(url, transport, "-H", "authorization: Bearer not-a-known-token")
            assert status == 401
            for role, token in tokens.items():
                body = scrape(srv.address, transport, "-H", f"authorization: Bearer {token}")
                assert "erdtree_lsn" in body, role
    finally:
        stop_server(srv, _failed(request.node))


def test_an_unknown_auth_metrics_value_is_a_config_error_naming_the_key(tmp_path):
    from harness import node as harness
    from support import free_port
    section, _ = auth(tmp_path, "sometimes")
    proc = harness.launch(tmp_path / "node", free_port(), auth=section)
    assert proc.proc.wait(timeout=30) != 0
    assert "auth.metrics" in proc.log(), proc.log()


def test_a_slave_counts_its_reconnects(tmp_path, request):
    master = start_server(tmp_path / "master")
    slave = start_server(tmp_path / "slave", role="slave", master={"address": master.address, "sync_interval": "100ms"})
    try:
        assert value(samples(scrape(slave.address)), "erdtree_replication_reconnects_total") == 0
        stop_server(master, False)
        master = start_server(tmp_path / "master", port=master.port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            on_slave, on_master = samples(scrape(slave.address)), samples(scrape(master.address))
            if value(on_master, "erdtree_replication_connected_slaves") == 1 and \
                    value(on_slave, "erdtree_replication_reconnects_total") >= 1:
                break
            time.sleep(0.2)
        assert value(on_master, "erdtree_replication_connected_slaves") == 1
        assert value(on_slave, "erdtree_replication_reconnects_total") >= 1
    finally:
        stop_server(slave, _failed(request.node))
        stop_server(master, _failed(request.node))


def test_evictions_and_disk_reads_follow_max_entries(pb, tmp_path, request):
    srv = start_server(tmp_path / "node", storage={"max_entries": 100})
    try:
        channel, stub = kv(pb, srv.address)
        with channel:
            for i in range(300):
                stub.Set(pb.kv.SetRequest(key=f"k-{i}", value=b"v" * 32), timeout=10)
            parsed = samples(scrape(srv.address))
            resident = value(parsed, "erdtree_store_resident_values")
            assert resident <= 100
            assert value(parsed, "erdtree_store_evictions_total") == 300 - resident
            # Every key once: the evicted ones come back from the log.
            for i in range(300):
                assert stub.Get(pb.kv.GetRequest(key=f"k-{i}"), timeout=10).found
        assert value(samples(scrape(srv.address)), "erdtree_store_disk_reads_total") >= 200
    finally:
        stop_server(srv, _failed(request.node))
