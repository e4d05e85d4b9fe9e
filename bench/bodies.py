"""The request bodies every load and check sends, written once into the run's temp dir.

A gRPC message on the wire is one flag byte (0: not compressed), a 4-byte big-endian length,
then the protobuf bytes. Erdtree's messages are encoded by protoc from the checked-in schema
(api/erdtree/v1/kvstore.proto), so a stale schema shows; etcd's are written here by field
number (PutRequest{1: key, 2: value}, RangeRequest{1: key, 7: serializable}), so the benchmark
needs no etcd .proto files. Connect sends the bare message, or its JSON.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.console import Fatal

PROTO = Path("api/erdtree/v1/kvstore.proto")

# Reads hit KEY; the write loads go to WRITE_KEY, so the read key keeps one version
# (etcd keeps every revision of a key until compaction).
KEY = "bench-key"
WRITE_KEY = "bench-write-key"
VALUE = ("erdtree-bench-value-" + "v" * 100)[:100]
# nghttpd answers a POST with this 20-byte file.
NGHTTPD_FILE = "01234567890123456789"
# The evicted suite's keys, each with a value that names it (a read-back of the wrong record shows).
EVICTED_KEYS = 16


def evicted_key(i: int) -> str:
    return f"evicted-key-{i}"


def evicted_value(i: int) -> str:
    return (f"erdtree-evicted-value-{i}-" + "v" * 100)[:100]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def length_delimited(field: int, data: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(data)) + data


def frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


def etcd_put(key: str, value: str) -> bytes:
    return length_delimited(1, key.encode()) + length_delimited(2, value.encode())


def etcd_range(key: str) -> bytes:
    # Field 7 (serializable) is a varint bool: a local read, no raft round trip.
    return length_delimited(1, key.encode()) + varint(7 << 3 | 0) + varint(1)


def erdtree_message(message_type: str, text: str) -> bytes:
    """erdtree.v1.`message_type` from protobuf text format, by protoc."""
    if not PROTO.is_file():
        raise Fatal(f"{PROTO} not found: Erdtree's request bodies are encoded from it")
    done = subprocess.run(["protoc", f"--encode=erdtree.v1.{message_type}", "-Iapi", "erdtree/v1/kvstore.proto"],
                          input=text.encode() + b"\n", capture_output=True)
    if done.returncode != 0:
        raise Fatal(f"protoc could not encode erdtree.v1.{message_type} from {PROTO}: "
                    f"{done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def get_request(key: str) -> bytes:
    return erdtree_message("GetRequest", f'key: "{key}"')


def set_request(key: str, value: str) -> bytes:
    return erdtree_message("SetRequest", f'key: "{key}" value: "{value}"')


@dataclass(frozen=True)
class Body:
    """A request: the message (for checks through grpcio) and the file h2load sends."""

    message: bytes
    path: Path


class Bodies:
    """Writes the bodies the selected systems need into `directory`."""

    def __init__(self, directory: Path, erdtree: bool, etcd: bool, evicted: bool) -> None:
        self.directory = directory
        self.post = self.write("post.bin", VALUE.encode())
        www = directory / "www"
        www.mkdir(exist_ok=True)
        (www / "file20").write_text(NGHTTPD_FILE)
        self.www = www
        if erdtree:
            self.get = self.grpc("get.bin", get_request(KEY))
            # Connect bodies: the bare message, and its JSON.
            self.get_proto = self.write("get.pb", self.get.message)
            self.get_json = self.write("get.json", f'{{"key":"{KEY}"}}'.encode())
            self.preload_set = self.grpc("preload-set.bin", set_request(KEY, VALUE))
            self.set = self.grpc("set.bin", set_request(WRITE_KEY, VALUE))
            # The evicted loads: process i of a load sends evicted-get.i.bin.
            self.evicted_gets = [self.grpc(f"evicted-get.{i}.bin", get_request(evicted_key(i)))
                                 for i in range(EVICTED_KEYS if evicted else 0)]
            self.evicted_sets = [self.grpc(f"evicted-set.{i}.bin", set_request(evicted_key(i), evicted_value(i)))
                                 for i in range(EVICTED_KEYS if evicted else 0)]
        if etcd:
            self.range = self.grpc("range.bin", etcd_range(KEY))
            self.preload_put = self.grpc("preload-put.bin", etcd_put(KEY, VALUE))
            self.put = self.grpc("put.bin", etcd_put(WRITE_KEY, VALUE))

    def write(self, name: str, data: bytes) -> Body:
        path = self.directory / name
        path.write_bytes(data)
        return Body(data, path)

    def grpc(self, name: str, message: bytes) -> Body:
        path = self.directory / name
        path.write_bytes(frame(message))
        return Body(message, path)
