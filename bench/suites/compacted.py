"""compacted: startup after compaction, reached the way a store reaches it. The data set holds
each of BENCH_RECOVERY_RECORDS keys written twice (an old value, then the final one), so half
the log is dead; an Erdtree with wal.max_file_size and wal.retention at 64MB starts on a copy
of it and compacts it itself (its compactor looks every second and rewrites the sealed
segments outside the retention once half their bytes are dead). Once Admin/Status says it has
compacted and the WAL holds next to no dead bytes, it is stopped with SIGTERM and must exit 0.
Then it restarts BENCH_ROUNDS times on that directory, timed like the recovery suite (exec ->
Health SERVING)."""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench import checks, datasets, erdtree_wal
from bench import report as tables
from bench.console import Fatal, note, show, show_file
from bench.records import Restart
from bench.servers import start_erdtree
from bench.suites.recovery import check_key, fmt_log, logged_seconds

if TYPE_CHECKING:
    from bench.run import Bench

# Dead bytes left after the compaction, as a share of the WAL's bytes, under which the log
# counts as compacted (the data set leaves none: every old value lies in the compactable
# segments).
DEAD_PERCENT = 1
COMPACTION_WAIT_S = 180
STOP_WAIT_S = 60

# Erdtree's compactor logs "WAL compacted" with swift-log metadata (segments_in=4 bytes_in=…
# segments_out=… bytes_out=… records_in=… records_kept=… lsn_range=…-… ms=…).
COMPACTION_LOG = re.compile(r"\bWAL compacted\b")
METADATA = re.compile(r"\b(segments_in|bytes_in|segments_out|bytes_out|records_in|records_kept|lsn_range|ms)=(\S+)")


def file_size(records: int) -> tuple[str, int]:
    """64MB with 1,000,000 keys (a log of ~300 MiB as written, 4 sealed segments and the
    active one), the same shape with other counts: 64 MiB per million keys, at least the 64KB
    the server accepts. KB and MB are powers of 1024. The setting, and its bytes."""
    kb = max(64, records * 65536 // 1_000_000)
    return (f"{kb // 1024}MB" if kb % 1024 == 0 else f"{kb}KB"), kb << 10


def compaction_log(path: Path) -> str:
    """What the server's "WAL compacted" lines say, or "-"."""
    parts = []
    with open(path, errors="replace") as f:
        for line in f:
            if not COMPACTION_LOG.search(line):
                continue
            m = {k: v.strip("\"',") for k, v in METADATA.findall(line)}
            try:
                parts.append(
                    f"{m['segments_in']} segments ({tables.fmt_mib(int(m['bytes_in']))}, {int(m['records_in']):,} "
                    f"records) → {m['segments_out']} ({tables.fmt_mib(int(m['bytes_out']))}, "
                    f"{int(m['records_kept']):,} records) in {int(m['ms']) / 1000:.2f} s, LSNs {m['lsn_range']}")
            except (KeyError, ValueError):
                parts.append(line.strip())
    return "; ".join(parts) if parts else "-"


@dataclass
class Compaction:
    """What the report says about the log and its compaction; ok once the directory is ready."""

    ok: bool = False
    written: str = ""
    status: str = ""
    timing: str = ""
    log: str = ""
    after: str = ""
    notes: list[str] = field(default_factory=list)


def directory(bench: Bench) -> Path:
    return bench.tmp / "compacted" / "erdtree"


def check_keys(bench: Bench, address: str, what: str) -> None:
    n = bench.settings.recovery_records
    for i in (0, n // 2, n - 1):
        check_key(bench, address, i, what)


def start(bench: Bench, what: str):
    setting, _ = file_size(bench.settings.recovery_records)
    return start_erdtree(bench, directory(bench), what, sync="1s", max_entries=bench.settings.recovery_records * 2,
                         file_size=setting)


def prepare(bench: Bench, result: Compaction) -> None:
    """Writes the data set, lets the server compact it, stops the server."""
    n = bench.settings.recovery_records
    setting, size = file_size(n)
    written = bench.tmp / "compacted" / "written"
    t0 = time.monotonic()
    erdtree_wal.write_segments(str(written / "wal"), datasets.overwritten(n), segment_bytes=size)
    files, total, _, _ = erdtree_wal.segments(str(written / "wal"))
    result.written = f"{files} segments, {tables.fmt_mib(total)}"
    note(f"compacted: wrote {n * 2} WAL records, {result.written}, in {(time.monotonic() - t0) * 1000:.0f} ms")
    shutil.copytree(written / "wal", directory(bench) / "wal")
    if not bench.settings.keep:
        shutil.rmtree(written)

    t0 = time.monotonic()
    node = start(bench, "erdtree starting on the overwritten log")
    t_serving = time.monotonic()
    # Every poll is one Admin/Status, whose dead-bytes figure is a pass over the index:
    # once a second is enough.
    status: dict[str, str] = {}
    for i in range(COMPACTION_WAIT_S + 1):
        if not node.alive():
            show_file(node.log_path, 20)
            raise Fatal(f"compacted: the server exited while compacting (log above: {node.log_path})")
        try:
            status = checks.erdtree_status(bench.erdtree_bin, node.address)
        except Fatal:
            status = {}
        compactions, dead, total = (status.get(f, "") for f in ("compactions", "wal dead bytes", "wal bytes"))
        if (compactions.isdigit() and dead.isdigit() and total.isdigit() and int(compactions) >= 1
                and int(dead) * 100 <= int(total) * DEAD_PERCENT):
            break
        if i == COMPACTION_WAIT_S:
            show("\n".join(f"{k}: {v}" for k, v in status.items()))
            raise Fatal(f"compacted: no compaction down to {DEAD_PERCENT}% dead bytes within {COMPACTION_WAIT_S} s "
                        f"(status above, log: {node.log_path})")
        time.sleep(1)
    t_done = time.monotonic()
    if status.get("keys") != str(n):
        raise Fatal(f"compacted: the server holds {status.get('keys')} keys after compacting, want {n} "
                    f"(log: {node.log_path})")
    check_keys(bench, node.address, "erdtree after compacting")
    result.status = (f"{status['wal segments']} segments, {tables.fmt_mib(int(total))}, {dead} dead bytes, "
                     f"{compactions} compaction(s)")
    result.timing = (f"SERVING {int((t_serving - t0) * 1000)} ms after exec, compacted "
                     f"{int((t_done - t_serving) * 1000)} ms later (status polled every second)")
    # Graceful stop: SIGTERM, and the server must exit 0 by itself within 60 s.
    code = node.terminate(STOP_WAIT_S)
    if code is None:
        raise Fatal(f"compacted: the server did not exit within {STOP_WAIT_S} s of SIGTERM (log: {node.log_path})")
    bench.processes.stop(node.proc)
    if code != 0:
        show_file(node.log_path, 20)
        raise Fatal(f"compacted: the server exited {code} on SIGTERM, want 0 (log above)")
    result.log = compaction_log(node.log_path)
    wal = directory(bench) / "wal"
    try:
        files, total, compacted, other = erdtree_wal.segments(str(wal))
    except erdtree_wal.NotASegment as error:
        raise Fatal(f"compacted: {error}") from None
    if other:
        raise Fatal(f"compacted: {other} files other than segments left in {wal} after a graceful stop: "
                    f"{' '.join(sorted(p.name for p in wal.iterdir()))}")
    if compacted < 1:
        raise Fatal(f"compacted: no segment in {wal} has the compacted (version 2) header")
    result.after = f"{files} segments ({compacted} compacted, version 2), {tables.fmt_mib(total)}"
    note(f"compacted: {result.timing}; status: {result.status}; on disk after SIGTERM: {result.after}")
    result.ok = True


def restart(bench: Bench, rnd: int) -> None:
    t0 = time.monotonic()
    node = start(bench, "erdtree restarting on its compacted log")
    wall_s = time.monotonic() - t0
    check_keys(bench, node.address, "erdtree restarted after compaction")
    log_s = logged_seconds("erdtree", node.log_path)
    bench.processes.stop(node.proc)
    bench.records.compacted.append(Restart(rnd, "erdtree", bench.settings.recovery_records,
                                           int(wall_s * 1000) / 1000, log_s))
    note(f"compacted round {rnd}/{bench.settings.rounds}  erdtree: {int(wall_s * 1000)} ms to SERVING "
         f"(log: {fmt_log(log_s)} s)")


def run(bench: Bench, wal_problem: str | None) -> Compaction:
    result = Compaction()
    if not bench.settings.has("erdtree"):
        result.notes.append("Not measured: the compacted suite runs Erdtree only, and BENCH_SYSTEMS leaves it out.")
    elif wal_problem is not None:
        result.notes.append(f"Erdtree not measured (compacted): {wal_problem.splitlines()[-1]}")
        note(result.notes[-1])
    else:
        prepare(bench, result)
        for rnd in range(1, bench.settings.rounds + 1):
            restart(bench, rnd)
    return result


def report(bench: Bench, result: Compaction) -> None:
    n, rounds, setting = bench.settings.recovery_records, bench.settings.rounds, file_size(
        bench.settings.recovery_records)[0]
    print()
    print(f"### Startup after compaction: {n:,} keys, each written twice, compacted by the server")
    if result.ok:
        print()
        print(f"Log as written: {n * 2:,} set records (every key with an old 100-byte value,")
        print(f"then every key again with its final one), {result.written}, segments sealed at {setting}.")
        print(f"Erdtree (`wal.max_file_size` and `wal.retention` {setting}, `storage.max_entries`")
        print(f"{n * 2}, `server.event_loops` {bench.settings.event_loops}) started on a copy and compacted it by "
              "itself:")
        print(f"{result.timing}.")
        print(f'Its "WAL compacted" log line: {result.log}.')
        print(f"Admin/Status then: {result.status}.")
        print(f"Stopped with SIGTERM (exit 0); on disk: {result.after}.")
        print(f"Restarted {rounds} time{'' if rounds == 1 else 's'} on that directory; keys 0, {n // 2} and {n - 1} "
              "read back")
        print("with their final values each time.")
        print()
        tables.compacted_table(bench.records.compacted)
    for line in result.notes:
        print()
        print(line)
