"""Start an `erdtree` node with a config and wait until it serves; stop it.

The one place for it: tests/interop/conftest.py wraps `start` in its fixtures (turning a
`NodeError` into `pytest.fail`), tests/cluster/hosts.py starts its nodes in network namespaces
through `launch` and `wait_serving`, and the benchmark (bench/) starts every Erdtree it measures
through `start` and `launch`.

Readiness is gRPC Health/Check answering SERVING (grpcio): a master says so once it listens and
has recovered its WAL, a slave once its first sync is done. grpcio is imported up front, so
that no start (the benchmark times some) pays for the import.

Environment: ERDTREE_BIN, the binary (default .build/debug/erdtree); callers may pass their own.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
ERDTREE_BIN = Path(os.environ.get("ERDTREE_BIN", ROOT / ".build" / "debug" / "erdtree"))

STARTUP_TIMEOUT_S = 20.0
SHUTDOWN_TIMEOUT_S = 10.0

# The server dies with the process that started it even if that one is killed (a CI
# timeout, Ctrl-C twice): setpriv (util-linux, always on Debian) sets the parent-death
# signal and execs the server, so nothing runs in the child between fork and exec.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL"]

# The interop tests' layout (the seed's): `write_config` starts from it unless told otherwise.
SEED_DEFAULTS = {
    "wal": {"sync_interval": "1s", "max_file_size": "64MB"},
    "storage": {"max_entries": 100000, "eviction_policy": "lru"},
}


class NodeError(Exception):
    """A node that would not start, or not serve in time; the message says which and shows its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    """A running `erdtree master` or `erdtree slave`; `address` is "HOST:PORT"."""

    proc: subprocess.Popen
    host: str
    port: int
    workdir: Path
    config_path: Path
    log_path: Path
    sigterm_sent: bool = False
    name: str = "erdtree"
    # grpc.ssl_channel_credentials for a node with server.tls: readiness is checked over TLS.
    credentials: grpc.ChannelCredentials | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.credentials else 'http'}://{self.address}"

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

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL if it is still there after `timeout`; the exit code if it exited by itself."""
        code = self.terminate(timeout)
        if code is None:
            self.kill()
        return code


def render_config(config: dict) -> str:
    """YAML for a config of sections holding scalars, lists of scalars or of mappings, and nested
    sections (the shapes erdtree's config has: `ha.etcd.endpoints` is a list in a section in a
    section, `auth.tokens` a list of mappings)."""

    def scalar(value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return f'"{value}"' if isinstance(value, str) else str(value)

    def render(mapping: dict, indent: str) -> list[str]:
        lines = []
        for key, value in mapping.items():
            if isinstance(value, dict):
                lines.append(f"{indent}{key}:")
                lines.extend(render(value, indent + "  "))
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                # A list of mappings (`auth.tokens`), as a block sequence.
                lines.append(f"{indent}{key}:")
                for item in value:
                    item_lines = render(item, indent + "    ")
                    item_lines[0] = f"{indent}  - " + item_lines[0].lstrip()
                    lines.extend(item_lines)
            elif isinstance(value, list):
                lines.append(f"{indent}{key}: [{', '.join(scalar(v) for v in value)}]")
            else:
                lines.append(f"{indent}{key}: {scalar(value)}")
        return lines

    return "\n".join(render(config, "")) + "\n"


def write_config(path: Path, port: int, wal_dir: Path, defaults: dict = SEED_DEFAULTS, **sections) -> None:
    """A node's config: server 127.0.0.1:`port`, its WAL in `wal_dir`, then `defaults` and
    `sections` (each overriding whole keys, e.g. storage={"max_entries": 1}), in that order."""
    config = {"server": {"address": "127.0.0.1", "port": port}, "wal": {"directory": str(wal_dir)}}
    for layer in (defaults, sections):
        for name, values in layer.items():
            config.setdefault(name, {}).update(values)
    path.write_text(render_config(config))


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def health_serving(address: str, credentials: grpc.ChannelCredentials | None = None) -> bool:
    """gRPC Health/Check of the whole server says SERVING (a fresh channel each time: a
    channel that failed to connect backs off for a second or more before it tries again),
    over TLS with `credentials`."""
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG = 1, for a child that runs Python before exec anyway.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def child_setup(extra):
    """What runs in the child between fork and exec, if anything.

    Python code there can deadlock when the parent has other threads (grpcio's do)
    holding a lock at fork time, which hung whole test runs now and then. So by
    default nothing runs (DIE_WITH_PARENT does the parent-death signal). Only a
    caller that needs more (an rlimit with a signal disposition) pays the risk."""
    if extra is None:
        return None

    def setup() -> None:
        _die_with_parent()
        extra()

    return setup


def unused_log_path(workdir: Path) -> Path:
    n = 0
    while (workdir / f"erdtree-{n}.log").exists():
        n += 1
    return workdir / f"erdtree-{n}.log"


def launch(
    workdir: Path, port: int, *, binary: Path | None = None, role: str = "master", host: str = "127.0.0.1",
    config: dict | None = None, prefix: list[str] = DIE_WITH_PARENT, preexec_fn=None, env=None,
    defaults: dict = SEED_DEFAULTS, credentials: grpc.ChannelCredentials | None = None, **sections,
) -> Node:
    """Write `workdir`/erdtree.yaml and start `erdtree ROLE --config` in `workdir`, logging to a
    new `erdtree-N.log` there (earlier runs' logs survive); does not wait.

    The config is `config` as given, or `write_config`'s for `port` with the WAL under
    `workdir`/wal. `prefix` goes before the binary (e.g. `ip netns exec NS`); `host` is where
    clients reach the node. `preexec_fn` runs in the child before exec (see `child_setup`);
    `env` adds environment variables; `credentials` are how readiness checks reach a TLS node."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "erdtree.yaml"
    if config is None:
        write_config(config_path, port, workdir / "wal", defaults, **sections)
    else:
        config_path.write_text(render_config(config))
    log_path = unused_log_path(workdir)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*prefix, str(binary or ERDTREE_BIN), role, "--config", str(config_path)],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=child_setup(preexec_fn),
            env={**os.environ, **(env or {})},
        )
    return Node(proc, host, port, workdir, config_path, log_path, credentials=credentials)


def wait_for(proc: subprocess.Popen, ready, timeout: float, poll_s: float) -> bool | None:
    """Polls `ready()` every `poll_s` until it is true (True) or `proc` exits (False); None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(poll_s)
    return None if proc.poll() is None else False


def wait_serving(node: Node, timeout: float = STARTUP_TIMEOUT_S, poll_s: float = 0.05) -> bool:
    """Polls until the node says SERVING (True) or exits (False); NodeError after `timeout`
    (the node is killed then)."""
    serving = wait_for(node.proc, lambda: port_accepts(node.host, node.port) and health_serving(node.address, node.credentials),
                       timeout, poll_s)
    if serving is not None:
        return serving
    node.kill()
    raise NodeError(
        f"{node.name} did not report SERVING on {node.address} within {timeout}s; log:\n{node.log_tail()}"
    )


def start(
    workdir: Path, *, binary: Path | None = None, port: int | None = None, timeout: float = STARTUP_TIMEOUT_S,
    poll_s: float = 0.05, **launch_args,
) -> Node:
    """`launch`, then `wait_serving`; returns the serving node.

    Starting again in the same `workdir` reuses its WAL directory (a restart). Without a
    `port`, a free one: as it can be taken by someone else between probing and binding, a
    start that fails with the port in use is retried with a new one."""
    binary = Path(binary or ERDTREE_BIN)
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise NodeError(f"{binary} is not an executable: run `swift build` or set ERDTREE_BIN")
    last_error = ""
    for _ in range(1 if port else 3):
        node = launch(workdir, port or free_port(), binary=binary, **launch_args)
        if wait_serving(node, timeout, poll_s):
            return node
        last_error = node.log_tail()
        if "in use" not in last_error.lower():
            break
    raise NodeError(f"{node.name} exited during startup (code {node.proc.returncode}); log:\n{last_error}")
