"""TLS and mutual TLS (DESIGN §11, issue 16): a node with `server.tls`, reached by real clients
(grpcurl, buf curl, grpcio, connectrpc, curl, openssl, the erdtree CLI) with certificates that
`openssl` makes at test time (tests/harness/pki.py); the failures each must refuse cleanly; certificate
rotation on SIGHUP; replication over mutual TLS."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import ERDTREE_BIN, _failed, start_server, stop_server
from harness import node
from harness.node import health_serving
from harness.pki import make_pki
from support import run, tool

# Long enough for a slave's backoff to make several attempts.
RETRY_WINDOW_S = 4.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def credentials(pki: Path, ca: str = "ca", client: str | None = None) -> grpc.ChannelCredentials:
    """grpcio's TLS credentials trusting `ca`, showing `client`'s certificate if given."""
    key = (pki / f"{client}.key").read_bytes() if client else None
    chain = (pki / f"{client}.pem").read_bytes() if client else None
    return grpc.ssl_channel_credentials((pki / f"{ca}.pem").read_bytes(), key, chain)


def server_tls(pki: Path, cert: str = "server", mutual: bool = False) -> dict:
    tls = {"cert_file": str(pki / f"{cert}.pem"), "key_file": str(pki / f"{cert}.key")}
    if mutual:
        tls["client_ca_file"] = str(pki / "ca.pem")
    return tls


def start_tls(workdir: Path, pki: Path, cert: str = "server", mutual: bool = False, client: str | None = None,
              **sections):
    """A master serving only TLS with `cert`; readiness is checked over TLS (as `client` under mTLS)."""
    server = dict(sections.pop("server", {}))
    server["tls"] = server_tls(pki, cert, mutual)
    return start_server(workdir, server=server, credentials=credentials(pki, client=client or
                                                                        ("client" if mutual else None)), **sections)


@pytest.fixture
def tls_server(tmp_path, pki, request):
    srv = start_tls(tmp_path / "node", pki)
    try:
        yield srv
    finally:
        stop_server(srv, _failed(request.node))


@pytest.fixture
def mtls_server(tmp_path, pki, request):
    srv = start_tls(tmp_path / "node", pki, mutual=True)
    try:
        yield srv
    finally:
        stop_server(srv, _failed(request.node))


def kv_stub(pb, address: str, creds: grpc.ChannelCredentials):
    channel = grpc.secure_channel(address, creds)
    return channel, pb.kv_grpc.KVStoreStub(channel)


def peer_certificate(port: int, pki: Path) -> dict:
    """The certificate a new TLS connection is served, as Python's ssl module checked it."""
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert()


def curl(*args: str) -> subprocess.CompletedProcess:
    return run([tool("curl"), "-sS", "--max-time", "20", *args])


# --------------------------------------------------------------------------
# Every real client, over TLS
# --------------------------------------------------------------------------


def test_grpcurl_lists_describes_and_calls_over_tls(pki, tls_server):
    grpcurl = [tool("grpcurl"), "-cacert", str(pki / "ca.pem"), "-max-time", "30"]
    listed = run([*grpcurl, tls_server.address, "list"])
    assert listed.returncode == 0, listed.stderr.decode()
    assert "erdtree.v1.KVStore" in listed.stdout.decode().split()
    described = run([*grpcurl, tls_server.address, "describe", "erdtree.v1.KVStore.Set"])
    assert described.returncode == 0 and "rpc Set" in described.stdout.decode(), described.stderr.decode()
    done = run([*grpcurl, "-d", '{"key": "g", "value": "dmFs"}', tls_server.address, "erdtree.v1.KVStore/Set"])
    assert done.returncode == 0 and json.loads(done.stdout)["lsn"] == "1", done.stderr.decode()
    done = run([*grpcurl, "-d", '{"key": "g"}', f"localhost:{tls_server.port}", "erdtree.v1.KVStore/Get"])
    assert done.returncode == 0 and json.loads(done.stdout)["value"] == "dmFs", done.stderr.decode()


@pytest.mark.parametrize("protocol", ["grpc", "connect"])
def test_buf_curl_over_tls(pki, tls_server, protocol):
    schema = Path(__file__).resolve().parents[2] / "api"
    buf = [tool("buf"), "curl", "--protocol", protocol, "--cacert", str(pki / "ca.pem"), "--schema", str(schema)]
    done = run([*buf, "--data", '{"key": "b", "value": "YnVm"}', f"{tls_server.url}/erdtree.v1.KVStore/Set"])
    assert done.returncode == 0, done.stderr.decode()
    done = run([*buf, "--data", '{"key": "b"}', f"{tls_server.url}/erdtree.v1.KVStore/Get"])
    assert done.returncode == 0 and json.loads(done.stdout)["value"] == "YnVm", done.stderr.decode()


def test_grpcio_secure_channel(pb, pki, tls_server):
    channel, kv = kv_stub(pb, tls_server.address, credentials(pki))
    with channel:
        assert kv.Set(pb.kv.SetRequest(key="s", value=b"secure"), timeout=10).lsn == 1
        assert kv.Get(pb.kv.GetRequest(key="s"), timeout=10).value == b"secure"


@pytest.mark.parametrize("transport", ["http1", "h2"])
def test_connectrpc_over_https(pb, pki, tls_server, transport):
    import pyqwest

    version = pyqwest.HTTPVersion.HTTP1 if transport == "http1" else pyqwest.HTTPVersion.HTTP2
    http_transport = pyqwest.SyncHTTPTransport(http_version=version, tls_ca_cert=(pki / "ca.pem").read_bytes())
    try:
        http = pyqwest.SyncClient(http_transport)
        with pb.connect.KVStoreClientSync(tls_server.url, http_client=http) as client:
            assert client.set(pb.cpb.SetRequest(key="c", value=b"connect")).lsn == 1
            assert client.get(pb.cpb.GetRequest(key="c")).value == b"connect"
            assert client.get(pb.cpb.GetRequest(key="c"), use_get=True).value == b"connect"
    finally:
        http_transport.close()


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_curl_connect_json_over_tls(pki, tls_server, version):
    ca = ["--cacert", str(pki / "ca.pem"), version, "-w", "\n%{http_version}"]
    json_post = ["-H", "content-type: application/json", "--data-binary"]
    done = curl(*ca, *json_post, '{"key":"j","value":"anNvbg=="}', f"{tls_server.url}/erdtree.v1.KVStore/Set")
    body, _, http_version = done.stdout.decode().rpartition("\n")
    assert done.returncode == 0 and json.loads(body)["lsn"] == "1", done.stderr.decode()
    assert http_version == ("1.1" if version == "--http1.1" else "2")
    done = curl(*ca, *json_post, '{"key":"j"}', f"https://localhost:{tls_server.port}/erdtree.v1.KVStore/Get")
    body, _, _ = done.stdout.decode().rpartition("\n")
    assert done.returncode == 0 and json.loads(body)["value"] == "anNvbg==", done.stderr.decode()


@pytest.mark.parametrize("version, shown", [("--http1.1", "1.1"), ("--http2", "2")])
def test_curl_healthz_over_tls(pki, tls_server, version, shown):
    done = curl("--cacert", str(pki / "ca.pem"), version, "-w", "%{http_code} %{http_version}",
                f"{tls_server.url}/healthz")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == f"SERVING\n200 {shown}"


def launch_unchecked(workdir: Path, pki: Path, cert: str):
    """A TLS master with a certificate the harness's readiness check would refuse: started, and
    waited for until its port accepts."""
    srv = node.launch(workdir, node.free_port(), binary=ERDTREE_BIN,
                      server={"address": "127.0.0.1", "tls": server_tls(pki, cert)})
    deadline = time.monotonic() + 10
    while not node.port_accepts(srv.host, srv.port):
        assert srv.alive() and time.monotonic() < deadline, srv.log_tail()
        time.sleep(0.05)
    return srv


def test_upgrade_to_h2c_is_not_offered_over_tls(pki, tls_server):
    """RFC 9113 §3.1: h2c is cleartext only. Over TLS with ALPN http/1.1 the request is
    served as HTTP/1.1, and the connection then closes (NIOHTTP1 parses nothing after a
    request that asked to switch)."""
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.set_alpn_protocols(["http/1.1"])
    body = b'{"key":"u"}'
    request = (b"POST /erdtree.v1.KVStore/Get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
            tls.sendall(request)
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:200]
    assert answer.endswith(b"{}")


def test_cli_sets_and_gets_over_https(pki, tls_server):
    tls = ["--tls-ca", str(pki / "ca.pem")]
    done = run([str(ERDTREE_BIN), "set", "cli", "over-tls", "--server", tls_server.url, *tls])
    assert done.returncode == 0 and done.stdout.decode().startswith("OK lsn=1"), done.stderr.decode()
    done = run([str(ERDTREE_BIN), "get", "cli", "--server", tls_server.url, *tls])
    assert done.returncode == 0 and done.stdout.decode() == "over-tls\n", done.stderr.decode()
    # The certificate is checked: a CLI that trusts another CA is refused, and says so.
    done = run([str(ERDTREE_BIN), "get", "cli", "--server", tls_server.url, "--tls-ca", str(pki / "other-ca.pem")])
    assert done.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in done.stderr.decode()


def test_cli_checks_the_name_given_by_tls_server_name(pki, tmp_path, request):
    srv = launch_unchecked(tmp_path / "node", pki, "named")  # DNS:localhost only
    try:
        tls = ["--tls-ca", str(pki / "ca.pem")]
        done = run([str(ERDTREE_BIN), "health", "--server", f"https://{srv.address}", *tls])
        assert done.returncode != 0 and "failedToValidateHostname" in done.stderr.decode(), done.stderr.decode()
        done = run([str(ERDTREE_BIN), "health", "--server", f"https://{srv.address}", *tls,
                    "--tls-server-name", "localhost"])
        assert done.returncode == 0 and done.stdout == b"serving\n", done.stderr.decode()
        done = run([str(ERDTREE_BIN), "health", "--server", f"https://localhost:{srv.port}", *tls])
        assert done.returncode == 0, done.stderr.decode()
    finally:
        stop_server(srv, _failed(request.node))


# --------------------------------------------------------------------------
# Failures, refused cleanly
# --------------------------------------------------------------------------


def test_a_client_trusting_another_ca_fails_its_handshake(pb, pki, tls_server):
    channel, kv = kv_stub(pb, tls_server.address, credentials(pki, ca="other-ca"))
    with channel, pytest.raises(grpc.RpcError) as refused:
        kv.Get(pb.kv.GetRequest(key="x"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    done = curl("--cacert", str(pki / "other-ca.pem"), f"{tls_server.url}/healthz")
    assert done.returncode == 60 and "certificate" in done.stderr.decode()  # 60: peer certificate not verified
    assert health_serving(tls_server.address, credentials(pki))


def test_a_cleartext_client_on_a_tls_port_is_refused_and_the_node_keeps_serving(pb, pki, tls_server):
    with grpc.insecure_channel(tls_server.address) as channel, pytest.raises(grpc.RpcError) as refused:
        pb.kv_grpc.KVStoreStub(channel).Get(pb.kv.GetRequest(key="x"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    for args in (["--http1.1"], ["--http2-prior-knowledge"]):
        done = curl(*args, f"http://{tls_server.address}/healthz")
        assert done.returncode != 0 and done.stdout == b""
    # Raw bytes that are no TLS record at all: the node closes, it does not crash.
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
        assert not answer.startswith(b"HTTP/")  # at most a TLS alert, then the close
    assert tls_server.alive() and health_serving(tls_server.address, credentials(pki))


def test_an_expired_server_certificate_is_reported_by_the_client(tmp_path, pki, request):
    # The node starts with it (expiry is the client's to judge, by its clock); every client refuses it.
    srv = launch_unchecked(tmp_path / "node", pki, "expired")
    try:
        done = curl("--cacert", str(pki / "ca.pem"), f"https://{srv.address}/healthz")
        assert done.returncode == 60 and "expired" in done.stderr.decode(), done.stderr.decode()
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            peer_certificate(srv.port, pki)
        done = run(["openssl", "s_client", "-connect", srv.address, "-CAfile", str(pki / "ca.pem"),
                    "-verify_return_error", "-brief"], input=b"")
        assert done.returncode != 0 and "certificate has expired" in done.stderr.decode()
        assert srv.alive()
    finally:
        stop_server(srv, _failed(request.node))


def test_mutual_tls_refuses_a_client_without_a_certificate_or_with_another_cas(pb, pki, mtls_server):
    for creds in (credentials(pki), credentials(pki, client="other-client")):
        channel, kv = kv_stub(pb, mtls_server.address, creds)
        with channel, pytest.raises(grpc.RpcError) as refused:
            kv.Get(pb.kv.GetRequest(key="x"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    done = curl("--cacert", str(pki / "ca.pem"), f"{mtls_server.url}/healthz")
    assert done.returncode != 0 and b"SERVING" not in done.stdout
    # The certificate from the right CA is let in, by grpcio and by curl.
    channel, kv = kv_stub(pb, mtls_server.address, credentials(pki, client="client"))
    with channel:
        assert kv.Set(pb.kv.SetRequest(key="m", value=b"mutual"), timeout=10).lsn == 1
    done = curl("--cacert", str(pki / "ca.pem"), "--cert", str(pki / "client.pem"), "--key", str(pki / "client.key"),
                f"{mtls_server.url}/healthz")
    assert done.returncode == 0 and done.stdout == b"SERVING\n", done.stderr.decode()


@pytest.mark.parametrize(
    "tls, complaint",
    [
        ({"cert_file": "missing.pem", "key_file": "server.key"}, "cannot read TLS file '{pki}/missing.pem'"),
        ({"cert_file": "server.key", "key_file": "server.key"}, "TLS file '{pki}/server.key' holds no PEM certificate"),
        ({"cert_file": "server.pem", "key_file": "server.pem"}, "TLS file '{pki}/server.pem' holds no PEM private key"),
        ({"cert_file": "server.pem", "key_file": "client.key"},
         "TLS key '{pki}/client.key' does not match the certificate in '{pki}/server.pem'"),
        ({"cert_file": "server.pem", "key_file": "server.key", "client_ca_file": "nope.pem"},
         "cannot read TLS file '{pki}/nope.pem'"),
        ({"client_ca_file": "ca.pem"}, "missing key 'server.tls.cert_file'"),
    ],
)
def test_a_node_with_unusable_tls_files_refuses_to_start_naming_the_file(tmp_path, pki, tls, complaint):
    config = tmp_path / "erdtree.yaml"
    config.write_text(node.render_config({
        "server": {"address": "127.0.0.1", "port": 0, "tls": {k: str(pki / v) for k, v in tls.items()}},
        "wal": {"directory": str(tmp_path / "wal")},
    }))
    done = run([str(ERDTREE_BIN), "master", "--config", str(config)], timeout=30)
    assert done.returncode != 0
    assert complaint.format(pki=pki) in done.stderr.decode(), done.stderr.decode()
    # Refused before the log was opened.
    assert not (tmp_path / "wal").exists()


# --------------------------------------------------------------------------
# Rotation on SIGHUP
# --------------------------------------------------------------------------


def test_sighup_serves_a_new_certificate_to_new_connections_and_open_streams_go_on(pb, pki, tmp_path, request):
    live = tmp_path / "live"
    live.mkdir()
    for suffix in ("pem", "key"):
        shutil.copy(pki / f"server.{suffix}", live / f"server.{suffix}")
    master = start_server(tmp_path / "master", server={"tls": server_tls(live)}, credentials=credentials(pki))
    slave = None
    try:
        assert peer_certificate(master.port, pki)["serialNumber"] == "1001"
        # Open before the reload: a slave's Replicate stream, a Health/Watch and a grpcio channel.
        slave = start_server(tmp_path / "slave", role="slave",
                             master={"address": master.address, "sync_interval": "200ms",
                                     "tls": {"ca_file": str(pki / "ca.pem")}})
        channel, kv = kv_stub(pb, master.address, credentials(pki))
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        kv.Set(pb.kv.SetRequest(key="before", value=b"1"), timeout=10)

        for suffix in ("pem", "key"):
            shutil.copy(pki / f"server2.{suffix}", live / f"server.{suffix}")
        master.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while peer_certificate(master.port, pki)["serialNumber"] != "2002":
            assert time.monotonic() < deadline, f"still the old certificate; log:\n{master.log_tail()}"
            time.sleep(0.1)
        assert "reloaded the TLS certificate" in master.log()

        # A bad file on the next SIGHUP: logged, the node keeps the certificate it had.
        (live / "server.pem").write_text("not a certificate\n")
        master.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "TLS reload failed" not in master.log():
            assert time.monotonic() < deadline, master.log_tail()
            time.sleep(0.1)
        assert f"TLS file '{live}/server.pem' holds no PEM certificate" in master.log()
        assert peer_certificate(master.port, pki)["serialNumber"] == "2002"

        # The old connections went on: the same channel, its watch, and the slave's stream.
        assert kv.Set(pb.kv.SetRequest(key="after", value=b"2"), timeout=10).lsn == 2
        assert watch.is_active(), "Health/Watch ended across the reload"
        slave_kv = pb.kv_grpc.KVStoreStub(grpc.insecure_channel(slave.address))
        deadline = time.monotonic() + 10
        while not slave_kv.Get(pb.kv.GetRequest(key="after"), timeout=5).found:
            assert time.monotonic() < deadline, slave.log_tail()
            time.sleep(0.05)
        assert "redialling" not in slave.log(), slave.log_tail()
        assert master.alive()
        watch.cancel()
        channel.close()
    finally:
        for started in (slave, master):
            if started is not None:
                stop_server(started, _failed(request.node))


# --------------------------------------------------------------------------
# Replication over mutual TLS
# --------------------------------------------------------------------------


def test_replication_over_mutual_tls_converges_and_a_slave_without_a_certificate_is_refused(pb, pki, tmp_path,
                                                                                          request):
    master = start_tls(tmp_path / "master", pki, mutual=True)
    nodes = [master]
    try:
        slave_tls = {"ca_file": str(pki / "ca.pem"), "server_name": "localhost",
                     "cert_file": str(pki / "client.pem"), "key_file": str(pki / "client.key")}
        master_section = {"address": master.address, "sync_interval": "200ms", "tls": slave_tls}
        slave = start_server(tmp_path / "slave", role="slave", master=master_section)
        nodes.append(slave)
        channel, kv = kv_stub(pb, master.address, credentials(pki, client="client"))
        with channel:
            for i in range(20):
                kv.Set(pb.kv.SetRequest(key=f"k{i}", value=f"v{i}".encode()), timeout=10)
        with grpc.insecure_channel(slave.address) as slave_channel:
            slave_kv = pb.kv_grpc.KVStoreStub(slave_channel)
            deadline = time.monotonic() + 10
            while slave_kv.Get(pb.kv.GetRequest(key="k19"), timeout=5).value != b"v19":
                assert time.monotonic() < deadline, slave.log_tail()
                time.sleep(0.05)
            assert all(slave_kv.Get(pb.kv.GetRequest(key=f"k{i}"), timeout=5).value == f"v{i}".encode()
                       for i in range(20))

        # Without a client certificate: refused in the handshake, logged, retried with backoff.
        bare = {"address": master.address, "sync_interval": "200ms",
                "tls": {"ca_file": str(pki / "ca.pem"), "server_name": "localhost"}}
        refused = node.launch(tmp_path / "refused", node.free_port(), binary=ERDTREE_BIN, role="slave", master=bare)
        nodes.append(refused)
        time.sleep(RETRY_WINDOW_S)
        log = refused.log()
        attempts = [line for line in log.splitlines() if "replication stream failed" in line]
        assert len(attempts) >= 3, log
        # TLS 1.3 ends the client's handshake first: the master's refusal comes as its alert.
        assert all("CERTIFICATE_REQUIRED" in line for line in attempts), log
        retries = [float(line.split("retry_in=")[1].split()[0].rstrip("s")) for line in attempts
                   if "retry_in=" in line]
        assert retries == sorted(retries) and retries[-1] > retries[0], log
        assert refused.alive() and not health_serving(refused.address)
    finally:
        for n in reversed(nodes):
            if n.alive():
                stop_server(n, _failed(request.node))


# --------------------------------------------------------------------------
# The HA etcd client over mutual TLS
# --------------------------------------------------------------------------


def test_erdtree_node_reaches_etcd_over_mutual_tls(pb, pki, tmp_path, request):
    """etcd serving only TLS and requiring client certificates from ca: a node with
    `ha.etcd.tls` becomes master; one without a client certificate is refused and says why."""
    binary = shutil.which("etcd")
    if binary is None:
        pytest.fail("etcd not found: run scripts/install-deps.sh test (Debian's etcd-server)")
    client_port, peer_port = node.free_port(), node.free_port()
    client, peer = f"https://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    (tmp_path / "etcd").mkdir()
    with open(tmp_path / "etcd" / "etcd.log", "wb") as log:
        etcd = subprocess.Popen(
            [*node.DIE_WITH_PARENT, binary, "--name", "e0", "--data-dir", str(tmp_path / "etcd" / "data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"e0={peer}",
             "--cert-file", str(pki / "server.pem"), "--key-file", str(pki / "server.key"),
             "--trusted-ca-file", str(pki / "ca.pem"), "--client-cert-auth"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    started = []
    try:
        def launch(name: str, tls: dict) -> node.Node:
            port = node.free_port()
            n = node.launch(tmp_path / name, port, binary=ERDTREE_BIN, role="node",
                            ha={"etcd": {"endpoints": [f"127.0.0.1:{client_port}"], "tls": tls}, "cluster": "tls",
                                "name": name, "advertise": f"127.0.0.1:{port}", "lease_ttl": "2s"})
            started.append(n)
            return n

        trusted = launch("trusted", {"ca_file": str(pki / "ca.pem"), "cert_file": str(pki / "client.pem"),
                                     "key_file": str(pki / "client.key")})
        deadline = time.monotonic() + 20
        while "etcd session started" not in trusted.log() or not health_serving(trusted.address):
            assert trusted.alive() and etcd.poll() is None and time.monotonic() < deadline, trusted.log_tail()
            time.sleep(0.1)
        with grpc.insecure_channel(trusted.address) as channel:
            assert pb.kv_grpc.KVStoreStub(channel).Set(pb.kv.SetRequest(key="e", value=b"1"), timeout=10).lsn >= 1

        bare = launch("bare", {"ca_file": str(pki / "ca.pem")})
        deadline = time.monotonic() + 10
        while "etcd session ended" not in bare.log():
            assert bare.alive() and time.monotonic() < deadline, bare.log_tail()
            time.sleep(0.1)
        ended = [line for line in bare.log().splitlines() if "etcd session ended" in line]
        # Go's TLS (etcd) answers a missing client certificate with a bad_certificate alert.
        assert "ALERT_BAD_CERTIFICATE" in ended[0] or "CERTIFICATE_REQUIRED" in ended[0], ended[0]
        assert "etcd session started" not in bare.log()
    finally:
        for n in started:
            stop_server(n, _failed(request.node))
        etcd.kill()
        etcd.wait(timeout=10)
