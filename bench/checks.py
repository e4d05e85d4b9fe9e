"""Correctness samples: every body answered right once before the rounds and again after.

h2load looks only at :status, and gRPC errors travel under :status 200, so without these a
server answering errors quickly would look fast; a server that broke mid-run would only show
up as a fast number.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc

from bench import redis_tools
from bench.bodies import KEY, NGHTTPD_FILE, VALUE, Body
from bench.console import Fatal


def grpc_call(address: str, path: str, body: Body, what: str, expect: str = "", token: str = "") -> bytes:
    """One unary call through grpcio with the body's message (and `token` as a bearer token);
    it must answer status 0 and, given `expect`, a message holding those bytes."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(address) as channel:
        try:
            answer = channel.unary_unary(path)(body.message, metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            raise Fatal(f"{what}: {address}{path} answered {error.code().name} ({error.details()}), want OK") from None
    if expect and expect.encode() not in answer:
        raise Fatal(f"{what}: the answer from {address}{path} does not hold the preloaded value: {answer[:200]!r}")
    return answer


def nghttpd(port: int, post: Body, tmp: Path) -> None:
    url = f"http://127.0.0.1:{port}/file20"
    out = tmp / "check.body"
    done = subprocess.run(["curl", "--http2-prior-knowledge", "-sS", "--max-time", "10", "-o", str(out),
                           "-w", "%{http_code}", "--data-binary", f"@{post.path}", url], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise Fatal(f"nghttpd: curl could not reach {url}: {done.stderr.strip()}")
    body = out.read_text(errors="replace")
    if done.stdout != "200" or body != NGHTTPD_FILE:
        raise Fatal(f"nghttpd: POST {url} answered {done.stdout} with {len(body)} bytes, "
                    "want 200 with the 20-byte file")


def redis_set(port: int, what: str) -> None:
    reply = redis_tools.cli(port, "set", KEY, VALUE)
    if reply != "OK":
        raise Fatal(f"{what}: SET {KEY} answered '{reply}', want OK")


def redis_get(port: int, what: str) -> None:
    reply = redis_tools.cli(port, "get", KEY)
    if reply != VALUE:
        raise Fatal(f"{what}: GET {KEY} answered '{reply}', want the preloaded value")


def erdtree_status(binary: Path, address: str) -> dict[str, str]:
    """Admin/Status through the CLI (`erdtree status`): field name -> the first word of its value."""
    done = subprocess.run([str(binary), "status", "--server", address], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise Fatal(f"erdtree status --server {address} failed: {done.stderr.strip()}")
    fields = {}
    for line in done.stdout.splitlines():
        name, sep, value = line.partition(":")
        if sep and name not in fields:
            fields[name] = (value.split() or [""])[0]
    return fields


def erdtree_slaves(binary: Path, address: str) -> dict[str, str]:
    """A master's slaves through the CLI (`erdtree slaves`): address -> state ("connected", …)."""
    done = subprocess.run([str(binary), "slaves", "--server", address], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise Fatal(f"erdtree slaves --server {address} failed: {done.stderr.strip()}")
    # slave_id, address, state, applied_lsn, … (a header line first)
    return {f[1]: f[2] for f in (line.split("\t") for line in done.stdout.splitlines()[1:]) if len(f) > 2}


def erdtree_count(binary: Path, address: str, field: str) -> int:
    value = erdtree_status(binary, address).get(field, "")
    if not value.isdigit():
        raise Fatal(f"erdtree status on {address} has no '{field}:' count")
    return int(value)
