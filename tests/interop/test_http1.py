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

    status, _, body = curl(f"http://{server.address}/no/such/path")
    assert status == 404 and '"code":"unimplemented"' in body
    # Methods take Connect's POST here (Connect GET is not served yet).
    status, head, _ = curl(f"http://{server.address}/erdtree.v1.KVStore/Get")
    assert status == 405 and "allow: POST" in head

    # The same port still speaks gRPC.
    import grpc

    with grpc.insecure_channel(server.address) as channel:
        stub = pb.kv_grpc.KVStoreStub(channel)
        assert stub.Set(pb.kv.SetRequest(key="k", value=b"v"), timeout=10).lsn == 1


def read_responses(sock: socket.socket, count: int, timeout: float = 10) -> list[tuple[int, str]]:
    """Reads `count` HTTP/1.1 responses (content-length bodies) off one connection."""
    sock.settimeout(timeout)
    data = b""
    responses = []
    while len(responses) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode()
            length = next(
                int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.lower().startswith("content-length:")
            )
            if len(data) >= head_end + 4 + length:
                body = data[head_end + 4 : head_end + 4 + length].decode()
                responses.append((int(head.split()[1]), body))
                data = data[head_end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(responses)} of {count} responses"
        data += chunk
    return responses


def test_pipelined_requests_are_answered_in_order(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /healthz?probe=lb HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        # HEAD has a content-length but no body: read it apart.
        first, second = read_responses(sock, 2)
        assert first == (200, "SERVING\n")
        assert second[0] == 404 and "/nope" in second[1]
        sock.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        # Keep-alive: the connection still serves the fourth request.
        while rest.count(b"\r\n\r\n") < 1 or not rest.endswith(b"SERVING\n"):
            rest += sock.recv(65536)
        assert rest.startswith(b"HTTP/1.1 200 OK") and rest.endswith(b"SERVING\n")


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
