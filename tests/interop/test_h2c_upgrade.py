"""`Upgrade: h2c` (RFC 7540 §3.2): an HTTP/1.1 request may ask to switch the connection to
HTTP/2; the server answers 101 and serves that request on stream 1 over HTTP/2. Driven by
curl (`--http2` on http:// upgrades) and nghttp (`-u`), and by a raw socket for the
requests those clients never send."""

from __future__ import annotations

import json
import socket

from support import run, tool

SET = "/erdtree.v1.KVStore/Set"
GET = "/erdtree.v1.KVStore/Get"


def curl_upgrade(url: str, *args: str) -> tuple[str, int, str, str]:
    """(HTTP version, status, verbose log, body) of one `curl --http2` call."""
    done = run([tool("curl"), "-sS", "-v", "--http2", "--max-time", "10", "-w", "\n%{http_version} %{http_code}", *args, url])
    assert done.returncode == 0, done.stderr
    body, _, trailer = done.stdout.decode().rpartition("\n")
    version, code = trailer.split()
    return version, int(code), done.stderr.decode(), body


def raw_exchange(port: int, request: bytes) -> bytes:
    """Everything the server sends for `request` until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        sock.settimeout(10)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_curl_upgrades_connect_calls_to_http2(server):
    version, status, log, body = curl_upgrade(
        server.url + SET, "-H", "content-type: application/json", "-d", json.dumps({"key": "aw==", "value": "dg=="})
    )
    assert "101 Switching Protocols" in log and "upgrade: h2c" in log.lower()
    assert (version, status, json.loads(body)) == ("2", 200, {"lsn": "1", "epoch": "1"})

    # The request that asked for the upgrade is answered on stream 1 whatever its method:
    # a Connect GET, and a binary POST.
    query = "encoding=json&message=%7B%22key%22%3A%22aw%3D%3D%22%7D"
    version, status, _, body = curl_upgrade(f"{server.url}{GET}?{query}")
    assert (version, status, json.loads(body)) == ("2", 200, {"value": "dg==", "found": True, "lsn": "1"})

    # Errors keep Connect's mapping over the upgraded stream.
    version, status, _, body = curl_upgrade(
        server.url + "/erdtree.v1.KVStore/Nope", "-H", "content-type: application/json", "-d", "{}"
    )
    assert (version, status, json.loads(body)["code"]) == ("2", 404, "unimplemented")


def test_nghttp_upgrades_then_sends_more_streams_on_the_connection(server, tmp_path):
    # nghttp upgrades with `OPTIONS *` (answered 405 on stream 1: calls take POST), then sends
    # its real request as a new stream on the upgraded connection.
    set_body = tmp_path / "set.json"
    set_body.write_text(json.dumps({"key": "bg==", "value": "bmc="}))
    done = run(
        [tool("nghttp"), "-nv", "-u", "-d", str(set_body), "-H", "content-type: application/json", server.url + SET]
    )
    log = done.stdout.decode()
    assert done.returncode == 0, log + done.stderr.decode()
    assert "HTTP Upgrade success" in log
    assert "recv (stream_id=1) :status: 405" in log
    assert "recv (stream_id=13) :status: 200" in log

    get_body = tmp_path / "get.json"
    get_body.write_text(json.dumps({"key": "bg=="}))
    done = run([tool("nghttp"), "-u", "-d", str(get_body), "-H", "content-type: application/json", server.url + GET])
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == {"value": "bmc=", "found": True, "lsn": "1"}


def upgrade_request(path: str, settings: str | None, upgrade: str = "h2c", body: bytes = b"") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Connection: Upgrade, HTTP2-Settings", f"Upgrade: {upgrade}"]
    if settings is not None:
        lines.append(f"HTTP2-Settings: {settings}")
    lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http1_answer(data: bytes) -> tuple[int, str, dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    return int(lines[0].split()[1]), head.decode().lower(), json.loads(body) if body else {}


def test_requests_that_cannot_be_upgraded_are_answered_over_http1_and_the_connection_closes(server):
    get = json.dumps({"key": "eA=="}).encode()
    missing = {}  # proto3 JSON omits defaults: found=false, lsn=0
    # No HTTP2-Settings, a malformed one, two of them, settings nghttp2 refuses (5 bytes,
    # not a multiple of 6), another protocol: each is served over HTTP/1.1, and — since
    # an HTTP/1.1 parser stops after a request that asked to switch — closes the connection
    # (raw_exchange returns only because the server closed it).
    for request in (
        upgrade_request(GET, None, body=get),
        upgrade_request(GET, "not base64!", body=get),
        upgrade_request(GET, "AAMAAABk\r\nHTTP2-Settings: AAMAAABk", body=get),
        upgrade_request(GET, "AAMAAABkAA", body=get),
        upgrade_request(GET, "AAMAAABk", upgrade="websocket", body=get),
    ):
        status, head, body = http1_answer(raw_exchange(server.port, request))
        assert (status, body) == (200, missing), request
        assert "connection: close" in head and "content-type: application/json" in head and "101" not in head

    # CONNECT is a switch too (a tunnel): refused, and the connection closes.
    data = raw_exchange(server.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 404") and b"connection: close" in data.lower()

    # /healthz stays HTTP/1.1 for load balancers, upgrade or not.
    data = raw_exchange(
        server.port,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n",
    )
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"SERVING\n")


def test_an_oversized_upgrade_request_is_refused_over_http1(server):
    # Over limits.max_message_bytes (4 MiB by default): read to its end, kept nowhere, refused.
    body = json.dumps({"key": "eA==", "value": "A" * (5 << 20)}).encode()
    status, head, answer = http1_answer(raw_exchange(server.port, upgrade_request(SET, "AAMAAABk", body=body)))
    assert status == 429 and answer["code"] == "resource_exhausted" and "4194304-byte limit" in answer["message"]
    assert "connection: close" in head
