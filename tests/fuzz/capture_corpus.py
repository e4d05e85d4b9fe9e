"""Captures the fuzz harnesses' seed corpora from real traffic (issue 18).

Starts a real `erdtree master` (ERDTREE_BIN), puts a recording TCP proxy in front of it and drives
the clients the interop suite uses through the proxy: grpcio, the connectrpc package, curl (Connect
POST and GET, h2c Upgrade with HTTP2-Settings, gRPC with prior knowledge) and grpcurl. Then it splits
what the clients sent, with the `h2` library, into each harness's input format:

  connection      each connection's raw client bytes
  deframer        a stream's DATA payload           (options 0, limit index 5 = 4 MiB, one chunk)
  protobuf        each gRPC/Connect proto message   (first byte: the message type's index)
  protojson       each Connect JSON body            (first byte: the message type's index)
  connect-get     each Connect GET query            (first byte: 0, an arbitrary query)
  http2-settings  each HTTP2-Settings value         (first byte: 0, an arbitrary value)

Files are named by sha1 as libFuzzer names them, into Tests/Fuzz/corpus/<harness>/.

  ERDTREE_BIN=.build/debug/erdtree .venv/bin/python tests/fuzz/capture_corpus.py [out_dir]
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "interop"))

import grpc  # noqa: E402
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402
from harness import node  # noqa: E402
from support import compile_stubs, tool  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class RecordingProxy:
    """Forwards loopback connections to `target` and keeps each one's client→server bytes."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[bytearray] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            recorded = bytearray()
            with self.lock:
                self.connections.append(recorded)
            threading.Thread(target=self.pump, args=(client, upstream, recorded), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def pump(source: socket.socket, sink: socket.socket, recorded: bytearray | None) -> None:
        try:
            while data := source.recv(65536):
                if recorded is not None:
                    recorded.extend(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def message_types() -> dict[str, int]:
    """Each method path's request type index in the harnesses' table (MethodTable.embedded: the
    embedded descriptor set's methods in order, request then response); the response is +1."""
    source = (ROOT / "Sources/ErdtreeProto/generated/descriptor_set.c").read_text()
    array = source.split("erdtree_descriptor_set[", 1)[1].split("{", 1)[1].split("}", 1)[0]
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(
        bytes(int(token, 16) for token in array.replace(",", " ").split())
    )
    indices = {}
    for file in descriptor_set.file:
        for service in file.service:
            for method in service.method:
                indices[f"/{file.package}.{service.name}/{method.name}"] = 2 * len(indices)
    return indices


def drive(address: str, pb) -> None:
    """The interop suite's clients, each through the proxy at `address`."""
    with grpc.insecure_channel(address) as channel:
        kv = pb.kv_grpc.KVStoreStub(channel)
        admin = pb.kv_grpc.AdminStub(channel)
        calls = [
            (kv.Set, pb.kv.SetRequest(key="user:42", value=b"\xff\x00A", ttl_ms=1500)),
            (kv.Set, pb.kv.SetRequest(key="caf\u00e9/\u6771\u4eac", value=b"x" * 300)),
            (kv.Get, pb.kv.GetRequest(key="user:42")),
            (kv.Get, pb.kv.GetRequest(key="missing", min_lsn=7)),
            (kv.Delete, pb.kv.DeleteRequest(key="user:42")),
            (kv.GetUpdates, pb.kv.GetUpdatesRequest()),
            (admin.Status, pb.kv.StatusRequest()),
            (admin.ListSlaves, pb.kv.ListSlavesRequest()),
        ]
        for call, request in calls:
            try:
                call(request, timeout=5.0)
            except grpc.RpcError:  # refusals are traffic too
                pass
    try:
        import pyqwest

        http = pyqwest.SyncClient(pyqwest.SyncHTTPTransport(http_version=pyqwest.HTTPVersion.HTTP1))
        with pb.connect.KVStoreClientSync(f"http://{address}", http_client=http) as client:
            client.set(pb.cpb.SetRequest(key="by-connect", value=b"v", ttl_ms=60000))
            client.get(pb.cpb.GetRequest(key="by-connect"))
            client.delete(pb.cpb.DeleteRequest(key="by-connect"))
    except Exception as error:  # the capture goes on without this client
        print(f"connectrpc client: {error}", file=sys.stderr)
    curl = tool("curl")
    base = f"http://{address}"
    json_calls = [
        ("erdtree.v1.KVStore/Set", {"key": "k1", "value": "aGk=", "ttlMs": "250"}),
        ("erdtree.v1.KVStore/Set", {"key": "k\u00e9\ud83d\ude00", "value": "-_8", "ttl_ms": 2.5e2}),
        ("erdtree.v1.KVStore/Get", {"key": "k1", "minLsn": "1"}),
        ("erdtree.v1.KVStore/Delete", {"key": "k1"}),
        ("erdtree.v1.Admin/Status", {}),
        ("erdtree.v1.Admin/ListSlaves", {}),
        ("grpc.health.v1.Health/Check", {"service": ""}),
    ]
    for method, body in json_calls:
        for version in ("--http1.1", "--http2-prior-knowledge"):
            subprocess.run([curl, "-s", version, "-X", "POST", "-H", "content-type: application/json",
                            "-H", "connect-protocol-version: 1", "--data-binary", json.dumps(body),
                            f"{base}/{method}"], capture_output=True, timeout=30)
    get = pb.kv.GetRequest(key="user:42").SerializeToString()
    queries = [
        "encoding=json&message=" + urllib.parse.quote(json.dumps({"key": "user:42"})) + "&connect=v1",
        "encoding=proto&base64=1&message=" + base64.urlsafe_b64encode(get).decode().rstrip("="),
        "message=%7B%7D&encoding=json",
    ]
    for query in queries:
        subprocess.run([curl, "-s", f"{base}/erdtree.v1.KVStore/Get?{query}"], capture_output=True, timeout=30)
    # h2c upgrade, as curl does it (its HTTP2-Settings), and with settings of our own.
    subprocess.run([curl, "-s", "--http2", f"{base}/erdtree.v1.KVStore/Get?{queries[0]}"],
                   capture_output=True, timeout=30)
    subprocess.run([curl, "-s", "--http2", "-X", "POST", "-H", "content-type: application/json",
                    "--data-binary", '{"key":"k1"}', f"{base}/erdtree.v1.KVStore/Get"], capture_output=True, timeout=30)
    subprocess.run([curl, "-s", "--http1.1", "-H", "Connection: Upgrade, HTTP2-Settings", "-H", "Upgrade: h2c",
                    "-H", "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA", f"{base}/healthz"], capture_output=True, timeout=30)
    for settings in ({}, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20,
                          h2.settings.SettingCodes.MAX_FRAME_SIZE: 1 << 20, h2.settings.SettingCodes.ENABLE_PUSH: 0}):
        h2_upgrade(address, settings)
    grpcurl = str(Path(sys.executable).parent / "grpcurl")  # the venv running this script
    for args in (["list"], ["describe", "erdtree.v1.KVStore.Set"],
                 ["-d", '{"key":"g","value":"dg=="}', address, "erdtree.v1.KVStore/Set"]):
        full = ["-plaintext", *args] if args[0] == "-d" else ["-plaintext", address, *args]
        subprocess.run([grpcurl, *full], capture_output=True, timeout=30)


def h2_upgrade(address: str, settings: dict) -> None:
    """The h2 library as an h2c client: its HTTP2-Settings, then its preface and a Connect GET on stream 3."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.local_settings = h2.settings.Settings(client=True, initial_values=settings)
    header = client.initiate_upgrade_connection().decode()
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /erdtree.v1.Admin/Status?encoding=proto&message= HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     f"Upgrade: h2c\r\nHTTP2-Settings: {header}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply and (chunk := sock.recv(4096)):
            reply += chunk
        if b" 101 " not in reply.split(b"\r\n", 1)[0]:
            return
        client.send_headers(3, [(":method", "GET"), (":scheme", "http"), (":authority", address),
                                (":path", "/grpc.health.v1.Health/Check?encoding=json&message=%7B%7D")], end_stream=True)
        sock.sendall(client.data_to_send())
        try:
            sock.recv(65536)
        except OSError:
            pass


class Seeds:
    def __init__(self, out: Path):
        self.out = out
        self.count: dict[str, int] = {}

    def add(self, harness: str, data: bytes) -> None:
        directory = self.out / harness
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / hashlib.sha1(data).hexdigest()
        if not path.exists():
            path.write_bytes(data)
            self.count[harness] = self.count.get(harness, 0) + 1


def split_body(seeds: Seeds, types: dict[str, int], path: str, content_type: str, body: bytes) -> None:
    """Seeds from one request body, by what its content type says it carries."""
    request_type = types.get(path.split("?", 1)[0])
    if content_type.startswith("application/grpc") or content_type.startswith("application/connect+"):
        seeds.add("deframer", bytes([0, 5, 0]) + body)
        offset = 0
        while offset + 5 <= len(body):
            length = int.from_bytes(body[offset + 1 : offset + 5], "big")
            message = body[offset + 5 : offset + 5 + length]
            if request_type is not None and body[offset] == 0:
                harness = "protojson" if content_type.endswith("json") else "protobuf"
                seeds.add(harness, bytes([request_type]) + message)
            offset += 5 + length
    elif request_type is not None and content_type.startswith("application/json"):
        seeds.add("protojson", bytes([request_type]) + body)
    elif request_type is not None and content_type.startswith("application/proto"):
        seeds.add("protobuf", bytes([request_type]) + body)


def split_h2(seeds: Seeds, types: dict[str, int], data: bytes, upgrade_settings: str | None = None,
             upgrade_path: str = "") -> None:
    connection = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, validate_inbound_headers=False, header_encoding="utf-8"))
    streams: dict[int, dict] = {}
    if upgrade_settings is not None:
        connection.initiate_upgrade_connection(upgrade_settings)
        streams[1] = {"path": upgrade_path, "type": "", "body": b""}
    else:
        connection.initiate_connection()
    connection.increment_flow_control_window(2**30)
    try:
        events = connection.receive_data(data)
    except Exception as error:  # a partial parse still gives seeds
        print(f"h2: {error}", file=sys.stderr)
        events = []
    for event in events:
        if isinstance(event, h2.events.RequestReceived):
            headers = dict(event.headers)
            streams[event.stream_id] = {"path": headers.get(":path", ""), "type": headers.get("content-type", ""),
                                        "body": b"", "method": headers.get(":method", "")}
        elif isinstance(event, h2.events.DataReceived):
            streams.setdefault(event.stream_id, {"path": "", "type": "", "body": b""})["body"] += event.data
    for stream in streams.values():
        if "?" in stream["path"]:
            seeds.add("connect-get", b"\x00" + stream["path"].split("?", 1)[1].encode())
        split_body(seeds, types, stream["path"], stream["type"], stream["body"])


def split_http1(seeds: Seeds, types: dict[str, int], data: bytes) -> None:
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        if not separator:
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        path = parts[1] if len(parts) > 1 else ""
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body, data = rest[:length], rest[length:]
        if "?" in path:
            seeds.add("connect-get", b"\x00" + path.split("?", 1)[1].encode("latin-1"))
        split_body(seeds, types, path, headers.get("content-type", ""), body)
        if "http2-settings" in headers:
            seeds.add("http2-settings", b"\x00" + headers["http2-settings"].encode("latin-1"))
            if headers.get("upgrade", "").lower() == "h2c" and data.startswith(PREFACE):
                split_h2(seeds, types, data, headers["http2-settings"], path)
                return


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "Tests/Fuzz/corpus"
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "stubs").mkdir()
        pb = compile_stubs(ROOT / "api", Path(scratch) / "stubs")
        server = node.start(Path(scratch) / "node", binary=node.ERDTREE_BIN)
        try:
            proxy = RecordingProxy(("127.0.0.1", int(server.address.rsplit(":", 1)[1])))
            drive(f"127.0.0.1:{proxy.port}", pb)
        finally:
            server.terminate()
    seeds = Seeds(out)
    types = message_types()
    with proxy.lock:
        connections = [bytes(recorded) for recorded in proxy.connections]
    for data in connections:
        if not data:
            continue
        # The connection harness reads a chunking byte first (FuzzInput.takeChunks): 0 = one chunk, no flags.
        seeds.add("connection", b"\x00" + data)
        if data.startswith(PREFACE):
            split_h2(seeds, types, data)
        else:
            split_http1(seeds, types, data)
    for harness, count in sorted(seeds.count.items()):
        print(f"{harness}: {count} new seeds in {out / harness}")


if __name__ == "__main__":
    main()
