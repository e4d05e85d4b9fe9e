"""The report's tables, from what the run recorded (bench.records).

Every table is markdown printed to stdout (the run collects it). Ratios are the median of
per-round ratios, not the ratio of medians: the two sides of a round ran back to back, so
their quotient cancels most of what the other tenants of this shared machine did at that
moment.
"""

from __future__ import annotations

import math
import statistics

# The order of the rows of "every run" (the labels come from the loads, bench.suites).
REPORT_ORDER = [
    "get", "ngpost", "range", "put", "set_always", "redis_always", "set", "set_ha_on", "redis_everysec",
    "connect_proto", "connect_json", "connect_json_h1", "get1", "ngpost1", "get_evicted", "get_resident", "get_evicted4",
    "get_resident4", "set_alone", "set_slaves", "redis_alone", "redis_replicas",
]

# (label, erdtree load, anchor load, compared metric, goal operator, goal value)
ROWS = [
    ("Get vs nghttpd POST", "get", "ngpost", "rps", ">=", 0.8),
    ("Get vs etcd Range", "get", "range", "rps", ">=", 10.0),
    ("Get with a read token vs Get with auth off", "get_auth", "get", "rps", ">=", 0.97),
    ("Get with a read token, auth on vs the same request to auth off (the check alone)", "get_auth", "get_header",
     "rps", None, None),
    ("Set (wal 1s) vs etcd Put (fsync per batch): not like for like", "set", "put", "rps", None, None),
    ("Set (wal always) vs etcd Put", "set_always", "put", "rps", ">=", 1.5),
    ("Set (wal always) vs Redis SET (appendfsync always)", "set_always", "redis_always", "rps", ">=", 1.0),
    ("Set (wal 1s) vs Redis SET (appendfsync everysec)", "set", "redis_everysec", "rps", ">=", 1.0),
    ("Set (wal 1s), ha on (erdtree node + etcd) vs ha off (erdtree master)", "set_ha_on", "set", "rps", ">=",
     0.97),
    ("Get vs nghttpd POST, c1 m1, p50", "get1", "ngpost1", "p50", "<=", 1.3),
    ("Connect Get, binary, h2c vs gRPC Get", "connect_proto", "get", "rps", ">=", 0.9),
    ("Connect Get, JSON, h2c vs gRPC Get", "connect_json", "get", "rps", ">=", 0.7),
    ("Connect Get, JSON, HTTP/1.1 (c128) vs gRPC Get", "connect_json_h1", "get", "rps", None, None),
    ("Get of evicted values vs resident (16 × c1 m2; anchor: Erdtree, all resident)",
     "get_evicted", "get_resident", "rps", ">=", 0.5),
    ("Get, 4 keys under max_entries 1 vs all resident (4 × c1 m32): partly evicted",
     "get_evicted4", "get_resident4", "rps", None, None),
]

# A row whose Erdtree load has disk-read counts (the evicted loads) is judged only
# when at least this share of its Gets (median over rounds) were read back from disk.
MOSTLY_DISK_READS = 0.5

# Replication goals: lag p99 (and at most Redis's), catch-up speed, and master
# Set throughput with 2 slaves attached over without.
LAG_GOAL_US = 5000
CATCHUP_GOAL = 500_000
REPL_THROUGHPUT_GOAL = 0.8

# Erdtree recovery goal, records per second from exec to SERVING.
RECOVERY_GOAL = 1_000_000
# Erdtree startup goal: exec to SERVING on a log of STARTUP_GOAL_KEYS live keys
# (a compacted log holds only live records, which is what the recovery data set
# is; the compacted suite's log is one the server compacted itself).
STARTUP_GOAL_KEYS = 1_000_000
STARTUP_GOAL_SECONDS = 1.0


def nearest_rank(values: list, q: float):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def by_load(runs: list) -> dict:
    """load id -> list of (round, rps, p50, p99)."""
    grouped: dict = {}
    for r in runs:
        grouped.setdefault(r.load, []).append((r.round, float(r.rps), float(r.p50), float(r.p99)))
    return grouped


def by_system(rows: list) -> dict:
    grouped: dict = {}
    for r in rows:
        grouped.setdefault(r.system, []).append(r)
    return grouped


def per_round_ratio(mine: list, anchor: list, index: int = 1) -> float | None:
    """The median over the rounds both sides ran of mine ÷ anchor, rows being (round, …) with
    the figure at `index`; None without such a round."""
    by_round = {r[0]: r[index] for r in anchor}
    ratios = [r[index] / by_round[r[0]] for r in mine if r[0] in by_round and by_round[r[0]] > 0]
    return statistics.median(ratios) if ratios else None


def fmt_us(us: float) -> str:
    return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"


def fmt_rps(rps: float) -> str:
    return f"{rps:,.0f}"


def rounds_table(runs_list: list, labels: dict) -> None:
    runs = by_load(runs_list)
    print("| round | load | req/s | p50 | p99 |")
    print("|---|---|---:|---:|---:|")
    ordered = sorted(
        ((rnd, load, rps, p50, p99) for load, rs in runs.items() for rnd, rps, p50, p99 in rs),
        key=lambda r: (r[0], REPORT_ORDER.index(r[1]) if r[1] in REPORT_ORDER else 99),
    )
    for rnd, load, rps, p50, p99 in ordered:
        print(f"| {rnd} | {labels.get(load, load)} | {fmt_rps(rps)} | {fmt_us(p50)} | {fmt_us(p99)} |")


def summary_rows(wanted: set) -> list:
    """The rows whose two loads the selected suites hold (others belong to a suite left out)."""
    return [row for row in ROWS if {row[1], row[2]} <= wanted]


def summary_table(runs_list: list, wanted: set, disk_read_rows: list) -> None:
    runs = by_load(runs_list)
    shares = disk_read_shares(disk_read_rows)

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

    rows = summary_rows(wanted)
    print("| load | erdtree req/s | anchor req/s | ratio | goal | erdtree p50/p99 | anchor p50/p99 |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for label, mine, anchor, metric, op, goal in rows:
        m, a = medians(mine), medians(anchor)
        ratio_txt, goal_txt = "—", "—" if op is None else f"{op.replace('>=', '≥').replace('<=', '≤')} {goal:g}×"
        if m is not None and a is not None:
            ratio = per_round_ratio(runs[mine], runs[anchor], {"rps": 1, "p50": 2}[metric])
            if ratio is not None:
                ratio_txt = f"{ratio:.2f}×"
                if op is not None and mine in shares and shares[mine] < MOSTLY_DISK_READS:
                    goal_txt += f": not judged, {shares[mine]:.0%} of Gets were disk reads"
                elif op is not None:
                    met = ratio >= goal if op == ">=" else ratio <= goal
                    goal_txt += ": **met**" if met else ": **missed**"
        mine_rps, mine_lat = side(m)
        anchor_rps, anchor_lat = side(a)
        print(f"| {label} | {mine_rps} | {anchor_rps} | {ratio_txt} | {goal_txt} | {mine_lat} | {anchor_lat} |")


def read_recovery(restarts: list) -> dict:
    """system -> list of (round, records, wall seconds, log seconds or None)."""
    return {system: [(r.round, r.records, r.wall_s, r.log_s) for r in rs]
            for system, rs in by_system(restarts).items()}


def fmt_rate(r: float) -> str:
    return f"{r / 1e6:.2f} M/s" if r >= 1e6 else f"{r / 1e3:,.0f} k/s"


def recovery_table(restarts: list) -> None:
    runs = read_recovery(restarts)
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
        # Speed: Redis's time over Erdtree's.
        ratio = per_round_ratio(anchor, mine, 2)
        if ratio is not None:
            ratio_txt = f"{ratio:.2f}×"
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
    if mine:
        keys = mine[0][1]
        wall = statistics.median(r[2] for r in mine)
        startup_goal_line(f"Startup with {keys:,} keys (Erdtree, exec → SERVING, median)", keys, wall)


def startup_goal_line(what: str, keys: int, wall: float) -> None:
    """The startup goal's verdict, judged only on the goal's key count."""
    line = f"{what}: {wall:.2f} s, goal ≤ {STARTUP_GOAL_SECONDS:g} s"
    if keys == STARTUP_GOAL_KEYS:
        line += ": **met**" if wall <= STARTUP_GOAL_SECONDS else ": **missed**"
    else:
        line += f" with {STARTUP_GOAL_KEYS:,} keys: not judged on {keys:,}"
    print()
    print(line + ".")


def fmt_mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def compacted_table(restarts: list) -> None:
    rs = read_recovery(restarts).get("erdtree")
    print("| startup | keys | exec → SERVING (median) | keys/s | server's own figure (log) |")
    print("|---|---:|---:|---:|---:|")
    if not rs:
        print("| Erdtree on its compacted log | — | — | — | — |")
        return
    keys = rs[0][1]
    wall = statistics.median(r[2] for r in rs)
    rate = statistics.median(r[1] / r[2] for r in rs if r[2] > 0)
    logged = [r[3] for r in rs if r[3] is not None]
    log_txt = f"{statistics.median(logged):.2f} s" if logged else "—"
    print(f"| Erdtree on the log it compacted itself | {keys:,} | {wall:.2f} s | {fmt_rate(rate)} | {log_txt} |")
    startup_goal_line(
        f"Startup with {keys:,} keys after compaction (compacted by the server), exec → SERVING, median of {len(rs)}",
        keys, wall)


def compacted_rounds(restarts: list) -> None:
    rs = read_recovery(restarts).get("erdtree", [])
    print("| round | startup after compaction | keys | exec → SERVING | log |")
    print("|---|---|---:|---:|---:|")
    for rnd, keys, wall, log_s in sorted(rs):
        log_txt = "—" if log_s is None else f"{log_s:.3f} s"
        print(f"| {rnd} | erdtree | {keys:,} | {wall:.3f} s | {log_txt} |")


def recovery_rounds(restarts: list) -> None:
    runs = read_recovery(restarts)
    print("| round | recovery | records | exec → ready | log |")
    print("|---|---|---:|---:|---:|")
    rows = sorted((r[0], system, r) for system, rs in runs.items() for r in rs)
    for rnd, system, (_, records, wall, log_s) in rows:
        log_txt = "—" if log_s is None else f"{log_s:.3f} s"
        print(f"| {rnd} | {system} | {records:,} | {wall:.3f} s | {log_txt} |")


def read_disk_reads(rows: list) -> dict:
    """load id -> list of (round, Gets, disk reads)."""
    runs: dict = {}
    for r in rows:
        runs.setdefault(r.load, []).append((r.round, r.gets, r.reads))
    return runs


def disk_read_shares(rows: list) -> dict:
    """load id -> median over rounds of disk reads ÷ Gets."""
    shares = {}
    for load, rs in read_disk_reads(rows).items():
        per_round = [reads / gets for _, gets, reads in rs if gets > 0]
        if per_round:
            shares[load] = statistics.median(per_round)
    return shares


def disk_reads(rows: list, labels: dict) -> None:
    """One line per load: the median over rounds of disk reads ÷ Gets."""
    shares = disk_read_shares(rows)
    print()
    for load, rs in read_disk_reads(rows).items():
        each = ", ".join(f"{reads:,} of {gets:,}" for _, gets, reads in sorted(rs))
        share = f"{shares[load]:.1%}" if load in shares else "—"
        print(f"- {labels.get(load, load)}: {share} of Gets were disk reads (median of rounds; {each}).")


def read_memory(starts: list) -> dict:
    """system -> round -> state -> (keys, rss kB, anon kB, file kB, data bytes)."""
    runs: dict = {}
    for m in starts:
        runs.setdefault(m.system, {}).setdefault(m.round, {})[m.state] = (m.keys, m.rss_kb, m.anon_kb, m.file_kb,
                                                                          m.data)
    return runs


def fmt_kb(kb: float) -> str:
    return f"{kb / 1024:.1f} MiB"


def memory_per_key(rounds: dict) -> list:
    """Per round with both starts: (round, RSS B/key, anon B/key, file B/key, data B/key, empty, loaded)."""
    out = []
    for rnd, states in sorted(rounds.items()):
        if "empty" not in states or "loaded" not in states or states["loaded"][0] == 0:
            continue
        empty, loaded = states["empty"], states["loaded"]
        keys = loaded[0]
        out.append((rnd, *((loaded[i] - empty[i]) * 1024 / keys for i in (1, 2, 3)),
                    (loaded[4] - empty[4]) / keys, empty, loaded))
    return out


def memory_table(starts: list) -> None:
    runs = read_memory(starts)
    per = {system: memory_per_key(rounds) for system, rounds in runs.items()}
    print("| system | VmRSS empty | VmRSS loaded | RSS per key | anon / file per key | data per key |")
    print("|---|---:|---:|---:|---:|---:|")
    names = (("erdtree", "Erdtree (WAL replay)", "memory_bytes"), ("redis", "Redis (AOF load)", "used_memory"))
    for system, name, data_what in names:
        rs = per.get(system)
        if not rs:
            print(f"| {name} | — | — | — | — | — |")
            continue
        rss, anon, file_b, data = (statistics.median(r[i] for r in rs) for i in (1, 2, 3, 4))
        empty_kb = statistics.median(r[5][1] for r in rs)
        loaded_kb = statistics.median(r[6][1] for r in rs)
        # round(): a per-key difference of a few kB over a million keys is 0 B, not "-0 B".
        print(f"| {name} | {fmt_kb(empty_kb)} | {fmt_kb(loaded_kb)} | {round(rss)} B | "
              f"{round(anon)} B / {round(file_b)} B | {round(data)} B ({data_what}) |")
    mine, anchor = per.get("erdtree"), per.get("redis")
    ratio_txt, goal_txt = "—", "Erdtree RSS per key ≤ Redis RSS per key"
    if mine and anchor:
        ratio = per_round_ratio(mine, anchor)
        if ratio is not None:
            ratio_txt = f"{ratio:.2f}×"
            goal_txt += ": **met**" if ratio <= 1.0 else ": **missed**"
    print()
    print("Data per key: Erdtree's Admin/Status memory_bytes (the key and value bytes it holds, no overhead),")
    print("Redis's INFO used_memory (what its allocator handed out), loaded minus empty.")
    print()
    print(f"Erdtree RSS per key ÷ Redis RSS per key (median of per-round ratios): {ratio_txt}. Goal: {goal_txt}.")


def memory_rounds(starts: list) -> None:
    runs = read_memory(starts)
    print("| round | memory | start | keys | VmRSS | RssAnon | RssFile | data bytes |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    rows = sorted((rnd, system, state, figures) for system, rounds in runs.items()
                  for rnd, states in rounds.items() for state, figures in states.items())
    for rnd, system, state, (keys, rss, anon, file_kb, data) in rows:
        print(f"| {rnd} | {system} | {state} | {keys:,} | {rss:,} kB | {anon:,} kB | {file_kb:,} kB | {data:,} |")


SYSTEM_NAMES = {"erdtree": "Erdtree", "redis": "Redis"}


def replication(lags: list, loads: list, catchups: list, runs: list, drains: list, cpu: list) -> None:
    results = by_load(runs)

    # Lag.
    print("#### Lag at a fixed write rate")
    print()
    print("| system | probes | lag p50 | lag p99 | max | over 5 ms | background writes/s (target) "
          "| read round trip p50 | Set round trip p50 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    pooled, per_round_p99 = {}, {}
    for system, name in (("erdtree", "Erdtree master, 2 slaves (Get on a slave)"),
                         ("redis", "Redis master, 2 replicas (GET on a replica)")):
        mine = [r for r in lags if r[1] == system]
        mine_loads = [r for r in loads if r[1] == system]
        if not mine:
            print(f"| {name} | — | — | — | — | — | — | — | — |")
            continue
        values = [r[2] for r in mine]
        pooled[system] = nearest_rank(values, 0.99)
        per_round_p99[system] = {rnd: nearest_rank([r[2] for r in mine if r[0] == rnd], 0.99)
                                 for rnd in sorted({r[0] for r in mine})}
        over = sum(1 for v in values if v > LAG_GOAL_US)
        rate = statistics.median(r[3] for r in mine_loads) if mine_loads else 0
        target = mine_loads[0][2] if mine_loads else 0
        print(f"| {name} | {len(values)} | {fmt_us(nearest_rank(values, 0.5))} | {fmt_us(pooled[system])} | "
              f"{fmt_us(max(values))} | {over} | {fmt_rps(rate)} ({fmt_rps(target)}) | "
              f"{fmt_us(statistics.median(r[5] for r in mine))} | {fmt_us(statistics.median(r[4] for r in mine))} |")
    print()
    print("Lag: from the master's answer to the arrival of the first read answer on the follower that held the")
    print("value, so it includes up to one read round trip (its median is in the table). Percentiles over every")
    print("probe of every round (nearest rank).")
    if "erdtree" in pooled:
        goal = f"Erdtree p99 ≤ Redis p99 and ≤ {LAG_GOAL_US / 1000:g} ms"
        line = ""
        if "redis" in pooled and pooled["redis"] > 0:
            ratios = [per_round_p99["erdtree"][rnd] / per_round_p99["redis"][rnd]
                      for rnd in per_round_p99["erdtree"] if rnd in per_round_p99["redis"]
                      and per_round_p99["redis"][rnd] > 0]
            line = (f"Erdtree p99 ÷ Redis p99: {pooled['erdtree'] / pooled['redis']:.2f}× over all probes"
                    + (f", {statistics.median(ratios):.2f}× as the median of per-round ratios" if ratios else "")
                    + ". ")
            met = pooled["erdtree"] <= pooled["redis"] and pooled["erdtree"] <= LAG_GOAL_US
            goal += ": **met**" if met else ": **missed**"
            if not met:
                why = []
                if pooled["erdtree"] > pooled["redis"]:
                    why.append(f"{fmt_us(pooled['erdtree'])} > Redis's {fmt_us(pooled['redis'])}")
                if pooled["erdtree"] > LAG_GOAL_US:
                    why.append(f"{fmt_us(pooled['erdtree'])} > {LAG_GOAL_US / 1000:g} ms")
                goal += " (" + "; ".join(why) + ")"
        else:
            goal += ": not judged without Redis"
        print()
        print(f"{line}Goal: {goal}.")
    short = [r for r in loads if r[3] < 0.95 * r[2]]
    outlasted = [r for r in loads if r[4]]
    if short:
        print()
        print("**The background load fell short of its target** in " + ", ".join(
            f"round {r[0]} ({SYSTEM_NAMES.get(r[1], r[1])}: {fmt_rps(r[3])} of {fmt_rps(r[2])} writes/s)"
            for r in short) + ": those probes ran under less load.")
    if outlasted:
        print()
        print("The probes outlasted the background load in " + ", ".join(
            f"round {r[0]} ({SYSTEM_NAMES.get(r[1], r[1])})" for r in outlasted)
            + ": the last probes of those rounds ran without it.")

    # Catch-up.
    if catchups:
        entries = catchups[0][2]
        print()
        print(f"#### Catch-up: an empty follower {entries:,} entries behind")
        print()
        print("| follower | exec → last entry readable | entries/s | how it catches up |")
        print("|---|---:|---:|---|")
        speed = {}
        for system, name, how in (
                ("erdtree", "Erdtree slave", "streams the master's WAL from LSN 1 (incremental)"),
                ("redis", "Redis replica", "full sync: the master forks and streams an RDB snapshot (diskless)")):
            rs = [r for r in catchups if r[1] == system]
            if not rs:
                print(f"| {name} | — | — | {how} |")
                continue
            speed[system] = {r[0]: r[2] / (r[3] / 1000) for r in rs if r[3] > 0}
            print(f"| {name} | {statistics.median(r[3] for r in rs) / 1000:.2f} s | "
                  f"{fmt_rate(statistics.median(speed[system].values()))} | {how} |")
        print()
        line = ""
        if "erdtree" in speed and "redis" in speed:
            ratios = [speed["erdtree"][rnd] / speed["redis"][rnd] for rnd in speed["erdtree"] if rnd in speed["redis"]]
            if ratios:
                line = f"Erdtree speed ÷ Redis speed (median of per-round ratios): {statistics.median(ratios):.2f}×. "
        goal = f"Erdtree ≥ {CATCHUP_GOAL:,} entries/s"
        if "erdtree" in speed and speed["erdtree"]:
            rate = statistics.median(speed["erdtree"].values())
            goal += ": **met**" if rate >= CATCHUP_GOAL else ": **missed**"
        print(f"{line}Goal: {goal}.")

    # Master throughput with followers vs without.
    pairs = (("Erdtree Set 100 B, wal 1s (c4 m32)", "set_alone", "set_slaves", "slaves", True),
             ("Redis SET 100 B, everysec (c128)", "redis_alone", "redis_replicas", "replicas", False))
    if any(alone in results or attached in results for _, alone, attached, _, _ in pairs):
        print()
        print("#### Master write throughput with 2 followers attached vs without")
        print()
        print("| master | alone req/s | with 2 followers req/s | ratio | goal | p99 alone / with "
              "| followers caught up after the run |")
        print("|---|---:|---:|---:|---|---:|---|")
        for label, alone, attached, what, judged in pairs:
            a, w = results.get(alone), results.get(attached)
            cells = ["—", "—"]
            p99 = "—"
            ratio_txt = "—"
            goal_txt = f"≥ {REPL_THROUGHPUT_GOAL:g}×" if judged else "— (reference)"
            if a:
                cells[0] = fmt_rps(statistics.median(r[1] for r in a))
            if w:
                cells[1] = fmt_rps(statistics.median(r[1] for r in w))
            if a and w:
                ratio = per_round_ratio(w, a)
                if ratio is not None:
                    ratio_txt = f"{ratio:.2f}×"
                    if judged:
                        goal_txt += ": **met**" if ratio >= REPL_THROUGHPUT_GOAL else ": **missed**"
                p99 = (f"{fmt_us(statistics.median(r[3] for r in a))} / "
                       f"{fmt_us(statistics.median(r[3] for r in w))}")
            drained = sorted(r[2] for r in drains if r[1] == attached)
            drain_txt = "—" if not drained else (
                f"{statistics.median(drained):.0f} ms (median; " + ", ".join(str(d) for d in drained) + " ms)")
            print(f"| {label} | {cells[0]} | {cells[1]} | {ratio_txt} | {goal_txt} | {p99} | {drain_txt} |")
        print()
        print("Followers caught up: from the end of the with-followers measurement (its throughput run,")
        print("then, for Erdtree, its shorter latency run) until both followers returned a key written")
        print("on the master right then (the probe's start and two writes and reads: ~2 ms at the least);")
        print("replication is asynchronous, so a master that outruns its followers shows it here rather")
        print("than in its req/s.")
        cpu_per_write(cpu, pairs)


def cpu_per_write(rows: list, pairs: tuple) -> None:
    """CPU the master and its followers spent per write in those throughput runs (medians of rounds).

    On 2 shared cores the with-followers req/s also measures how much CPU the followers take
    from the master and the client; the master's own CPU per write, alone and with followers,
    says what followers cost the master itself (as on machines of their own)."""
    if not rows:
        return
    per = {}  # load id -> ([master µs/write], [followers µs/write])
    for _, load, master, followers, writes, hz in rows:
        if writes > 0 and hz > 0:
            mine = per.setdefault(load, ([], []))
            mine[0].append(master / hz / writes * 1e6)
            mine[1].append(followers / hz / writes * 1e6)
    print()
    print("CPU per write in those runs (µs of user + system time, median of rounds): the master's")
    print("own cost alone and with its followers, and what both followers spent together.")
    print()
    print("| master | master alone | master with 2 followers | alone ÷ with (master's own) | 2 followers |")
    print("|---|---:|---:|---:|---:|")
    for label, alone, attached, _, _ in pairs:
        a, w = per.get(alone), per.get(attached)
        if not a and not w:
            continue
        alone_us = statistics.median(a[0]) if a else None
        with_us = statistics.median(w[0]) if w else None
        followers_us = statistics.median(w[1]) if w else None
        cell = lambda v: "—" if v is None else f"{v:.2f} µs"
        ratio = f"{alone_us / with_us:.2f}×" if alone_us and with_us else "—"
        print(f"| {label} | {cell(alone_us)} | {cell(with_us)} | {ratio} | {cell(followers_us)} |")


def replication_rounds(lags: list, lag_loads: list, catchups: list) -> None:
    loads = {(r[0], r[1]): r for r in lag_loads}
    if lags:
        print("| round | lag | probes | p50 | p99 | max | background writes/s |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for rnd, system in sorted({(r[0], r[1]) for r in lags}, key=lambda k: (k[0], k[1] != "erdtree")):
            values = [r[2] for r in lags if r[0] == rnd and r[1] == system]
            load = loads.get((rnd, system))
            rate = "—" if load is None else fmt_rps(load[3]) + (" (probes outlasted it)" if load[4] else "")
            print(f"| {rnd} | {system} | {len(values)} | {fmt_us(nearest_rank(values, 0.5))} | "
                  f"{fmt_us(nearest_rank(values, 0.99))} | {fmt_us(max(values))} | {rate} |")
    if catchups:
        if lags:
            print()
        print("| round | catch-up | entries | exec → last entry readable | entries/s |")
        print("|---|---|---:|---:|---:|")
        for rnd, system, entries, ms in sorted(catchups, key=lambda r: (r[0], r[1] != "erdtree")):
            print(f"| {rnd} | {system} | {entries:,} | {ms / 1000:.3f} s | {fmt_rate(entries / (ms / 1000)) if ms else '—'} |")


def cluster(rows: list, lag_samples: list, runs: list) -> None:
    lags = [r[2] for r in lag_samples if r[1] == "erdtree"]
    results = by_load(runs)
    set_slaves = [r[1] for r in results.get("set_slaves", [])]
    print("| measure | 3 hosts, +1 ms each way | loopback (replication suite) |")
    print("|---|---:|---:|")
    loop_rps = fmt_rps(statistics.median(set_slaves)) if set_slaves else "—"
    print(f"| master Set req/s with 2 slaves (c4 m32) | {fmt_rps(statistics.median(r[1] for r in rows))} | {loop_rps} |")
    for name, column, q in (("lag p50", 2, 0.50), ("lag p99", 3, 0.99)):
        loop = fmt_us(nearest_rank(lags, q)) if lags else "—"
        print(f"| {name} (median of rounds; loopback: all probes) | {fmt_us(statistics.median(r[column] for r in rows))} "
              f"| {loop} |")
    print()
    print("| round | Set req/s | lag p50 | lag p99 |")
    print("|---|---:|---:|---:|")
    for rnd, rps, p50, p99 in rows:
        print(f"| {rnd} | {fmt_rps(rps)} | {fmt_us(p50)} | {fmt_us(p99)} |")


def per_system(rows: list, names: tuple, field: str, cells: int):
    """For each (system, name) with rows: the system, its name, its rows and their `field`; a
    system without rows gets a table row of `cells` dashes instead."""
    for system, name in names:
        mine = [r for r in rows if r.system == system]
        if not mine:
            print(f"| {name} |" + " — |" * cells)
            continue
        yield system, name, mine, [getattr(r, field) for r in mine]


def switchover(rows: list, goal_ms: float) -> None:
    names = (("erdtree", "Erdtree, Admin/Failover"), ("redis", "Redis, FAILOVER TO"))
    print("| system | switchovers | unavailable median | p90 | max | writes/s sent (median) | writes refused "
          "| acked writes lost | LSNs acked twice | refusals naming no master / another node |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    medians, lost = {}, {}
    for system, name, mine, values in per_system(rows, names, "unavailable_us", 9):
        medians[system], lost[system] = statistics.median(values), sum(r.lost for r in mine)
        twice, misnamed = (f"{sum(getattr(r, field) for r in mine):,}" if system == "erdtree" else "—"
                           for field in ("twice", "misnamed"))
        print(f"| {name} | {len(mine)} | {fmt_us(medians[system])} | {fmt_us(nearest_rank(values, 0.9))} | "
              f"{fmt_us(max(values))} | {fmt_rps(statistics.median(r.rate for r in mine))} | "
              f"{sum(r.refused for r in mine):,} of {sum(r.writes for r in mine):,} | {lost[system]:,} of "
              f"{sum(r.writes for r in mine):,} | {twice} | {sum(r.unnamed for r in mine):,} / {misnamed} |")
    if "erdtree" not in medians:
        return
    goal = f"Erdtree median ≤ {goal_ms:g} ms and ≤ Redis's, 0 acknowledged writes lost"
    line = ""
    if "redis" in medians:
        ratio = per_round_ratio([(r.round, r.unavailable_us) for r in rows if r.system == "erdtree"],
                                [(r.round, r.unavailable_us) for r in rows if r.system == "redis"])
        line = (f"Erdtree median ÷ Redis median: {medians['erdtree'] / medians['redis']:.3f}×"
                + (f" ({ratio:.3f}× as the median of per-switchover ratios). " if ratio is not None else ". "))
        why = []
        if medians["erdtree"] > goal_ms * 1000:
            why.append(f"{fmt_us(medians['erdtree'])} > {goal_ms:g} ms")
        if medians["erdtree"] > medians["redis"]:
            why.append(f"{fmt_us(medians['erdtree'])} > Redis's {fmt_us(medians['redis'])}")
        if lost["erdtree"]:
            why.append(f"{lost['erdtree']:,} acknowledged writes lost")
        goal += ": **met**" if not why else ": **missed** (" + "; ".join(why) + ")"
    else:
        goal += ": not judged without Redis"
    print()
    print(f"{line}Goal: {goal}.")
    for system, name in names:
        firsts: dict = {}  # the first refusal naming no master, the first write refused twice
        for r in rows:
            for example in r.examples if r.system == system else ():
                firsts.setdefault(example.split()[0], f"switchover {r.round}: `{example}`")
        if firsts:
            print()
            print(f"{name}, the first of each: " + "; ".join(firsts.values()) + ".")
    late = sum(r.late for r in rows)
    if late:
        print()
        print(f"{late:,} writes were sent more than 10 ms after they were due (every connection at its bound of "
              "writes in flight, as during a long hold): the load is open-loop only up to that bound.")


def switchover_rounds(rows: list) -> None:
    print("| switchover | system | unavailable | of which until the first refusal | writes/s sent | refused | lost "
          "| LSNs twice | no master named / another node | retries held back | Failover call | sent > 10 ms late |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r.round, r.system != "erdtree")):
        twice, misnamed = (f"{n:,}" if r.system == "erdtree" else "—" for n in (r.twice, r.misnamed))
        print(f"| {r.round} | {r.system} | {fmt_us(r.unavailable_us)} | {fmt_us(r.redirected_us)} | {fmt_rps(r.rate)} | "
              f"{r.refused:,} | {r.lost:,} | {twice} | {r.unnamed:,} / {misnamed} | {r.bounced:,} | "
              f"{r.switch_ms:.1f} ms | {r.late:,} |")


def failover(rows: list, goal_s: float) -> None:
    names = (("erdtree", "Erdtree, erdtree node + etcd"), ("redis", "Redis, Sentinel"))
    print("| system | trials | failover median | p90 | min | max | writes/s sent (median) | writes interrupted "
          "| acked writes lost | LSNs acked twice |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    medians, lost = {}, {}
    for system, name, mine, values in per_system(rows, names, "failover_us", 9):
        medians[system], lost[system] = statistics.median(values), sum(r.lost for r in mine)
        writes = sum(r.writes for r in mine)
        twice = f"{sum(r.twice for r in mine):,}" if system == "erdtree" else "—"
        print(f"| {name} | {len(mine)} | {fmt_us(medians[system])} | {fmt_us(nearest_rank(values, 0.9))} | "
              f"{fmt_us(min(values))} | {fmt_us(max(values))} | {fmt_rps(statistics.median(r.rate for r in mine))} | "
              f"{sum(r.interrupted for r in mine):,} of {writes:,} | {lost[system]:,} of {writes:,} | {twice} |")
    if "erdtree" not in medians:
        return
    goal = f"Erdtree median ≤ {goal_s:g} s and ≤ Sentinel's, 0 acknowledged writes lost"
    why = []
    if medians["erdtree"] > goal_s * 1e6:
        why.append(f"{fmt_us(medians['erdtree'])} > {goal_s:g} s")
    if lost["erdtree"]:
        why.append(f"{lost['erdtree']:,} acknowledged writes lost")
    line = ""
    if "redis" in medians:
        line = f"Erdtree median ÷ Sentinel median: {medians['erdtree'] / medians['redis']:.2f}×. "
        if medians["erdtree"] > medians["redis"]:
            why.append(f"{fmt_us(medians['erdtree'])} > Sentinel's {fmt_us(medians['redis'])}")
        goal += ": **met**" if not why else ": **missed** (" + "; ".join(why) + ")"
    else:
        goal += ": not judged without Redis" + (f" (already missed: {'; '.join(why)})" if why else "")
    print()
    print(f"{line}Goal: {goal}.")
    late = sum(r.late for r in rows)
    if late:
        print()
        print(f"{late:,} writes due before a kill were sent more than 10 ms late: the rate was not sustained.")


def failover_rounds(rows: list) -> None:
    print("| trial | system | new master | failover | writes/s sent | interrupted | in flight on the killed master "
          "| lost | LSNs twice | refusals naming no master | master look-ups | epoch |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r.round, r.system != "erdtree")):
        erdtree = r.system == "erdtree"
        print(f"| {r.round} | {r.system} | {r.new_master} | {fmt_us(r.failover_us)} | {fmt_rps(r.rate)} | "
              f"{r.interrupted:,} | {r.dropped:,} | {r.lost:,} | {f'{r.twice:,}' if erdtree else '—'} | "
              f"{r.unnamed:,} | {r.polls:,} | {r.epoch if erdtree else '—'} |")
