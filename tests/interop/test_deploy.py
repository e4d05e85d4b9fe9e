"""deploy/ without a Docker engine: the compose files resolve with Debian's docker-compose
into the cluster the README describes, and the Dockerfile passes hadolint."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import ERDTREE_BIN, start_server
from harness.node import free_port, port_accepts
from support import remember_tokens, run, tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def compose(*files: str, quiet: bool = False, profile: str | None = None) -> dict:
    binary = shutil.which("docker-compose") or pytest.fail("docker-compose not found: run scripts/install-deps.sh test")
    args = [binary]
    for name in files:
        args += ["-f", str(DEPLOY / name)]
    if profile:
        args += ["--profile", profile]
    done = run([*args, "config", *(["-q"] if quiet else [])])
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    return {} if quiet else yaml.safe_load(done.stdout)


def cluster_services(config: dict) -> dict:
    """The services `docker compose up` starts without a --profile: the cluster itself."""
    return {name: service for name, service in config["services"].items() if not service.get("profiles")}


def test_compose_files_are_valid():
    compose("compose.yaml", quiet=True)
    compose("compose.yaml", "compose.semisync.yaml", quiet=True)


def test_compose_runs_a_master_and_two_slaves_each_with_its_volume_and_config():
    config = compose("compose.yaml")
    services = cluster_services(config)
    assert sorted(services) == ["master", "slave1", "slave2"]
    ports, volumes, configs = {}, {}, {}
    for name, service in services.items():
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        ports[name] = [(p["published"], p["target"]) for p in service["ports"]]
        for mount in service["volumes"]:
            source, target = mount.split(":")[:2]
            if target == "/var/lib/erdtree":
                volumes[name] = source
            elif target == "/etc/erdtree/config.yaml":
                configs[name] = Path(source)
    assert ports == {"master": [(8080, 8080)], "slave1": [(8081, 8081)], "slave2": [(8082, 8081)]}
    assert len(set(volumes.values())) == 3 and set(volumes.values()) <= set(config["volumes"]), volumes
    assert {name: path.name for name, path in configs.items()} == {
        "master": "master-config.yaml", "slave1": "slave-config.yaml", "slave2": "slave-config.yaml"}
    # The slaves follow the master by its service name, and start once it is healthy.
    slave_config = yaml.safe_load(configs["slave1"].read_text())
    assert slave_config["master"]["address"] == "master:8080"
    assert slave_config["server"]["port"] == 8081
    for slave in ("slave1", "slave2"):
        assert services[slave]["depends_on"] == {"master": {"condition": "service_healthy"}}
        assert services[slave]["healthcheck"]["test"][1:4] == ["erdtree", "health", "--server"]
        assert services[slave]["healthcheck"]["test"][4] == "127.0.0.1:8081"
    # Each node keeps its WAL inside its own volume.
    for name, path in configs.items():
        assert yaml.safe_load(path.read_text())["wal"]["directory"].startswith("/var/lib/erdtree/"), name


def test_the_semisync_variant_only_changes_the_masters_config():
    plain, semisync = compose("compose.yaml"), compose("compose.yaml", "compose.semisync.yaml")
    mounts = [m for m in semisync["services"]["master"]["volumes"] if m.endswith(":/etc/erdtree/config.yaml:ro")]
    assert len(mounts) == 1 and mounts[0].split(":")[0].endswith("master-semisync-config.yaml")
    assert yaml.safe_load((DEPLOY / "master-semisync-config.yaml").read_text())["replication"]["min_acks"] == 1
    assert plain["services"]["slave1"] == semisync["services"]["slave1"]


def test_dockerfile_passes_hadolint():
    done = run([tool("hadolint"), str(DEPLOY / "Dockerfile")])
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_dockerfile_runs_as_non_root_with_a_volume_and_a_health_check():
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert stages[0].startswith("FROM swift:6.") and stages[-1] == "FROM debian:bookworm-slim", stages
    runtime = lines[lines.index(stages[-1]):]
    assert any(line.startswith("USER ") and not line.startswith(("USER 0", "USER root")) for line in runtime)
    assert any(line.startswith("VOLUME ") and "/var/lib/erdtree" in line for line in runtime)
    health = next(line for line in text.splitlines() if "CMD [\"erdtree\", \"health\"" in line)
    assert "127.0.0.1:8080" in health
    # Only the two C libraries the binary links come from apt at run time.
    install = next(line for line in runtime if "apt-get install" in line)
    packages = install.split("--no-install-recommends")[1].split("&&")[0].replace("\\", " ").split()
    assert packages == ["libnghttp2-14", "libprotobuf-c1"]


@pytest.mark.parametrize("name", ["master-config.yaml", "master-semisync-config.yaml"])
def test_the_master_configs_start_a_master(name, tmp_path, request):
    """Every key of deploy's master configs is one the binary takes (the slave config is
    started by tests/cluster). Only where it listens and writes is changed."""
    shipped = yaml.safe_load((DEPLOY / name).read_text())
    sections = {section: values for section, values in shipped.items() if section not in ("server", "wal")}
    node = start_server(tmp_path, wal={k: v for k, v in shipped["wal"].items() if k != "directory"}, **sections)
    request.addfinalizer(node.terminate)
    assert run([str(ERDTREE_BIN), "health", "--server", node.address]).returncode == 0


def test_the_ha_compose_file_runs_etcd_and_three_nodes_whose_role_etcd_decides(tmp_path):
    compose("compose.ha.yaml", quiet=True)
    services = compose("compose.ha.yaml")["services"]
    assert sorted(services) == ["etcd", "node1", "node2", "node3"]
    names, advertised, volumes = set(), set(), set()
    for i in (1, 2, 3):
        service = services[f"node{i}"]
        assert service["command"][:1] == ["node"]
        assert [(p["published"], p["target"]) for p in service["ports"]] == [(8080 + i, 8080)]
        mounts = dict(m.split(":")[:2][::-1] for m in service["volumes"])
        volumes.add(mounts["/var/lib/erdtree"])
        config = yaml.safe_load(Path(mounts["/etc/erdtree/config.yaml"]).read_text())
        assert config["ha"]["etcd"]["endpoints"] == ["etcd:2379"]
        names.add(config["ha"]["name"])
        advertised.add(config["ha"]["advertise"])
        assert config["ha"]["advertise"] == f"node{i}:8080" and service["hostname"] == f"node{i}"
        assert config["replication"]["min_acks"] == 1
    assert len(names) == len(advertised) == len(volumes) == 3


@pytest.mark.parametrize("i", [1, 2, 3])
def test_the_node_configs_parse_for_erdtree_node_and_are_refused_by_erdtree_master(i, tmp_path):
    """Every key of deploy's node configs is one `erdtree node` takes; `erdtree master` refuses
    the ha section, naming it."""
    shipped = yaml.safe_load((DEPLOY / f"node{i}-config.yaml").read_text())
    shipped["wal"]["directory"] = str(tmp_path / "wal")
    port = free_port()
    shipped["server"] = {"address": "127.0.0.1", "port": port}
    shipped["ha"]["etcd"]["endpoints"] = ["127.0.0.1:1"]  # no etcd: it serves, electing
    shipped["ha"]["advertise"] = f"127.0.0.1:{port}"
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(shipped))
    node = subprocess.Popen([str(ERDTREE_BIN), "node", "--config", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not port_accepts("127.0.0.1", port):
            assert node.poll() is None, "erdtree node refused the shipped config"
            assert time.monotonic() < deadline, "erdtree node did not listen"
            time.sleep(0.05)
        # With no etcd to place it, the node takes no write, saying why (grpcurl, a real client).
        done = run([tool("grpcurl"), "-plaintext", "-import-path", str(ROOT / "api"), "-proto",
                    "erdtree/v1/kvstore.proto", "-d", '{"key": "k", "value": "dg=="}', f"127.0.0.1:{port}",
                    "erdtree.v1.KVStore/Set"])
        out = (done.stdout + done.stderr).decode()
        assert done.returncode != 0 and "Unavailable" in out and "does not know the master yet" in out, out
    finally:
        node.terminate()
        assert node.wait(timeout=15) == 0
    refused = run([str(ERDTREE_BIN), "master", "--config", str(path)])
    assert refused.returncode != 0
    assert "key 'ha' is not allowed for a master node" in (refused.stdout + refused.stderr).decode()


def secure_files(service: dict, secrets_dir: Path, files: dict) -> dict[str, str]:
    """/run/secrets/<target> -> the file deploy/make-secrets.sh made for it, as compose wires them."""
    mapping = {}
    for secret in service["secrets"]:
        source = Path(files[secret["source"]]["file"]).name
        mapping[f"/run/secrets/{secret['target']}"] = str(secrets_dir / source)
    return mapping


def rewrite_secrets(value, mapping: dict):
    if isinstance(value, dict):
        return {k: rewrite_secrets(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite_secrets(v, mapping) for v in value]
    return mapping.get(value, value) if isinstance(value, str) else value


def test_the_secure_compose_file_runs_tls_mutual_tls_and_tokens_from_secrets(tmp_path):
    """compose.secure.yaml resolves, and what it wires together works: deploy/make-secrets.sh
    makes the CA, certificates and tokens; the shipped secure configs, with each /run/secrets
    path pointing where compose would mount that secret, run a master (mutual TLS, tokens) and a
    slave that replicates over mutual TLS with the replication token; the CLI writes over
    https with the operator's certificate and the write token and reads from the slave."""
    config = compose("compose.secure.yaml")
    services, files = cluster_services(config), config["secrets"]
    assert sorted(services) == ["master", "slave1", "slave2"]
    secrets_dir = tmp_path / "secrets"
    made = run([str(DEPLOY / "make-secrets.sh"), str(secrets_dir)])
    assert made.returncode == 0, made.stderr
    for name, secret in files.items():
        assert (secrets_dir / Path(secret["file"]).name).is_file(), f"make-secrets.sh did not make {name}"
    remember_tokens(*((secrets_dir / f"{role}.token").read_text().strip()
                      for role in ("read", "write", "admin", "replication")))
    before = {p.name: p.read_bytes() for p in secrets_dir.iterdir()}
    assert run([str(DEPLOY / "make-secrets.sh"), str(secrets_dir)]).returncode == 0
    assert before == {p.name: p.read_bytes() for p in secrets_dir.iterdir()}, "a second run must keep every secret"

    ports = {"master": free_port(), "slave1": free_port()}
    nodes = []
    try:
        for name, role, shipped in (("master", "master", "master-secure-config.yaml"),
                                    ("slave1", "slave", "slave-secure-config.yaml")):
            settings = rewrite_secrets(yaml.safe_load((DEPLOY / shipped).read_text()),
                                       secure_files(services[name], secrets_dir, files))
            settings["server"].update(address="127.0.0.1", port=ports[name])
            settings["wal"]["directory"] = str(tmp_path / name / "wal")
            if role == "slave":
                settings["master"]["address"] = f"127.0.0.1:{ports['master']}"  # server_name stays "master"
            (tmp_path / name).mkdir()
            path = tmp_path / name / "config.yaml"
            path.write_text(yaml.safe_dump(settings))
            log = open(tmp_path / name / "node.log", "wb")
            nodes.append(subprocess.Popen([str(ERDTREE_BIN), role, "--config", str(path)], stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        operator = ["--tls-ca", str(secrets_dir / "ca.pem"), "--tls-cert", str(secrets_dir / "operator.pem"),
                    "--tls-key", str(secrets_dir / "operator.key")]
        master = ["--server", f"https://127.0.0.1:{ports['master']}", "--tls-server-name", "master", *operator]
        slave = ["--server", f"https://127.0.0.1:{ports['slave1']}", "--tls-ca", str(secrets_dir / "ca.pem")]
        deadline = time.monotonic() + 30
        while run([str(ERDTREE_BIN), "health", *slave]).returncode != 0:
            assert all(n.poll() is None for n in nodes), (tmp_path / "slave1" / "node.log").read_text()
            assert time.monotonic() < deadline, "the slave did not sync over mutual TLS: " + (
                tmp_path / "slave1" / "node.log").read_text()
            time.sleep(0.2)
        written = run([str(ERDTREE_BIN), "set", "secure", "yes", *master,
                       "--token-file", str(secrets_dir / "write.token")])
        assert written.returncode == 0, written.stderr
        without_cert = run([str(ERDTREE_BIN), "get", "secure", "--server", f"https://127.0.0.1:{ports['master']}",
                            "--tls-server-name", "master", "--tls-ca", str(secrets_dir / "ca.pem"),
                            "--token-file", str(secrets_dir / "read.token")])
        assert without_cert.returncode != 0, "mutual TLS must refuse a client without a certificate"
        deadline = time.monotonic() + 10
        while (read := run([str(ERDTREE_BIN), "get", "secure", *slave,
                            "--token-file", str(secrets_dir / "read.token")])).stdout.strip() != b"yes":
            assert time.monotonic() < deadline, read.stderr
            time.sleep(0.1)
        refused = run([str(ERDTREE_BIN), "get", "secure", *slave])
        assert refused.returncode != 0 and b"UNAUTHENTICATED" in refused.stderr
    finally:
        for node in nodes:
            node.terminate()
            node.wait(timeout=15)


# --------------------------------------------------------------------------
# The monitoring profile (issue 17): Prometheus scraping every node
# --------------------------------------------------------------------------


def prometheus_service(compose_file: str) -> tuple[dict, dict]:
    """The compose file resolved with --profile monitoring: (its Prometheus service, the nodes)."""
    compose(compose_file, quiet=True, profile="monitoring")
    config = compose(compose_file, profile="monitoring")
    monitoring = {name: s for name, s in config["services"].items() if s.get("profiles")}
    assert list(monitoring) == ["prometheus"] and monitoring["prometheus"]["profiles"] == ["monitoring"], monitoring
    return monitoring["prometheus"], config


def node_targets(config: dict) -> set[str]:
    """service:port for every node, the port read from the config file compose mounts into it
    (the port inside the container, which is what another container dials)."""
    targets = set()
    for name, service in cluster_services(config).items():
        mounts = dict(m.split(":")[:2][::-1] for m in service["volumes"])
        node_config = yaml.safe_load(Path(mounts["/etc/erdtree/config.yaml"]).read_text())
        targets.add(f"{name}:{node_config['server']['port']}")
    return targets


def scraped(prometheus_config: dict) -> tuple[dict, set[str]]:
    jobs = prometheus_config["scrape_configs"]
    assert len(jobs) == 1, jobs
    return jobs[0], {t for group in jobs[0]["static_configs"] for t in group["targets"]}


@pytest.mark.parametrize("compose_file, prometheus_file", [
    ("compose.yaml", "prometheus.yml"), ("compose.secure.yaml", "prometheus.secure.yml")])
def test_the_monitoring_profile_runs_prometheus_scraping_every_node_with_the_alerts(compose_file, prometheus_file):
    prometheus, config = prometheus_service(compose_file)
    # Official image, pinned: `latest` would change the rules engine under the alerts.
    image, _, tag = prometheus["image"].partition(":")
    assert image == "prom/prometheus" and tag.startswith("v") and tag != "latest", prometheus["image"]
    assert [(p["published"], p["target"]) for p in prometheus["ports"]] == [(9090, 9090)]
    mounts = {m.split(":")[1]: Path(m.split(":")[0]) for m in prometheus["volumes"] if m.startswith("/")}
    assert mounts["/etc/prometheus/prometheus.yml"] == DEPLOY / prometheus_file
    assert mounts["/etc/prometheus/alerts.yml"] == DEPLOY / "alerts.yml"
    # Without the profile the cluster is what it was: Prometheus only comes with --profile.
    assert sorted(cluster_services(compose(compose_file))) == ["master", "slave1", "slave2"]

    settings = yaml.safe_load((DEPLOY / prometheus_file).read_text())
    # rule_files resolve against the config file's directory, where the alerts are mounted.
    assert [str(Path("/etc/prometheus") / f) for f in settings["rule_files"]] == ["/etc/prometheus/alerts.yml"]
    job, targets = scraped(settings)
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert targets == node_targets(config) == {"master:8080", "slave1:8081", "slave2:8081"}


def test_the_secure_monitoring_profile_scrapes_over_tls_with_a_client_certificate_for_the_master():
    prometheus, config = prometheus_service("compose.secure.yaml")
    job, _ = scraped(yaml.safe_load((DEPLOY / "prometheus.secure.yml").read_text()))
    assert job["scheme"] == "https"
    # Every file tls_config names is a secret mounted into the Prometheus container.
    mounted = {f"/run/secrets/{s['target']}": s["source"] for s in prometheus["secrets"]}
    tls = job["tls_config"]
    assert {tls["ca_file"], tls["cert_file"], tls["key_file"]} <= set(mounted), (tls, mounted)
    # ... and they are the deploy CA and a client certificate of it, which the master demands.
    master = cluster_services(config)["master"]
    master_mounts = dict(m.split(":")[:2][::-1] for m in master["volumes"])
    master_tls = yaml.safe_load(Path(master_mounts["/etc/erdtree/config.yaml"]).read_text())["server"]["tls"]
    master_secrets = {f"/run/secrets/{s['target']}": s["source"] for s in master["secrets"]}
    assert mounted[tls["ca_file"]] == master_secrets[master_tls["client_ca_file"]]
    assert mounted[tls["cert_file"]] == "operator-cert" and mounted[tls["key_file"]] == "operator-key"

