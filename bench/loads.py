"""A load: one client shape against one server instance, and how one run of it is measured.

Four kinds: h2load (one process; req/s from a run without a request log, p50/p99 from a
second, quarter-length run with --log-file, since on 2 cores a logged run measures h2load
rather than the server), redis (redis-benchmark: 128 connections with one request each,
the same 128 in flight as h2load's c4 m32), multi (`procs` h2load processes at once,
process i sending body i: h2load repeats one body, and the evicted suite needs one key per
client) and lag (the replication suite's probes, bench.suites.replication).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench import checks, h2load, redis_tools
from bench.console import Fatal, show_file
from bench.processes import CLOCK_TICKS, cpu_ticks
from bench.records import CpuUse, DiskReads, Run

if TYPE_CHECKING:
    from bench.run import Bench

WARMUP_S = 2
# No duration option: 200,000 SETs is ~2 s at what Redis does here.
REDIS_WARMUP_REQUESTS = 200_000
TIMED = "timed"


@dataclass(frozen=True)
class Load:
    id: str
    instance: str  # the server instance it runs against (bench.suites.INSTANCES)
    label: str
    suites: frozenset[str]
    path: str = ""  # HTTP path; none for Redis
    body: str = ""  # a Bodies attribute (a list of bodies for a multi load)
    clients: int = 4
    streams: int = 32
    protocol: str = "grpc"  # the headers: grpc, proto, json, json-h1 (HTTP/1.1), plain
    procs: int = 0  # a multi load's h2load processes
    lag: bool = False  # a lag load (bench.suites.replication)
    timed: bool = False  # runs of BENCH_SECONDS (-D) rather than sized from the warm-up
    cpu: bool = False  # also count the CPU its master and followers spend per write


@dataclass
class Measurement:
    rps: float
    p50: int
    p99: int
    gets: int = 0  # a multi load's: Gets that succeeded, disk reads among them
    reads: int = 0


def kind(bench: Bench, load: Load) -> str:
    if load.lag:
        return "lag"
    if bench.instances.spec(load.instance).system == "redis":
        return "redis"
    return "multi" if load.procs else "h2load"


def url(bench: Bench, load: Load) -> str:
    return f"http://{bench.instances.running[load.instance].address}{load.path}"


def run_h2load(bench: Bench, load: Load, out, *more: str) -> None:
    body = getattr(bench.bodies, load.body).path
    bench.processes.run_client(h2load.argv(url(bench, load), body, load.clients, load.streams, load.protocol, *more),
                               out, f"h2load failed on {load.label}")


def run_multi(bench: Bench, load: Load, out: str, log: str | None, *more: str) -> list:
    """load.procs h2load processes at once, process i sending body i, writing `out`.i (and,
    given `log`, its request log `log`.i); returns the output paths."""
    procs, outs = [], []
    for i, body in enumerate(getattr(bench.bodies, load.body)[:load.procs]):
        log_args = ["--log-file", str(bench.tmp / f"{log}.{i}")] if log else []
        outs.append(bench.tmp / f"{out}.{i}")
        procs.append(bench.processes.start_client(
            h2load.argv(url(bench, load), body.path, load.clients, load.streams, load.protocol, *log_args, *more),
            outs[-1]))
    failed = [i for i, proc in enumerate(procs) if bench.processes.finish_client(proc) != 0]
    for i in failed:
        show_file(outs[i])
        raise Fatal(f"h2load process {i} failed on {load.label}")
    return outs


def multi_total(outcomes: list) -> tuple[int, float]:
    """Every request that succeeded, and the time until the last process finished."""
    return sum(o.succeeded for o in outcomes), max(o.seconds for o in outcomes)


def warm_up(bench: Bench, load: Load) -> float:
    """A ~2 s run; its req/s."""
    out = bench.tmp / f"warmup.{load.id}.out"
    k = kind(bench, load)
    if k == "redis":
        return redis_tools.benchmark(bench.processes, bench.instances.running[load.instance].port, load.clients,
                                     REDIS_WARMUP_REQUESTS, out, load.label)[0]
    if k == "multi":
        outs = run_multi(bench, load, out.name, None, "-D", str(WARMUP_S))
        n, seconds = multi_total([h2load.check(o, load.label, None) for o in outs])
        return n / seconds if seconds > 0 else 0
    run_h2load(bench, load, out, "-D", str(WARMUP_S))
    return h2load.check(out, load.label, None).rps


def measure(bench: Bench, load: Load, requests: int | str, rnd: int) -> Measurement:
    """One run of a load (not a lag load): `requests` requests, or TIMED."""
    running = bench.instances.running[load.instance]
    before = (cpu_ticks(running.proc), cpu_ticks(*running.followers)) if load.cpu else None
    out = bench.tmp / f"load.{rnd}.{load.id}.out"
    latency_out = bench.tmp / f"load.{rnd}.{load.id}.latency.out"
    log = bench.tmp / "requests.log"
    k = kind(bench, load)
    if k == "redis":
        m = Measurement(*redis_tools.benchmark(bench.processes, running.port, load.clients, requests, out, load.label))
        account_cpu(bench, load, rnd, before, requests)
        return m
    if k == "multi":
        return measure_multi(bench, load, rnd)
    if requests == TIMED:
        run_h2load(bench, load, out, "-D", str(bench.settings.seconds))
        outcome = h2load.check(out, load.label, None)
        account_cpu(bench, load, rnd, before, outcome.succeeded)
        run_h2load(bench, load, latency_out, "-D", f"{bench.settings.seconds * 250}ms", "--log-file", str(log))
        h2load.check(latency_out, load.label, None)
    else:
        run_h2load(bench, load, out, "-n", str(requests))
        outcome = h2load.check(out, load.label, requests)
        latency_requests = max(200, requests // 4)
        run_h2load(bench, load, latency_out, "-n", str(latency_requests), "--log-file", str(log))
        h2load.check(latency_out, load.label, latency_requests)
    p50, p99 = h2load.percentiles(log)
    log.unlink()
    return Measurement(outcome.rps, p50, p99)


def account_cpu(bench: Bench, load: Load, rnd: int, before, writes: int) -> None:
    """The replication suite's throughput loads: CPU its master and followers spent in the
    throughput run, for the CPU per write they would cost on cores of their own."""
    if before is None:
        return
    running = bench.instances.running[load.instance]
    bench.records.cpu.append(CpuUse(rnd, load.id, cpu_ticks(running.proc) - before[0],
                                    cpu_ticks(*running.followers) - before[1], writes, CLOCK_TICKS))


def measure_multi(bench: Bench, load: Load, rnd: int) -> Measurement:
    """Each process runs for BENCH_SECONDS (-D), so that all run the whole time, and req/s is
    every Get that succeeded over the time until the last process finished (with
    BENCH_REQUESTS, N/processes each). Admin/Status disk_reads before and after give how many
    of those Gets were read back from disk. Latency comes from a second, quarter-length run
    with a request log per process."""
    running = bench.instances.running[load.instance]
    seconds, fixed = bench.settings.seconds, bench.settings.fixed_requests
    want = latency_want = None
    run, latency = ["-D", str(seconds)], ["-D", f"{seconds * 250}ms"]
    if fixed:
        want = max(1, fixed // load.procs)
        latency_want = max(50, want // 4)
        run, latency = ["-n", str(want)], ["-n", str(latency_want)]
    reads0 = checks.erdtree_count(bench.erdtree_bin, running.address, "disk reads")
    outs = run_multi(bench, load, f"load.{rnd}.{load.id}.out", None, *run)
    gets, secs = multi_total([h2load.check(o, load.label, want) for o in outs])
    reads = checks.erdtree_count(bench.erdtree_bin, running.address, "disk reads") - reads0
    if secs <= 0:
        raise Fatal(f"{load.label}: no duration in {outs[0]} (round {rnd})")
    outs = run_multi(bench, load, f"load.{rnd}.{load.id}.latency.out", "requests.log", *latency)
    for o in outs:
        h2load.check(o, load.label, latency_want)
    logs = [bench.tmp / f"requests.log.{i}" for i in range(load.procs)]
    p50, p99 = h2load.percentiles(*logs)
    for path in logs:
        path.unlink()
    return Measurement(round(gets / secs, 2), p50, p99, gets, reads)


def record(bench: Bench, load: Load, requests, rnd: int, m: Measurement) -> None:
    if load.procs:
        bench.records.runs.append(Run(rnd, load.id, m.gets, m.rps, m.p50, m.p99))
        bench.records.disk_reads.append(DiskReads(rnd, load.id, m.gets, m.reads))
    else:
        bench.records.runs.append(Run(rnd, load.id, requests, m.rps, m.p50, m.p99))
