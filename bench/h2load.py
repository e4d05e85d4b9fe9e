"""h2load, the load generator of every HTTP/2 (and the HTTP/1.1 Connect) load.

h2load counts a response as succeeded from :status alone, so anything but every request
answered 2xx is a broken run, not a slow one; gRPC errors ride in trailers under :status 200,
which the checks (bench.checks) sample another way.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from bench.console import Fatal, show
from bench.report import nearest_rank

# The auth instance's tokens, one per role it is configured with; a fresh secret each run.
BENCH_TOKENS = {role: secrets.token_hex(24) for role in ("read", "write")}

# The protocol column of a load: the headers h2load sends.
HEADERS = {
    "grpc": ["-H", "content-type: application/grpc", "-H", "te: trailers"],
    # gRPC with the read token the auth instance accepts (bench.servers.erdtree_auth).
    "grpc-read-token": ["-H", "content-type: application/grpc", "-H", "te: trailers",
                        "-H", f"authorization: Bearer {BENCH_TOKENS['read']}"],
    "proto": ["-H", "content-type: application/proto"],
    "json": ["-H", "content-type: application/json"],
    "json-h1": ["--h1", "-H", "content-type: application/json"],
    "plain": [],
}

REQUESTS = re.compile(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                      r"(\d+) errored, (\d+) timeout", re.M)
STATUS_2XX = re.compile(r"^status codes: (\d+) 2xx", re.M)
# h2load prints the duration as 1.23s, 456.78ms or 901us.
FINISHED = re.compile(r"^finished in ([\d.]+)(s|ms|us), ([\d.]+) req/s", re.M)
SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def argv(url: str, body: Path, clients: int, streams: int, protocol: str, *more: str) -> list[str]:
    return ["h2load", "-c", str(clients), "-m", str(streams), "-t", "1", "-d", str(body), *HEADERS[protocol], *more,
            url]


@dataclass(frozen=True)
class Outcome:
    """What one h2load run printed."""

    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    ok_2xx: int
    seconds: float
    rps: float


def parse(text: str) -> Outcome | None:
    requests, twoxx, finished = REQUESTS.search(text), STATUS_2XX.search(text), FINISHED.search(text)
    if not (requests and twoxx and finished):
        return None
    _, _, done, ok, failed, errored, timeout = (int(g) for g in requests.groups())
    return Outcome(done, ok, failed, errored, timeout, int(twoxx.group(1)),
                   float(finished.group(1)) * SCALE[finished.group(2)], float(finished.group(3)))


def check(out: Path, label: str, want: int | None) -> Outcome:
    """Every request of the run answered 2xx: `want` of them, or for a timed run (-D, want
    None) at least as many 2xx as succeeded (one more may arrive as the clock stops)."""
    text = out.read_text(errors="replace")
    o = parse(text)
    if (o is None or o.failed or o.errored or o.timeout or o.succeeded == 0
            or (want is not None and (o.succeeded != want or o.succeeded != o.ok_2xx))
            or (want is None and o.ok_2xx < o.succeeded)):
        show(text)
        ok = "?" if o is None else o.succeeded
        raise Fatal(f"{label}: {ok} of {want if want is not None else (o.done if o else '')} requests succeeded "
                    "with 2xx (h2load output above)")
    return o


def latencies(*logs: Path) -> list[int]:
    """Microseconds from request start to end of response: the third column of --log-file."""
    durations = []
    for log in logs:
        with open(log) as f:
            for line in f:
                fields = line.split("\t")
                if len(fields) >= 3:
                    durations.append(int(fields[2]))
    if not durations:
        raise Fatal(f"no requests in h2load log {', '.join(map(str, logs))}")
    return durations


def percentiles(*logs: Path) -> tuple[int, int]:
    """p50 and p99 (nearest rank) of the requests in h2load request logs."""
    durations = latencies(*logs)
    return nearest_rank(durations, 0.50), nearest_rank(durations, 0.99)
