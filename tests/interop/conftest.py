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

import os
import sys
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for harness

from harness import node  # noqa: E402
from harness.node import (  # noqa: E402,F401  (tests import these from here)
    DIE_WITH_PARENT as _DIE_WITH_PARENT,
    ERDTREE_BIN,
    ROOT,
    SHUTDOWN_TIMEOUT_S,
    Node as ErdtreeServer,
    NodeError,
    health_serving as _health_serving,
    write_config,
)
from support import compile_stubs  # noqa: E402

API_DIR = Path(os.environ.get("ERDTREE_API_DIR", ROOT / "api"))


# --------------------------------------------------------------------------
# Stubs compiled from api/
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """`erdtree.v1` messages and stubs: `pb.kv` (kvstore_pb2), `pb.kv_grpc`, and for Connect
    `pb.connect` (connectrpc's kvstore_connect) with its protobuf-py messages `pb.cpb`."""
    return compile_stubs(API_DIR, tmp_path_factory.mktemp("stubs"))


# --------------------------------------------------------------------------
# The server process (started, waited for and stopped by harness.node)
# --------------------------------------------------------------------------


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
    try:
        return node.start(
            workdir, binary=ERDTREE_BIN, port=port, role=role, preexec_fn=preexec_fn, env=env, **config_sections
        )
    except NodeError as error:
        failure = str(error)
    pytest.fail(failure)


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


# --------------------------------------------------------------------------
# No secret in any log
# --------------------------------------------------------------------------

# Every bearer token a test hands a node or a client (support.issued_tokens): none may appear in
# any node's log, whichever test wrote it.
from support import issued_tokens  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def no_token_in_any_log(tmp_path_factory):
    """After the whole suite: every log under the session's temporary directory (each node's
    erdtree-N.log and node.log, etcd's) is searched for every token issued."""
    yield
    tokens = issued_tokens()
    if not tokens:
        return
    base = tmp_path_factory.getbasetemp()
    leaks = []
    for log in base.rglob("*.log"):
        text = log.read_text(errors="replace")
        leaks += [str(log) for token in tokens if token in text]
    assert not leaks, f"a bearer token appears in {sorted(set(leaks))}"
