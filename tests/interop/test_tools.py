"""Third-party tools against the server with no schema given: grpcurl, buf curl,
grpcio-reflection, grpcio-health-checking, h2load and curl."""

from __future__ import annotations

import base64
import json
import re

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from support import GRPC_HEADERS, curl_h2c, grpc_frame, grpc_unframe, run, tool

RPC_TIMEOUT_S = 10
KVSTORE_METHODS = {"Get", "Set", "Delete", "GetUpdates"}


def check_ok(done) -> str:
    stdout, stderr = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"{done.args[0]} exited {done.returncode}\nstdout: {stdout}\nstderr: {stderr}"
    return stdout


def grpcurl(*args: str) -> str:
    return check_ok(run([tool("grpcurl"), "-plaintext", "-max-time", "30", *args]))


# --------------------------------------------------------------------------
# grpcurl and buf curl (reflection only, no proto files)
# --------------------------------------------------------------------------


def test_grpcurl_lists_services(server):
    services = set(grpcurl(server.address, "list").split())
    assert "erdtree.v1.KVStore" in services, services
    assert "grpc.health.v1.Health" in services, services
    assert services & {"grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}, services


def test_grpcurl_describes_kvstore_methods(server):
    text = grpcurl(server.address, "describe", "erdtree.v1.KVStore")
    assert "erdtree.v1.KVStore is a service" in text, text
    for method in KVSTORE_METHODS:
        assert re.search(rf"rpc {method}\s*\(", text), f"{method} missing from:\n{text}"


def test_grpcurl_set_then_get(server):
    set_reply = json.loads(grpcurl("-d", '{"key":"k","value":"dg=="}', server.address, "erdtree.v1.KVStore/Set"))
    assert int(set_reply["lsn"]) >= 1, set_reply

    get_reply = json.loads(grpcurl("-d", '{"key":"k"}', server.address, "erdtree.v1.KVStore/Get"))
    assert get_reply.get("found") is True, get_reply
    assert base64.b64decode(get_reply["value"]) == b"v", get_reply
    assert get_reply["lsn"] == set_reply["lsn"], get_reply


def test_buf_curl_get_via_reflection(pb, kv, server):
    kv.Set(pb.kv.SetRequest(key="k", value=b"v"), timeout=RPC_TIMEOUT_S)
    out = check_ok(
        run(
            [
                tool("buf"),
                "curl",
                "--protocol",
                "grpc",
                "--http2-prior-knowledge",
                "--data",
                '{"key":"k"}',
                f"{server.url}/erdtree.v1.KVStore/Get",
            ]
        )
    )
    reply = json.loads(out)
    assert reply.get("found") is True, reply
    assert base64.b64decode(reply["value"]) == b"v", reply


# --------------------------------------------------------------------------
# grpcio-reflection, v1alpha and v1
# --------------------------------------------------------------------------


def test_grpcio_reflection_finds_service_and_file(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    assert "erdtree.v1.KVStore" in database.get_services()

    pool = DescriptorPool(database)
    service = pool.FindServiceByName("erdtree.v1.KVStore")
    assert {m.name for m in service.methods} == KVSTORE_METHODS
    assert service.file.name == "erdtree/v1/kvstore.proto"
    assert service.file.package == "erdtree.v1"

    get = service.methods_by_name["Get"]
    assert get.input_type.full_name == "erdtree.v1.GetRequest"
    assert {f.name for f in get.output_type.fields} >= {"value", "found", "lsn", "expires_at_ms"}

    by_name = pool.FindFileByName("erdtree/v1/kvstore.proto")
    assert "KVStore" in by_name.services_by_name


def test_reflection_v1_lists_services(channel):
    # v1 and v1alpha messages are identical on the wire, so the v1alpha classes serve for both.
    method = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="erdtree.v1.KVStore"),
    ]
    replies = list(method(iter(requests), timeout=RPC_TIMEOUT_S))
    assert len(replies) == 2
    names = {s.name for s in replies[0].list_services_response.service}
    assert "erdtree.v1.KVStore" in names, names
    assert replies[1].file_descriptor_response.file_descriptor_proto, replies[1]


def test_reflection_unknown_symbol_is_not_found(channel):
    method = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Symbol")
    (reply,) = list(method(iter([request]), timeout=RPC_TIMEOUT_S))
    assert reply.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0], reply


# --------------------------------------------------------------------------
# grpcio-health-checking
# --------------------------------------------------------------------------


def test_health_check_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "erdtree.v1.KVStore"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT_S)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, f"service {service!r}: {reply}"


def test_health_check_unknown_service_is_not_found(channel):
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=RPC_TIMEOUT_S)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value


def test_health_watch_first_message_is_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    stream = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT_S)
    try:
        first = next(stream)
        assert first.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        stream.cancel()


# --------------------------------------------------------------------------
# h2load and curl, gRPC framed by hand
# --------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_h2load_10000_grpc_gets_succeed(pb, kv, server, tmp_path):
    kv.Set(pb.kv.SetRequest(key="h2load", value=b"loaded"), timeout=RPC_TIMEOUT_S)
    body = tmp_path / "body.bin"
    body.write_bytes(grpc_frame(pb.kv.GetRequest(key="h2load").SerializeToString()))
    url = f"{server.url}/erdtree.v1.KVStore/Get"

    done = run(
        [
            tool("h2load"),
            "-n", "10000", "-c", "4", "-m", "32", "-t", "1",
            "-d", str(body),
            "-H", "content-type: application/grpc",
            "-H", "te: trailers",
            url,
        ],
        timeout=150,
    )  # fmt: skip
    out = check_ok(done)
    match = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
        out,
    )
    assert match, f"unexpected h2load output:\n{out}"
    total, started, finished, succeeded, failed, errored, timed_out = map(int, match.groups())
    assert (finished, succeeded, failed, errored, timed_out) == (10000, 10000, 0, 0, 0), out
    codes = re.search(r"status codes: (\d+) 2xx", out)
    assert codes and int(codes.group(1)) == 10000, out

    # h2load checks only :status; the gRPC status is in the trailers.
    response = curl_h2c(url, body.read_bytes(), GRPC_HEADERS, tmp_path / "curl")
    assert response.status == 200
    assert response.grpc_status == 0, response.raw_headers
    assert (response.get("content-type") or "").startswith("application/grpc"), response.raw_headers
    (message,) = grpc_unframe(response.body)
    got = pb.kv.GetResponse.FromString(message)
    assert got.found and got.value == b"loaded"
