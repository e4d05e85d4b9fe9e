"""The `cluster` fixture: see hosts.py for what it builds. Skipped, saying why, where network
namespaces cannot be made."""

from __future__ import annotations

import pytest

from hosts import (
    ERDTREE_BIN, MASTER_PORT, RELAY_PORT, ROOT, SLAVE_PORT, Cluster, Network, Node, compile_stubs,
    config_from_deploy, netns_unavailable, start_node, start_relay, wait_serving,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"multi-host cluster test skipped: {reason}")
    if not ERDTREE_BIN.is_file():
        pytest.fail(f"{ERDTREE_BIN} not found: build first (make test does)")
    tmp = tmp_path_factory.mktemp("cluster")
    pb = compile_stubs(ROOT / "api", tmp_path_factory.mktemp("stubs"))
    net = Network(["master", "slave1", "slave2"])
    nodes: list[Node] = []
    relay = None
    try:
        net.create()
        master = start_node(
            net, "master", "master", config_from_deploy("master-config.yaml", tmp / "master" / "wal", None),
            tmp / "master", MASTER_PORT)
        nodes.append(master)
        delay_file = tmp / "delay"
        delay_file.write_text("0\n")
        relay = start_relay(net, "master", RELAY_PORT, f"127.0.0.1:{MASTER_PORT}", delay_file, tmp / "relay.log")
        wait_serving(master)
        for name in ("slave1", "slave2"):
            config = config_from_deploy("slave-config.yaml", tmp / name / "wal", f"{net.address['master']}:{RELAY_PORT}")
            nodes.append(start_node(net, name, "slave", config, tmp / name, SLAVE_PORT))
        for node in nodes[1:]:
            wait_serving(node)
        yield Cluster(net, master, nodes[1:], delay_file, relay, pb)
    finally:
        for node in nodes:
            node.stop(timeout=15)
        if relay is not None:
            relay.kill()
            relay.wait()
        net.destroy()
