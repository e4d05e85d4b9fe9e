"""redis-cli and redis-benchmark, the Redis side's clients.

redis-benchmark has no duration option and prints its own percentiles: one run gives req/s,
p50 and p99 (its latency histogram costs it little, unlike h2load's per-request log). It
reports errors only on stderr and carries on, so `benchmark` checks the server's own count of
SET calls instead.
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

from bench.console import Fatal, show
from bench.processes import Processes


def cli(port: int, *args: str, host: str = "127.0.0.1") -> str:
    """redis-cli's answer, without trailing newline and carriage returns ("" if it failed)."""
    done = subprocess.run(["redis-cli", "-h", host, "-p", str(port), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    return (done.stdout + done.stderr).replace("\r", "").rstrip("\n")


def info(port: int, section: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in cli(port, "info", section).splitlines() if ":" in line)


def set_calls(port: int) -> tuple[int, int]:
    """SET calls so far, and how many of them failed or were rejected (INFO commandstats)."""
    line = info(port, "commandstats").get("cmdstat_set")
    if line is None:
        return 0, 0
    v = dict(pair.split("=", 1) for pair in line.split(","))
    return int(v.get("calls", 0)), int(v.get("failed_calls", 0)) + int(v.get("rejected_calls", 0))


def linked(port: int) -> bool:
    """A replica whose link to its master is up and not syncing."""
    i = info(port, "replication")
    return i.get("master_link_status") == "up" and i.get("master_sync_in_progress") == "0"


def loaded(port: int) -> bool:
    """Done loading its data (AOF replay, or a replica's snapshot)."""
    return info(port, "persistence").get("loading") == "0"


def benchmark(processes: Processes, port: int, clients: int, requests: int, out: Path,
              label: str) -> tuple[float, int, int]:
    """`requests` SETs of 100 bytes over `clients` connections; req/s, p50 µs, p99 µs."""
    calls0, bad0 = set_calls(port)
    processes.run_client(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set", "-d", "100",
                          "-c", str(clients), "-P", "1", "-n", str(requests), "--csv"], out,
                         f"redis-benchmark failed on {label}")
    calls1, bad1 = set_calls(port)
    text = out.read_text(errors="replace")
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms",...
    row = next((r for r in csv.reader(text.splitlines()) if r and r[0] == "SET"), None)
    if calls1 - calls0 != requests or bad1 != bad0 or row is None:
        show(text)
        raise Fatal(f"{label}: Redis counted {calls1 - calls0} SETs ({bad1 - bad0} failed or rejected) for "
                    f"{requests} sent (redis-benchmark output above)")
    return float(row[1]), round(float(row[4]) * 1000), round(float(row[6]) * 1000)
