"""connect: the grpc suite's Get as Connect unary on the same server, against gRPC Get:
binary and JSON over h2c (c4 m32), JSON over HTTP/1.1, where 128 connections with one
request each keep the 128 in flight of c4 m32."""

from bench.loads import Load
from bench.suites.grpc import GET

INSTANCES = []

LOADS = [
    Load("connect_proto", "erdtree", "Erdtree Connect Get, binary, h2c (c4 m32)", frozenset({"connect"}), GET,
         "get_proto", protocol="proto"),
    Load("connect_json", "erdtree", "Erdtree Connect Get, JSON, h2c (c4 m32)", frozenset({"connect"}), GET,
         "get_json", protocol="json"),
    Load("connect_json_h1", "erdtree", "Erdtree Connect Get, JSON, HTTP/1.1 (c128)", frozenset({"connect"}), GET,
         "get_json", clients=128, streams=1, protocol="json-h1"),
]
