"""The node's log as a collector reads it (`log.level`, `log.format: json`), and `erdtree status
--json` as a script reads it, both from the real binary."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import grpc
import pytest

from conftest import ERDTREE_BIN, _failed, start_server, stop_server, write_config
from harness.node import health_serving, port_accepts, wait_for
from support import free_port

JSON_LOG = {"log": {"format": "json", "level": "debug"}}
LEVELS = {"trace", "debug", "info", "notice", "warning", "error", "critical"}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ERDTREE_BIN), *args], capture_output=True, text=True, timeout=20,
                          stdin=subprocess.DEVNULL)


def json_lines(path: Path) -> list[dict]:
    """Every line of a node's log (its stdout and stderr together), each required to be one JSON
    object with the five fields of docs/configuration.md#log."""
    lines = path.read_text().splitlines()
    assert lines, f"{path} is empty"
    events = []
    for number, line in enumerate(lines, 1):
        try:
            event = json.loads(line)
        except json.JSONDecodeError as error:
            pytest.fail(f"{path.name}:{number} is not JSON ({error}): {line!r}")
        assert isinstance(event, dict), f"{path.name}:{number}: {line!r}"
        assert TIMESTAMP.fullmatch(event.get("timestamp", "")), f"{path.name}:{number}: {line!r}"
        stamp = datetime.fromisoformat(event["timestamp"])
        assert stamp.utcoffset().total_seconds() == 0
        assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 600, line
        assert event.get("level") in LEVELS, line
        assert isinstance(event.get("label"), str) and event["label"].startswith("erdtree."), line
        assert isinstance(event.get("message"), str) and event["message"], line
        assert isinstance(event.get("metadata"), dict), line
        events.append(event)
    return events


def logs_of(node) -> list[Path]:
    return sorted(node.workdir.glob("erdtree-*.log"))


def set_and_get(pb, address: str, prefix: str, count: int) -> None:
    with grpc.insecure_channel(address) as channel:
        kv = pb.kv_grpc.KVStoreStub(channel)
        for i in range(count):
            kv.Set(pb.kv.SetRequest(key=f"{prefix}-{i}", value=f"value \"{i}\"\n\u00e9".encode()), timeout=10)
            assert kv.Get(pb.kv.GetRequest(key=f"{prefix}-{i}"), timeout=10).found
        # Refused requests take the error paths too.
        assert not kv.Get(pb.kv.GetRequest(key="missing"), timeout=10).found
        with pytest.raises(grpc.RpcError):
            kv.Set(pb.kv.SetRequest(key="k" * 5000, value=b"v"), timeout=10)


def wait_until(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def status_json(address: str) -> dict:
    done = cli("status", "--json", "--server", address)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1, done.stdout
    return json.loads(done.stdout)


@pytest.mark.timeout(180)
def test_every_line_is_json_through_start_load_reconnect_and_shutdown(pb, tmp_path, request):
    master = start_server(tmp_path / "master", wal={"sync_interval": "always"}, **JSON_LOG)
    slave = start_server(tmp_path / "slave", role="slave", master={"address": master.address}, **JSON_LOG)
    nodes = [slave, master]
    try:
        set_and_get(pb, master.address, "before", 20)
        wait_until(lambda: status_json(slave.address)["last_lsn"] == 20, "the slave to apply 20 writes")

        # kill -9: the slave loses its stream, says so and redials until the master is back.
        master.kill()
        wait_until(lambda: "replication stream failed; redialling" in slave.log(), "the slave to redial")
        dials = slave.log().count("dialled the master")
        restarted = start_server(tmp_path / "master", port=master.port, wal={"sync_interval": "always"}, **JSON_LOG)
        nodes[1] = restarted
        set_and_get(pb, restarted.address, "after", 10)
        wait_until(lambda: slave.log().count("dialled the master") > dials, "the slave to dial the master again")
        wait_until(lambda: status_json(slave.address)["last_lsn"] == 30, "the slave to catch up")
    finally:
        for node in nodes:
            stop_server(node, _failed(request.node))

    master_events = [event for path in logs_of(master) for event in json_lines(path)]
    slave_events = json_lines(slave.log_path)
    messages = [event["message"] for event in master_events + slave_events]
    for expected in ("master serving", "first sync with the master complete", "dialled the master",
                     "received SIGTERM; draining", "node stopped"):
        assert any(expected in message for message in messages), f"no '{expected}' line"
    # A logged error keeps its fields as metadata.
    failed = [event for event in slave_events if event["message"] == "replication stream failed; redialling"]
    assert failed and failed[0]["level"] == "warning"
    assert {"status", "message", "retry_in"} <= failed[0]["metadata"].keys()
    assert {event["label"] for event in slave_events} == {"erdtree.slave"}


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [({"level": "verbose"}, "log.level", "verbose"), ({"format": "logfmt"}, "log.format", "logfmt")],
)
def test_an_unknown_log_level_or_format_stops_the_node_naming_the_key(tmp_path, section, key, value):
    config = tmp_path / "erdtree.yaml"
    write_config(config, free_port(), tmp_path / "wal", log=section)
    done = cli("master", "--config", str(config))
    assert done.returncode != 0
    assert f"invalid value '{value}' for '{key}'" in done.stderr, done.stderr
    assert not (tmp_path / "wal").exists(), "the node got as far as its log"


def run_until_serving_then_stop(tmp_path: Path, log: dict, *flags: str) -> str:
    """`erdtree master` with `log` and `flags`, stopped by SIGTERM once it serves; its output."""
    port = free_port()
    tmp_path.mkdir()
    config = tmp_path / "erdtree.yaml"
    write_config(config, port, tmp_path / "wal", log=log)
    output = tmp_path / "node.log"
    with open(output, "wb") as sink:
        proc = subprocess.Popen([str(ERDTREE_BIN), "master", "--config", str(config), *flags], cwd=tmp_path,
                                stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
    try:
        address = f"127.0.0.1:{port}"
        assert wait_for(proc, lambda: port_accepts("127.0.0.1", port) and health_serving(address), 20, 0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    return output.read_text()


def test_log_level_filters_and_the_flag_overrides_the_file(tmp_path):
    quiet = run_until_serving_then_stop(tmp_path / "quiet", {"level": "warning", "format": "json"})
    assert quiet == "", quiet
    loud = run_until_serving_then_stop(tmp_path / "loud", {"level": "warning", "format": "json"}, "--log-level", "info")
    events = [json.loads(line) for line in loud.splitlines()]
    assert any(event["message"].startswith("master serving") and event["level"] == "info" for event in events)
    text = run_until_serving_then_stop(tmp_path / "text", {"level": "info"})
    assert " info erdtree.master: " in text and not text.startswith("{"), text


# `erdtree status` labels and the StatusResponse fields they show.
TEXT_TO_JSON = {
    "epoch": "epoch", "version": "version", "replication id": "replication_id", "last lsn": "last_lsn",
    "applied lsn": "applied_lsn", "durable lsn": "durable_lsn", "keys": "keys", "resident values": "resident_values",
    "wal segments": "segments", "wal bytes": "disk_bytes", "wal dead bytes": "dead_bytes",
    "compactions": "compactions", "oldest streamable": "oldest_streamable_lsn",
    "expired reclaimed": "expired_reclaimed", "disk reads": "disk_reads", "divergent records": "divergent_records",
    "conns rejected": "connections_rejected", "conns abusive": "connections_closed_for_abuse",
    "refused (memory)": "requests_refused_for_memory",
}


def test_status_json_has_every_field_and_matches_the_text_view(pb, server):
    for i in range(7):
        assert cli("set", f"k{i}", "v", "--server", server.address).returncode == 0
    assert cli("set", "k0", "again", "--server", server.address).returncode == 0
    text = cli("status", "--server", server.address)
    assert text.returncode == 0, text.stderr
    shown = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in text.stdout.splitlines())}
    status = status_json(server.address)

    assert list(status) == [field.name for field in pb.kv.StatusResponse.DESCRIPTOR.fields]
    assert status["role"] == "ROLE_MASTER" and shown["role"] == "master"
    assert status["last_lsn"] == 8 and status["keys"] == 7
    assert status["memory_bytes"] == int(shown["memory (data)"].removesuffix(" bytes"))
    assert f"{status['lag_entries']} entries, {status['lag_ms']} ms" == shown["lag"]
    for label, name in TEXT_TO_JSON.items():
        assert str(status[name]) == shown[label], f"{label!r} shows {shown[label]!r}, --json {name}={status[name]!r}"

    # The same figures the RPC gives, field by field (uptime moves on between the calls).
    with grpc.insecure_channel(server.address) as channel:
        reply = pb.kv_grpc.AdminStub(channel).Status(pb.kv.StatusRequest(), timeout=10)
    for field in pb.kv.StatusResponse.DESCRIPTOR.fields:
        value = getattr(reply, field.name)
        if field.name == "role":
            value = pb.kv.Role.Name(value)
        if field.name != "uptime_ms":
            assert status[field.name] == value, field.name
