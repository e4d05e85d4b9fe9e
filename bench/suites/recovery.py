"""recovery: each system restarts BENCH_ROUNDS times, alternating, on the same
BENCH_RECOVERY_RECORDS logged writes (bench.datasets): Erdtree replays its WAL, Redis its AOF.
The clock runs from the exec of the server to its first answer that says it is ready
(Erdtree: Health/Check SERVING; Redis: INFO loading:0), polled every 10 ms; the server's own
log line is kept next to it."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench import checks, datasets, redis_tools
from bench import report as tables
from bench.bodies import Body, get_request
from bench.console import Fatal, note
from bench.records import Restart
from bench.suites.grpc import GET

if TYPE_CHECKING:
    from bench.datasets import DataSets
    from bench.run import Bench

# What each server logs once its data is loaded. Erdtree's master logs "WAL recovered" with
# swift-log metadata (records=N ... seconds=X); prose ("recovered N records ... in X s") is
# accepted too. Redis 7 logs "DB loaded from append only file: X seconds".
RECOVERY_LOG = {
    "erdtree": [
        re.compile(r"\bseconds=([\d.]+)().*\bWAL recovered\b|\bWAL recovered\b.*\bseconds=([\d.]+)()"),
        re.compile(r"recovered\s+[\d,_]+\s+records?\b.*?\bin\s+([\d.]+)\s*(ms|s|µs|us)\b", re.I),
    ],
    "redis": [re.compile(r"DB loaded from append only file:\s*([\d.]+)\s*(seconds)")],
}


def logged_seconds(system: str, path: Path) -> float | None:
    """The seconds the server says recovery took (its last such line), if it says."""
    seconds = None
    with open(path, errors="replace") as f:
        for line in f:
            for pattern in RECOVERY_LOG[system]:
                m = pattern.search(line)
                if m:
                    # (number, unit) from whichever alternative matched.
                    number, unit = [g for g in m.groups() if g is not None][:2]
                    seconds = float(number) * {"ms": 1e-3, "µs": 1e-6, "us": 1e-6}.get(unit, 1.0)
                    break
    return seconds


def fmt_log(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f}"


def check_key(bench: Bench, address: str, i: int, what: str) -> None:
    """Key i of the data set reads back with its final value."""
    k = datasets.key(i).decode()
    checks.grpc_call(address, GET, Body(get_request(k), Path()), f"{what}, Get {k}", datasets.value(i).decode())


def restart_erdtree(bench: Bench, data: DataSets, rnd: int) -> None:
    t0 = time.monotonic()
    node = data.start_erdtree(bench, f"erdtree recovering {data.records} records")
    wall_s = time.monotonic() - t0
    # The first and the last record must be there, with their values.
    for i in (0, data.records - 1):
        check_key(bench, node.address, i, "erdtree after recovery")
    log_s = logged_seconds("erdtree", node.log_path)
    bench.processes.stop(node.proc)
    bench.records.recovery.append(Restart(rnd, "erdtree", data.records, int(wall_s * 1000) / 1000, log_s))
    note(f"recovery round {rnd}/{bench.settings.rounds}  erdtree: {int(wall_s * 1000)} ms to SERVING "
         f"(log: {fmt_log(log_s)} s)")


def restart_redis(bench: Bench, data: DataSets, rnd: int) -> None:
    t0 = time.monotonic()
    proc, port = data.start_redis(bench, "redis-server loading its AOF", f"server.{rnd}.log")
    wall_s = time.monotonic() - t0
    keys = redis_tools.cli(port, "dbsize")
    if keys != str(data.records):
        raise Fatal(f"redis after loading its AOF holds {keys} keys, want {data.records}")
    last = data.records - 1
    if redis_tools.cli(port, "get", datasets.key(last).decode()) != datasets.value(last).decode():
        raise Fatal("redis after loading its AOF: wrong value for the last key")
    log_s = logged_seconds("redis", data.redis_dir / f"server.{rnd}.log")
    bench.processes.stop(proc)
    bench.records.recovery.append(Restart(rnd, "redis", data.records, int(wall_s * 1000) / 1000, log_s))
    note(f"recovery round {rnd}/{bench.settings.rounds}  redis: {int(wall_s * 1000)} ms to loading:0 "
         f"(log: {fmt_log(log_s)} s)")


RESTART = {"erdtree": restart_erdtree, "redis": restart_redis}


def run(bench: Bench, data: DataSets) -> None:
    for rnd in range(1, bench.settings.rounds + 1):
        for system in data.systems:
            RESTART[system](bench, data, rnd)


def report(bench: Bench, data: DataSets | None) -> None:
    print()
    print(f"### Recovery: restart on {bench.settings.recovery_records:,} logged writes (100-byte values, "
          "distinct keys)")
    print()
    tables.recovery_table(bench.records.recovery)
    for n in data.notes if data else []:
        print()
        print(n)
