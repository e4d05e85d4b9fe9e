"""The environment knobs of `make bench`, read and checked once.

Every knob keeps the name, default and refusal message it had in the earlier bash harness;
docs/benchmarks.md ("Running it") lists them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from bench.console import Fatal

SYSTEMS = ("erdtree", "nghttpd", "etcd", "redis")
SUITES = ("grpc", "connect", "durable", "recovery", "memory", "evicted", "compacted", "replication", "cluster",
          "switchover", "failover", "tls")
PROFILE_LOADS = ("get", "connect_proto", "connect_json")
POSITIVE = re.compile(r"[1-9][0-9]*")


@dataclass(frozen=True)
class Settings:
    rounds: int
    seconds: int
    fixed_requests: int | None  # BENCH_REQUESTS; None: sized per load from a warm-up
    systems: tuple[str, ...]
    suites: tuple[str, ...]  # as given (the report names them in this order)
    recovery_records: int
    repl_rate: int
    repl_samples: int
    switchovers: int
    switchover_rate: int
    failovers: int
    failover_rate: int
    event_loops: int | str  # server.event_loops as written into every Erdtree config
    out: Path | None
    keep: bool
    profile: bool
    profile_requests: int
    profile_load: str
    erdtree_bin: Path | None  # None: build one

    def has(self, system: str) -> bool:
        return system in self.systems

    def suite(self, name: str) -> bool:
        return name in self.suites

    @classmethod
    def from_env(cls, env=os.environ) -> Settings:
        def get(name: str, default: str) -> str:
            return env.get(name) or default  # set but empty means the default, as ${X:-d} did

        def positive(name: str, default: str) -> int:
            text = get(name, default)
            if not POSITIVE.fullmatch(text):
                raise Fatal(f"{name} must be a positive integer, got '{text}'")
            return int(text)

        rounds = positive("BENCH_ROUNDS", "3")
        seconds = positive("BENCH_SECONDS", "6")
        fixed = positive("BENCH_REQUESTS", "1") if env.get("BENCH_REQUESTS") else None
        profile_load = get("BENCH_PROFILE_LOAD", "get")
        if profile_load not in PROFILE_LOADS:
            raise Fatal(f"BENCH_PROFILE_LOAD: unknown load '{profile_load}' ({', '.join(PROFILE_LOADS)})")
        recovery_records = positive("BENCH_RECOVERY_RECORDS", "1000000")
        repl_rate = positive("BENCH_REPL_RATE", "20000")
        repl_samples = positive("BENCH_REPL_SAMPLES", "300")
        systems = tuple(get("BENCH_SYSTEMS", " ".join(SYSTEMS)).split())
        for s in systems:
            if s not in SYSTEMS:
                raise Fatal(f"BENCH_SYSTEMS: unknown system '{s}' ({', '.join(SYSTEMS)})")
        suites = tuple(get("BENCH_SUITES", " ".join(SUITES)).split())
        for s in suites:
            if s not in SUITES:
                raise Fatal(f"BENCH_SUITES: unknown suite '{s}' ({', '.join(SUITES)})")
        # The durable suite runs Erdtree with both settings side by side, so one
        # setting for the whole run no longer means anything.
        if env.get("BENCH_WAL_SYNC"):
            raise Fatal('BENCH_WAL_SYNC is gone: the durable suite benches wal.sync_interval "always" and "1s" '
                        "in the same run")
        # ERDTREE_BIN may be relative to where the bench was started; pin it down
        # before the servers run from a temp dir.
        binary = Path(os.path.realpath(env["ERDTREE_BIN"])) if env.get("ERDTREE_BIN") else None
        return cls(
            rounds=rounds, seconds=seconds, fixed_requests=fixed, systems=systems, suites=suites,
            recovery_records=recovery_records, repl_rate=repl_rate, repl_samples=repl_samples,
            switchovers=positive("BENCH_SWITCHOVERS", "10"), switchover_rate=positive("BENCH_SWITCHOVER_RATE", "10000"),
            failovers=positive("BENCH_FAILOVERS", "10"), failover_rate=positive("BENCH_FAILOVER_RATE", "10000"),
            event_loops=int(loops) if (loops := get("BENCH_EVENT_LOOPS", "1")).isdigit() else loops,
            out=Path(env["BENCH_OUT"]) if env.get("BENCH_OUT") else None,
            keep=get("BENCH_KEEP", "0") == "1", profile=get("BENCH_PROFILE", "0") == "1",
            profile_requests=positive("BENCH_PROFILE_REQUESTS", "20000"), profile_load=profile_load,
            erdtree_bin=binary,
        )
