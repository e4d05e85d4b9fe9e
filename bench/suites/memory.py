"""memory: RSS per key. Each round starts each system twice, alternating, with the recovery
suite's config: on an empty data dir (new for every start), then on the recovery data set,
where it loads every key by replaying its log (Erdtree applies WAL records through the same
set as live writes; Redis replays its AOF). VmRSS (RssAnon and RssFile too) is read from
/proc/PID/status once the server is ready, then the key count is checked (and Erdtree's
Status memory_bytes, Redis's INFO used_memory, are kept)."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from bench import checks, redis_tools
from bench import report as tables
from bench.console import Fatal, note
from bench.records import MemoryStart, Scrape
from bench.servers import start_erdtree, start_redis_loaded
from harness.node import free_port

if TYPE_CHECKING:
    from bench.datasets import DataSets
    from bench.run import Bench


def rss_kb(pid: int) -> tuple[int, int, int]:
    """VmRSS, RssAnon, RssFile in kB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            fields[name] = rest.split()[0] if rest.split() else "0"
    return int(fields["VmRSS"]), int(fields["RssAnon"]), int(fields["RssFile"])


SCRAPES = 20
SCRAPE_GOAL_S = 0.010


def time_scrapes(bench: Bench, address: str, rnd: int, keys: int) -> None:
    """SCRAPES GETs of /metrics from the loaded node (curl over h2c, each on a new connection);
    each must answer 200 with the erdtree families."""
    for _ in range(SCRAPES):
        done = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "10", "-o", "/dev/null",
                               "-w", "%{http_code} %{time_total}", f"http://{address}/metrics"],
                              capture_output=True, text=True)
        code, _, seconds = done.stdout.partition(" ")
        if done.returncode != 0 or code != "200":
            raise Fatal(f"GET /metrics on {address} failed: {done.stdout} {done.stderr.strip()}")
        bench.records.scrapes.append(Scrape(rnd, keys, float(seconds)))


def start_erdtree_for(bench: Bench, data: DataSets, rnd: int, state: str, what: str):
    """An Erdtree, empty or on the data set, once SERVING; its process, log, and a reader of
    its key count and Status memory_bytes."""
    if state == "empty":
        node = start_erdtree(bench, bench.tmp / "memory" / f"erdtree-empty.{rnd}", what, sync="1s",
                             max_entries=data.records * 2)
    else:
        node = data.start_erdtree(bench, what)

    def figures() -> tuple[str, str]:
        status = checks.erdtree_status(bench.erdtree_bin, node.address)
        if state == "loaded":
            time_scrapes(bench, node.address, rnd, data.records)
        return status.get("keys", ""), status.get("memory (data)", "")

    return node.proc, node.log_path, figures


def start_redis_for(bench: Bench, data: DataSets, rnd: int, state: str, what: str):
    """The same for Redis: DBSIZE and INFO used_memory."""
    log = f"server.memory.{rnd}.log"
    if state == "empty":
        directory, port = bench.tmp / "memory" / f"redis-empty.{rnd}", free_port()
        proc = start_redis_loaded(bench, directory, port, what, log=log)
    else:
        directory = data.redis_dir
        proc, port = data.start_redis(bench, what, log)
    return proc, directory / log, lambda: (redis_tools.cli(port, "dbsize"),
                                           redis_tools.info(port, "memory").get("used_memory", ""))


# system -> how it starts, what it is called, what its data figure is
SYSTEMS = {
    "erdtree": (start_erdtree_for, "erdtree", "Status memory_bytes"),
    "redis": (start_redis_for, "redis-server", "used_memory"),
}


def start(bench: Bench, data: DataSets, system: str, rnd: int, state: str) -> None:
    starter, name, data_figure = SYSTEMS[system]
    what = f"{name} ({state}) for the memory suite"
    proc, log, figures = starter(bench, data, rnd, state, what)
    rss, anon, file_kb = rss_kb(proc.pid)
    keys, used = figures()
    bench.processes.stop(proc)
    want = data.records if state == "loaded" else 0
    if keys != str(want):
        raise Fatal(f"{what} holds {keys} keys, want {want} (log: {log})")
    bench.records.memory.append(MemoryStart(rnd, system, state, int(keys), rss, anon, file_kb, int(used)))
    note(f"memory round {rnd}/{bench.settings.rounds}  {system} {state}: {keys} keys, VmRSS {rss} kB, "
         f"{data_figure} {used}")


def run(bench: Bench, data: DataSets) -> None:
    for rnd in range(1, bench.settings.rounds + 1):
        for system in data.systems:
            start(bench, data, system, rnd, "empty")
            start(bench, data, system, rnd, "loaded")


def report(bench: Bench, data: DataSets | None) -> None:
    n = bench.settings.recovery_records
    print()
    print(f"### Memory: {n:,} distinct keys with 100-byte values, loaded by replay")
    print()
    print("Each server started on the recovery data set and loaded every key by replaying its log")
    print("(Erdtree its WAL, through the same set as live writes; Redis its AOF), storage.max_entries")
    print(f"{n * 2} so every value stays resident. RSS per key = (VmRSS once ready − VmRSS of a")
    print("fresh start on an empty dir, same config) ÷ keys, per round.")
    print()
    tables.memory_table(bench.records.memory)
    scrapes = sorted(s.seconds for s in bench.records.scrapes)
    if scrapes:
        median, worst = scrapes[len(scrapes) // 2], scrapes[-1]
        met = "**met**" if median < SCRAPE_GOAL_S else "**missed**"
        print()
        print(f"GET /metrics on the loaded Erdtree ({n:,} keys, no slaves; per-slave series are O(slaves)), "
              f"{len(scrapes)} scrapes over h2c, connection included: median {median * 1000:.2f} ms, "
              f"slowest {worst * 1000:.2f} ms (goal < 10 ms: {met}).")
    if not bench.settings.suite("recovery"):
        for line in data.notes if data else []:
            print()
            print(line)
