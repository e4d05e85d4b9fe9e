"""Bearer tokens with roles (DESIGN §11, docs/security.md), checked from real clients.

One master runs with a token of each role (`read`, `write`, `admin`, `replication`); every
method of KVStore, Admin, Replication, reflection and health is called with each of them, with
no token and with a wrong one, over gRPC (grpcio) and over Connect (curl, h2c and HTTP/1.1),
and the exact status is checked. A caller the method allows gets what the method answers an
empty request (the same status an unauthenticated node gives), so the check also shows the
call really ran. Then: the CLI, grpcurl with reflection, SIGHUP rotation, startup errors,
slaves with good and bad replication tokens, and no secret in any log line or error message.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from conftest import ERDTREE_BIN, ROOT, start_server, stop_server
from harness import node as harness
from support import curl_h2c, free_port, issue_token, issued_tokens, run, tool

ROLES = ["read", "write", "admin", "replication"]
CALLERS = ["none", "wrong", *ROLES]

# The grant each method needs (None: open to anyone) and what a caller allowed to call it gets
# for an empty request: the method's own answer.
METHODS = {
    "/erdtree.v1.KVStore/Get": ("read", "INVALID_ARGUMENT"),
    "/erdtree.v1.KVStore/Set": ("write", "INVALID_ARGUMENT"),
    "/erdtree.v1.KVStore/Delete": ("write", "INVALID_ARGUMENT"),
    "/erdtree.v1.KVStore/GetUpdates": ("read", "OK"),
    "/erdtree.v1.Admin/Status": ("admin", "OK"),
    "/erdtree.v1.Admin/ListSlaves": ("admin", "OK"),
    "/erdtree.v1.Admin/AddSlave": ("admin", "INVALID_ARGUMENT"),
    "/erdtree.v1.Admin/RemoveSlave": ("admin", "OK"),
    "/erdtree.v1.Admin/Failover": ("admin", "FAILED_PRECONDITION"),
    "/erdtree.v1.Admin/Promote": ("admin", "FAILED_PRECONDITION"),
    "/erdtree.v1.Admin/Follow": ("admin", "INVALID_ARGUMENT"),
    "/erdtree.v1.Replication/Replicate": ("replication", "INVALID_ARGUMENT"),
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": ("read", "OK"),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": ("read", "OK"),
    "/grpc.health.v1.Health/Check": (None, "OK"),
}
BIDI = {"/erdtree.v1.Replication/Replicate", *[m for m in METHODS if "ServerReflection" in m]}

# What each role holds (DESIGN §11): admin is everything, replication only Replicate.
HOLDS = {
    "read": {"read"},
    "write": {"read", "write"},
    "admin": {"read", "write", "admin", "replication"},
    "replication": {"replication"},
}
HOLDERS = {"read": "role read, role write or role admin", "write": "role write or role admin",
           "admin": "role admin", "replication": "role admin or role replication"}

CONNECT_CODES = {
    "OK": (200, None), "INVALID_ARGUMENT": (400, "invalid_argument"),
    "FAILED_PRECONDITION": (400, "failed_precondition"), "UNAUTHENTICATED": (401, "unauthenticated"),
    "PERMISSION_DENIED": (403, "permission_denied"),
}

# Every error message a client saw here: none may show a token (conftest checks every log of
# the session the same way).
SEEN_ERRORS: list[str] = []


def new_token() -> str:
    return issue_token()


def write_tokens(directory: Path) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    tokens = {}
    for role in ROLES:
        tokens[role] = new_token()
        (directory / f"{role}.token").write_text(tokens[role] + "\n")
    return tokens


def auth_section(directory: Path) -> dict:
    return {"tokens": [{"name": f"{role}-client", "role": role, "token_file": str(directory / f"{role}.token")}
                       for role in ROLES]}


@pytest.fixture(scope="module")
def secured(tmp_path_factory, request):
    """A master with one token of each role; yields (server, {role: token}, token dir)."""
    base = tmp_path_factory.mktemp("auth")
    tokens = write_tokens(base / "tokens")
    server = start_server(base / "node", auth=auth_section(base / "tokens"))
    failures_before = request.session.testsfailed
    try:
        yield server, tokens, base / "tokens"
    finally:
        stop_server(server, request.session.testsfailed > failures_before)
        SERVER_LOGS.append(server.log_path)


SERVER_LOGS: list[Path] = []


def presented(caller: str, tokens: dict[str, str]) -> str | None:
    if caller == "none":
        return None
    if caller == "wrong":
        return new_token()
    return tokens[caller]


def expected(method: str, caller: str) -> str:
    needed, allowed = METHODS[method]
    if needed is None:
        return allowed
    if caller in ("none", "wrong"):
        return "UNAUTHENTICATED"
    return allowed if needed in HOLDS[caller] else "PERMISSION_DENIED"


def check_message(method: str, caller: str, code: str, message: str) -> None:
    SEEN_ERRORS.append(message)
    needed = METHODS[method][0]
    if code == "PERMISSION_DENIED":
        assert f"token '{caller}-client' has role {caller}" in message, message
        assert f"needs a token with {HOLDERS[needed]}" in message, message
    elif code == "UNAUTHENTICATED":
        assert ("needs a bearer token" if caller == "none" else "not known to this server") in message, message


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method", list(METHODS))
def test_grpc_status_for_every_method_and_caller(secured, method, caller):
    server, tokens, _ = secured
    token = presented(caller, tokens)
    metadata = [("authorization", f"Bearer {token}")] if token else []
    identity = lambda b: b  # noqa: E731
    with grpc.insecure_channel(server.address) as channel:
        try:
            if method in BIDI:
                list(channel.stream_stream(method, request_serializer=identity, response_deserializer=identity)(
                    iter([b""]), metadata=metadata, timeout=10))
            else:
                channel.unary_unary(method, request_serializer=identity, response_deserializer=identity)(
                    b"", metadata=metadata, timeout=10)
            code, message = "OK", ""
        except grpc.RpcError as error:
            code, message = error.code().name, error.details() or ""
    assert code == expected(method, caller), f"{method} as {caller}: {code} {message}"
    check_message(method, caller, code, message)


def connect_envelope(payload: bytes, end: bool = False) -> bytes:
    return bytes([2 if end else 0]) + len(payload).to_bytes(4, "big") + payload


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method", list(METHODS))
def test_connect_status_for_every_method_and_caller(secured, method, caller, tmp_path):
    """Over h2c with curl: unary methods answer with the code's HTTP status and a JSON error;
    streams (Replicate, reflection) answer 200 with the error in the end-stream message."""
    server, tokens, _ = secured
    token = presented(caller, tokens)
    headers = [f"authorization: Bearer {token}"] if token else []
    if method in BIDI:
        response = curl_h2c(f"http://{server.address}{method}", connect_envelope(b"{}"),
                            [*headers, "content-type: application/connect+json"], tmp_path)
        assert response.status == 200, response.raw_headers
        end = [json.loads(message) for flags, message in split_envelopes(response.body) if flags & 2]
        assert len(end) == 1, response.body
        error = end[0].get("error")
        code = error["code"].upper() if error else "OK"
        message = error.get("message", "") if error else ""
    else:
        response = curl_h2c(f"http://{server.address}{method}", b"{}",
                            [*headers, "content-type: application/json"], tmp_path)
        body = json.loads(response.body or b"{}")
        code = body["code"].upper() if response.status != 200 else "OK"
        message = body.get("message", "")
        assert response.status == CONNECT_CODES[code][0], (response.status, body)
    assert code == expected(method, caller), f"{method} as {caller}: {code} {message}"
    check_message(method, caller, code, message)


def split_envelopes(body: bytes):
    while body:
        flags, length = body[0], int.from_bytes(body[1:5], "big")
        yield flags, body[5:5 + length]
        body = body[5 + length:]


@pytest.mark.parametrize("caller,status", [("none", 401), ("wrong", 401), ("replication", 403), ("read", 200)])
def test_connect_over_http1_answers_401_and_403_with_its_json_error(secured, caller, status):
    server, tokens, _ = secured
    token = presented(caller, tokens)
    request = urllib.request.Request(
        f"http://{server.address}/erdtree.v1.KVStore/Get", data=b'{"key":"absent"}', method="POST",
        headers={"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            got, body = reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        got, body = error.code, json.loads(error.read())
    assert got == status, body
    if status == 200:
        assert body.get("found", False) is False
    else:
        assert body["code"] == {401: "unauthenticated", 403: "permission_denied"}[status]
        SEEN_ERRORS.append(body["message"])


def test_connectrpc_client_with_a_token(pb, secured):
    """The connectrpc package's own client sends the header as any Connect client would."""
    import pyqwest
    from connectrpc.code import Code
    from connectrpc.errors import ConnectError

    server, tokens, _ = secured
    http = pyqwest.SyncClient(pyqwest.SyncHTTPTransport(http_version=pyqwest.HTTPVersion.HTTP1))
    url = f"http://{server.address}"
    with pb.connect.KVStoreClientSync(url, http_client=http) as client:
        writer = {"authorization": f"Bearer {tokens['write']}"}
        assert client.set(pb.cpb.SetRequest(key="by-connect", value=b"v"), headers=writer).lsn >= 1
        reader = {"authorization": f"Bearer {tokens['read']}"}
        assert client.get(pb.cpb.GetRequest(key="by-connect"), headers=reader).value == b"v"
        with pytest.raises(ConnectError) as denied:
            client.delete(pb.cpb.DeleteRequest(key="by-connect"), headers=reader)
        assert denied.value.code == Code.PERMISSION_DENIED
        with pytest.raises(ConnectError) as anonymous:
            client.get(pb.cpb.GetRequest(key="by-connect"))
        assert anonymous.value.code == Code.UNAUTHENTICATED
        SEEN_ERRORS.extend([str(denied.value), str(anonymous.value)])


def test_health_and_healthz_stay_open(secured):
    server, _, _ = secured
    assert harness.health_serving(server.address)
    with urllib.request.urlopen(f"http://{server.address}/healthz", timeout=10) as reply:
        assert reply.status == 200 and reply.read().strip() == b"SERVING"


def test_grpcurl_lists_and_describes_with_a_read_token_only(secured):
    server, tokens, _ = secured
    grpcurl = tool("grpcurl")
    anonymous = run([grpcurl, "-plaintext", server.address, "list"])
    assert anonymous.returncode != 0
    assert "Unauthenticated" in anonymous.stderr.decode(), anonymous.stderr
    SEEN_ERRORS.append(anonymous.stderr.decode())
    header = ["-H", f"authorization: Bearer {tokens['read']}"]
    listed = run([grpcurl, "-plaintext", *header, server.address, "list"])
    assert listed.returncode == 0, listed.stderr
    assert "erdtree.v1.KVStore" in listed.stdout.decode()
    described = run([grpcurl, "-plaintext", *header, server.address, "describe", "erdtree.v1.KVStore.Set"])
    assert described.returncode == 0 and "SetRequest" in described.stdout.decode(), described.stderr
    denied = run([grpcurl, "-plaintext", *header, "-d", '{"key":"k","value":"dg=="}', server.address,
                  "erdtree.v1.KVStore/Set"])
    assert denied.returncode != 0 and "PermissionDenied" in denied.stdout.decode() + denied.stderr.decode()
    SEEN_ERRORS.append(denied.stdout.decode() + denied.stderr.decode())


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(ERDTREE_BIN), *args], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_cli_sends_token_file_or_erdtree_token(secured, tmp_path):
    server, tokens, directory = secured
    target = ["--server", server.address]
    refused = cli("set", "cli-key", "v", *target)
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr, refused.stderr
    written = cli("set", "cli-key", "v", *target, "--token-file", str(directory / "write.token"))
    assert written.returncode == 0 and written.stdout.startswith("OK lsn="), written.stderr
    read = cli("get", "cli-key", *target, env={"ERDTREE_TOKEN": tokens["read"]})
    assert read.returncode == 0 and read.stdout.strip() == "v", read.stderr
    denied = cli("del", "cli-key", *target, env={"ERDTREE_TOKEN": tokens["read"]})
    assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stderr
    assert "needs a token with role write or role admin" in denied.stderr
    # --token-file wins over the environment.
    chosen = cli("del", "cli-key", *target, "--token-file", str(directory / "admin.token"),
                 env={"ERDTREE_TOKEN": tokens["read"]})
    assert chosen.returncode == 0, chosen.stderr
    missing = cli("get", "k", *target, "--token-file", str(tmp_path / "absent"))
    assert missing.returncode == 1 and f"--token-file {tmp_path / 'absent'}" in missing.stderr
    assert "No such file or directory" in missing.stderr
    SEEN_ERRORS.extend([refused.stderr, denied.stderr, missing.stderr])


def test_sighup_rotates_tokens_and_a_bad_file_keeps_the_old_ones(tmp_path):
    directory = tmp_path / "tokens"
    tokens = write_tokens(directory)
    server = start_server(tmp_path / "node", auth=auth_section(directory))
    try:
        with grpc.insecure_channel(server.address) as channel:
            check = channel.unary_unary("/erdtree.v1.Admin/Status")

            def status_as(token: str) -> str:
                try:
                    check(b"", metadata=[("authorization", f"Bearer {token}")], timeout=10)
                    return "OK"
                except grpc.RpcError as error:
                    return error.code().name

            assert status_as(tokens["admin"]) == "OK"
            rotated = new_token()
            (directory / "admin.token").write_text(rotated + "\n")
            server.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while status_as(rotated) != "OK":
                assert time.monotonic() < deadline, f"the new token was not taken; log:\n{server.log_tail()}"
                time.sleep(0.05)
            # On the connection that was already open: the old secret is revoked at once.
            assert status_as(tokens["admin"]) == "UNAUTHENTICATED"
            (directory / "admin.token").write_text("short\n")
            server.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "kept the previous tokens" not in server.log():
                assert time.monotonic() < deadline, server.log_tail()
                time.sleep(0.05)
            assert "auth.tokens[2].token_file" in server.log() and "shorter than 16 bytes" in server.log()
            assert status_as(rotated) == "OK", "a bad file on reload must leave the tokens in force"
            assert server.alive()
    finally:
        stop_server(server, False)
        SERVER_LOGS.append(server.log_path)


@pytest.mark.parametrize("case,content,reason", [
    ("missing", None, "cannot read the token: No such file or directory"),
    ("empty", "\n", "the token in it is empty"),
    ("short", "abc123\n", "shorter than 16 bytes"),
    ("spaces", "a token with spaces in it\n", "printable ASCII without spaces"),
])
def test_a_node_with_an_unusable_token_file_does_not_start(tmp_path, case, content, reason):
    token_file = tmp_path / "t.token"
    if content is not None:
        token_file.write_text(content)
    auth = {"tokens": [{"name": "app", "role": "read", "token_file": str(token_file)}]}
    node = harness.launch(tmp_path / "node", free_port(), auth=auth)
    assert node.proc.wait(timeout=20) == 1
    log = node.log()
    assert f"invalid value '{token_file}' for 'auth.tokens[0].token_file'" in log and reason in log, log


def test_two_tokens_sharing_a_secret_are_refused(tmp_path):
    shared = new_token()
    for name in ("a", "b"):
        (tmp_path / f"{name}.token").write_text(shared)
    auth = {"tokens": [{"name": n, "role": "read", "token_file": str(tmp_path / f"{n}.token")} for n in ("a", "b")]}
    node = harness.launch(tmp_path / "node", free_port(), auth=auth)
    assert node.proc.wait(timeout=20) == 1
    assert "holds the same secret as auth.tokens[0]" in node.log(), node.log()


def wait_log(server, text: str, count: int = 1, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while server.log().count(text) < count:
        assert time.monotonic() < deadline, f"'{text}' x{count} not logged; log:\n{server.log_tail()}"
        time.sleep(0.1)
    return server.log()


def test_slaves_replicate_with_a_replication_token_and_bad_ones_retry(pb, tmp_path):
    """A slave sending `master.token_file` with role replication converges; one with a read
    token or an unknown one is refused, logs why, keeps retrying with backoff, and catches up
    once its file holds a good token (it is read at every dial)."""
    directory = tmp_path / "tokens"
    tokens = write_tokens(directory)
    master = start_server(tmp_path / "master", auth=auth_section(directory))
    good = bad_role = unknown = None
    try:
        good = start_server(tmp_path / "good", role="slave", master={
            "address": master.address, "token_file": str(directory / "replication.token")})
        with grpc.insecure_channel(master.address) as channel:
            stub = pb.kv_grpc.KVStoreStub(channel)
            writer = [("authorization", f"Bearer {tokens['write']}")]
            lsn = stub.Set(pb.kv.SetRequest(key="replicated", value=b"yes"), metadata=writer, timeout=10).lsn
        with grpc.insecure_channel(good.address) as channel:
            reply = pb.kv_grpc.KVStoreStub(channel).Get(
                pb.kv.GetRequest(key="replicated", min_lsn=lsn), metadata=[("authorization", f"Bearer {tokens['read']}")],
                timeout=10)
            assert reply.value == b"yes"

        read_file = tmp_path / "slave-read.token"
        read_file.write_text(tokens["read"])
        bad_role = harness.launch(tmp_path / "bad-role", free_port(), role="slave",
                                  master={"address": master.address, "token_file": str(read_file)})
        log = wait_log(bad_role, "replication stream failed; redialling", count=3)
        assert "PERMISSION_DENIED" in log and "needs a token with role admin or role replication" in log, log
        unknown_file = tmp_path / "slave-unknown.token"
        unknown_file.write_text(new_token())
        unknown = harness.launch(tmp_path / "unknown", free_port(), role="slave",
                                 master={"address": master.address, "token_file": str(unknown_file)})
        log = wait_log(unknown, "replication stream failed; redialling", count=3)
        assert "UNAUTHENTICATED" in log and "not known to this server" in log, log
        retries = [line for line in log.splitlines() if "redialling" in line]
        assert any("retry_in=" in line for line in retries)
        assert not harness.health_serving(unknown.address), "a slave that never synced must not serve"

        # Fixed in place: the next dial reads the file again.
        unknown_file.write_text(tokens["replication"])
        assert harness.wait_serving(unknown, timeout=20)
    finally:
        for node in (good, bad_role, unknown):
            if node is not None:
                node.stop()
                SERVER_LOGS.append(node.log_path)
        stop_server(master, False)
        SERVER_LOGS.append(master.log_path)


def test_a_slave_whose_token_file_is_missing_logs_why_and_catches_up_once_it_appears(tmp_path):
    """`master.token_file` is read at every dial: a missing file fails that dial (logged, naming
    the key and the file, retried with backoff) and the slave syncs once the file is there."""
    directory = tmp_path / "tokens"
    tokens = write_tokens(directory)
    master = start_server(tmp_path / "master", auth=auth_section(directory))
    slave = None
    try:
        token_file = tmp_path / "later.token"
        slave = harness.launch(tmp_path / "slave", free_port(), role="slave",
                               master={"address": master.address, "token_file": str(token_file)})
        log = wait_log(slave, "replication stream failed; redialling", count=2)
        assert "master.token_file" in log and str(token_file) in log and "No such file or directory" in log, log
        assert not harness.health_serving(slave.address)
        token_file.write_text(tokens["replication"] + "\n")
        assert harness.wait_serving(slave, timeout=20)
    finally:
        if slave is not None:
            slave.stop()
            SERVER_LOGS.append(slave.log_path)
        stop_server(master, False)
        SERVER_LOGS.append(master.log_path)


def test_erdtree_nodes_replicate_over_mutual_tls_with_master_token_file(pb, tmp_path):
    """`erdtree node`s with server.tls (mutual), auth, and `master:` saying how to dial whichever
    node etcd makes the master: its token_file and tls (no address there: etcd names it)."""
    from harness.pki import make_pki
    from test_ha_etcd import Etcd
    from test_high_availability import wait_until

    pki = make_pki(tmp_path / "pki")
    credentials = grpc.ssl_channel_credentials(
        (pki / "ca.pem").read_bytes(), (pki / "client.key").read_bytes(), (pki / "client.pem").read_bytes())
    etcd = Etcd(tmp_path / "etcd")
    etcd.start()
    directory = tmp_path / "tokens"
    tokens = write_tokens(directory)
    admin = [("authorization", f"Bearer {tokens['admin']}")]
    ports = [free_port(), free_port()]
    nodes = []
    try:
        for i, port in enumerate(ports):
            nodes.append(harness.launch(
                tmp_path / f"n{i}", port, role="node", auth=auth_section(directory), credentials=credentials,
                server={"address": "127.0.0.1", "port": port, "tls": {
                    "cert_file": str(pki / "server.pem"), "key_file": str(pki / "server.key"),
                    "client_ca_file": str(pki / "ca.pem")}},
                master={"token_file": str(directory / "replication.token"), "tls": {
                    "ca_file": str(pki / "ca.pem"), "cert_file": str(pki / "client.pem"),
                    "key_file": str(pki / "client.key")}},
                ha={"etcd": {"endpoints": [etcd.endpoint]}, "cluster": "auth", "name": f"n{i}",
                    "advertise": f"127.0.0.1:{port}", "lease_ttl": "2s"}))

        def role(node) -> int:
            with grpc.secure_channel(node.address, credentials) as channel:
                try:
                    return pb.kv_grpc.AdminStub(channel).Status(pb.kv.StatusRequest(), metadata=admin, timeout=5).role
                except grpc.RpcError:
                    return -1

        master = wait_until("a master", lambda: next((n for n in nodes if role(n) == pb.kv.ROLE_MASTER), None), 30)
        follower = next(n for n in nodes if n is not master)
        wait_until("the other node to follow", lambda: harness.health_serving(follower.address, credentials), 30)
        with grpc.secure_channel(master.address, credentials) as channel:
            lsn = pb.kv_grpc.KVStoreStub(channel).Set(
                pb.kv.SetRequest(key="ha", value=b"with-token"),
                metadata=[("authorization", f"Bearer {tokens['write']}")], timeout=10).lsn
        with grpc.secure_channel(follower.address, credentials) as channel:
            reply = pb.kv_grpc.KVStoreStub(channel).Get(
                pb.kv.GetRequest(key="ha", min_lsn=lsn), metadata=[("authorization", f"Bearer {tokens['read']}")],
                timeout=10)
        assert reply.value == b"with-token"
    finally:
        for node in nodes:
            node.stop()
            SERVER_LOGS.append(node.log_path)
        etcd.kill()


def test_no_token_appears_in_any_log_or_error(secured):
    """Runs last in this module (pytest keeps file order): every secret issued above, against
    every node log and every error message the clients saw."""
    server, _, _ = secured
    logs = [server.log(), *(path.read_text(errors="replace") for path in SERVER_LOGS)]
    issued = issued_tokens()
    assert issued, "no token was issued: run the module whole"
    for token in issued:
        for text in logs + SEEN_ERRORS:
            assert token not in text, "a token leaked into a log line or an error message"
