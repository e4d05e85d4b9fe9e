"""deploy/ without a Docker engine: the compose files resolve with Debian's docker-compose
into the cluster the README describes, and the Dockerfile passes hadolint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import ERDTREE_BIN, start_server
from support import run, tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def compose(*files: str, quiet: bool = False) -> dict:
    binary = shutil.which("docker-compose") or pytest.fail("docker-compose not found: run scripts/install-deps.sh test")
    args = [binary]
    for name in files:
        args += ["-f", str(DEPLOY / name)]
    done = run([*args, "config", *(["-q"] if quiet else [])])
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    return {} if quiet else yaml.safe_load(done.stdout)


def test_compose_files_are_valid():
    compose("compose.yaml", quiet=True)
    compose("compose.yaml", "compose.semisync.yaml", quiet=True)


def test_compose_runs_a_master_and_two_slaves_each_with_its_volume_and_config():
    config = compose("compose.yaml")
    services = config["services"]
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
