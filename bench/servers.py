"""Starting the servers under test, each on 127.0.0.1 with its data in the run's temp dir.

Erdtree starts through tests/harness/node.py, as in the interop tests: config written, then
`erdtree master|slave --config`, ready once Health says SERVING. Redis, etcd and nghttpd are
started here as /work/shared/BENCH-NOTES.md describes, ready once their port accepts.
Every server is registered with the run's Processes, so that it stops whatever happens.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from bench import checks, redis_tools
from bench.h2load import BENCH_TOKENS
from bench.bodies import VALUE
from bench.console import Fatal, show_file
from harness import node as harness

if TYPE_CHECKING:
    from bench.run import Bench

# Ready within: a load server (30 s), a server replaying a log or syncing (300 s).
LISTEN_TIMEOUT_S = 30
RECOVERY_TIMEOUT_S = 300


@dataclass
class Running:
    """A started server instance and its followers (slaves or replicas), if any."""

    name: str
    system: str
    proc: subprocess.Popen
    port: int
    followers: list[subprocess.Popen] = field(default_factory=list)
    follower_ports: list[int] = field(default_factory=list)
    wal_dir: Path | None = None  # Erdtree's

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Instance:
    """A server the loads run against: how to start it (with its preload and first check)
    and how to check it again after the rounds."""

    name: str
    system: str
    start: Callable[[Bench, str], Running]
    recheck: Callable[[Bench, Running], None]


def wait_until(proc: subprocess.Popen, ready, what: str, log: Path, timeout: float = RECOVERY_TIMEOUT_S,
               poll_s: float = 0.01) -> None:
    """Polls `ready()` until it is true; Fatal with the server's log tail if it exits first or is not ready in time."""
    outcome = harness.wait_for(proc, ready, timeout, poll_s)
    if outcome:
        return
    if outcome is False:
        show_file(log, 20)
        raise Fatal(f"{what}: the server exited (log above: {log})")
    raise Fatal(f"{what}: not ready within {timeout:g} s (log: {log})")


def wait_listening(proc: subprocess.Popen, port: int, what: str, log: Path, timeout: float = LISTEN_TIMEOUT_S) -> None:
    wait_until(proc, lambda: harness.port_accepts("127.0.0.1", port), what, log, timeout, 0.1)


# --- Erdtree ------------------------------------------------------------------------------


def erdtree_sections(bench: Bench, sync: str, max_entries: int | None = None, file_size: str | None = None,
                     master: str | None = None, address: str | None = None, **more: dict) -> dict:
    """An Erdtree config beyond port and WAL directory: server.event_loops, wal.sync_interval,
    and given, storage.max_entries, the master a slave follows, another listen address. With a
    wal.max_file_size (e.g. 64MB), wal.retention gets the same size, the least the server
    accepts: only the newest sealed segments within it are kept as written, everything older
    may be compacted; then any further sections as given (replication, ha). Everything else is
    the server's default."""
    sections = {"server": {"event_loops": bench.settings.event_loops}, "wal": {"sync_interval": sync}}
    if address:
        sections["server"]["address"] = address
    if file_size:
        sections["wal"].update(max_file_size=file_size, retention=file_size)
    if max_entries is not None:
        sections["storage"] = {"max_entries": max_entries}
    if master:
        sections["master"] = {"address": master}
    return {**sections, **more}


def start_erdtree(bench: Bench, workdir: Path, what: str, *, role: str = "master", port: int | None = None,
                  follower: bool = False, timeout: float = RECOVERY_TIMEOUT_S, poll_s: float = 0.01,
                  **config) -> harness.Node:
    """An Erdtree in `workdir` (its WAL in `workdir`/wal), returned once it says SERVING."""
    try:
        node = harness.start(workdir, binary=bench.erdtree_bin, port=port, role=role, timeout=timeout,
                             poll_s=poll_s, defaults={}, **erdtree_sections(bench, **config))
    except harness.NodeError as error:
        raise Fatal(f"{what}: {error}") from None
    bench.processes.adopt(node.proc, follower)
    return node


def launch_erdtree(bench: Bench, workdir: Path, port: int, role: str, **config) -> harness.Node:
    """An Erdtree started and not waited for (the catch-up times it from the exec)."""
    node = harness.launch(workdir, port, binary=bench.erdtree_bin, role=role, defaults={},
                          **erdtree_sections(bench, **config))
    bench.processes.adopt(node.proc)
    return node


def erdtree_preload(bench: Bench, address: str, what: str, token: str = "") -> None:
    """Writes the key the Get loads read (and the write key), then reads it back."""
    b = bench.bodies
    checks.grpc_call(address, "/erdtree.v1.KVStore/Set", b.preload_set, f"{what} Set", token=token)
    checks.grpc_call(address, "/erdtree.v1.KVStore/Set", b.set, f"{what} Set", token=token)
    erdtree_read(bench, address, what, token)


def erdtree_read(bench: Bench, address: str, what: str, token: str = "") -> None:
    checks.grpc_call(address, "/erdtree.v1.KVStore/Get", bench.bodies.get, f"{what} Get", VALUE, token=token)


def erdtree(sync: str):
    """An Erdtree instance with wal.sync_interval `sync`, preloaded."""

    def start(bench: Bench, name: str) -> Running:
        node = start_erdtree(bench, bench.tmp / name, name, sync=sync, timeout=LISTEN_TIMEOUT_S)
        erdtree_preload(bench, node.address, f"{name} (wal.sync_interval {sync})")
        return Running(name, "erdtree", node.proc, node.port, wal_dir=node.workdir / "wal")

    return start


def erdtree_auth(bench: Bench, name: str) -> Running:
    """The main Erdtree's config plus auth.tokens: the write token preloads, and the Get load
    sends the read token, looked up among both on every call as a client's would be."""
    workdir = bench.tmp / name
    workdir.mkdir(parents=True, exist_ok=True)
    tokens = []
    for role, token in BENCH_TOKENS.items():
        (workdir / f"{role}.token").write_text(token + "\n")
        tokens.append({"name": f"bench-{role}", "role": role, "token_file": str(workdir / f"{role}.token")})
    node = start_erdtree(bench, workdir, name, sync="1s", timeout=LISTEN_TIMEOUT_S, auth={"tokens": tokens})
    erdtree_preload(bench, node.address, f"{name} (auth.tokens)", BENCH_TOKENS["write"])
    return Running(name, "erdtree", node.proc, node.port, wal_dir=node.workdir / "wal")


def erdtree_auth_recheck(bench: Bench, running: Running) -> None:
    erdtree_read(bench, running.address, running.name, BENCH_TOKENS["read"])


def erdtree_recheck(bench: Bench, running: Running) -> None:
    for address in (running.address, *(f"127.0.0.1:{p}" for p in running.follower_ports)):
        erdtree_read(bench, address, f"{running.name} ({address})")


# --- Redis --------------------------------------------------------------------------------


def start_redis(bench: Bench, directory: Path, port: int, appendfsync: str, *more: str, follower: bool = False,
                log: str = "server.log") -> subprocess.Popen:
    """redis-server with the AOF as its only persistence; not waited for."""
    return bench.processes.start_server(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory), "--save", "",
         "--appendonly", "yes", "--appendfsync", appendfsync, *more], directory, directory / log, follower)


def start_redis_loaded(bench: Bench, directory: Path, port: int, what: str, *more: str,
                       log: str = "server.log") -> subprocess.Popen:
    """redis-server (appendfsync everysec), returned once it has loaded its data (INFO loading:0)."""
    proc = start_redis(bench, directory, port, "everysec", *more, log=log)
    wait_until(proc, lambda: redis_tools.loaded(port), what, directory / log)
    return proc


def redis(appendfsync: str, *more: str):
    """A Redis instance with appendfsync `appendfsync`, preloaded."""

    def start(bench: Bench, name: str) -> Running:
        port, directory = harness.free_port(), bench.tmp / name
        proc = start_redis(bench, directory, port, appendfsync, *more)
        wait_listening(proc, port, name, directory / "server.log")
        checks.redis_set(port, f"{name} (appendfsync {appendfsync})")
        checks.redis_get(port, f"{name} (appendfsync {appendfsync})")
        return Running(name, "redis", proc, port)

    return start


def redis_recheck(bench: Bench, running: Running) -> None:
    for port in (running.port, *running.follower_ports):
        checks.redis_get(port, f"{running.name} (127.0.0.1:{port})")


# --- etcd and nghttpd ---------------------------------------------------------------------


def launch_etcd(bench: Bench, name: str) -> Running:
    """A single-member etcd (data in the temp dir's `name`, log `name`.log), once its client
    port accepts: before it has elected itself, so a first request may still fail."""
    port, peer = harness.free_port(), harness.free_port()
    log = bench.tmp / f"{name}.log"
    proc = bench.processes.start_server(
        ["etcd", "--name", "bench", "--data-dir", str(bench.tmp / name),
         "--listen-client-urls", f"http://127.0.0.1:{port}", "--advertise-client-urls", f"http://127.0.0.1:{port}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"bench=http://127.0.0.1:{peer}"], bench.tmp, log)
    wait_listening(proc, port, name, log)
    return Running(name, "etcd", proc, port)


def etcd(bench: Bench, name: str) -> Running:
    running = launch_etcd(bench, name)
    # The client port opens before the single-member cluster has elected itself; a Put
    # before that fails, so retry the preload for a while.
    for _ in range(50):
        try:
            etcd_preload(bench, running)
            break
        except Fatal:
            time.sleep(0.2)
    etcd_preload(bench, running)
    return running


def etcd_preload(bench: Bench, running: Running) -> None:
    b = bench.bodies
    checks.grpc_call(running.address, "/etcdserverpb.KV/Put", b.preload_put, "etcd Put")
    checks.grpc_call(running.address, "/etcdserverpb.KV/Put", b.put, "etcd Put")
    etcd_recheck(bench, running)


def etcd_recheck(bench: Bench, running: Running) -> None:
    checks.grpc_call(running.address, "/etcdserverpb.KV/Range", bench.bodies.range, "etcd Range", VALUE)


def nghttpd(bench: Bench, name: str) -> Running:
    port, log = harness.free_port(), bench.tmp / "nghttpd.log"
    proc = bench.processes.start_server(
        ["nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", str(bench.bodies.www), str(port)], bench.tmp, log)
    wait_listening(proc, port, name, log)
    running = Running(name, "nghttpd", proc, port)
    nghttpd_recheck(bench, running)
    return running


def nghttpd_recheck(bench: Bench, running: Running) -> None:
    checks.nghttpd(running.port, bench.bodies.post, bench.tmp)
