"""`erdtree wal dump` and `erdtree wal verify` on the WAL of a real node: read while the node
runs, then on a copy with one byte flipped. The line formats are docs/wal-format.md's
("Inspecting a log")."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from conftest import ERDTREE_BIN, _failed, start_server, stop_server

# Small segments, so that the writes below span several and verify checks LSNs across files.
WAL = {"sync_interval": "1s", "max_file_size": "64KB"}
VALUE = b"v" * 2000
ODD_KEY = 'say "hi" \\ to  ключ'


def wal_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ERDTREE_BIN), "wal", *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def fields(line: str) -> dict[str, str]:
    """One dump or summary line as {name: value}; shlex undoes the key's quoting."""
    return dict(token.split("=", 1) for token in shlex.split(line) if "=" in token)


def dump(path: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """`wal dump PATH`, which must succeed: (file lines, record lines)."""
    done = wal_tool("dump", str(path))
    assert done.returncode == 0, f"dump exited {done.returncode}: {done.stderr}"
    lines = done.stdout.splitlines()
    return [fields(line) for line in lines if line.startswith("# file=")], [
        fields(line) for line in lines if line.startswith("lsn=")
    ]


@pytest.fixture
def node_with_writes(tmp_path, pb, request):
    """A master with a few hundred Sets (one with a TTL, one with an awkward key) and some
    Deletes; yields (server, wal directory, {lsn: (op, key)} as the node answered)."""
    srv = start_server(tmp_path / "node", wal=WAL)
    written: dict[int, tuple[str, str]] = {}
    try:
        with grpc.insecure_channel(srv.address) as channel:
            kv = pb.kv_grpc.KVStoreStub(channel)
            for index in range(200):
                key = f"user:{index}"
                written[kv.Set(pb.kv.SetRequest(key=key, value=VALUE), timeout=10).lsn] = ("set", key)
            lsn = kv.Set(pb.kv.SetRequest(key="session", value=b"x", ttl_ms=60_000), timeout=10).lsn
            written[lsn] = ("set", "session")
            written[kv.Set(pb.kv.SetRequest(key=ODD_KEY, value=b""), timeout=10).lsn] = ("set", ODD_KEY)
            for index in range(0, 200, 20):
                reply = kv.Delete(pb.kv.DeleteRequest(key=f"user:{index}"), timeout=10)
                assert reply.deleted
                written[reply.lsn] = ("delete", f"user:{index}")
        yield srv, srv.workdir / "wal", written
    finally:
        stop_server(srv, _failed(request.node))


def test_dump_and_verify_read_a_running_nodes_log(node_with_writes):
    srv, wal_dir, written = node_with_writes
    assert srv.alive()

    done = wal_tool("verify", str(wal_dir))
    assert done.returncode == 0, done.stderr
    summary = fields(done.stdout.strip())
    assert done.stdout.startswith("ok "), done.stdout
    assert int(summary["records"]) == len(written)
    assert (int(summary["first_lsn"]), int(summary["last_lsn"])) == (1, max(written))
    assert int(summary["files"]) >= 3, summary
    assert summary["epochs"] == "none" and summary["compacted_files"] == "0"

    files, records = dump(wal_dir)
    assert len(files) == int(summary["files"])
    assert [int(f["first_lsn"]) for f in files] == sorted(int(f["first_lsn"]) for f in files)
    assert len({f["replication_id"] for f in files}) == 1
    assert [int(r["lsn"]) for r in records] == list(range(1, max(written) + 1))
    dumped = {int(r["lsn"]): (r["op"], r["key"]) for r in records}
    assert dumped == written
    by_key = {r["key"]: r for r in records if r["op"] == "set"}
    assert by_key["user:1"]["value_bytes"] == str(len(VALUE)) and by_key["user:1"]["expires_at_ms"] == "0"
    assert int(by_key["session"]["expires_at_ms"]) > int(by_key["session"]["timestamp_ms"])
    assert by_key[ODD_KEY]["value_bytes"] == "0"

    # One segment on its own reads the same records.
    first = Path(files[0]["file"])
    _, alone = dump(first)
    assert alone == [r for r in records if int(r["lsn"]) < int(files[1]["first_lsn"])]
    assert wal_tool("verify", str(first)).returncode == 0


def test_verify_names_the_file_and_offset_of_a_flipped_byte(node_with_writes, tmp_path):
    _, wal_dir, written = node_with_writes
    copy = tmp_path / "copy"
    shutil.copytree(wal_dir, copy)
    files, records = dump(copy)
    damaged = Path(files[1]["file"])
    victim = next(r for r in records if int(r["lsn"]) == int(files[1]["first_lsn"]) + 2)
    offset = int(victim["offset"])
    with open(damaged, "r+b") as segment:
        segment.seek(offset + 20)  # inside the timestamp
        byte = segment.read(1)
        segment.seek(offset + 20)
        segment.write(bytes([byte[0] ^ 0x01]))
    before = damaged.read_bytes()

    done = wal_tool("verify", str(copy))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    message = done.stderr.strip()
    assert message.startswith(f"wal verify: {damaged}: offset {offset} (after LSN {int(victim['lsn']) - 1}): "), message
    assert "checksum mismatch" in message and "sealed segment" in message, message
    assert damaged.read_bytes() == before, "verify must not change the file"

    # dump reports the same problem, goes on with the next segment, and exits 1.
    dumped = wal_tool("dump", str(copy))
    assert dumped.returncode == 1
    assert f"{damaged}: offset {offset}" in dumped.stderr
    assert f"lsn={max(written)} " in dumped.stdout

    # The node's own directory is untouched and still verifies.
    assert wal_tool("verify", str(wal_dir)).returncode == 0
