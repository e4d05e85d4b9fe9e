"""HTTP/1.1 on the gRPC port: the first bytes pick the protocol (the HTTP/2 preface means
gRPC), and HTTP/1.1 clients get /healthz, with keep-alive and pipelining, from the same port."""

from __future__ import annotations

import socket
import time

from support import run, tool


def curl(*args: str) -> tuple[int, str, str]:
    """(status, headers, body) of one curl call over HTTP/1.1."""
    done = run([tool("curl"), "--http1.1", "-sS", "--max-time", "10", "-D", "-", *args])
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.decode().partition("\r\n\r\n")
    status = int(head.split("\r\n", 1)[0].split()[1])
    return status, head, body


def test_healthz_answers_over_http1_next_to_grpc(pb, server):
    status, head, body = curl(f"http://{server.address}/healthz")
    assert (status, body) == (200, "SERVING\n")
    assert "HTTP/1.1 200 OK" in head, "responses carry a reason phrase"
    assert "content-type: text/plain; charset=utf-8" in head.lower()

    status, head, _ = curl("-I", f"http://{server.address}/healthz")
    assert status == 200 and "content-length: 8" in head.lower()

    status, head, _ = curl("-X", "POST", f"http://{server.address}/healthz")
    assert status == 405 and "allow: GET, HEAD" in head

    # Over HTTP/2 too (prior knowledge here; over TLS ALPN picks h2 for curl and load balancers).
    status, head, body = curl("--http2-prior-knowledge", f"http://{server.address}/healthz")
    assert (status, body) == (200, "SERVING\n") and head.startswith("HTTP/2 200")

    status, _, body = curl(f"http://{server.address}/no/such/path")
    assert status == 404 and '"code":"unimplemented"' in body
    # Methods take Connect's POST; GET only those without side effects, with a query.
    status, head, _ = curl(f"http://{server.address}/erdtree.v1.KVStore/Set")
    assert status == 405 and "allow: POST" in head
    status, _, body = curl(f"http://{server.address}/erdtree.v1.KVStore/Get")
    assert status == 400 and "encoding=json" in body

    # The same port still speaks gRPC.
    import grpc

    with grpc.insecure_channel(server.address) as channel:
        stub = pb.kv_grpc.KVStoreStub(channel)
        assert stub.Set(pb.kv.SetRequest(key="k", value=b"v"), timeout=10).lsn == 1


def read_until_closed(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def split_responses(data: bytes, methods: list[str]) -> list[tuple[int, str]]:
    """The responses in `data`, one per request method (a HEAD answer has no body)."""
    responses = []
    for method in methods:
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
        length = 0 if method == "HEAD" else length
        responses.append((int(lines[0].split()[1]), data[:length].decode()))
        data = data[length:]
    assert data == b"", f"unexpected bytes after the responses: {data!r}"
    return responses


def test_pipelined_requests_are_answered_in_order(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /healthz?probe=lb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        responses = split_responses(read_until_closed(sock), ["GET", "GET", "HEAD", "GET"])
    assert responses[0] == (200, "SERVING\n")
    assert responses[1][0] == 404 and "/nope" in responses[1][1]
    assert responses[2] == (200, "")
    assert responses[3] == (200, "SERVING\n"), "the connection stayed open until the request that closed it"


def test_malformed_and_stalled_http1_clients_do_not_affect_others(server):
    with socket.create_connection(("127.0.0.1", server.port)) as bad:
        bad.sendall(b"NOT A REQUEST LINE\r\n\r\n")
        bad.settimeout(10)
        reply = bad.recv(65536)
        assert reply.startswith(b"HTTP/1.1 400"), reply

    # Half a request, then nothing: other clients are answered meanwhile.
    with socket.create_connection(("127.0.0.1", server.port)) as stalled:
        stalled.sendall(b"GET /heal")
        started = time.monotonic()
        status, _, body = curl(f"http://{server.address}/healthz")
        assert (status, body) == (200, "SERVING\n")
        assert time.monotonic() - started < 5


def test_silent_and_stalled_http1_clients_are_disconnected_after_idle_timeout(tmp_path, request):
    from conftest import _failed, start_server, stop_server

    server = start_server(tmp_path / "node", server={"idle_timeout": "1s"})
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as silent, \
                socket.create_connection(("127.0.0.1", server.port)) as stalled, \
                socket.create_connection(("127.0.0.1", server.port)) as kept:
            stalled.sendall(b"GET /heal")
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            started = time.monotonic()
            for sock in (silent, stalled):
                assert read_until_closed(sock, timeout=10) == b""
            assert read_until_closed(kept, timeout=10).startswith(b"HTTP/1.1 200 OK"), "answered, then closed idle"
            waited = time.monotonic() - started
            assert 0.9 <= waited < 5, f"closed after {waited:.2f} s with idle_timeout 1s"
        # The node still serves new clients.
        status, _, body = curl(f"http://{server.address}/healthz")
        assert (status, body) == (200, "SERVING\n")
    finally:
        stop_server(server, _failed(request.node))

