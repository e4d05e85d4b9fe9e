"""One benchmark run: servers up, warm-up, alternated rounds, the data suites, the report.

`run` is the whole program; each step is a function below it, in the order they happen.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench import datasets, erdtree_wal, profile
from bench import report as tables
from bench.bodies import Bodies
from bench.console import Fatal, note
from bench.loads import TIMED, Load, kind, measure, record, warm_up
from bench.probe import Probe, c_compiler
from bench.processes import Processes
from bench.records import Records
from bench.servers import Instance, Running
from bench.settings import Settings
from bench.suites import (
    INSTANCES, LOADS, ROUND_ORDER, cluster, compacted, durable, evicted, failover, memory, recovery, replication,
    switchover, tls,
)

ROOT = Path(__file__).resolve().parents[1]
# Debian packages of the tools, for the message when one is missing.
PACKAGES = {
    "h2load": "nghttp2-client", "curl": "curl", "nghttpd": "nghttp2-server", "etcd": "etcd-server",
    "redis-server": "redis-server", "redis-cli": "redis-tools", "redis-benchmark": "redis-tools",
    "protoc": "protobuf-compiler", "valgrind": "valgrind", "callgrind_control": "valgrind", "objcopy": "binutils",
    "gcc": "gcc", "redis-sentinel": "redis-sentinel", "openssl": "openssl",
}


class Instances:
    """The server instances of the run: their definitions, and those started."""

    def __init__(self) -> None:
        self.running: dict[str, Running] = {}

    @staticmethod
    def spec(name: str) -> Instance:
        return INSTANCES[name]


class Bench:
    """What every step of a run shares: the settings, the temp dir (removed at the end unless
    BENCH_KEEP=1), the processes, the servers, the request bodies and what was measured."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tmp = Path(tempfile.mkdtemp(prefix="erdtree-bench.", dir=os.environ.get("TMPDIR") or "/tmp"))
        self.processes = Processes()
        self.instances = Instances()
        self.records = Records()
        self.labels = {load.id: load.label for load in LOADS.values()}
        self.cores = os.cpu_count()
        self.erdtree_bin: Path | None = None
        self.erdtree_label = ""
        self.bodies: Bodies | None = None
        self.probe: Probe | None = None
        self.fsync_figure = ""
        self._cleanups: list = []

    def on_cleanup(self, action) -> None:
        self._cleanups.append(action)

    def close(self) -> None:
        self.processes.close()
        for action in reversed(self._cleanups):
            action()
        if self.settings.keep:
            note(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise Fatal(f"{tool} not found (package {PACKAGES[tool]}): run scripts/install-deps.sh bench")


def check_tools(s: Settings) -> None:
    need("h2load")
    need("curl")
    if s.has("nghttpd"):
        need("nghttpd")
    if tls.selected(s):
        need("openssl")
    if s.has("etcd") or (failover.selected(s) and s.has("erdtree")):
        need("etcd")
    if s.has("redis"):
        for tool in ("redis-server", "redis-cli", "redis-benchmark"):
            need(tool)
        if failover.selected(s):
            need("redis-sentinel")
    if s.has("erdtree"):
        need("protoc")
    # The replication probes are compiled at run time (bench/repl_probe.c) against libnghttp2,
    # which the build dependencies install.
    if (s.suite("replication") or s.suite("cluster") or switchover.selected(s) or failover.selected(s)) and (
            s.has("erdtree") or s.has("redis")) and not c_compiler():
        need("gcc")
    if s.has("erdtree") and s.profile:
        for tool in ("valgrind", "callgrind_control", "objcopy"):
            need(tool)


def selected_loads(s: Settings) -> tuple[list[Load], list[Load]]:
    """What the selected suites hold (the report shows their rows, with — for a system left
    out), and of those the loads whose system is selected, in a round's order."""
    in_suites = [LOADS[i] for i in ROUND_ORDER if LOADS[i].suites & set(s.suites)]
    return in_suites, [load for load in in_suites if s.has(INSTANCES[load.instance].system)]


def erdtree_binary(s: Settings) -> tuple[Path, str]:
    """The binary to bench, and how the report names it."""
    if s.erdtree_bin is not None:
        if not (s.erdtree_bin.is_file() and os.access(s.erdtree_bin, os.X_OK)):
            raise Fatal(f"ERDTREE_BIN={s.erdtree_bin} is not an executable")
        return s.erdtree_bin, f"erdtree {s.erdtree_bin}"
    if shutil.which("swift") is None:
        raise Fatal("swift not found (package the Swift toolchain): run scripts/install-deps.sh bench")
    note("building erdtree (release, .build-bench)")
    build = ["swift", "build", "-c", "release", "-Xswiftc", "-enforce-exclusivity=unchecked",
             "--scratch-path", ".build-bench"]
    # nice: the build shares the cores with whatever else runs here; the benchmark itself is not niced.
    # The release never holds the test hooks, even from a shell that exported ERDTREE_FAILPOINTS=1.
    env = {k: v for k, v in os.environ.items() if k != "ERDTREE_FAILPOINTS"}
    if subprocess.run(["nice", "-n", "10", *build, "--product", "erdtree"], stdout=2, env=env).returncode != 0:
        raise Fatal("release build of erdtree failed")
    binary = Path(subprocess.run([*build, "--show-bin-path"], capture_output=True, text=True, env=env).stdout.strip())
    # The build takes the work tree as it is, so say when it differs from HEAD.
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "Sources", "Package.swift"], capture_output=True,
                           text=True).stdout.strip()
    return binary / "erdtree", f"erdtree {head or '?'}" + (" + uncommitted changes" if dirty else "")


def start_servers(bench: Bench, loads: list[Load]) -> None:
    for name, instance in INSTANCES.items():
        if any(load.instance == name for load in loads):
            bench.instances.running[name] = instance.start(bench, name)


def size_runs(bench: Bench, loads: list[Load]) -> dict[str, int | str]:
    """Warms each load up for ~2 s, which also sizes its runs to ~BENCH_SECONDS (or fixes them)."""
    s = bench.settings
    if loads:
        note(f"warming up each load for ~2 s; {s.fixed_requests} requests per run" if s.fixed_requests
             else f"warming up each load for ~2 s, sizing runs to ~{s.seconds}s")
    requests: dict[str, int | str] = {}
    for load in loads:
        if load.lag:
            rates = replication.Rates(bench)
            requests[load.id] = rates.per_round
            note(f"  {load.label}: no warm-up; {rates.per_round} probes per round under {rates.target} writes/s")
            continue
        rps = warm_up(bench, load)
        if s.fixed_requests:
            requests[load.id] = s.fixed_requests
        elif load.procs or load.timed:
            requests[load.id] = TIMED  # see measure_multi, measure
        else:
            requests[load.id] = max(200, int(rps * s.seconds / 100) * 100)
        if requests[load.id] == TIMED:
            more = "" if load.timed else f", {load.procs} h2load processes"
            note(f"  {load.label}: {rps:.0f} req/s warm-up -> runs of {s.seconds}s{more}")
        else:
            note(f"  {load.label}: {rps:.0f} req/s warm-up -> {requests[load.id]} requests per run")
    return requests


def rounds(bench: Bench, loads: list[Load], requests: dict) -> None:
    """BENCH_ROUNDS rounds, each running every load once, in order."""
    n = bench.settings.rounds
    for rnd in range(1, n + 1):
        for load in loads:
            if kind(bench, load) == "lag":
                m = replication.measure_lag(bench, load, rnd)
                note(f"round {rnd}/{n}  {load.label}: lag p50 {m.p50} µs, p99 {m.p99} µs over {requests[load.id]} "
                     f"probes, background {m.rps:.0f} writes/s")
                continue
            m = measure(bench, load, requests[load.id], rnd)
            if load.id in replication.DRAINED:
                replication.drain(bench, load, rnd)
            record(bench, load, requests[load.id], rnd, m)
            reads = f", {m.reads} disk reads in {m.gets} Gets" if load.procs else ""
            note(f"round {rnd}/{n}  {load.label}: {m.rps:.0f} req/s, p50 {m.p50} µs, p99 {m.p99} µs{reads}")


def recheck(bench: Bench) -> list[str]:
    """The sampled answers must still be right after the load; returns the Erdtree instances
    that wrote nothing under wal.directory (their Set rows then measure memory-only writes)."""
    for name, running in bench.instances.running.items():
        INSTANCES[name].recheck(bench, running)
    return [name for name, running in bench.instances.running.items()
            if running.wal_dir is not None and name in ("erdtree", "erdtree_always", "erdtree_repl",
                                                                          "erdtree_ha")
            and not (running.wal_dir.is_dir() and any(running.wal_dir.iterdir()))]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def versions(bench: Bench, loads: list[Load], data) -> list[str]:
    def version(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout

    running = {load.instance for load in loads}
    found = []
    if bench.settings.has("erdtree"):
        found.append(bench.erdtree_label)
    if "etcd" in running:
        line = next(l for l in version("etcd", "--version").splitlines() if l.startswith("etcd Version"))
        found.append(f"etcd {line.split()[2]}")
    if {"redis_always", "redis_everysec", "redis_repl"} & set(running) or (data and "redis" in data.systems) or (
            (bench.settings.suite("switchover") or bench.settings.suite("failover")) and bench.settings.has("redis")):
        found.append("redis " + version("redis-server", "--version").split("v=")[1].split()[0])
    if "nghttpd" in running:
        found.append(version("nghttpd", "--version").split()[-1].replace("/", " "))
    return found


def run(settings: Settings) -> None:
    s = settings
    check_tools(s)
    suite_loads, loads = selected_loads(s)
    if not (loads or ((s.suite("recovery") or s.suite("memory")) and (s.has("erdtree") or s.has("redis")))
            or ((s.suite("compacted") or s.suite("cluster")) and s.has("erdtree"))
            or switchover.selected(s) or failover.selected(s) or tls.selected(s)):
        raise Fatal("BENCH_SYSTEMS and BENCH_SUITES select nothing to run")
    bench = Bench(s)
    try:
        if s.has("erdtree"):
            bench.erdtree_bin, bench.erdtree_label = erdtree_binary(s)
        bench.bodies = Bodies(bench.tmp, erdtree=s.has("erdtree"), etcd=s.has("etcd"), evicted=s.suite("evicted"))
        if (s.suite("replication") and any(l.instance in ("erdtree_repl", "redis_repl") for l in loads)) or (
                s.suite("cluster") and s.has("erdtree")) or switchover.selected(s) or failover.selected(s):
            bench.probe = Probe(bench.processes, bench.tmp)
        start_servers(bench, loads)
        if s.suite("durable"):
            bench.fsync_figure = durable.measure_fsync(bench)
        requests = size_runs(bench, loads)
        load_before = loadavg()
        rounds(bench, loads, requests)
        load_after = loadavg()
        no_wal = recheck(bench)

        data, wal_problem = None, None
        if any(s.suite(x) for x in ("recovery", "memory", "compacted", "replication", "switchover", "failover")):
            # The load servers are done: stop them so the restarts have the machine.
            bench.processes.stop_servers()
            bench.instances.running.clear()
        if any(s.suite(x) for x in ("recovery", "memory", "compacted", "replication")) and s.has("erdtree"):
            wal_problem = erdtree_wal.selftest()
        if any(s.suite(x) for x in ("recovery", "memory", "replication")):
            data = datasets.write(bench, wal_problem)
            if s.suite("recovery"):
                recovery.run(bench, data)
            if s.suite("memory"):
                memory.run(bench, data)
            if s.suite("replication") and data.systems:
                (bench.tmp / "catchup").mkdir()
                replication.catchup(bench, data)
        compaction = compacted.run(bench, wal_problem) if s.suite("compacted") else None
        hosts = cluster.run(bench) if s.suite("cluster") and s.has("erdtree") else None
        if switchover.selected(s):
            switchover.run(bench)
        if failover.selected(s):
            failover.run(bench)
        secure = tls.run(bench) if tls.selected(s) else None

        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            report(bench, suite_loads, loads, data, compaction, hosts, no_wal, versions(bench, loads, data),
                   (load_before, load_after), secure)
        print(text.getvalue(), end="", flush=True)
        if s.out:
            s.out.write_text(text.getvalue())
        if s.profile and s.has("erdtree"):
            profile.run(bench)
    finally:
        bench.close()


def report(bench: Bench, suite_loads: list[Load], loads: list[Load], data, compaction, hosts, no_wal: list[str],
           found: list[str], load: tuple[str, str], secure: tls.Results | None = None) -> None:
    s, r = bench.settings, bench.records
    print(f"## Erdtree benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    print()
    print(f"Suites: {' '.join(s.suites)}. Medians of {s.rounds} alternated rounds on loopback; ratios are medians "
          "of per-round ratios.")
    print(f"{bench.cores} cores shared by every server and the load generator (one thread), nothing pinned;")
    print(f"load average {load[0]} before, {load[1]} after. {', '.join(found)}.")
    if no_wal:
        print()
        print(f"**Erdtree wrote no file under its wal.directory ({' '.join(no_wal)}): its Set figures are")
        print("memory-only writes, not comparable with etcd's or Redis's fsynced writes.**")
    wanted = {load.id for load in suite_loads}
    if loads and tables.summary_rows(wanted):
        print()
        tables.summary_table(r.runs, wanted, r.disk_reads)
        durable.report(bench)
        evicted.report(bench)
    if s.suite("recovery"):
        recovery.report(bench, data)
    if s.suite("memory"):
        memory.report(bench, data)
    if s.suite("compacted"):
        compacted.report(bench, compaction)
    if s.suite("replication"):
        replication.report(bench, data)
    if hosts is not None:
        cluster.report(bench, hosts)
    if r.switchovers:
        switchover.report(bench)
    if r.failovers:
        failover.report(bench)
    if secure:
        tls.report(bench, secure)
    if loads or r.recovery or r.memory or r.compacted or r.catchups or r.switchovers or r.failovers or secure:
        print()
        print("<details><summary>every run</summary>")
        for present, table in ((loads, lambda: tables.rounds_table(r.runs, bench.labels)),
                               (r.recovery, lambda: tables.recovery_rounds(r.recovery)),
                               (r.memory, lambda: tables.memory_rounds(r.memory)),
                               (r.compacted, lambda: tables.compacted_rounds(r.compacted)),
                               (r.lags or r.catchups, lambda: tables.replication_rounds(r.lags, r.lag_loads,
                                                                                         r.catchups)),
                               (r.switchovers, lambda: tables.switchover_rounds(r.switchovers)),
                               (r.failovers, lambda: tables.failover_rounds(r.failovers)),
                               (secure, lambda: tls.rounds_table(secure))):
            if present:
                print()
                table()
        print()
        print("</details>")
