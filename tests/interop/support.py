"""Helpers shared by the interop tests: tools, gRPC framing, raw h2c via curl and frames."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # for harness

from harness.node import free_port  # noqa: E402,F401  (the tests import it from here)

VENV_BIN = ROOT / ".venv" / "bin"

# Generous: a shared 2-core machine can be slow, but no single tool call should
# come near this; the per-test pytest-timeout is the outer guard.
TOOL_TIMEOUT_S = 60


def compile_stubs(api_dir: Path, out: Path) -> SimpleNamespace:
    """Compiles `erdtree.v1` from `api_dir` into `out` and imports it: `kv` (kvstore_pb2),
    `kv_grpc`, and for Connect `connect` (connectrpc's kvstore_connect) with its protobuf-py
    messages `cpb`."""
    from grpc_tools import protoc

    # Only our own schema: health and reflection come from the grpcio-health-checking
    # and grpcio-reflection packages, and compiling api/grpc/... too would shadow them.
    protos = sorted(p.relative_to(api_dir).as_posix() for p in (api_dir / "erdtree").rglob("*.proto"))
    if not protos:
        pytest.fail(f"no .proto files under {api_dir / 'erdtree'}: is the wire contract checked in?")
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{api_dir}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-py={Path(sys.executable).parent / 'protoc-gen-py'}",
        f"--py_out={out}",
        f"--plugin=protoc-gen-connectrpc={Path(sys.executable).parent / 'protoc-gen-connectrpc'}",
        f"--connectrpc_out={out}",
        *protos,
    ]
    rc = protoc.main(args)
    if rc != 0:
        pytest.fail(f"grpc_tools.protoc failed ({rc}) on {protos}")
    sys.path.insert(0, str(out))
    importlib.invalidate_caches()
    return SimpleNamespace(
        kv=importlib.import_module("erdtree.v1.kvstore_pb2"),
        kv_grpc=importlib.import_module("erdtree.v1.kvstore_pb2_grpc"),
        connect=importlib.import_module("erdtree.v1.kvstore_connect"),
        cpb=importlib.import_module("erdtree.v1.kvstore_pb"),
    )


def tool(name: str) -> str:
    """Path of a client tool: the venv's (grpcurl, buf) first, then the system's (h2load, curl)."""
    for candidate in (VENV_BIN / name, Path("/usr/bin") / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(f"{name} not found in {VENV_BIN} or /usr/bin: run scripts/install-deps.sh test")


def run(args: list[str], timeout: float = TOOL_TIMEOUT_S, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a tool to completion, capturing output; never reads the test's stdin."""
    return subprocess.run(
        args,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )


def grpc_frame(message: bytes, compressed: bool = False) -> bytes:
    """One gRPC length-prefixed message: flag byte, 4-byte big-endian length, payload."""
    return bytes([1 if compressed else 0]) + len(message).to_bytes(4, "big") + message


def grpc_unframe(body: bytes) -> list[bytes]:
    """Split a gRPC response body into its messages (uncompressed only)."""
    messages = []
    while body:
        assert len(body) >= 5, f"truncated gRPC frame header: {body!r}"
        length = int.from_bytes(body[1:5], "big")
        assert body[0] == 0, f"unexpected compressed-flag {body[0]} in response"
        assert len(body) >= 5 + length, f"truncated gRPC message: want {length} bytes, have {len(body) - 5}"
        messages.append(body[5 : 5 + length])
        body = body[5 + length :]
    return messages


@dataclass
class H2Response:
    """What curl saw: the `:status`, header blocks in order (headers, then trailers), the body."""

    status: int
    blocks: list[list[tuple[str, str]]] = field(default_factory=list)
    body: bytes = b""
    raw_headers: str = ""

    def all_fields(self) -> list[tuple[str, str]]:
        return [pair for block in self.blocks for pair in block]

    def get(self, name: str) -> str | None:
        """Last value of a header or trailer field (trailers win over headers)."""
        found = None
        for key, value in self.all_fields():
            if key == name.lower():
                found = value
        return found

    @property
    def grpc_status(self) -> int | None:
        value = self.get("grpc-status")
        return int(value) if value is not None else None


def parse_curl_headers(dump: str, body: bytes) -> H2Response:
    """Parse `curl -D` output: a status line, header lines, and (for HTTP/2) trailer lines."""
    blocks: list[list[tuple[str, str]]] = []
    status = 0
    current: list[tuple[str, str]] | None = None
    for line in dump.replace("\r\n", "\n").split("\n"):
        if line.startswith("HTTP/"):
            status = int(line.split()[1])
            current = []
            blocks.append(current)
        elif not line.strip():
            current = None
        else:
            if current is None:
                # Trailers follow the body after a blank line, without a status line.
                current = []
                blocks.append(current)
            name, _, value = line.partition(":")
            current.append((name.strip().lower(), value.strip()))
    return H2Response(status=status, blocks=blocks, body=body, raw_headers=dump)


CURL_MAX_TIME_S = 30


def curl_h2c(url: str, body: bytes | None, headers: list[str], workdir: Path) -> H2Response:
    """POST over h2c (prior knowledge) with exactly these extra headers.

    Pass body=None for a request the server should answer from its headers
    alone (bad content-type, unknown encoding or path): curl then ends the
    stream with the HEADERS frame. curl 7.88 (Debian 12) mishandles an answer
    that arrives while it is still uploading: with the RST_STREAM(NO_ERROR) a
    server sends after such an early answer it fails with "(92) Stream error",
    without it it may hang. gRPC core and grpc-go servers trip it the same way.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    dump, out, req = workdir / "headers.txt", workdir / "body.out", workdir / "body.in"
    args = [
        tool("curl"),
        "--http2-prior-knowledge",
        "-sS",
        "--max-time",
        str(CURL_MAX_TIME_S),
        "-D",
        str(dump),
        "-o",
        str(out),
        "-X",
        "POST",
    ]
    for header in headers:
        args += ["-H", header]
    if body is not None:
        req.write_bytes(body)
        args += ["--data-binary", f"@{req}"]
    done = run([*args, url])
    assert done.returncode == 0, f"curl failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
    return parse_curl_headers(dump.read_text(errors="replace"), out.read_bytes() if out.exists() else b"")


GRPC_HEADERS = ["content-type: application/grpc", "te: trailers"]


class RawH2:
    """A bare HTTP/2 client connection built from hyperframe and hpack.

    It keeps no client-side protocol state machine on purpose, so a test can
    hold a request's message back, watch for the server's GOAWAY, and keep
    sending on an open stream after it (full clients refuse or hide all three).
    """

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.authority = f"{host}:{port}"
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.pending = b""
        self.goaway: GoAwayFrame | None = None
        self.closed = False
        self.streams: dict[int, H2Response] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self._next_stream_id = 1
        self._header_block: tuple[int, bytes, bool] | None = None
        # Every frame received, for failure messages.
        self.frames: list[str] = []
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())

    def close(self) -> None:
        self.sock.close()

    def start_grpc(self, path: str, extra_headers: list[tuple[str, str]] = ()) -> int:
        """Send a gRPC request's HEADERS (no END_STREAM); returns the stream id."""
        stream_id = self._next_stream_id
        self._next_stream_id += 2
        frame = HeadersFrame(stream_id, flags=["END_HEADERS"])
        frame.data = self.encoder.encode(self._grpc_headers(path, extra_headers))
        self.sock.sendall(frame.serialize())
        self.streams[stream_id] = H2Response(status=0)
        return stream_id

    def _grpc_headers(self, path: str, extra_headers) -> list[tuple[str, str]]:
        return [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *extra_headers,
        ]

    def unary_grpc(
        self, path: str, message: bytes, extra_headers: list[tuple[str, str]] = (), compressed: bool = False
    ) -> int:
        """Send a whole unary gRPC request (HEADERS, then DATA with END_STREAM) in one write."""
        stream_id = self._next_stream_id
        self._next_stream_id += 2
        headers = HeadersFrame(stream_id, flags=["END_HEADERS"])
        headers.data = self.encoder.encode(self._grpc_headers(path, extra_headers))
        data = DataFrame(stream_id, data=grpc_frame(message, compressed), flags=["END_STREAM"])
        self.sock.sendall(headers.serialize() + data.serialize())
        self.streams[stream_id] = H2Response(status=0)
        return stream_id

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        frame = DataFrame(stream_id, data=data, flags=["END_STREAM"] if end_stream else [])
        self.sock.sendall(frame.serialize())

    def read_until(self, done, timeout: float) -> bool:
        """Process frames until `done()` is true (returns True), the timeout, or EOF."""
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return False
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionError:
                chunk = b""
            if not chunk:
                self.closed = True
                return done()
            self.pending += chunk
            self._drain_frames()
        return True

    def stream_finished(self, stream_id: int) -> bool:
        return stream_id in self.ended or stream_id in self.resets

    def _drain_frames(self) -> None:
        while len(self.pending) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.pending[:9]))
            if len(self.pending) < 9 + length:
                return
            frame.parse_body(memoryview(self.pending[9 : 9 + length]))
            self.pending = self.pending[9 + length :]
            self._handle(frame)

    def _handle(self, frame) -> None:
        self.frames.append(repr(frame))
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self.sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
        elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
            self.sock.sendall(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]).serialize())
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame
        elif isinstance(frame, RstStreamFrame):
            self.resets[frame.stream_id] = frame.error_code
        elif isinstance(frame, (HeadersFrame, ContinuationFrame)):
            previous = self._header_block[1] if self._header_block else b""
            end_stream = "END_STREAM" in frame.flags if isinstance(frame, HeadersFrame) else bool(
                self._header_block and self._header_block[2]
            )
            self._header_block = (frame.stream_id, previous + frame.data, end_stream)
            if "END_HEADERS" in frame.flags:
                stream_id, block, end_stream = self._header_block
                self._header_block = None
                fields = [(k.lower(), v) for k, v in self.decoder.decode(block)]
                response = self.streams.setdefault(stream_id, H2Response(status=0))
                for key, value in fields:
                    if key == ":status":
                        response.status = int(value)
                response.blocks.append([(k, v) for k, v in fields if not k.startswith(":")])
                response.raw_headers += "".join(f"{k}: {v}\n" for k, v in fields) + "\n"
                if end_stream:
                    self.ended.add(stream_id)
        elif isinstance(frame, DataFrame):
            response = self.streams.setdefault(frame.stream_id, H2Response(status=0))
            response.body += frame.data
            if frame.flow_controlled_length:
                # Give the credit back so a larger answer never stalls on our window.
                credit = WindowUpdateFrame(0, window_increment=frame.flow_controlled_length).serialize()
                if "END_STREAM" not in frame.flags:
                    credit += WindowUpdateFrame(
                        frame.stream_id, window_increment=frame.flow_controlled_length
                    ).serialize()
                self.sock.sendall(credit)
            if "END_STREAM" in frame.flags:
                self.ended.add(frame.stream_id)


_ISSUED_TOKENS: list[str] = []


def issue_token() -> str:
    """A fresh bearer token, remembered so that the session can check no log ever shows it."""
    import secrets

    token = secrets.token_urlsafe(24)
    _ISSUED_TOKENS.append(token)
    return token


def remember_tokens(*tokens: str) -> None:
    """Tokens made elsewhere (deploy/make-secrets.sh) that logs must not show either."""
    _ISSUED_TOKENS.extend(t for t in tokens if t)


def issued_tokens() -> list[str]:
    return list(_ISSUED_TOKENS)
