"""What a run measured, one row per run, restart, start or probe; the report reads these.

Named tuples: fields by name for the bench, by position for the report's tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Run(NamedTuple):
    round: int
    load: str
    requests: int | str  # "timed" for a run of BENCH_SECONDS; Gets that succeeded for a multi load
    rps: float
    p50: float  # µs
    p99: float


class DiskReads(NamedTuple):
    """A multi load's Gets and how many were read back from disk (Admin/Status disk_reads after minus before)."""

    round: int
    load: str
    gets: int
    reads: int


class Restart(NamedTuple):
    """A start timed from exec to ready (recovery, compacted)."""

    round: int
    system: str
    records: int
    wall_s: float
    log_s: float | None  # what the server's log says, if it says


class MemoryStart(NamedTuple):
    round: int
    system: str
    state: str  # empty | loaded
    keys: int
    rss_kb: int
    anon_kb: int
    file_kb: int
    data: int  # Erdtree: Status memory_bytes; Redis: INFO used_memory


class Scrape(NamedTuple):
    round: int
    keys: int
    seconds: float  # one GET /metrics over h2c, connection included (curl's time_total)


class LagSample(NamedTuple):
    round: int
    system: str
    lag_us: int
    reads: int
    set_us: int
    read_us: int  # the last read's round trip


class LagLoad(NamedTuple):
    round: int
    system: str
    target: int  # writes/s
    achieved: float
    outlasted: int  # 1 if the probes outlasted the background load


class Catchup(NamedTuple):
    round: int
    system: str
    entries: int
    ms: int


class Drain(NamedTuple):
    round: int
    load: str
    ms: int


class CpuUse(NamedTuple):
    round: int
    load: str
    master_ticks: int
    follower_ticks: int
    writes: int
    hz: int


class ClusterRound(NamedTuple):
    round: int
    rps: float
    p50: int
    p99: int


class Switchover(NamedTuple):
    round: int
    system: str
    unavailable_us: int  # first ack from the new master - send of the first write the old one did not ack
    redirected_us: int  # the first refusal - that send (the rest of unavailable_us: waiting on the new master)
    rate: float  # writes sent per second (each write's first send)
    writes: int
    refused: int  # writes refused at least once
    lost: int  # acknowledged, then missing or another value on the new master
    twice: int  # writes whose LSN was acknowledged before (Erdtree; over every switchover)
    unnamed: int  # refusals that named no master
    misnamed: int  # refusals whose erdtree-master named another node than the new master (Erdtree)
    bounced: int  # retries held back 1 ms: refused twice, or by a refusal naming no master
    switch_ms: float  # the Failover call's round trip (Redis: FAILOVER's +OK, before it switches)
    late: int  # writes first sent more than 10 ms after they were due
    examples: tuple[str, ...]  # the first refusal naming no master, the first write refused twice (repl_probe's words)


class Failover(NamedTuple):
    round: int
    system: str
    failover_us: int  # first ack from the new master - the master's kill
    rate: float  # writes sent per second (each write's first send)
    writes: int
    interrupted: int  # writes refused at least once or in flight on a closed connection
    dropped: int  # writes in flight on the killed master's connections (sent again)
    lost: int  # acknowledged, then missing or another value on the new master
    twice: int  # writes whose LSN was acknowledged before (Erdtree; over every trial)
    unnamed: int  # refusals that named no master
    polls: int  # look-ups of the master (Admin/Status rounds, SENTINEL get-master-addr-by-name rounds)
    late: int  # writes due before the kill first sent more than 10 ms after they were due
    new_master: str
    epoch: int  # of the new master's acknowledgements (Erdtree)


@dataclass
class Records:
    runs: list[Run] = field(default_factory=list)
    disk_reads: list[DiskReads] = field(default_factory=list)
    recovery: list[Restart] = field(default_factory=list)
    memory: list[MemoryStart] = field(default_factory=list)
    scrapes: list[Scrape] = field(default_factory=list)
    compacted: list[Restart] = field(default_factory=list)
    lags: list[LagSample] = field(default_factory=list)
    lag_loads: list[LagLoad] = field(default_factory=list)
    catchups: list[Catchup] = field(default_factory=list)
    drains: list[Drain] = field(default_factory=list)
    cpu: list[CpuUse] = field(default_factory=list)
    cluster: list[ClusterRound] = field(default_factory=list)
    switchovers: list[Switchover] = field(default_factory=list)
    failovers: list[Failover] = field(default_factory=list)
