"""Connect unary on the gRPC port, over HTTP/1.1 and over HTTP/2 (h2c, prior knowledge),
driven by curl, `buf curl --protocol connect` and raw sockets: JSON and binary codecs,
Connect's error body and HTTP statuses."""

from __future__ import annotations

import base64
import json
import socket

import pytest

from support import run, tool

from test_http1 import read_until_closed, split_responses


# curl's switch for each transport.
TRANSPORTS = {"http1": "--http1.1", "h2c": "--http2-prior-knowledge"}


def curl_body(body: bytes | None) -> list[str]:
    """curl's arguments for a request body. None: no body at all, so over h2c curl ends the
    stream with its HEADERS frame — for streams the server refuses from their headers alone
    (it cannot wait for a streaming request to end), since curl 7.88 fails ("(92) Stream
    error") or hangs when an answer, and the RST_STREAM(NO_ERROR) that follows it, arrive
    while it is still uploading (see support.curl_h2c). Unary calls are answered after their
    request ends, whatever is wrong with them."""
    return [] if body is None else ["--data-binary", "@-"]


def connect(server, method: str, body: bytes | None, content_type: str = "application/json", *headers: str,
            transport: str = "http1"):
    """(HTTP status, body bytes, response headers) of a POST through curl: Connect unary, or a
    streaming call's raw body."""
    args = [tool("curl"), TRANSPORTS[transport], "-sS", "--max-time", "10", "-D", "-", "-X", "POST",
            "-H", f"content-type: {content_type}", *curl_body(body)]
    for header in headers:
        args += ["-H", header]
    done = run([*args, f"http://{server.address}/{method}"], input=body)
    assert done.returncode == 0, done.stderr
    head, _, payload = done.stdout.partition(b"\r\n\r\n")
    status = int(head.split(b"\r\n", 1)[0].split()[1])
    return status, payload, head.decode().lower()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_json_set_get_delete(pb, server, transport):
    def call(method, body):
        return connect(server, method, body, transport=transport)

    status, body, head = call("erdtree.v1.KVStore/Set", b'{"key":"k1","value":"aGVsbG8=","ttlMs":"60000"}')
    assert status == 200 and "content-type: application/json" in head
    assert json.loads(body) == {"lsn": "1", "epoch": "1"}
    status, body, _ = call("erdtree.v1.KVStore/Get", b'{"key":"k1"}')
    reply = json.loads(body)
    assert status == 200 and reply["value"] == "aGVsbG8=" and reply["found"] is True and reply["lsn"] == "1"
    assert int(reply["expiresAtMs"]) > 0
    # Defaults are left out: a missing key is {} ("found": false is the default).
    status, body, _ = call("erdtree.v1.KVStore/Get", b'{"key":"missing"}')
    assert (status, json.loads(body)) == (200, {})
    status, body, _ = call("erdtree.v1.KVStore/Delete", b'{"key":"k1"}')
    assert (status, json.loads(body)) == (200, {"deleted": True, "lsn": "2", "epoch": "1"})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_binary_codec_and_admin_and_health(pb, server, transport):
    request = pb.kv.SetRequest(key="bin", value=b"\x00\xff").SerializeToString()
    status, body, head = connect(server, "erdtree.v1.KVStore/Set", request, "application/proto", transport=transport)
    assert status == 200 and "content-type: application/proto" in head
    assert pb.kv.SetResponse.FromString(body).lsn == 1
    status, body, _ = connect(server, "erdtree.v1.KVStore/Get", pb.kv.GetRequest(key="bin").SerializeToString(),
                              "application/proto", transport=transport)
    assert pb.kv.GetResponse.FromString(body).value == b"\x00\xff"
    status, body, _ = connect(server, "erdtree.v1.Admin/Status", b"{}", "application/json; charset=utf-8",
                              transport=transport)
    assert status == 200 and json.loads(body)["role"] == "ROLE_MASTER"
    status, body, _ = connect(server, "grpc.health.v1.Health/Check", b"{}", "application/json",
                              "connect-protocol-version: 1", transport=transport)
    assert json.loads(body) == {"status": "SERVING"}


@pytest.mark.parametrize("extra", [[], ["--http2-prior-knowledge"]], ids=["http1", "h2c"])
def test_buf_curl_speaks_connect(pb, server, extra):
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    connect(server, "erdtree.v1.KVStore/Set", b'{"key":"b","value":"eA=="}')
    done = run([tool("buf"), "curl", "--protocol", "connect", *extra, "--schema", str(root), "--data", '{"key":"b"}',
                f"http://{server.address}/erdtree.v1.KVStore/Get"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["value"] == "eA=="
    # An error: buf curl exits non-zero and prints Connect's code.
    done = run([tool("buf"), "curl", "--protocol", "connect", *extra, "--schema", str(root), "--data", '{"key":""}',
                f"http://{server.address}/erdtree.v1.KVStore/Get"])
    assert done.returncode != 0 and b"invalid_argument" in done.stdout + done.stderr


def error(server, method, body, content_type="application/json", *headers, transport="http1"):
    status, payload, _ = connect(server, method, body, content_type, *headers, transport=transport)
    return status, json.loads(payload)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_errors_carry_connect_codes_and_http_statuses(pb, server, transport):
    def error(*args, **kwargs):
        return globals()["error"](*args, **kwargs, transport=transport)

    assert error(server, "erdtree.v1.KVStore/Get", b'{"key":""}') == (
        400, {"code": "invalid_argument", "message": "key must not be empty (keys are 1 to 4096 bytes of UTF-8)"})
    assert error(server, "erdtree.v1.KVStore/Get", b'{"key":"k","colour":1}') == (
        400, {"code": "invalid_argument", "message": 'erdtree.v1.GetRequest: unknown field "colour"'})
    assert error(server, "erdtree.v1.KVStore/Get", b'{"key":}') == (
        400, {"code": "invalid_argument", "message": "malformed JSON at byte 7: unexpected character '}'"})
    assert error(server, "erdtree.v1.KVStore/Set", b'{"key":"k","ttlMs":"soon"}')[1]["message"] == (
        "erdtree.v1.SetRequest.ttl_ms: soon is not an integer in the range of Int64")
    # With a body: answered once the request has ended (see startConnect), over h2c too.
    status, body = error(server, "erdtree.v1.KVStore/Nope", b'{"key":"k"}')
    assert status == 404 and body["code"] == "unimplemented"
    # Neither gRPC nor Connect: 415 (over HTTP/2 without a body, as the gRPC spec has it).
    status, payload, _ = connect(server, "erdtree.v1.KVStore/Get", b"{}", "text/plain", transport=transport)
    assert status == 415
    if transport == "http1":
        assert json.loads(payload)["code"] == "unimplemented"
    status, body = error(server, "erdtree.v1.KVStore/Get", b'{"key":"k"}', "application/json",
                         "connect-protocol-version: 2")
    assert status == 400 and "connect-protocol-version" in body["message"]
    status, body = error(server, "erdtree.v1.KVStore/Get", b'{"key":"k"}', "application/json",
                         "connect-timeout-ms: soon")
    assert status == 400 and "connect-timeout-ms" in body["message"]
    status, body = error(server, "erdtree.v1.KVStore/Get", b"\xff\xff", "application/proto")
    assert status == 400 and body["code"] == "invalid_argument"
    # A body over limits.max_message_bytes (4 MB by default) is refused without being kept.
    status, body = error(server, "erdtree.v1.KVStore/Set", b"x" * (5 << 20))
    assert status == 429 and body["code"] == "resource_exhausted"
    # A value over limits.max_value_bytes (1 MB) in a body under the message limit: the
    # service's own refusal of its argument.
    big = '{"key":"big","value":"' + "A" * (4 * ((1 << 20) // 3 + 2)) + '"}'
    status, body = error(server, "erdtree.v1.KVStore/Set", big.encode())
    assert status == 400 and body["code"] == "invalid_argument" and "max_value_bytes" in body["message"]
    # The node keeps serving.
    status, _, _ = connect(server, "erdtree.v1.KVStore/Get", b'{"key":"k"}')
    assert status == 200


def test_a_slave_refuses_writes_with_failed_precondition(pb, tmp_path, request):
    from conftest import _failed, start_server, stop_server

    master = start_server(tmp_path / "master")
    slave = start_server(tmp_path / "slave", role="slave", master={"address": master.address})
    try:
        status, body = error(slave, "erdtree.v1.KVStore/Set", b'{"key":"x"}')
        assert status == 400 and body["code"] == "failed_precondition" and master.address in body["message"]
    finally:
        stop_server(slave, _failed(request.node))
        stop_server(master, _failed(request.node))


def test_pipelined_connect_calls_are_answered_in_order(server):
    def post(body: bytes) -> bytes:
        return (b"POST /erdtree.v1.KVStore/Set HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"".join(post(b'{"key":"p%d","value":"eA=="}' % i) for i in range(5))
                     + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        replies = split_responses(read_until_closed(sock), ["POST"] * 5 + ["GET"])[:5]
    assert [(status, json.loads(body)["lsn"]) for status, body in replies] == [(200, str(i + 1)) for i in range(5)]


def get(server, method: str, query: str, transport: str = "http1"):
    """(HTTP status, body bytes) of a Connect GET."""
    done = run([tool("curl"), TRANSPORTS[transport], "-sS", "--max-time", "10", "-w", "\n%{http_code}",
                f"http://{server.address}/{method}?{query}"])
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), body


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connect_get_for_methods_without_side_effects(pb, server, transport):
    import base64
    from urllib.parse import quote

    connect(server, "erdtree.v1.KVStore/Set", b'{"key":"a b&c","value":"aGk="}')
    # JSON, percent-encoded, parameters in any order.
    status, body = get(server, "erdtree.v1.KVStore/Get",
                       f"connect=v1&message={quote(json.dumps({'key': 'a b&c'}))}&encoding=json", transport)
    assert status == 200 and json.loads(body)["value"] == "aGk="
    # Binary, URL-safe base64 without padding.
    message = base64.urlsafe_b64encode(pb.kv.GetRequest(key="a b&c").SerializeToString()).rstrip(b"=").decode()
    status, body = get(server, "erdtree.v1.KVStore/Get", f"encoding=proto&base64=1&message={message}", transport)
    assert status == 200 and pb.kv.GetResponse.FromString(body).value == b"hi"
    # Refusals.
    status, body = get(server, "erdtree.v1.KVStore/Get", "message=%7B%7D", transport)
    assert status == 400 and json.loads(body)["code"] == "invalid_argument"
    status, body = get(server, "erdtree.v1.KVStore/Get", "encoding=json&message=%7B%7D&compression=br", transport)
    assert status == 501 and json.loads(body)["code"] == "unimplemented"
    status, body = get(server, "erdtree.v1.KVStore/Get", "encoding=json&message=%7B%22key%22%3A", transport)
    assert status == 400 and "malformed JSON" in json.loads(body)["message"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_get_is_served_exactly_for_the_methods_the_proto_marks_side_effect_free(pb, server, transport):
    from google.protobuf import descriptor_pb2

    for service in ("KVStore", "Admin"):
        descriptor = pb.kv.DESCRIPTOR.services_by_name[service]
        for method in descriptor.methods:
            if method.client_streaming or method.server_streaming:
                continue
            free = method.GetOptions().idempotency_level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
            status, _ = get(server, f"erdtree.v1.{service}/{method.name}", "encoding=json&message=%7B%7D", transport)
            assert (status != 405) == free, f"{service}/{method.name}: GET answered {status}"


@pytest.mark.parametrize("transport", ["http1", "h2c"])
@pytest.mark.parametrize("codec", ["proto", "json"])
def test_connectrpc_client_calls_get_set_delete(pb, server, transport, codec):
    """The connectrpc package's own client, over HTTP/1.1 and over h2c (its HTTP/2 transport
    with prior knowledge), with the binary and the JSON codec; it compresses requests with gzip
    by default and asks for gzip answers."""
    import pyqwest
    from connectrpc.codec import proto_binary_codec, proto_json_codec
    from connectrpc.errors import ConnectError
    from connectrpc.code import Code

    version = pyqwest.HTTPVersion.HTTP1 if transport == "http1" else pyqwest.HTTPVersion.HTTP2
    http_transport = pyqwest.SyncHTTPTransport(http_version=version)
    http = pyqwest.SyncClient(http_transport)
    chosen = proto_binary_codec() if codec == "proto" else proto_json_codec()
    try:
        with pb.connect.KVStoreClientSync(f"http://{server.address}", http_client=http, codec=chosen) as client:
            big = b"v" * 5000  # large enough that both directions are gzipped
            assert client.set(pb.cpb.SetRequest(key="k", value=big)).lsn == 1
            reply = client.get(pb.cpb.GetRequest(key="k"))
            assert reply.found and reply.value == big and reply.lsn == 1
            assert client.get(pb.cpb.GetRequest(key="k"), use_get=True).value == big
            deleted = client.delete(pb.cpb.DeleteRequest(key="k"))
            assert deleted.deleted and deleted.lsn == 2
            assert not client.get(pb.cpb.GetRequest(key="k")).found
            with pytest.raises(ConnectError) as refused:
                client.get(pb.cpb.GetRequest(key=""))
            assert refused.value.code == Code.INVALID_ARGUMENT
            assert "key must not be empty" in refused.value.message
    finally:
        http_transport.close()


def test_gzip_bodies_and_unknown_encodings(pb, server):
    import gzip

    body = gzip.compress(b'{"key":"z","value":"' + b"QUJD" * 600 + b'"}')
    status, reply, _ = connect(server, "erdtree.v1.KVStore/Set", body, "application/json", "content-encoding: gzip")
    assert (status, json.loads(reply)) == (200, {"lsn": "1", "epoch": "1"})
    # A large answer is gzipped for a client that accepts it (curl --compressed inflates it).
    done = run([tool("curl"), "-sS", "--compressed", "-D", "-", "-H", "content-type: application/json",
                "--data-binary", '{"key":"z"}', f"http://{server.address}/erdtree.v1.KVStore/Get"])
    head, _, payload = done.stdout.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower() and json.loads(payload)["value"] == "QUJD" * 600
    status, body = error(server, "erdtree.v1.KVStore/Get", b"not gzip", "application/json", "content-encoding: gzip")
    assert status == 400 and body["message"] == "the request body is not valid gzip"
    status, body = error(server, "erdtree.v1.KVStore/Get", b"{}", "application/json", "content-encoding: br")
    assert status == 501 and body["code"] == "unimplemented" and "gzip" in body["message"]
    # A small body that inflates past limits.max_message_bytes is refused, not inflated.
    bomb = gzip.compress(b" " * (5 << 20))
    status, body = error(server, "erdtree.v1.KVStore/Get", bomb, "application/json", "content-encoding: gzip")
    assert status == 429 and body["code"] == "resource_exhausted"



@pytest.mark.parametrize("transport", TRANSPORTS)
def test_more_codes_map_to_their_http_statuses(pb, tmp_path, request, transport):
    """unavailable, not_found and deadline_exceeded as the services produce them."""
    from conftest import _failed, start_server, stop_server

    master = start_server(tmp_path / "master")
    slave = start_server(tmp_path / "slave", role="slave", master={"address": master.address})
    try:
        # A master has every LSN it logged: a min_lsn past it is refused at once.
        status, body = error(master, "erdtree.v1.KVStore/Get", b'{"key":"k","minLsn":"99"}', transport=transport)
        assert status == 503 and body["code"] == "unavailable" and "min_lsn 99" in body["message"]
        status, body = error(master, "grpc.health.v1.Health/Check", b'{"service":"nope"}', transport=transport)
        assert status == 404 and body["code"] == "not_found"
        # A slave waits for min_lsn within the call's connect-timeout-ms.
        status, body = error(slave, "erdtree.v1.KVStore/Get", b'{"key":"k","minLsn":"99"}', "application/json",
                             "connect-timeout-ms: 300", transport=transport)
        assert status == 504 and body["code"] == "deadline_exceeded"
    finally:
        stop_server(slave, _failed(request.node))
        stop_server(master, _failed(request.node))


@pytest.mark.parametrize("codec", ["proto", "json"])
def test_connectrpc_bidi_stream_over_h2c(pb, server, codec):
    """Connect streaming (application/connect+proto|json) on Replication/Replicate with the
    connectrpc client over h2c: its Hello in a (gzip-compressed) envelope, the master's Welcome
    and a pushed Batch back in envelopes, both directions open at once; then a bad Hello gets
    Connect's end-stream error."""
    import threading

    import grpc
    import pyqwest
    from protobuf import Oneof
    from connectrpc.codec import proto_binary_codec, proto_json_codec
    from connectrpc.errors import ConnectError
    from connectrpc.code import Code

    http_transport = pyqwest.SyncHTTPTransport(http_version=pyqwest.HTTPVersion.HTTP2)
    http = pyqwest.SyncClient(http_transport)
    chosen = proto_binary_codec() if codec == "proto" else proto_json_codec()
    hello = pb.cpb.ReplicateRequest(kind=Oneof("hello", pb.cpb.Hello(slave_id="connect-test", last_lsn=0)))
    done = threading.Event()

    def requests():
        yield hello
        done.wait(timeout=10)  # keep the request side open until the batch came back

    try:
        with pb.connect.ReplicationClientSync(f"http://{server.address}", http_client=http, codec=chosen) as client:
            kinds, keys = [], []
            for response in client.replicate(requests()):
                kinds.append(response.kind.field)
                if response.kind.field == "welcome":
                    with grpc.insecure_channel(server.address) as channel:
                        # Large enough (3 KB) that the batch goes gzipped: the client offers it.
                        pb.kv_grpc.KVStoreStub(channel).Set(
                            pb.kv.SetRequest(key="streamed", value=b"1" * 3000), timeout=10)
                elif response.kind.field == "batch":
                    keys += [(entry.key, entry.value) for entry in response.kind.value.entries]
                    done.set()
            assert kinds[0] == "welcome" and "batch" in kinds and keys == [("streamed", b"1" * 3000)], kinds
            bad = pb.cpb.ReplicateRequest(kind=Oneof("hello", pb.cpb.Hello(slave_id="x", replication_id="zz", last_lsn=3)))
            with pytest.raises(ConnectError) as refused:
                list(client.replicate(iter([bad])))
            assert refused.value.code == Code.INVALID_ARGUMENT and "32 hexadecimal digits" in refused.value.message
    finally:
        done.set()
        http_transport.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("query,code,text", [
    ("encoding=json", "invalid_argument", "needs the message parameter"),
    ("encoding=xml&message=%7B%7D", "invalid_argument", "encoding=xml is not json or proto"),
    ("connect=v2&encoding=json&message=%7B%7D", "invalid_argument", "connect=v2 is not v1"),
    ("encoding=proto&base64=1&message=%25%25%25", "invalid_argument", "message is not base64"),
    ("encoding=json&message=%zz", "invalid_argument", "not valid percent-encoding"),
])
def test_malformed_connect_get_queries_are_refused(server, transport, query, code, text):
    status, body = get(server, "erdtree.v1.KVStore/Get", query, transport)
    assert status == 400 and json.loads(body)["code"] == code and text in json.loads(body)["message"], body


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_streaming_method_is_not_served_as_connect_unary(server, transport):
    status, body = error(server, "erdtree.v1.Replication/Replicate", b"{}", transport=transport)
    assert status == 415 and body["code"] == "unimplemented" and "streaming method" in body["message"]


def envelopes(data: bytes) -> list[tuple[int, bytes]]:
    """(flags, payload) of each Connect streaming envelope in `data`."""
    out = []
    while data:
        assert len(data) >= 5, f"truncated envelope prefix: {data!r}"
        flags, length = data[0], int.from_bytes(data[1:5], "big")
        out.append((flags, data[5:5 + length]))
        data = data[5 + length:]
    return out


def connect_stream_response(server, method: str, body: bytes | None, content_type: str, *headers: str,
                            transport: str = "h2c"):
    """(HTTP status, response headers, [(flags, payload)]) of a Connect streaming call."""
    status, payload, head = connect(server, method, body, content_type, *headers, transport=transport)
    return status, head, envelopes(payload)


def connect_stream(server, method: str, body: bytes, content_type: str, *headers: str, transport: str = "h2c"):
    """(HTTP status, [(flags, payload)]) of a Connect streaming call."""
    status, _, frames = connect_stream_response(server, method, body, content_type, *headers, transport=transport)
    return status, frames


def envelope(message: bytes, flags: int = 0) -> bytes:
    return bytes([flags]) + len(message).to_bytes(4, "big") + message


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("headers,body,content_type,code,text", [
    # Refused from the headers: no body (see curl_body).
    (["connect-content-encoding: br"], None, "application/connect+proto", "unimplemented",
     "connect-content-encoding br"),
    (["connect-timeout-ms: soon"], None, "application/connect+proto", "invalid_argument",
     "connect-timeout-ms soon"),
    ([], envelope(b"\x00", flags=1), "application/connect+proto", "internal", "compressed flag"),
    ([], envelope(b'{"service":'), "application/connect+json", "invalid_argument", "malformed JSON"),
    ([], envelope(b'{"hullo":{}}'), "application/connect+json", "invalid_argument", 'unknown field "hullo"'),
    ([], envelope(b"") + envelope(b""), "application/connect+proto", "invalid_argument",
     "takes one request message, got more"),
    ([], b"", "application/connect+proto", "invalid_argument", "requires a request message, got none"),
    ([], envelope(b"{}")[:6], "application/connect+json", "invalid_argument", "request ended inside a message"),
])
def test_connect_stream_errors_arrive_in_the_end_stream_message(server, transport, headers, body, content_type,
                                                                code, text):
    # Health/Watch is server streaming: served over HTTP/1.1 and HTTP/2 alike.
    status, frames = connect_stream(server, "grpc.health.v1.Health/Watch", body, content_type, *headers,
                                    transport=transport)
    # Connect streaming answers 200 and puts the error in the final envelope (flag 0x02).
    assert status == 200 and frames, frames
    flags, payload = frames[-1]
    assert flags == 0x02, frames
    error_body = json.loads(payload)["error"]
    assert error_body["code"] == code and text in error_body["message"], error_body


@pytest.mark.parametrize("transport,body,text", [
    # HTTP/1.1: the whole 5 MiB body is read, kept nowhere, and refused.
    ("http1", envelope(b"x" * (5 << 20)), "request body larger than the 4194304-byte limit"),
    # HTTP/2: refused from the envelope's prefix alone, before any of the message is buffered
    # (only the prefix is sent: see curl_body for why not the rest).
    ("h2c", bytes([0]) + (5 << 20).to_bytes(4, "big"), "exceeds the limit of 4194304 bytes"),
])
def test_an_oversized_stream_request_ends_with_resource_exhausted(server, transport, body, text):
    status, frames = connect_stream(server, "grpc.health.v1.Health/Watch", body, "application/connect+proto",
                                    transport=transport)
    assert status == 200 and frames[-1][0] == 0x02, frames
    error_body = json.loads(frames[-1][1])["error"]
    assert error_body["code"] == "resource_exhausted" and text in error_body["message"], error_body


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_streaming_over_http1_and_h2c_with_curl(server, transport):
    # Health/Watch answers the current status, then waits for changes; connect-timeout-ms
    # ends it with deadline_exceeded in the end-stream message.
    status, head, frames = connect_stream_response(
        server, "grpc.health.v1.Health/Watch", envelope(b"{}"), "application/connect+json", "connect-timeout-ms: 300",
        transport=transport)
    assert status == 200 and "content-type: application/connect+json" in head
    if transport == "http1":
        assert "transfer-encoding: chunked" in head
    assert frames[0] == (0, b'{"status":"SERVING"}'), frames
    assert frames[-1][0] == 0x02 and json.loads(frames[-1][1])["error"]["code"] == "deadline_exceeded"
    # The binary codec: HealthCheckResponse{status: SERVING} is field 1 = 1.
    _, _, frames = connect_stream_response(
        server, "grpc.health.v1.Health/Watch", envelope(b""), "application/connect+proto", "connect-timeout-ms: 300",
        transport=transport)
    assert frames[0] == (0, b"\x08\x01"), frames
    # A unary method called with the streaming protocol: one message, then a clean end-stream.
    connect(server, "erdtree.v1.KVStore/Set", b'{"key":"cw==","value":"dg=="}', transport=transport)
    _, _, frames = connect_stream_response(
        server, "erdtree.v1.KVStore/Get", envelope(b'{"key":"cw=="}'), "application/connect+json", transport=transport)
    assert json.loads(frames[0][1])["value"] == "dg==" and frames[1:] == [(0x02, b"{}")], frames


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_streamed_answers_are_gzipped_when_the_client_accepts_it(server, transport):
    import gzip

    value = base64.b64encode(b"z" * 3000).decode()
    connect(server, "erdtree.v1.KVStore/Set", json.dumps({"key": "Yg==", "value": value}).encode(),
            transport=transport)
    request = envelope(b'{"key":"Yg=="}')
    status, head, frames = connect_stream_response(
        server, "erdtree.v1.KVStore/Get", request, "application/connect+json", "connect-accept-encoding: gzip",
        transport=transport)
    assert status == 200 and "connect-content-encoding: gzip" in head
    flags, payload = frames[0]
    assert flags == 0x01 and len(payload) < 1000, "a 4 KB answer goes compressed"
    assert json.loads(gzip.decompress(payload))["value"] == value
    # Small messages (the end-stream here) stay uncompressed; without the header, nothing is compressed.
    assert frames[1] == (0x02, b"{}")
    _, head, frames = connect_stream_response(
        server, "erdtree.v1.KVStore/Get", request, "application/connect+json", transport=transport)
    assert "connect-content-encoding" not in head and frames[0][0] == 0 and json.loads(frames[0][1])["value"] == value


def test_server_streaming_with_buf_curl_over_http1(server):
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    # With --schema (no reflection) buf curl stays on HTTP/1.1 for http:// URLs.
    done = run([tool("buf"), "curl", "--protocol", "connect", "-v", "--schema", str(root), "--timeout", "1s",
                "--data", "{}", f"http://{server.address}/grpc.health.v1.Health/Watch"])
    log = done.stderr.decode()
    assert "HTTP/1.1 200 OK" in log, log
    assert json.loads(done.stdout.decode().split("}", 1)[0] + "}") == {"status": "SERVING"}, done.stdout
    assert b"deadline_exceeded" in done.stdout + done.stderr


def test_a_watch_over_http1_ends_cleanly_when_the_server_shuts_down(server):
    import http.client
    import time

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/grpc.health.v1.Health/Watch", envelope(b"{}"),
                 {"content-type": "application/connect+json"})
    response = conn.getresponse()
    assert response.status == 200
    first = response.read(5 + len(b'{"status":"SERVING"}'))
    assert envelopes(first) == [(0, b'{"status":"SERVING"}')]
    # An idle keep-alive HTTP/1.1 connection beside it, and one that never said anything.
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    idle.request("GET", "/healthz")
    assert idle.getresponse().read() == b"SERVING\n"
    silent = socket.create_connection(("127.0.0.1", server.port))
    silent.settimeout(10)
    time.sleep(0.2)

    server.sigterm()
    # The watcher hears NOT_SERVING, then the end-stream message; both idle connections are closed.
    assert envelopes(response.read()) == [(0, b'{"status":"NOT_SERVING"}'), (0x02, b"{}")]
    assert idle.sock.recv(1) == b"" and silent.recv(1) == b""
    assert server.terminate() == 0
    assert "grace period over" not in server.log(), "no connection should have held up the shutdown"


def test_connect_stream_unknown_method_and_http1(server):
    status, frames = connect_stream(server, "erdtree.v1.Replication/Nope", None, "application/connect+proto")
    assert status == 200 and frames[-1][0] == 0x02
    assert json.loads(frames[-1][1])["error"]["code"] == "unimplemented"
    # A bidirectional stream needs HTTP/2: 505, and the connection closes (a client coded for
    # full duplex would otherwise wait forever).
    status, payload, head = connect(server, "erdtree.v1.Replication/Replicate", envelope(b""),
                                    "application/connect+proto")
    assert status == 505 and "connection: close" in head
    assert json.loads(payload)["code"] == "unimplemented" and "needs HTTP/2" in json.loads(payload)["message"]


def test_refusals_wait_for_the_request_body_so_curl_reads_them(server):
    """A unary request refused for its path, content type or method is answered once its body
    is in: an answer mid-upload (and the RST_STREAM after it) made curl 7.88 exit with "(92)
    Stream error" about one time in thirty instead of printing the status."""
    body = b'{"key":"k"}'
    cases = [("erdtree.v1.KVStore/Nope", "application/json", 404), ("erdtree.v1.KVStore/Get", "text/plain", 415)]
    for _ in range(100):
        for method, content_type, status in cases:
            assert connect(server, method, body, content_type, transport="h2c")[0] == status
