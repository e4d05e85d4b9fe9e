"""Hosts for the multi-host tests: a master and two slaves as real `erdtree` processes, each
in a network namespace of its own with its own address, joined by a bridge (in a fourth
namespace), started from deploy/'s config files with only the master's address and the data
directories changed.

The test process is one more host on the bridge (through a veth pair whose other end is in
the bridge's namespace), so it talks to the nodes with grpcio as any client would. Each node
also gets a UTS namespace with its host's name. Faults are real: a host's link is cut with
`ip link set … down`. Added delay on the master's link comes from `delay_relay.py`, which the
slaves dial instead of the master, since this kernel has no `tc netem`.

The benchmark's cluster suite (bench/suites/cluster.py) builds the same hosts and nodes with
`Network`, `start_node` and `start_relay`; nodes start and are waited for through
tests/harness/node.py, as the interop tests' are.

Needs root (CAP_NET_ADMIN) and iproute2; without them every test here is skipped, saying why.

Environment: ERDTREE_BIN, the binary under test (default .build/debug/erdtree).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # for harness
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from harness import node as harness  # noqa: E402
from harness.node import ERDTREE_BIN, Node  # noqa: E402,F401  (conftest and the tests import them from here)
from support import compile_stubs  # noqa: E402,F401

DEPLOY = ROOT / "deploy"
MASTER_PORT, SLAVE_PORT, RELAY_PORT = 8080, 8081, 8090


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed (scripts/install-deps.sh test installs it)"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_NET_ADMIN); run make test as root"
    probe = f"erdtree-probe-{os.getpid()}"
    done = sh("ip", "netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"ip netns add failed: {done.stderr.strip()}"
    sh("ip", "netns", "del", probe, check=False)
    return None


class Network:
    """Hosts on one /24 behind a bridge. Interface names carry a per-run tag (they are global
    while being moved, and at most 15 characters)."""

    def __init__(self, hosts: list[str]):
        self.tag = f"et{os.getpid() % 10000:04d}"
        prefix = f"10.{random.randint(64, 127)}.{random.randint(0, 254)}"
        self.address = {name: f"{prefix}.{i + 1}" for i, name in enumerate(hosts)}
        self.client_address = f"{prefix}.100"
        self.switch = f"{self.tag}-sw"
        self.namespaces: list[str] = []

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def create(self) -> None:
        self._add_namespace(self.switch)
        sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.switch, "link", "set", "br0", "up")
        for i, host in enumerate(self.address):
            ns = self.ns(host)
            self._add_namespace(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            self._plug(f"{self.tag}h{i}", ns, self.address[host])
        # The test process's host: its end stays here (it goes when the switch namespace,
        # which holds its peer, is deleted).
        self._plug(f"{self.tag}c", None, self.client_address)

    def _add_namespace(self, ns: str) -> None:
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)

    def _plug(self, name: str, ns: str | None, address: str) -> None:
        """A veth pair: `eth0` with `address` in `ns` (or `name` here), its peer on the bridge."""
        sh("ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}b")
        if ns is None:
            sh("ip", "addr", "add", f"{address}/24", "dev", name)
            sh("ip", "link", "set", name, "up")
        else:
            sh("ip", "link", "set", name, "netns", ns)
            sh("ip", "-n", ns, "link", "set", name, "name", "eth0")
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "link", "set", f"{name}b", "netns", self.switch)
        sh("ip", "-n", self.switch, "link", "set", f"{name}b", "master", "br0")
        sh("ip", "-n", self.switch, "link", "set", f"{name}b", "up")

    def cut(self, host: str) -> None:
        sh("ip", "-n", self.ns(host), "link", "set", "eth0", "down")

    def heal(self, host: str) -> None:
        sh("ip", "-n", self.ns(host), "link", "set", "eth0", "up")

    def destroy(self) -> None:
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)


def config_from_deploy(name: str, wal_dir: Path, master_address: str | None) -> dict:
    """deploy/'s config with the data directory moved under the test's tmp dir and, for a
    slave, the master's address for this network; everything else as shipped."""
    config = yaml.safe_load((DEPLOY / name).read_text())
    config["wal"]["directory"] = str(wal_dir)
    if master_address is not None:
        config["master"]["address"] = master_address
    return config


@dataclass
class Cluster:
    net: Network
    master: Node
    slaves: list[Node]
    delay_file: Path
    relay: subprocess.Popen
    pb: object

    def set_delay(self, seconds: float) -> None:
        self.delay_file.write_text(f"{seconds}\n")


def start_node(net: Network, host: str, role: str, config: dict, workdir: Path, port: int,
               binary: Path = ERDTREE_BIN) -> Node:
    """`erdtree ROLE` with `config` on `host`, reached at its address there; does not wait."""
    node = harness.launch(
        # Each host its own hostname too (a UTS namespace): a slave listening on every
        # interface names itself to the master by it.
        workdir, port, binary=binary, role=role, host=net.address[host], config=config,
        prefix=[*harness.DIE_WITH_PARENT, "ip", "netns", "exec", net.ns(host), "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
                host])
    node.name = host
    return node


def start_relay(net: Network, host: str, listen_port: int, target: str, delay_file: Path,
                log_path: Path) -> subprocess.Popen:
    """delay_relay.py on `host`, listening on its address at `listen_port` and forwarding to
    `target` with the delay in `delay_file` each way."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            ["ip", "netns", "exec", net.ns(host), sys.executable, str(Path(__file__).with_name("delay_relay.py")),
             f"{net.address[host]}:{listen_port}", target, str(delay_file)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_serving(node: Node, timeout: float = 60) -> None:
    """Until it says SERVING (a slave: once its first sync is done); fails the test if it exits first or not in time."""
    try:
        if harness.wait_serving(node, timeout, poll_s=0.2):
            return
        failure = f"{node.name} exited ({node.proc.returncode}); log:\n{node.log()}"
    except harness.NodeError as error:
        failure = str(error)
    pytest.fail(failure)
