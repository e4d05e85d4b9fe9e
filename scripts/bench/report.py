#!/usr/bin/env python3
"""Turns h2load runs into the numbers bench.sh prints.

  report.py percentiles LOG_FILE      -> "p50_us p99_us" from h2load --log-file
  report.py rounds RESULTS_TSV        -> markdown table of every run
  report.py summary RESULTS_TSV       -> markdown table of medians, ratios, goals

RESULTS_TSV rows: round, load id, requests, req/s, p50 µs, p99 µs.

Ratios are the median of per-round ratios, not the ratio of medians: the two
sides of a round ran back to back, so their quotient cancels most of what the
other tenants of this shared machine did at that moment.
"""
import math
import statistics
import sys

# Load ids written by bench.sh, with what a reader should see.
LOADS = {
    "get": "Erdtree Get (c4 m32)",
    "set": "Erdtree Set 100 B (c4 m32)",
    "get1": "Erdtree Get (c1 m1)",
    "ngpost": "nghttpd POST 100 B (c4 m32)",
    "ngpost1": "nghttpd POST 100 B (c1 m1)",
    "range": "etcd Range serializable (c4 m32)",
    "put": "etcd Put 100 B (c4 m32)",
}

# (label, erdtree load, anchor load, compared metric, goal operator, goal value)
ROWS = [
    ("Get vs nghttpd POST", "get", "ngpost", "rps", ">=", 0.8),
    ("Get vs etcd Range", "get", "range", "rps", ">=", 10.0),
    ("Set vs etcd Put", "set", "put", "rps", None, None),
    ("Get vs nghttpd POST, c1 m1, p50", "get1", "ngpost1", "p50", "<=", 1.3),
]


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


def summary_table(path: str) -> None:
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


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "percentiles":
        percentiles(argv[2])
    elif len(argv) == 3 and argv[1] == "rounds":
        rounds_table(argv[2])
    elif len(argv) == 3 and argv[1] == "summary":
        summary_table(argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
