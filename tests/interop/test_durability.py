"""Durability of the master's write-ahead log, checked from outside the process.

Every test drives the real `erdtree master` through grpcio and then does to its
WAL directory what a crash, a torn write or a bad disk would: `kill -9` under
load, truncating the newest segment, flipping a byte in a sealed segment,
running out of file size (RLIMIT_FSIZE). What is checked is what a user relies
on: every acknowledged write comes back after a restart with its acknowledged
value and LSN, nothing that was never sent (or that failed) appears, and damage
the node cannot repair stops it with a message naming the segment.

Select these with `pytest tests/interop -k durability`.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from conftest import ERDTREE_BIN, ErdtreeServer, _failed, start_server, stop_server, write_config
from support import free_port

RPC_TIMEOUT_S = 10
# The brief allows ~10 s for a refused start; a busy shared machine gets slack.
REFUSED_START_TIMEOUT_S = 15
SEGMENT_NAME = re.compile(r"^\d{20}\.log$")
SEGMENT_MAGIC = b"ERDTWAL1"


# --------------------------------------------------------------------------
# Nodes, restarts and the WAL directory
# --------------------------------------------------------------------------


class Nodes:
    """Starts masters in one work directory (so they share its WAL) and never leaks one."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.started: list[ErdtreeServer] = []

    @property
    def wal_dir(self) -> Path:
        # conftest.start_server puts the WAL under <workdir>/wal.
        return self.workdir / "wal"

    def start(self, preexec_fn=None, **wal) -> ErdtreeServer:
        srv = start_server(self.workdir, preexec_fn=preexec_fn, wal=wal)
        self.started.append(srv)
        return srv

    def stop(self, srv: ErdtreeServer) -> None:
        """SIGTERM and require a clean exit (status 0)."""
        stop_server(srv, test_failed=False)

    def start_refused(self, timeout: float = REFUSED_START_TIMEOUT_S, **wal) -> tuple[int, str]:
        """Start a master that is expected to refuse to start; returns (exit code, output)."""
        config = self.workdir / "erdtree-refused.yaml"
        write_config(config, free_port(), self.wal_dir, wal=wal)
        proc = subprocess.Popen(
            [str(ERDTREE_BIN), "master", "--config", str(config)],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=5)
            pytest.fail(
                f"erdtree master was still running {timeout}s after start on a corrupt WAL "
                f"(expected it to refuse to start); output:\n{(out + err).decode(errors='replace')[-4000:]}"
            )
        return proc.returncode, (err + out).decode(errors="replace")

    def close(self, failed: bool) -> None:
        for srv in self.started:
            if srv.alive():
                srv.kill()
        if failed:
            for srv in self.started:
                print(f"--- erdtree log {srv.log_path.name} ({srv.address}) ---\n{srv.log_tail(60)}")


@pytest.fixture
def nodes(tmp_path, request):
    n = Nodes(tmp_path / "node")
    try:
        yield n
    finally:
        n.close(failed=_failed(request.node))


def segments(wal_dir: Path) -> list[Path]:
    """The WAL segments, oldest first (names are zero-padded first LSNs)."""
    if not wal_dir.is_dir():
        return []
    return sorted(p for p in wal_dir.iterdir() if SEGMENT_NAME.match(p.name))


def newest_segment_size(wal_dir: Path) -> tuple[str, int]:
    segs = segments(wal_dir)
    assert segs, f"no *.log segment in {wal_dir}: {sorted(os.listdir(wal_dir)) if wal_dir.is_dir() else 'missing'}"
    return segs[-1].name, segs[-1].stat().st_size


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def stub(pb, srv: ErdtreeServer):
    channel = grpc.insecure_channel(srv.address)
    return channel, pb.kv_grpc.KVStoreStub(channel)


def set_(pb, kv, key: str, value: bytes, ttl_ms: int = 0) -> int:
    return kv.Set(pb.kv.SetRequest(key=key, value=value, ttl_ms=ttl_ms), timeout=RPC_TIMEOUT_S).lsn


def get(pb, kv, key: str):
    return kv.Get(pb.kv.GetRequest(key=key), timeout=RPC_TIMEOUT_S)


def all_updates(pb, kv, page: int = 0) -> tuple[list, int]:
    """Every entry GetUpdates returns from since_lsn=0, paging until master_lsn."""
    entries: list = []
    since = 0
    master_lsn = None
    for _ in range(100_000):
        reply = kv.GetUpdates(pb.kv.GetUpdatesRequest(since_lsn=since, limit=page), timeout=RPC_TIMEOUT_S)
        assert not reply.resync_required, f"resync_required from since_lsn={since} (master_lsn={reply.master_lsn})"
        master_lsn = reply.master_lsn
        if not reply.entries:
            assert since >= master_lsn, f"empty page at since_lsn={since} but master_lsn={master_lsn}"
            return entries, master_lsn
        if page:
            assert len(reply.entries) <= page, f"limit={page} but got {len(reply.entries)} entries"
        entries.extend(reply.entries)
        since = reply.entries[-1].lsn
        if since >= master_lsn:
            return entries, master_lsn
    pytest.fail("GetUpdates paging did not reach master_lsn")


def assert_gapless(entries, master_lsn: int) -> None:
    lsns = [e.lsn for e in entries]
    assert lsns == list(range(1, master_lsn + 1)), (
        f"GetUpdates(since=0) must return LSNs 1..{master_lsn} in order without gaps; "
        f"got {len(lsns)} entries: {lsns[:10]}...{lsns[-10:]}"
    )


# --------------------------------------------------------------------------
# 1, 2. kill -9 under concurrent load
# --------------------------------------------------------------------------


@dataclass
class Op:
    key: str
    value: bytes | None  # None: a Delete
    status: str = "sent"  # sent -> acked | unknown
    lsn: int = 0


@dataclass
class Writer:
    """One client thread writing its own keys, one call at a time, recording every outcome."""

    n: int
    ops: list[Op] = field(default_factory=list)
    error: str = ""

    def keys(self) -> set[str]:
        return {op.key for op in self.ops}


KEYS_PER_WRITER = 12


def run_writer(pb, address: str, writer: Writer, stop: threading.Event, acked: list[int]) -> None:
    # Own channel: one HTTP/2 connection per writer, as separate clients would have.
    with grpc.insecure_channel(address) as channel:
        kv = pb.kv_grpc.KVStoreStub(channel)
        live: set[str] = set()
        seq = 0
        while not stop.is_set():
            key = f"w{writer.n}/k{seq % KEYS_PER_WRITER}"
            # Every 7th op deletes a key this writer has set, so Deletes are logged too.
            if seq % 7 == 6 and key in live:
                op = Op(key, None)
            else:
                op = Op(key, f"{key}|seq={seq}|".encode() + bytes([65 + seq % 26]) * (seq % 50))
            writer.ops.append(op)
            try:
                if op.value is None:
                    reply = kv.Delete(pb.kv.DeleteRequest(key=key), timeout=RPC_TIMEOUT_S)
                    if not reply.deleted:
                        writer.error = f"Delete({key}) of a key this writer had set answered deleted=false"
                        op.status = "unknown"
                        return
                    live.discard(key)
                else:
                    reply = kv.Set(pb.kv.SetRequest(key=key, value=op.value), timeout=RPC_TIMEOUT_S)
                    live.add(key)
            except grpc.RpcError:
                # The server is gone (or going): this write may or may not be in the log.
                op.status = "unknown"
                return
            op.status, op.lsn = "acked", reply.lsn
            acked[writer.n] += 1
            seq += 1


def crash_under_load(pb, nodes: Nodes, sync_interval: str) -> None:
    # Small segments, so the crash also lands on or near a rotation.
    wal = {"sync_interval": sync_interval, "max_file_size": "64KB"}
    srv = nodes.start(**wal)
    writers = [Writer(n) for n in range(8)]
    acked = [0] * len(writers)
    stop = threading.Event()
    threads = [
        threading.Thread(target=run_writer, args=(pb, srv.address, w, stop, acked), daemon=True) for w in writers
    ]
    for t in threads:
        t.start()
    # Kill while every writer still has calls in flight: after ~1 s or enough acks,
    # whichever comes first, but never before some writes were acknowledged.
    started = time.monotonic()
    while True:
        total, elapsed = sum(acked), time.monotonic() - started
        if total >= 20_000 or (elapsed >= 1.0 and total >= 40):
            break
        if elapsed > 20 or not all(t.is_alive() for t in threads):
            stop.set()
            pytest.fail(f"only {total} writes acknowledged in {elapsed:.1f}s; writer errors: "
                        f"{[w.error for w in writers if w.error]}; log:\n{srv.log_tail()}")
        time.sleep(0.01)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=RPC_TIMEOUT_S + 5)
    assert not any(t.is_alive() for t in threads), "a writer thread hung after the server was killed"
    assert not [w.error for w in writers if w.error], [w.error for w in writers if w.error]
    acks = [op for w in writers for op in w.ops if op.status == "acked"]
    assert len(acks) >= 40

    unknown = [op for w in writers for op in w.ops if op.status == "unknown"]
    print(f"kill -9 after {len(acks)} acknowledged writes, {len(unknown)} in flight, "
          f"{len(segments(nodes.wal_dir))} segments")

    srv2 = nodes.start(**wal)
    channel, kv = stub(pb, srv2)
    with channel:
        # The log after recovery: gapless, and made only of writes that were sent.
        entries, master_lsn = all_updates(pb, kv)
        assert_gapless(entries, master_lsn)
        max_acked = max(op.lsn for op in acks)
        assert master_lsn >= max_acked, f"master_lsn {master_lsn} after restart < highest acknowledged LSN {max_acked}"
        sent_sets = {(op.key, op.value) for w in writers for op in w.ops if op.value is not None}
        sent_deletes = {op.key for w in writers for op in w.ops if op.value is None}
        by_lsn = {e.lsn: e for e in entries}
        assert len(entries) <= len(acks) + len(unknown), (
            f"{len(entries)} entries after restart, but only {len(acks)} writes were acknowledged "
            f"and {len(unknown)} were in flight"
        )
        set_entries = [(e.key, e.value) for e in entries if e.op == pb.kv.OP_SET]
        assert len(set_entries) == len(set(set_entries)), "a Set appears twice in the log"
        for e in entries:
            if e.op == pb.kv.OP_SET:
                assert (e.key, e.value) in sent_sets, f"entry lsn={e.lsn} sets {e.key!r}={e.value!r}, never sent"
            else:
                assert e.op == pb.kv.OP_DELETE, f"entry lsn={e.lsn} has op {e.op}"
                assert e.key in sent_deletes, f"entry lsn={e.lsn} deletes {e.key!r}, never sent"

        # Every acknowledged write is in the log under its acknowledged LSN.
        for op in acks:
            e = by_lsn.get(op.lsn)
            assert e is not None, (
                f"acknowledged write {op.key!r} lsn={op.lsn} missing after kill -9 (master_lsn={master_lsn})"
            )
            want_op = pb.kv.OP_DELETE if op.value is None else pb.kv.OP_SET
            assert (e.key, e.op) == (op.key, want_op), (
                f"lsn={op.lsn}: acked {op.key!r} op={want_op}, log has {e.key!r} op={e.op}"
            )
            if op.value is not None:
                assert e.value == op.value, f"lsn={op.lsn} {op.key!r}: acked {op.value!r}, log has {e.value!r}"

        # Each key holds its last acknowledged value, or a later one that was in flight.
        for w in writers:
            assert sum(op.status == "unknown" for op in w.ops) <= 1
            for key in sorted(w.keys()):
                ops = [op for op in w.ops if op.key == key]
                last_ack = max((i for i, op in enumerate(ops) if op.status == "acked"), default=None)
                if last_ack is None:
                    allowed = [None] + [op.value for op in ops]
                else:
                    allowed = [op.value for op in ops[last_ack:]]
                got = get(pb, kv, key)
                value = got.value if got.found else None
                assert value in allowed, (
                    f"{key!r} after kill -9 ({sync_interval}) is {value!r}; allowed (last acked first): {allowed!r}"
                )
                if last_ack is not None and ops[last_ack].value is not None and value == ops[last_ack].value:
                    assert got.lsn == ops[last_ack].lsn, f"{key!r}: acked lsn {ops[last_ack].lsn}, Get says {got.lsn}"

        print(f"after restart: master_lsn={master_lsn}, {master_lsn - max_acked} past the last acknowledged LSN")

        # LSNs continue after the crash.
        lsn = set_(pb, kv, "after-crash", b"x")
        assert lsn > master_lsn
    nodes.stop(srv2)


@pytest.mark.timeout(90)
def test_kill9_under_load_loses_no_acknowledged_write_with_sync_always(pb, nodes):
    crash_under_load(pb, nodes, "always")


@pytest.mark.timeout(90)
def test_kill9_under_load_loses_no_acknowledged_write_with_sync_every_second(pb, nodes):
    # A process crash leaves written bytes in the kernel: only power loss may lose the last interval.
    crash_under_load(pb, nodes, "1s")


# --------------------------------------------------------------------------
# 3. Restart continuity
# --------------------------------------------------------------------------


def test_restart_keeps_values_deletes_ttls_and_continues_lsns(pb, nodes):
    srv = nodes.start(sync_interval="1s")
    written: list[tuple[int, str, bytes | None, int]] = []  # lsn, key, value (None: delete), expires_at_ms
    channel, kv = stub(pb, srv)
    with channel:
        for i in range(20):
            value = f"value-{i}".encode() * (i + 1)
            lsn = set_(pb, kv, f"k{i:02d}", value)
            written.append((lsn, f"k{i:02d}", value, 0))
        ttl_lsn = set_(pb, kv, "with-ttl", b"expires-later", ttl_ms=3_600_000)
        expires_at = get(pb, kv, "with-ttl").expires_at_ms
        assert expires_at > 0
        written.append((ttl_lsn, "with-ttl", b"expires-later", expires_at))
        for i in (3, 7, 11):
            reply = kv.Delete(pb.kv.DeleteRequest(key=f"k{i:02d}"), timeout=RPC_TIMEOUT_S)
            assert reply.deleted
            written.append((reply.lsn, f"k{i:02d}", None, 0))
        overwritten = set_(pb, kv, "k05", b"second value")
        written.append((overwritten, "k05", b"second value", 0))
    nodes.stop(srv)

    srv = nodes.start(sync_interval="1s")
    channel, kv = stub(pb, srv)
    with channel:
        for i in range(20):
            got = get(pb, kv, f"k{i:02d}")
            if i in (3, 7, 11):
                assert not got.found, f"k{i:02d} was deleted before the restart but is back"
            elif i == 5:
                assert (got.found, got.value, got.lsn) == (True, b"second value", overwritten)
            else:
                lsn = next(w[0] for w in written if w[1] == f"k{i:02d}")
                assert (got.found, got.value, got.lsn) == (True, f"value-{i}".encode() * (i + 1), lsn)
        got = get(pb, kv, "with-ttl")
        assert (got.found, got.value, got.lsn, got.expires_at_ms) == (True, b"expires-later", ttl_lsn, expires_at)

        last_before = max(w[0] for w in written)
        more = []
        for i in range(10):
            lsn = set_(pb, kv, f"after-{i}", f"after-{i}".encode())
            more.append((lsn, f"after-{i}", f"after-{i}".encode(), 0))
        lsns = [w[0] for w in written + more]
        assert all(a < b for a, b in zip(lsns, lsns[1:])), f"LSNs must strictly increase across the restart: {lsns}"
        assert more[0][0] > last_before

        entries, master_lsn = all_updates(pb, kv)
        assert master_lsn == more[-1][0]
        assert_gapless(entries, master_lsn)
        assert [(e.lsn, e.key, e.value if e.op == pb.kv.OP_SET else None, e.expires_at_ms) for e in entries] == [
            (lsn, key, value, exp) for lsn, key, value, exp in written + more
        ]
        assert [e.op for e in entries] == [pb.kv.OP_DELETE if w[2] is None else pb.kv.OP_SET for w in written + more]
    nodes.stop(srv)


@pytest.mark.parametrize("sync_interval", ["always", "1s"])
def test_acknowledged_write_is_in_the_segment_file_before_the_answer(pb, nodes, sync_interval):
    # With "1s" the bytes may not be fsynced yet, but they must have been written
    # (a process crash right after the answer must not lose them).
    srv = nodes.start(sync_interval=sync_interval)
    channel, kv = stub(pb, srv)
    with channel:
        for i in range(20):
            value = f"in-the-file-before-the-answer-{i}-".encode() + os.urandom(8).hex().encode()
            lsn = set_(pb, kv, f"f{i}", value)
            on_disk = b"".join(p.read_bytes() for p in segments(nodes.wal_dir))
            assert value in on_disk, f"Set f{i} (lsn={lsn}) was acknowledged before its value reached the WAL files"
            if i % 5 == 4:
                kv.Delete(pb.kv.DeleteRequest(key=f"f{i}"), timeout=RPC_TIMEOUT_S)
    nodes.stop(srv)


# --------------------------------------------------------------------------
# 4. Segment rotation
# --------------------------------------------------------------------------

MAX_FILE_SIZE = 64 * 1024


def fill_segments(
    pb, kv, wal_dir: Path, count: int, value_bytes: int, prefix: str = "r"
) -> list[tuple[str, bytes, int, str, int]]:
    """Set `count` keys with distinct values; returns (key, value, lsn, newest segment, its size) per write."""
    out = []
    for i in range(count):
        key = f"{prefix}{i:04d}"
        value = (f"<{key}:" + "x" * value_bytes)[: value_bytes - 1].encode() + b">"
        lsn = set_(pb, kv, key, value)
        name, size = newest_segment_size(wal_dir)
        out.append((key, value, lsn, name, size))
    return out


def segment_of_each(writes, segs: list[Path]) -> list[str]:
    """The name of the one segment holding each write's value bytes."""
    contents = [(p.name, p.read_bytes()) for p in segs]
    homes = []
    for key, value, lsn, _, _ in writes:
        found = [name for name, data in contents if value in data]
        assert len(found) == 1, f"value of {key} (lsn={lsn}) found in {found or 'no segment'}"
        homes.append(found[0])
    return homes


def test_rotation_makes_several_segments_and_restart_recovers_all(pb, nodes):
    srv = nodes.start(sync_interval="1s", max_file_size="64KB")
    channel, kv = stub(pb, srv)
    with channel:
        writes = fill_segments(pb, kv, nodes.wal_dir, 300, 1000)
    nodes.stop(srv)

    segs = segments(nodes.wal_dir)
    names = [p.name for p in segs]
    assert len(segs) >= 3, f"300 × 1KB with max_file_size 64KB should make several segments, found {names}"
    assert names[0] == "00000000000000000001.log", names
    firsts = [int(p.stem) for p in segs]
    assert firsts == sorted(set(firsts)), names
    lsn_by_key = {key: lsn for key, _, lsn, _, _ in writes}
    for p in segs:
        head = p.read_bytes()[: len(SEGMENT_MAGIC)]
        assert head == SEGMENT_MAGIC, f"{p.name} starts with {head!r}, expected {SEGMENT_MAGIC!r}"
    for p in segs[:-1]:
        # Sealed at max_file_size: never larger than the limit plus one ~1KB record.
        assert p.stat().st_size <= MAX_FILE_SIZE + 2048, f"{p.name} is {p.stat().st_size} bytes"
    # A segment is named after the first LSN it holds.
    homes = segment_of_each(writes, segs)
    for (key, _, lsn, _, _), home in zip(writes, homes):
        i = names.index(home)
        upper = firsts[i + 1] if i + 1 < len(firsts) else None
        assert firsts[i] <= lsn and (upper is None or lsn < upper), f"{key} lsn={lsn} is in {home}; segments {names}"
    for first in firsts:
        assert any(w[2] == first for w in writes), f"segment {first:020d}.log names an LSN nobody was given"

    srv = nodes.start(sync_interval="1s", max_file_size="64KB")
    channel, kv = stub(pb, srv)
    with channel:
        for key, value, lsn, _, _ in writes:
            got = get(pb, kv, key)
            assert (got.found, got.value, got.lsn) == (True, value, lsn), f"{key} after restart"
        # Paging through sealed and active segments gives the whole log in order.
        entries, master_lsn = all_updates(pb, kv, page=37)
        assert_gapless(entries, master_lsn)
        assert [(e.key, e.value, e.lsn) for e in entries] == [(k, v, lsn_by_key[k]) for k, v, *_ in writes]
        lsn = set_(pb, kv, "after-restart", b"y")
        assert lsn == master_lsn + 1
    nodes.stop(srv)


# --------------------------------------------------------------------------
# 5. Torn tail of the newest segment
# --------------------------------------------------------------------------


# damage: a number of bytes cut off the end; "header" leaves only 3 bytes of the
# last record (a short record header); "checksum" flips a byte inside the last
# record's value (a CRC-bad record at the end of the newest segment is torn too).
@pytest.mark.parametrize("damage", [1, 9, "header", "checksum"])
def test_torn_newest_segment_is_truncated_and_logged_then_writes_continue(pb, nodes, damage):
    srv = nodes.start(sync_interval="1s")
    channel, kv = stub(pb, srv)
    with channel:
        writes = fill_segments(pb, kv, nodes.wal_dir, 40, 120, prefix="t")
    nodes.stop(srv)

    seg = segments(nodes.wal_dir)[-1]
    size_at_stop = seg.stat().st_size
    last_record_start, last_record_end = writes[-2][4], writes[-1][4]
    no_trailer = size_at_stop == last_record_end and last_record_start < last_record_end
    if damage == "checksum":
        cut = 0
        corrupt_value_of(writes[-1], nodes.wal_dir)
    else:
        cut = damage
        if damage == "header":
            assert no_trailer, f"{seg.name} grew by more than the last record on stop: cannot aim at its header"
            cut = size_at_stop - last_record_start - 3
        os.truncate(seg, size_at_stop - cut)

    srv = nodes.start(sync_interval="1s")
    log = srv.log()
    assert seg.name in log, f"no warning naming the torn segment {seg.name}; log:\n{srv.log_tail()}"
    if no_trailer:
        # The torn record starts where the previous write ended.
        assert str(last_record_start) in log or str(size_at_stop - cut) in log, (
            f"the warning should name the offset (record at {last_record_start}, file cut to "
            f"{size_at_stop - cut}); log:\n{srv.log_tail()}"
        )
    channel, kv = stub(pb, srv)
    with channel:
        for key, value, lsn, _, _ in writes[:-1]:
            got = get(pb, kv, key)
            assert (got.found, got.value, got.lsn) == (True, value, lsn), f"{key} before the torn record"
        last_key, last_value = writes[-1][0], writes[-1][1]
        got = get(pb, kv, last_key)
        if no_trailer:
            assert not got.found, f"{last_key} was in the torn record but reads {got.value!r}"
        else:
            assert not got.found or got.value == last_value
        entries, master_lsn = all_updates(pb, kv)
        assert_gapless(entries, master_lsn)
        new_lsn = set_(pb, kv, "after-tear", b"z")
        assert new_lsn > master_lsn
        assert new_lsn > writes[-2][2]
    nodes.stop(srv)

    # Writing after the repair must not have left the torn bytes in the middle.
    srv = nodes.start(sync_interval="1s")
    channel, kv = stub(pb, srv)
    with channel:
        for key, value, lsn, _, _ in writes[:-1]:
            assert get(pb, kv, key).value == value
        got = get(pb, kv, "after-tear")
        assert (got.found, got.value, got.lsn) == (True, b"z", new_lsn)
        entries, master_lsn = all_updates(pb, kv)
        assert_gapless(entries, master_lsn)
        assert master_lsn == new_lsn
    nodes.stop(srv)


# --------------------------------------------------------------------------
# 6. Corruption refuses to start
# --------------------------------------------------------------------------


def corrupt_value_of(write, wal_dir: Path) -> tuple[Path, int, bytes]:
    """Flip a byte inside one write's value bytes in its segment; returns the file, offset and original bytes."""
    key, value, lsn, _, _ = write
    (name,) = segment_of_each([write], segments(wal_dir))
    seg = wal_dir / name
    data = seg.read_bytes()
    at = data.find(value)
    assert at >= 0, f"value of {key} (lsn={lsn}) not found verbatim in {name}"
    assert data.find(value, at + 1) < 0
    offset = at + len(value) // 2
    flip_byte(seg, offset)
    return seg, offset, data


def assert_refused(nodes: Nodes, seg: Path, write, offsets: list[int], wal: dict) -> None:
    before = {p.name: p.read_bytes() for p in segments(nodes.wal_dir)}
    started = time.monotonic()
    code, output = nodes.start_refused(**wal)
    elapsed = time.monotonic() - started
    shown = output[-3000:]
    assert code != 0, f"erdtree master exited 0 on a corrupt {seg.name} (after {elapsed:.1f}s); output:\n{shown}"
    assert code > 0, f"erdtree master died of signal {-code} on a corrupt {seg.name} instead of refusing:\n{shown}"
    assert seg.name in output, f"the refusal does not name the corrupt segment {seg.name}:\n{output[-3000:]}"
    key, _, lsn, _, _ = write
    assert str(lsn) in output or any(str(o) in output for o in offsets), (
        f"the refusal names neither the LSN {lsn} nor the offset ({offsets}) of the bad record:\n{output[-3000:]}"
    )
    after = {p.name: p.read_bytes() for p in segments(nodes.wal_dir)}
    assert after == before, "a refused start must leave every segment as it was (never silently drop data)"


@pytest.mark.parametrize("target", ["record", "header"])
def test_corrupt_sealed_segment_refuses_to_start_naming_the_file(pb, nodes, target):
    wal = {"sync_interval": "1s", "max_file_size": "64KB"}
    srv = nodes.start(**wal)
    channel, kv = stub(pb, srv)
    with channel:
        writes = fill_segments(pb, kv, nodes.wal_dir, 200, 1000, prefix="c")
    nodes.stop(srv)
    segs = segments(nodes.wal_dir)
    assert len(segs) >= 3, [p.name for p in segs]
    if target == "header":
        # The segment magic ("ERDTWAL1") of the first segment.
        flip_byte(segs[0], 3)
        assert_refused(nodes, segs[0], writes[0], [0, 3], wal)
        return
    in_first = [w for w, home in zip(writes, segment_of_each(writes, segs)) if home == segs[0].name]
    middle = len(in_first) // 2
    victim = in_first[middle]
    seg, offset, _ = corrupt_value_of(victim, nodes.wal_dir)
    # The record starts where the previous write left the file (offsets of the
    # record and of the flipped byte are both fine in the message).
    assert_refused(nodes, seg, victim, [in_first[middle - 1][4], offset], wal)


def test_missing_middle_segment_refuses_to_start(pb, nodes):
    # A gap in the LSNs is lost data: starting anyway would drop it silently.
    wal = {"sync_interval": "1s", "max_file_size": "64KB"}
    srv = nodes.start(**wal)
    channel, kv = stub(pb, srv)
    with channel:
        fill_segments(pb, kv, nodes.wal_dir, 200, 1000, prefix="g")
    nodes.stop(srv)
    segs = segments(nodes.wal_dir)
    assert len(segs) >= 3, [p.name for p in segs]
    segs[1].unlink()
    before = {p.name: p.read_bytes() for p in segments(nodes.wal_dir)}
    code, output = nodes.start_refused(**wal)
    assert code != 0, f"erdtree master started with {segs[1].name} missing; output:\n{output[-3000:]}"
    assert code > 0, f"erdtree master died of signal {-code} instead of refusing:\n{output[-3000:]}"
    assert any(p.name in output for p in segs[:3]) or str(int(segs[1].stem)) in output, (
        f"the refusal should say where the gap is ({segs[1].name} is missing):\n{output[-3000:]}"
    )
    assert {p.name: p.read_bytes() for p in segments(nodes.wal_dir)} == before


# Record layout (docs/wal-format.md): crc:u32 length:u32 then the payload, which
# starts with lsn:u64; all little-endian. The CRC covers the length and payload.
RECORD_FIELDS = {"crc": 0, "length_low_byte": 4, "length_high_byte": 7, "lsn": 8}


@pytest.mark.parametrize("target", ["value", *RECORD_FIELDS])
def test_corrupt_record_mid_newest_segment_refuses_to_start(pb, nodes, target):
    wal = {"sync_interval": "1s"}
    srv = nodes.start(**wal)
    channel, kv = stub(pb, srv)
    with channel:
        writes = fill_segments(pb, kv, nodes.wal_dir, 100, 200, prefix="m")
    nodes.stop(srv)
    assert len(segments(nodes.wal_dir)) == 1
    # Valid records follow this one, so it cannot be taken for a torn tail.
    victim = writes[50]
    if target == "value":
        seg, flipped, _ = corrupt_value_of(victim, nodes.wal_dir)
        offsets = [writes[49][4], flipped]
    else:
        seg = nodes.wal_dir / victim[3]
        # The record starts where the previous write left the file.
        start = writes[49][4]
        data = seg.read_bytes()
        lsn_there = int.from_bytes(data[start + 8 : start + 16], "little")
        assert lsn_there == victim[2], (
            f"expected the record of lsn={victim[2]} at offset {start} of {seg.name}, found lsn {lsn_there} "
            "(did the record layout in docs/wal-format.md change?)"
        )
        offset = start + RECORD_FIELDS[target]
        flip_byte(seg, offset)
        offsets = [start, offset]
    assert_refused(nodes, seg, victim, offsets, wal)


# --------------------------------------------------------------------------
# 7. Disk full (RLIMIT_FSIZE)
# --------------------------------------------------------------------------

FSIZE_LIMIT = 40 * 1024


def limit_file_size() -> None:
    # In the child before exec: writes past the limit fail with EFBIG instead of
    # the default SIGXFSZ killing the process (SIG_IGN survives exec).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def test_disk_full_fails_writes_unavailable_and_keeps_serving_reads(pb, nodes):
    wal = {"sync_interval": "always", "max_file_size": "1MB"}
    srv = nodes.start(preexec_fn=limit_file_size, **wal)
    acked: dict[str, tuple[bytes, int]] = {}
    failed: dict[str, str] = {}
    channel, kv = stub(pb, srv)
    with channel:
        for i in range(200):
            key, value = f"full-{i:03d}", f"full-{i:03d}:".encode() + b"v" * 1000
            try:
                acked[key] = (value, set_(pb, kv, key, value))
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE, f"Set {key} on a full disk: {e.code()} {e.details()!r}"
                assert e.details(), "UNAVAILABLE without a message"
                failed[key] = e.details()
                if len(failed) >= 5:
                    break
        assert acked, f"no write fitted in {FSIZE_LIMIT} bytes; failures: {list(failed.values())[:2]}"
        assert failed, f"all {len(acked)} writes succeeded under RLIMIT_FSIZE={FSIZE_LIMIT}"
        assert srv.alive(), "erdtree died on a full disk"

        # Reads still work; nothing that failed was applied.
        for key, (value, lsn) in acked.items():
            got = get(pb, kv, key)
            assert (got.found, got.value, got.lsn) == (True, value, lsn), f"{key} while the disk is full"
        for key in failed:
            assert not get(pb, kv, key).found, f"{key} failed with UNAVAILABLE but reads as present"

        # A Delete is a write too: it either fails UNAVAILABLE (key stays) or is logged.
        victim = next(iter(acked))
        try:
            kv.Delete(pb.kv.DeleteRequest(key=victim), timeout=RPC_TIMEOUT_S)
            acked.pop(victim)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE, f"Delete on a full disk: {e.code()} {e.details()!r}"
            assert get(pb, kv, victim).found, f"{victim}: Delete failed but the key is gone"
    nodes.stop(srv)

    srv = nodes.start(**wal)
    channel, kv = stub(pb, srv)
    with channel:
        for key, (value, lsn) in acked.items():
            got = get(pb, kv, key)
            assert (got.found, got.value, got.lsn) == (True, value, lsn), f"acknowledged {key} after restart"
        for key in failed:
            assert not get(pb, kv, key).found, f"{key} failed with UNAVAILABLE but is present after restart"
        entries, master_lsn = all_updates(pb, kv)
        assert_gapless(entries, master_lsn)
        assert not {e.key for e in entries} & set(failed), "a failed write is in the log"
        lsn = set_(pb, kv, "after-full", b"ok")
        assert lsn > master_lsn
        assert get(pb, kv, "after-full").value == b"ok"
    nodes.stop(srv)


# --------------------------------------------------------------------------
# 8. GetUpdates
# --------------------------------------------------------------------------


def test_get_updates_since_limit_ops_and_master_lsn_across_restart(pb, nodes):
    srv = nodes.start(sync_interval="1s")
    channel, kv = stub(pb, srv)
    with channel:
        empty = kv.GetUpdates(pb.kv.GetUpdatesRequest(since_lsn=0), timeout=RPC_TIMEOUT_S)
        assert (list(empty.entries), empty.master_lsn, empty.resync_required) == ([], 0, False)

        before_ms = int(time.time() * 1000)
        a = set_(pb, kv, "a", b"1", ttl_ms=600_000)
        b = set_(pb, kv, "b", b"2")
        d = kv.Delete(pb.kv.DeleteRequest(key="a"), timeout=RPC_TIMEOUT_S)
        assert d.deleted
        c = set_(pb, kv, "c", b"\x00binary\xff")
        missing = kv.Delete(pb.kv.DeleteRequest(key="never-set"), timeout=RPC_TIMEOUT_S)
        assert not missing.deleted  # nothing written, no entry
        after_ms = int(time.time() * 1000)
        expected = [
            (a, pb.kv.OP_SET, "a", b"1"),
            (b, pb.kv.OP_SET, "b", b"2"),
            (d.lsn, pb.kv.OP_DELETE, "a", b""),
            (c, pb.kv.OP_SET, "c", b"\x00binary\xff"),
        ]

        def check(kv) -> None:
            full = kv.GetUpdates(pb.kv.GetUpdatesRequest(since_lsn=0), timeout=RPC_TIMEOUT_S)
            assert [(e.lsn, e.op, e.key, e.value) for e in full.entries] == expected
            assert full.master_lsn == c
            assert not full.resync_required
            ea, eb, ed, ec = full.entries
            assert before_ms + 600_000 - 1000 <= ea.expires_at_ms <= after_ms + 600_000 + 1000, ea.expires_at_ms
            assert eb.expires_at_ms == ed.expires_at_ms == ec.expires_at_ms == 0
            for e in full.entries:
                assert before_ms - 60_000 <= e.timestamp_ms <= after_ms + 60_000, f"timestamp_ms {e.timestamp_ms}"

            page = kv.GetUpdates(pb.kv.GetUpdatesRequest(since_lsn=0, limit=2), timeout=RPC_TIMEOUT_S)
            assert [(e.lsn, e.op, e.key, e.value) for e in page.entries] == expected[:2]
            assert page.master_lsn == c

            tail = kv.GetUpdates(pb.kv.GetUpdatesRequest(since_lsn=b), timeout=RPC_TIMEOUT_S)
            assert [(e.lsn, e.op, e.key, e.value) for e in tail.entries] == expected[2:]

            one = kv.GetUpdates(pb.kv.GetUpdatesRequest(since_lsn=a, limit=1), timeout=RPC_TIMEOUT_S)
            assert [(e.lsn, e.key) for e in one.entries] == [(b, "b")]

            head = kv.GetUpdates(pb.kv.GetUpdatesRequest(since_lsn=c, limit=10), timeout=RPC_TIMEOUT_S)
            assert (list(head.entries), head.master_lsn, head.resync_required) == ([], c, False)

        check(kv)
    nodes.stop(srv)

    srv = nodes.start(sync_interval="1s")
    channel, kv = stub(pb, srv)
    with channel:
        check(kv)
        e = set_(pb, kv, "e", b"5")
        assert e == c + 1
        tail = kv.GetUpdates(pb.kv.GetUpdatesRequest(since_lsn=c), timeout=RPC_TIMEOUT_S)
        assert [(x.lsn, x.op, x.key, x.value) for x in tail.entries] == [(e, pb.kv.OP_SET, "e", b"5")]
        assert tail.master_lsn == e
    nodes.stop(srv)


def test_get_updates_ahead_of_the_node_requires_resync(pb, nodes):
    srv = nodes.start(sync_interval="1s")
    channel, kv = stub(pb, srv)
    with channel:
        lsn = set_(pb, kv, "only", b"1")
        ahead = kv.GetUpdates(pb.kv.GetUpdatesRequest(since_lsn=lsn + 100), timeout=RPC_TIMEOUT_S)
        assert ahead.resync_required, "since_lsn ahead of the node must say resync_required (kvstore.proto)"
        assert list(ahead.entries) == []
        assert ahead.master_lsn == lsn
    nodes.stop(srv)
