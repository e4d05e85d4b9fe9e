#!/usr/bin/env python3
"""Writes gRPC-framed request bodies for h2load and curl.

A gRPC message on the wire is one flag byte (0: not compressed), a 4-byte
big-endian length, then the protobuf bytes. Erdtree's messages are encoded by
protoc from the checked-in schema (see bench.sh); etcd's are written here by
field number so the benchmark does not need etcd's .proto files.

  grpc_body.py frame < message.pb > body.bin
  grpc_body.py etcd-put KEY VALUE_FILE > body.bin    PutRequest{1: key, 2: value}
  grpc_body.py etcd-range KEY > body.bin             RangeRequest{1: key, 7: serializable=true}
"""
import struct
import sys


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


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "frame" and len(argv) == 2:
        message = sys.stdin.buffer.read()
    elif len(argv) == 4 and argv[1] == "etcd-put":
        with open(argv[3], "rb") as f:
            value = f.read()
        message = length_delimited(1, argv[2].encode()) + length_delimited(2, value)
    elif len(argv) == 3 and argv[1] == "etcd-range":
        # Field 7 (serializable) is a varint bool: a local read, no raft round trip.
        message = length_delimited(1, argv[2].encode()) + varint(7 << 3 | 0) + varint(1)
    else:
        sys.stderr.write(__doc__)
        return 2
    sys.stdout.buffer.write(frame(message))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
