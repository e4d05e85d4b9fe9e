"""gRPC protocol edges: each abuse gets the right status, and the server keeps serving.

Most tests share one server (module_server) on purpose: the last test checks
that after all of them an ordinary Get still works. grpcio covers what a
client library does; curl with --http2-prior-knowledge covers what only a raw
HTTP/2 request can show (headers, trailers, the server's own deadline timer).
"""

from __future__ import annotations

import time
import urllib.parse

import grpc
import pytest

from support import GRPC_HEADERS, RawH2, curl_h2c, grpc_frame, grpc_unframe, parse_curl_headers, run, tool

RPC_TIMEOUT_S = 10
MESSAGE_LIMIT = 4194304  # 4 MiB


@pytest.fixture(scope="module")
def mchannel(module_server):
    with grpc.insecure_channel(module_server.address) as ch:
        yield ch


@pytest.fixture(scope="module")
def mkv(pb, mchannel):
    return pb.kv_grpc.KVStoreStub(mchannel)


def raw_call(channel: grpc.Channel, path: str, payload: bytes) -> grpc.RpcError:
    """Call `path` with `payload` as the message bytes (no serializer) and return the error."""
    method = channel.unary_unary(path)
    with pytest.raises(grpc.RpcError) as info:
        method(payload, timeout=RPC_TIMEOUT_S)
    return info.value


def assert_wire_message_is_percent_encoded(raw: str | None) -> None:
    # PROTOCOL-HTTP2: grpc-message is percent-encoded, so only printable ASCII
    # goes on the wire and every '%' starts a %XX escape.
    assert raw is not None, "error response has no grpc-message"
    assert all(0x20 <= ord(c) <= 0x7E for c in raw), f"grpc-message not percent-encoded: {raw!r}"
    i = raw.find("%")
    while i != -1:
        escape = raw[i + 1 : i + 3]
        assert len(escape) == 2 and all(c in "0123456789abcdefABCDEF" for c in escape), (
            f"bad percent escape at {i} in grpc-message {raw!r}"
        )
        i = raw.find("%", i + 3)


# --------------------------------------------------------------------------
# Routing and decoding
# --------------------------------------------------------------------------


def test_unknown_method_is_unimplemented(mchannel):
    err = raw_call(mchannel, "/erdtree.v1.KVStore/Nope", b"")
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED, err
    assert "Nope" in err.details(), f"message should name the method: {err.details()!r}"


def test_unknown_service_is_unimplemented(mchannel):
    err = raw_call(mchannel, "/erdtree.v1.NoSuchService/Get", b"")
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED, err
    assert "NoSuchService" in err.details(), f"message should name the service: {err.details()!r}"


def test_garbage_payload_is_invalid_argument(mchannel):
    # 0xff 0xff 0xff is a varint tag whose continuation bits never end.
    err = raw_call(mchannel, "/erdtree.v1.KVStore/Get", b"\xff\xff\xff")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert err.details(), "an undecodable message should come with a message saying so"


def test_message_over_4_mib_is_resource_exhausted_and_server_keeps_serving(pb, module_server, mkv):
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(module_server.address, options=options) as channel:
        stub = pb.kv_grpc.KVStoreStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Set(pb.kv.SetRequest(key="huge", value=b"\x01" * (5 * 1024 * 1024)), timeout=30)
        err = info.value
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        assert str(MESSAGE_LIMIT) in err.details(), f"message should name the limit: {err.details()!r}"

        # The same connection and a fresh one both still work, and nothing was written.
        stub.Set(pb.kv.SetRequest(key="after-huge", value=b"ok"), timeout=RPC_TIMEOUT_S)
        assert stub.Get(pb.kv.GetRequest(key="after-huge"), timeout=RPC_TIMEOUT_S).value == b"ok"
    assert not mkv.Get(pb.kv.GetRequest(key="huge"), timeout=RPC_TIMEOUT_S).found


# --------------------------------------------------------------------------
# Deadlines
# --------------------------------------------------------------------------


def test_server_answers_deadline_exceeded_for_expired_grpc_timeout(pb, module_server):
    # A raw client enforces no deadline of its own, so grpc-status 4 here was
    # sent by the server: 1 ns has passed before any handler can run.
    conn = RawH2(module_server.host, module_server.port)
    try:
        stream = conn.unary_grpc(
            "/erdtree.v1.KVStore/Get", pb.kv.GetRequest(key="k").SerializeToString(), [("grpc-timeout", "1n")]
        )
        assert conn.read_until(lambda: stream in conn.ended, timeout=10), "\n".join(conn.frames)
        response = conn.streams[stream]
        assert response.status == 200, response.raw_headers
        assert response.grpc_status == 4, f"expected DEADLINE_EXCEEDED (4):\n{response.raw_headers}"
    finally:
        conn.close()


def test_server_deadline_fires_while_request_is_stalled(module_server):
    # Headers arrive but the request message never does, so only the server's
    # own timer for grpc-timeout can end this call.
    conn = RawH2(module_server.host, module_server.port)
    try:
        started = time.monotonic()
        stream = conn.start_grpc("/erdtree.v1.KVStore/Get", [("grpc-timeout", "300m")])
        finished = conn.read_until(lambda: conn.stream_finished(stream), timeout=15)
        elapsed = time.monotonic() - started
        response = conn.streams[stream]
        assert finished, f"server did not end a stalled call with grpc-timeout: 300m within 15 s:\n{response.raw_headers}"
        assert response.grpc_status == 4, (
            f"expected DEADLINE_EXCEEDED (4) after ~0.3 s, got after {elapsed:.2f} s "
            f"(RST_STREAM {conn.resets.get(stream)}):\n{response.raw_headers}"
        )
        assert elapsed >= 0.25, f"deadline fired after {elapsed:.3f} s, before the 300 ms grpc-timeout"
    finally:
        conn.close()


# --------------------------------------------------------------------------
# HTTP-level checks with curl
# --------------------------------------------------------------------------


def test_wrong_content_type_is_http_415(module_server, tmp_path):
    response = curl_h2c(
        f"{module_server.url}/erdtree.v1.KVStore/Get", None, ["content-type: text/plain", "te: trailers"], tmp_path
    )
    assert response.status == 415, f"expected HTTP 415 Unsupported Media Type:\n{response.raw_headers}"


def test_non_post_method_is_http_405_allowing_post(module_server, tmp_path):
    dump = tmp_path / "headers.txt"
    done = run([tool("curl"), "--http2-prior-knowledge", "-sS", "--max-time", "10", "-D", str(dump), "-o", "/dev/null",
                "-X", "GET", *[arg for h in GRPC_HEADERS for arg in ("-H", h)],
                f"{module_server.url}/erdtree.v1.KVStore/Get"])
    assert done.returncode == 0, done.stderr
    response = parse_curl_headers(dump.read_text(), b"")
    assert response.status == 405, f"expected HTTP 405 Method Not Allowed:\n{response.raw_headers}"
    assert response.get("allow") == "POST", response.raw_headers


def test_unknown_grpc_encoding_is_unimplemented_with_accept_encoding(pb, module_server, tmp_path):
    response = curl_h2c(
        f"{module_server.url}/erdtree.v1.KVStore/Get", None, [*GRPC_HEADERS, "grpc-encoding: snappy"], tmp_path
    )
    assert response.status == 200, response.raw_headers
    assert response.grpc_status == 12, f"expected UNIMPLEMENTED (12):\n{response.raw_headers}"
    accepted = response.get("grpc-accept-encoding")
    assert accepted is not None, f"no grpc-accept-encoding in the answer:\n{response.raw_headers}"
    assert "snappy" not in accepted.lower()
    assert "snappy" in urllib.parse.unquote(response.get("grpc-message") or ""), (
        f"message should name the encoding:\n{response.raw_headers}"
    )

    # The same with a message flagged as compressed, as a real client would send it.
    conn = RawH2(module_server.host, module_server.port)
    try:
        body = pb.kv.GetRequest(key="k").SerializeToString()
        stream = conn.unary_grpc("/erdtree.v1.KVStore/Get", body, [("grpc-encoding", "snappy")], compressed=True)
        assert conn.read_until(lambda: stream in conn.ended, timeout=10), "\n".join(conn.frames)
        assert conn.streams[stream].grpc_status == 12, conn.streams[stream].raw_headers
        assert conn.streams[stream].get("grpc-accept-encoding") is not None, conn.streams[stream].raw_headers
    finally:
        conn.close()


def test_early_response_resets_unfinished_request(module_server):
    # RFC 9113 §8.1: a server that answers before the request is complete asks
    # the client to stop sending with RST_STREAM(NO_ERROR) after its END_STREAM
    # response; gRPC core and grpc-go do. Without it curl 7.88 sometimes waits
    # forever to finish an upload nobody reads.
    conn = RawH2(module_server.host, module_server.port)
    try:
        stream = conn.start_grpc("/erdtree.v1.KVStore/Nope")  # HEADERS only, request left open
        conn.read_until(lambda: stream in conn.resets, timeout=5)
        frames = "\n".join(conn.frames)
        assert stream in conn.ended, f"no END_STREAM response to an unknown method:\n{frames}"
        assert conn.streams[stream].grpc_status == 12, conn.streams[stream].raw_headers
        assert conn.resets.get(stream) == 0, f"expected RST_STREAM(NO_ERROR) after the response:\n{frames}"
    finally:
        conn.close()


def test_grpc_message_is_percent_encoded_on_the_wire(module_server, tmp_path):
    # curl sends the path as is, so the server sees a literal '%25' in the
    # method name; echoed in grpc-message it must be escaped again.
    response = curl_h2c(
        f"{module_server.url}/erdtree.v1.KVStore/No%25pe", None, GRPC_HEADERS, tmp_path
    )
    assert response.grpc_status == 12, response.raw_headers
    raw = response.get("grpc-message")
    assert_wire_message_is_percent_encoded(raw)
    assert "No%25pe" in urllib.parse.unquote(raw or ""), f"message should name the method: {raw!r}"


def test_grpc_message_with_non_ascii_and_percent_is_decoded_by_grpcio(mchannel):
    method = "/erdtree.v1.KVStore/Nö%41pe"
    err = raw_call(mchannel, method, b"")
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED, err
    # Wrong escaping would show as "NöApe" (unescaped %41) or mojibake for ö.
    assert "Nö%41pe" in err.details(), f"grpcio decoded {err.details()!r}"


# --------------------------------------------------------------------------
# Cancellation, then the server must still be fine
# --------------------------------------------------------------------------


def test_cancelled_calls_do_not_break_the_server(pb, mkv):
    futures = []
    for i in range(40):
        # Large enough that many cancels land while the message is still uploading.
        request = pb.kv.SetRequest(key=f"cancel-{i}", value=b"c" * (512 * 1024))
        future = mkv.Set.future(request, timeout=RPC_TIMEOUT_S)
        time.sleep(0.002 * (i % 5))
        future.cancel()
        futures.append(future)
    for future in futures:
        # Each call was either cancelled (RST_STREAM sent) or had already completed.
        if not future.cancelled():
            assert future.exception() is None or future.code() == grpc.StatusCode.CANCELLED, future.exception()

    watch = mkv.GetUpdates.future(pb.kv.GetUpdatesRequest(since_lsn=0, limit=1000), timeout=RPC_TIMEOUT_S)
    watch.cancel()

    mkv.Set(pb.kv.SetRequest(key="after-cancel", value=b"fine"), timeout=RPC_TIMEOUT_S)
    assert mkv.Get(pb.kv.GetRequest(key="after-cancel"), timeout=RPC_TIMEOUT_S).value == b"fine"


def test_normal_get_still_works_after_all_of_the_above(pb, module_server):
    assert module_server.alive(), f"server died:\n{module_server.log_tail()}"
    with grpc.insecure_channel(module_server.address) as channel:
        stub = pb.kv_grpc.KVStoreStub(channel)
        lsn = stub.Set(pb.kv.SetRequest(key="survivor", value=b"still here"), timeout=RPC_TIMEOUT_S).lsn
        got = stub.Get(pb.kv.GetRequest(key="survivor"), timeout=RPC_TIMEOUT_S)
        assert got.found and got.value == b"still here" and got.lsn == lsn


# --------------------------------------------------------------------------
# Shutdown (own server: it gets stopped)
# --------------------------------------------------------------------------


def test_sigterm_drains_in_flight_call_then_exits_0(pb, kv, server):
    kv.Set(pb.kv.SetRequest(key="drain", value=b"answered during shutdown"), timeout=RPC_TIMEOUT_S)

    # A Get whose request message we hold back, so it is in flight when SIGTERM lands.
    conn = RawH2(server.host, server.port)
    try:
        stream = conn.start_grpc("/erdtree.v1.KVStore/Get", [("grpc-timeout", "20S")])
        # A round trip (SETTINGS ack) proves the server has read our HEADERS.
        conn.read_until(lambda: False, timeout=0.5)
        assert not conn.stream_finished(stream), f"server ended the call early:\n{conn.streams[stream].raw_headers}"

        server.sigterm()
        got_goaway = conn.read_until(lambda: conn.goaway is not None, timeout=5)
        assert got_goaway, "no GOAWAY within 5 s of SIGTERM"
        assert conn.goaway.last_stream_id >= stream, (
            f"GOAWAY last_stream_id={conn.goaway.last_stream_id} drops our in-flight stream {stream}"
        )
        assert server.alive(), "server exited with a call still in flight instead of draining it"

        conn.send_data(stream, grpc_frame(pb.kv.GetRequest(key="drain").SerializeToString()), end_stream=True)
        assert conn.read_until(lambda: conn.stream_finished(stream), timeout=10), "in-flight call never answered"
        response = conn.streams[stream]
        assert response.grpc_status == 0, f"in-flight call was not completed:\n{response.raw_headers}"
        (message,) = grpc_unframe(response.body)
        got = pb.kv.GetResponse.FromString(message)
        assert got.found and got.value == b"answered during shutdown"
    finally:
        conn.close()

    code = server.terminate()
    assert code == 0, f"exit code after SIGTERM: {code}\n{server.log_tail()}"
