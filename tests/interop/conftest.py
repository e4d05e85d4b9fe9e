"""Fixtures that drive the real `erdtree` binary from third-party clients.

Nothing here imitates the server: every test talks to `erdtree master` started
on a free loopback port with its own config file and WAL directory, and the
Python stubs are compiled from `api/` at session start (never committed), so a
stale schema shows up as a failing test rather than a silently passing one.

Environment:
  ERDTREE_BIN      the binary under test (default: .build/debug/erdtree)
  ERDTREE_API_DIR  the proto root to compile stubs from (default: api/)
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from support import compile_stubs, free_port

ROOT = Path(__file__).resolve().parents[2]
ERDTREE_BIN = Path(os.environ.get("ERDTREE_BIN", ROOT / ".build" / "debug" / "erdtree"))
API_DIR = Path(os.environ.get("ERDTREE_API_DIR", ROOT / "api"))

STARTUP_TIMEOUT_S = 20.0
SHUTDOWN_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------
# Stubs compiled from api/
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """`erdtree.v1` messages and stubs: `pb.kv` (kvstore_pb2), `pb.kv_grpc`, and for Connect
    `pb.connect` (connectrpc's kvstore_connect) with its protobuf-py messages `pb.cpb`."""
    return compile_stubs(API_DIR, tmp_path_factory.mktemp("stubs"))


# --------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------


def _die_with_parent() -> None:
    # If pytest itself is killed (timeout in CI, Ctrl-C twice), the server must
    # not outlive it holding a port: PR_SET_PDEATHSIG = 1.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


@dataclass
class ErdtreeServer:
    """A running `erdtree master`; `address` is "127.0.0.1:PORT"."""

    proc: subprocess.Popen
    host: str
    port: int
    workdir: Path
    config_path: Path
    log_path: Path
    sigterm_sent: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def sigterm(self) -> None:
        """Ask for a graceful stop, once: a second signal may mean "stop now" to a server."""
        if self.alive() and not self.sigterm_sent:
            self.sigterm_sent = True
            self.proc.send_signal(signal.SIGTERM)

    def terminate(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> int | None:
        """SIGTERM and wait; returns the exit code, or None if it did not exit in time."""
        self.sigterm()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=5)


def write_config(path: Path, port: int, wal_dir: Path, **sections) -> None:
    """The seed's YAML layout; `sections` overrides whole keys, e.g. storage={...}."""
    config = {
        "server": {"address": "127.0.0.1", "port": port},
        "wal": {"directory": str(wal_dir), "sync_interval": "1s", "max_file_size": "64MB"},
        "storage": {"max_entries": 100000, "eviction_policy": "lru"},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    lines = []
    for section, values in config.items():
        lines.append(f"{section}:")
        for key, value in values.items():
            rendered = f'"{value}"' if isinstance(value, str) else str(value)
            lines.append(f"  {key}: {rendered}")
    path.write_text("\n".join(lines) + "\n")


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _health_serving(address: str) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def _unused_log_path(workdir: Path) -> Path:
    n = 0
    while (workdir / f"erdtree-{n}.log").exists():
        n += 1
    return workdir / f"erdtree-{n}.log"


def _child_setup(extra):
    """What runs in the child between fork and exec, if anything.

    Python code there can deadlock when the parent has other threads (grpcio's do)
    holding a lock at fork time, which hung whole test runs now and then. So by
    default nothing runs: `setpriv --pdeathsig KILL` (util-linux, always on
    Debian) sets the parent-death signal and execs the server. Only a test that
    needs more (an rlimit with a signal disposition) pays the risk."""
    if extra is None:
        return None

    def setup() -> None:
        _die_with_parent()
        extra()

    return setup


# The server dies with the test process even if pytest is killed (CI timeout).
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL"]


def start_server(
    workdir: Path, preexec_fn=None, env=None, role="master", port=None, **config_sections
) -> ErdtreeServer:
    """Start `erdtree master --config` in `workdir`; returns once health says SERVING.

    Starting again in the same `workdir` reuses its WAL directory (a restart);
    each start logs to a new `erdtree-N.log` so earlier runs' logs survive.
    `preexec_fn` runs in the child before exec (e.g. to set an rlimit); `env`
    adds environment variables (e.g. a test hook); `role` "slave" runs `erdtree
    slave` (pass master={"address": ...}), which reports SERVING once synced.
    """
    if not ERDTREE_BIN.is_file() or not os.access(ERDTREE_BIN, os.X_OK):
        pytest.fail(f"{ERDTREE_BIN} is not an executable: run `swift build` or set ERDTREE_BIN")
    workdir.mkdir(parents=True, exist_ok=True)
    last_error = ""
    # A free port can be taken by someone else between probing and binding:
    # retry with a new one rather than failing the test.
    fixed_port = port
    for attempt in range(1 if fixed_port else 3):
        port = fixed_port or free_port()
        config_path = workdir / "erdtree.yaml"
        log_path = _unused_log_path(workdir)
        write_config(config_path, port, workdir / "wal", **config_sections)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [*_DIE_WITH_PARENT, str(ERDTREE_BIN), role, "--config", str(config_path)],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_child_setup(preexec_fn),
                env={**os.environ, **(env or {})},
            )
        server = ErdtreeServer(proc, "127.0.0.1", port, workdir, config_path, log_path)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if not server.alive():
                break
            if _port_accepts(port) and _health_serving(server.address):
                return server
            time.sleep(0.05)
        if server.alive():
            server.kill()
            pytest.fail(
                f"erdtree did not report SERVING on {server.address} within {STARTUP_TIMEOUT_S}s; "
                f"log:\n{server.log_tail()}"
            )
        last_error = server.log_tail()
        if "in use" not in last_error.lower():
            break
    pytest.fail(f"erdtree exited during startup (code {proc.returncode}); log:\n{last_error}")


def stop_server(server: ErdtreeServer, test_failed: bool) -> None:
    """SIGTERM, then require exit code 0 within the shutdown timeout."""
    code = server.terminate()
    if code is None:
        server.kill()
        pytest.fail(
            f"erdtree on {server.address} did not exit within {SHUTDOWN_TIMEOUT_S}s of SIGTERM; "
            f"log:\n{server.log_tail()}"
        )
    if test_failed:
        # Shown by pytest next to the failure, where it helps most.
        print(f"--- erdtree log ({server.address}) ---\n{server.log_tail(200)}", file=sys.stderr)
    assert code == 0, f"erdtree exited with {code} after SIGTERM; log:\n{server.log_tail()}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(node) -> bool:
    report = getattr(node, "rep_call", None)
    return report is not None and report.failed


@pytest.fixture
def server(tmp_path, request):
    """A fresh `erdtree master` for one test."""
    srv = start_server(tmp_path / "node")
    try:
        yield srv
    finally:
        stop_server(srv, _failed(request.node))


@pytest.fixture(scope="module")
def module_server(tmp_path_factory, request):
    """One `erdtree master` shared by a module, so abuse from one test must not break the next."""
    srv = start_server(tmp_path_factory.mktemp("node"))
    failures_before = request.session.testsfailed
    try:
        yield srv
    finally:
        stop_server(srv, request.session.testsfailed > failures_before)


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture
def kv(pb, channel):
    """A grpcio KVStore stub on the per-test server."""
    return pb.kv_grpc.KVStoreStub(channel)
