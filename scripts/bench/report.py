#!/usr/bin/env python3
"""Turns h2load runs into the numbers bench.sh prints.

  report.py percentiles LOG_FILE      -> "p50_us p99_us" from h2load --log-file
  report.py rounds RESULTS_TSV        -> markdown table of every run
  report.py summary RESULTS_TSV [LOADS]
                                      -> markdown table of medians, ratios, goals; with
                                         LOADS (space-separated ids the selected suites
                                         hold), only the rows of those
  report.py recovery-log erdtree|redis SERVER_LOG
                                      -> seconds the server says recovery took, or "-"
  report.py recovery RECOVERY_TSV     -> markdown table of recovery medians and goal
  report.py recovery-rounds RECOVERY_TSV -> markdown table of every restart

RESULTS_TSV rows: round, load id, requests, req/s, p50 µs, p99 µs.
RECOVERY_TSV rows: round, system, records, ms from exec to ready, log seconds or "-".

Ratios are the median of per-round ratios, not the ratio of medians: the two
sides of a round ran back to back, so their quotient cancels most of what the
other tenants of this shared machine did at that moment.
"""
import math
import re
import statistics
import sys

# Load ids written by bench.sh, with what a reader should see.
# (In a round's order, which bench.sh decides.)
LOADS = {
    "get": "Erdtree Get (c4 m32)",
    "ngpost": "nghttpd POST 100 B (c4 m32)",
    "range": "etcd Range serializable (c4 m32)",
    "put": "etcd Put 100 B (c4 m32)",
    "set_always": "Erdtree Set 100 B, wal always (c4 m32)",
    "redis_always": "Redis SET 100 B, appendfsync always (c128)",
    "set": "Erdtree Set 100 B, wal 1s (c4 m32)",
    "redis_everysec": "Redis SET 100 B, appendfsync everysec (c128)",
    "get1": "Erdtree Get (c1 m1)",
    "ngpost1": "nghttpd POST 100 B (c1 m1)",
}

# (label, erdtree load, anchor load, compared metric, goal operator, goal value)
ROWS = [
    ("Get vs nghttpd POST", "get", "ngpost", "rps", ">=", 0.8),
    ("Get vs etcd Range", "get", "range", "rps", ">=", 10.0),
    ("Set (wal 1s) vs etcd Put (fsync per batch): not like for like", "set", "put", "rps", None, None),
    ("Set (wal always) vs etcd Put", "set_always", "put", "rps", ">=", 1.5),
    ("Set (wal always) vs Redis SET (appendfsync always)", "set_always", "redis_always", "rps", ">=", 1.0),
    ("Set (wal 1s) vs Redis SET (appendfsync everysec)", "set", "redis_everysec", "rps", ">=", 1.0),
    ("Get vs nghttpd POST, c1 m1, p50", "get1", "ngpost1", "p50", "<=", 1.3),
]

# Erdtree recovery goal, records per second from exec to SERVING.
RECOVERY_GOAL = 1_000_000


def percentiles(path: str) -> None:
    # Third column: microseconds from request start to end of response.
    durations = []
    with open(path) as f:
        for line in f:
            fields = line.split("\t")
            if len(fields) >= 3:
                durations.append(int(fields[2]))
    if not durations:
        sys.exit(f"report.py: no requests in h2load log {path}")
    durations.sort()

    def nearest_rank(q: float) -> int:
        return durations[max(0, math.ceil(q * len(durations)) - 1)]

    print(nearest_rank(0.50), nearest_rank(0.99))


def read_results(path: str) -> dict:
    """load id -> list of (round, rps, p50, p99)."""
    runs: dict = {}
    with open(path) as f:
        for line in f:
            rnd, load, _n, rps, p50, p99 = line.split()
            runs.setdefault(load, []).append((int(rnd), float(rps), float(p50), float(p99)))
    return runs


def fmt_us(us: float) -> str:
    return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"


def fmt_rps(rps: float) -> str:
    return f"{rps:,.0f}"


def rounds_table(path: str) -> None:
    runs = read_results(path)
    print("| round | load | req/s | p50 | p99 |")
    print("|---|---|---:|---:|---:|")
    ordered = sorted(
        ((rnd, load, rps, p50, p99) for load, rs in runs.items() for rnd, rps, p50, p99 in rs),
        key=lambda r: (r[0], list(LOADS).index(r[1]) if r[1] in LOADS else 99),
    )
    for rnd, load, rps, p50, p99 in ordered:
        print(f"| {rnd} | {LOADS.get(load, load)} | {fmt_rps(rps)} | {fmt_us(p50)} | {fmt_us(p99)} |")


def summary_table(path: str, wanted: set | None = None) -> None:
    runs = read_results(path)

    def medians(load: str):
        rs = runs.get(load)
        if not rs:
            return None
        return {
            "rps": statistics.median(r[1] for r in rs),
            "p50": statistics.median(r[2] for r in rs),
            "p99": statistics.median(r[3] for r in rs),
        }

    def side(m) -> tuple:
        if m is None:
            return "—", "—"
        return fmt_rps(m["rps"]), f"{fmt_us(m['p50'])} / {fmt_us(m['p99'])}"

    print("| load | erdtree req/s | anchor req/s | ratio | goal | erdtree p50/p99 | anchor p50/p99 |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for label, mine, anchor, metric, op, goal in ROWS:
        if wanted is not None and not {mine, anchor} <= wanted:
            continue  # a suite left out by BENCH_SUITES
        m, a = medians(mine), medians(anchor)
        ratio_txt, goal_txt = "—", "—" if op is None else f"{op.replace('>=', '≥').replace('<=', '≤')} {goal:g}×"
        if m is not None and a is not None:
            index = {"rps": 1, "p50": 2}[metric]
            by_round_mine = {r[0]: r[index] for r in runs[mine]}
            per_round = [by_round_mine[r[0]] / r[index] for r in runs[anchor]
                         if r[0] in by_round_mine and r[index] > 0]
            if per_round:
                ratio = statistics.median(per_round)
                ratio_txt = f"{ratio:.2f}×"
                if op is not None:
                    met = ratio >= goal if op == ">=" else ratio <= goal
                    goal_txt += ": **met**" if met else ": **missed**"
        mine_rps, mine_lat = side(m)
        anchor_rps, anchor_lat = side(a)
        print(f"| {label} | {mine_rps} | {anchor_rps} | {ratio_txt} | {goal_txt} | {mine_lat} | {anchor_lat} |")


# What each server logs once its data is loaded. Erdtree's master logs
# "WAL recovered" with swift-log metadata (records=N ... seconds=X); prose
# ("recovered N records ... in X s") is accepted too. Redis 7 logs "DB loaded
# from append only file: X seconds".
RECOVERY_LOG = {
    "erdtree": [
        re.compile(r"\bseconds=([\d.]+)().*\bWAL recovered\b|\bWAL recovered\b.*\bseconds=([\d.]+)()"),
        re.compile(r"recovered\s+[\d,_]+\s+records?\b.*?\bin\s+([\d.]+)\s*(ms|s|µs|us)\b", re.I),
    ],
    "redis": [re.compile(r"DB loaded from append only file:\s*([\d.]+)\s*(seconds)")],
}


def recovery_log(system: str, path: str) -> None:
    seconds = None
    with open(path, errors="replace") as f:
        for line in f:
            for pattern in RECOVERY_LOG[system]:
                m = pattern.search(line)
                if m:
                    # (number, unit) from whichever alternative matched.
                    number, unit = [g for g in m.groups() if g is not None][:2]
                    scale = {"ms": 1e-3, "µs": 1e-6, "us": 1e-6}.get(unit, 1.0)
                    seconds = float(number) * scale
                    break
    print("-" if seconds is None else f"{seconds:.3f}")


def read_recovery(path: str) -> dict:
    """system -> list of (round, records, wall seconds, log seconds or None)."""
    runs: dict = {}
    with open(path) as f:
        for line in f:
            rnd, system, records, wall_ms, log_s = line.split()
            runs.setdefault(system, []).append(
                (int(rnd), int(records), int(wall_ms) / 1000, None if log_s == "-" else float(log_s)))
    return runs


def fmt_rate(r: float) -> str:
    return f"{r / 1e6:.2f} M/s" if r >= 1e6 else f"{r / 1e3:,.0f} k/s"


def recovery_table(path: str) -> None:
    runs = read_recovery(path)
    mine, anchor = runs.get("erdtree"), runs.get("redis")

    def cells(rs):
        if not rs:
            return "—", "—", "—"
        wall = statistics.median(r[2] for r in rs)
        rate = statistics.median(r[1] / r[2] for r in rs if r[2] > 0)
        logged = [r[3] for r in rs if r[3] is not None]
        log_txt = "—"
        if logged:
            log_s = statistics.median(logged)
            log_txt = f"{log_s:.2f} s ({fmt_rate(rs[0][1] / log_s)})" if log_s > 0 else f"{log_s:.2f} s"
        return f"{wall:.2f} s", fmt_rate(rate), log_txt

    ratio_txt = "—"
    if mine and anchor:
        by_round = {r[0]: r[2] for r in anchor}
        per_round = [by_round[r[0]] / r[2] for r in mine if r[0] in by_round and r[2] > 0]
        if per_round:
            ratio_txt = f"{statistics.median(per_round):.2f}×"
    goal_txt = f"≥ {RECOVERY_GOAL / 1e6:g} M records/s"
    if mine:
        rate = statistics.median(r[1] / r[2] for r in mine if r[2] > 0)
        goal_txt += ": **met**" if rate >= RECOVERY_GOAL else ": **missed**"
    print("| system | exec → ready | records/s | server's own figure (log) |")
    print("|---|---:|---:|---:|")
    for name, rs, what in (("Erdtree (WAL replay)", mine, "Health SERVING"), ("Redis (AOF replay)", anchor, "loading:0")):
        wall, rate, log_txt = cells(rs)
        print(f"| {name}, to {what} | {wall} | {rate} | {log_txt} |")
    print()
    print(f"Erdtree speed ÷ Redis speed (median of per-round ratios): {ratio_txt}. Erdtree goal {goal_txt}.")


def recovery_rounds(path: str) -> None:
    runs = read_recovery(path)
    print("| round | recovery | records | exec → ready | log |")
    print("|---|---|---:|---:|---:|")
    rows = sorted((r[0], system, r) for system, rs in runs.items() for r in rs)
    for rnd, system, (_, records, wall, log_s) in rows:
        log_txt = "—" if log_s is None else f"{log_s:.3f} s"
        print(f"| {rnd} | {system} | {records:,} | {wall:.3f} s | {log_txt} |")


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "percentiles":
        percentiles(argv[2])
    elif len(argv) == 4 and argv[1] == "recovery-log" and argv[2] in RECOVERY_LOG:
        recovery_log(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "recovery":
        recovery_table(argv[2])
    elif len(argv) == 3 and argv[1] == "recovery-rounds":
        recovery_rounds(argv[2])
    elif len(argv) == 3 and argv[1] == "rounds":
        rounds_table(argv[2])
    elif len(argv) in (3, 4) and argv[1] == "summary":
        summary_table(argv[2], set(argv[3].split()) if len(argv) == 4 else None)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
