"""The `erdtree` command line as a user drives it: client subcommands against a
running master, and the master's refusal of bad configuration."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import pytest

from conftest import ERDTREE_BIN, start_server, write_config
from support import free_port


def cli(*args: str, timeout: float = 20, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ERDTREE_BIN), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        preexec_fn=preexec_fn,
    )


NOBODY = 65534


def as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_server_and_cli_work_for_an_unprivileged_user(pb, request):
    """The container runs as uid 10001: no socket option, file or port may need root (one
    did: a connection option that was SO_DEBUG made every connection fail for non-root)."""
    if os.geteuid() != 0:
        pytest.skip("the suite already runs unprivileged, so every other test covers this")
    # pytest's tmp_path is inside a directory only root may enter.
    workdir = Path(tempfile.mkdtemp(prefix="erdtree-nobody-"))
    request.addfinalizer(lambda: shutil.rmtree(workdir, ignore_errors=True))
    workdir.chmod(0o777)
    node = start_server(workdir, preexec_fn=as_nobody)
    request.addfinalizer(node.terminate)
    assert (workdir / "wal").stat().st_uid == NOBODY
    # The CLI as that user, and a client that is root: both sides of a connection unprivileged once.
    done = cli("set", "k", "v", "--server", node.address, preexec_fn=as_nobody)
    assert done.returncode == 0, done.stderr
    assert cli("get", "k", "--server", node.address, preexec_fn=as_nobody).stdout == "v\n"
    assert cli("health", "--server", node.address, preexec_fn=as_nobody).returncode == 0
    with grpc.insecure_channel(node.address) as channel:
        assert pb.kv_grpc.KVStoreStub(channel).Get(pb.kv.GetRequest(key="k"), timeout=10).value == b"v"


def test_set_get_del_through_the_cli(server):
    done = cli("set", "greeting", "hello world", "--server", server.address)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK lsn=")

    got = cli("get", "greeting", "--server", server.address)
    assert got.returncode == 0, got.stderr
    assert got.stdout == "hello world\n"

    deleted = cli("del", "greeting", "--server", server.address)
    assert deleted.returncode == 0 and deleted.stdout.startswith("deleted lsn=")

    missing = cli("get", "greeting", "--server", server.address)
    assert missing.returncode == 1
    assert "key 'greeting' not found" in missing.stderr

    again = cli("del", "greeting", "--server", server.address)
    assert again.returncode == 0 and again.stdout.strip() == "not found"


def test_set_with_ttl_expires(server):
    import time

    assert cli("set", "brief", "v", "--ttl", "300ms", "--server", server.address).returncode == 0
    assert cli("get", "brief", "--server", server.address).returncode == 0
    time.sleep(0.6)
    assert cli("get", "brief", "--server", server.address).returncode == 1


def test_bad_ttl_is_refused_before_connecting(server):
    done = cli("set", "k", "v", "--ttl", "soon", "--server", server.address)
    assert done.returncode != 0
    assert "--ttl" in done.stderr and "soon" in done.stderr


def test_health_reports_serving(server):
    done = cli("health", "--server", server.address)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "serving"


def test_server_errors_are_printed_with_code_and_message(server):
    done = cli("set", "k" * 4097, "v", "--server", server.address)
    assert done.returncode == 1
    assert "INVALID_ARGUMENT" in done.stderr and "4096" in done.stderr


def test_unreachable_server_is_a_clear_error():
    port = free_port()
    done = cli("get", "k", "--server", f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert f"cannot connect to 127.0.0.1:{port}" in done.stderr


def test_malformed_server_address_names_the_flag():
    done = cli("get", "k", "--server", "localhost")
    assert done.returncode != 0
    assert "--server" in done.stderr


def test_master_refuses_unknown_config_key_naming_it(tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("server:\n  prot: 8080\n")
    done = cli("master", "--config", str(config))
    assert done.returncode != 0
    assert "server.prot" in done.stderr


def test_master_refuses_bad_value_naming_the_key(tmp_path: Path):
    config = tmp_path / "bad.yaml"
    write_config(config, free_port(), tmp_path / "wal", wal={"sync_interval": "sometimes"})
    done = cli("master", "-config", str(config))
    assert done.returncode != 0
    assert "wal.sync_interval" in done.stderr


def test_master_refuses_a_key_that_is_a_list_at_once_naming_its_line(tmp_path: Path):
    # Duplicated keys that are lists nested 24 deep, one ending in a name and one in a mapping:
    # Yams' duplicate check compared such keys in time exponential in their depth, and a file of
    # this shape (found by the config fuzz harness) held a start for minutes. Every start, of six,
    # must refuse it at the first such key.
    nested = "- " * 24
    config = tmp_path / "keys.yaml"
    config.write_text("".join(f"? {nested}{tail}\n: 1\n" for tail in ["a", "{b: 1}"] * 2))
    for _ in range(6):
        done = cli("master", "--config", str(config), timeout=10)
        assert done.returncode != 0
        assert f"{config}:1: not valid YAML: a key must be a name, not a list" in done.stderr


def test_missing_config_file_is_named(tmp_path: Path):
    done = cli("master", "--config", str(tmp_path / "nope.yaml"))
    assert done.returncode != 0
    assert "nope.yaml" in done.stderr


def test_port_in_use_is_reported(server, tmp_path: Path):
    config = tmp_path / "clash.yaml"
    write_config(config, int(server.address.rsplit(":", 1)[1]), tmp_path / "wal")
    done = cli("master", "--config", str(config))
    assert done.returncode != 0
    assert "cannot listen on 127.0.0.1" in done.stderr


def test_status_reports_lsns_keys_and_wal(server):
    assert cli("set", "a", "1", "--server", server.address).returncode == 0
    assert cli("set", "b", "2", "--server", server.address).returncode == 0
    done = cli("status", "--server", server.address)
    assert done.returncode == 0, done.stderr
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    assert fields["role"] == "master"
    assert fields["last lsn"] == "2"
    assert fields["keys"] == "2"
    assert int(fields["wal segments"]) >= 1
    assert int(fields["wal bytes"]) > 0
    assert len(fields["replication id"]) == 32
    # Overwriting "a" left its first record dead on disk; nothing was compacted yet.
    assert fields["wal dead bytes"] == "0"
    assert cli("set", "a", "3", "--server", server.address).returncode == 0
    done = cli("status", "--server", server.address)
    fields = {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in done.stdout.splitlines() if ":" in l)}
    assert int(fields["wal dead bytes"]) > 0
    assert fields["compactions"] == "0"
    assert fields["last compaction"] == "never"
    assert fields["oldest streamable"] == "1"
    assert fields["disk reads"] == "0"


def test_expired_keys_leave_the_status_counts_without_being_read(server):
    import time

    for i in range(50):
        assert cli("set", f"ttl-{i}", "v", "--ttl", "200ms", "--server", server.address).returncode == 0
    deadline = time.monotonic() + 5
    while True:
        done = cli("status", "--server", server.address)
        fields = {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in done.stdout.splitlines() if ":" in l)}
        if fields.get("keys") == "0" and int(fields.get("expired reclaimed", "0")) >= 50:
            break
        assert time.monotonic() < deadline, f"expired keys still counted after 5 s:\n{done.stdout}"
        time.sleep(0.2)


def test_sigterm_during_startup_stops_the_node_gracefully(tmp_path):
    """A SIGTERM that arrives while the node is still replaying its log (a supervisor giving up,
    Ctrl-C) must stop it like any other: it starts, drains and exits 0. Its default action
    killed the process, which never got to close its log."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for bench/
    from bench import erdtree_wal

    if (reason := erdtree_wal.selftest()) is not None:
        pytest.skip(f"cannot write a WAL to replay: {reason}")
    wal = tmp_path / "wal"
    # Enough records that replaying them takes a while, so the signal lands during startup.
    erdtree_wal.write_segments(
        str(wal), ((f"key-{i}".encode(), b"v" * 100) for i in range(300_000)), segment_bytes=64 << 20)
    config = tmp_path / "erdtree.yaml"
    write_config(config, free_port(), wal)
    log_path = tmp_path / "erdtree.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(ERDTREE_BIN), "master", "--config", str(config)], cwd=tmp_path,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        # The first line comes from the log's recovery, after the CLI caught the signals.
        deadline = time.monotonic() + 20
        while log_path.stat().st_size == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text(errors="replace")
    assert code == 0, f"exit {code}; log:\n{text[-2000:]}"
    assert "received SIGTERM" in text and "stopped" in text, text[-2000:]
