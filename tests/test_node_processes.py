"""node/testnet/processes.py: the one place that starts node processes (testnet, demo, tests, benches).

Real processes on 127.0.0.1 free ports; every one stopped by pid before a test ends.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from node.testnet import processes
from node.testnet.processes import (
    Cluster, LocalTestnet, NodeDied, NodeProcess, TestnetError, wait_until, write_spec,
)


def test_a_node_makes_its_keys_once_and_keeps_its_peer_id(tmp_path):
    spec = write_spec(tmp_path / "spec.json")
    first = NodeProcess("Alice", tmp_path / "alice", spec)
    again = NodeProcess("Alice", tmp_path / "alice", spec)
    assert first.peer_id == again.peer_id and first.peer_id.startswith("12D3KooW")
    assert oct(first.key_file.stat().st_mode)[-3:] == "600" and oct(first.node_key.stat().st_mode)[-3:] == "600"
    assert first.address == f"/ip4/127.0.0.1/tcp/{first.p2p_port}/p2p/{first.peer_id}"


def test_the_command_line_says_what_the_node_is(tmp_path, monkeypatch):
    spec = write_spec(tmp_path / "spec.json")
    validator = NodeProcess("Alice", tmp_path / "alice", spec, prometheus_port=9999)
    follower = NodeProcess("Eve", tmp_path / "eve", spec, validator=False)
    monkeypatch.setattr(processes, "EXTRA", ["--log-level", "debug"])
    command = validator.command(["/ip4/127.0.0.1/tcp/1/p2p/x"], ["--pruning", "archive"])
    assert command[command.index("--key-file") + 1] == str(validator.key_file) and "--validator" in command
    assert command[command.index("--prometheus-port") + 1] == "9999"
    assert command[command.index("--bootnodes") + 1] == "/ip4/127.0.0.1/tcp/1/p2p/x"
    assert command[-4:] == ["--pruning", "archive", "--log-level", "debug"]
    plain = follower.command(use_node_key=False)
    assert "--validator" not in plain and "--no-prometheus" in plain and "--bootnodes" not in plain
    assert "--node-key-file" not in plain


def test_a_wait_ends_at_once_when_a_node_dies_naming_it_with_its_log(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    node = NodeProcess("Alice", tmp_path / "alice", tmp_path / "broken.json")
    node.start()
    try:
        started = time.monotonic()
        with pytest.raises(NodeDied) as died:
            wait_until(lambda: False, 60, "nothing", [node])
        assert time.monotonic() - started < 30
        assert "node Alice" in died.value.message and str(node.log_path) in died.value.message
        assert died.value.node is node and node.exit_code() not in (None, 0)
    finally:
        node.stop()


def test_a_wait_past_its_deadline_says_what_it_waited_for_with_the_tails(tmp_path):
    node = NodeProcess("Alice", tmp_path / "alice", write_spec(tmp_path / "spec.json"))
    node.log_path.write_text("the last line of the log\n")
    with pytest.raises(TestnetError, match="waiting for the moon") as late:
        wait_until(lambda: False, 0.3, "the moon", [node])
    assert "the last line of the log" in late.value.message


def test_a_testnet_names_its_nodes_like_the_dev_accounts_with_their_own_ports(tmp_path):
    testnet = LocalTestnet(tmp_path, 4, slot_ms=500)
    assert [n.name for n in testnet.nodes] == ["Alice", "Bob", "Charlie", "Dave"]
    assert all(n.prometheus_port and n.validator for n in testnet.nodes)
    assert testnet.bootnodes_for(testnet.nodes[0]) == [n.address for n in testnet.nodes[1:]]
    layout = json.loads((tmp_path / "testnet.json").read_text())
    assert [d["peer_id"] for d in layout] == [n.peer_id for n in testnet.nodes]


@pytest.mark.slow
def test_a_cluster_starts_its_nodes_connected_and_stops_every_pid(tmp_path):
    with Cluster(tmp_path, ("Alice", "Bob")) as cluster:
        cluster.start()
        cluster.wait_until(lambda: all(n.peers() == 1 for n in cluster.nodes), 60, "the two to connect")
        cluster.wait_until(lambda: min(n.best() for n in cluster.nodes) >= 2, 60, "blocks on both")
        pids = cluster.pids()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert all(n.exit_code() is not None and not n.has_died() for n in cluster.nodes)


def test_free_ports_are_below_the_ephemeral_range_distinct_and_bindable():
    """An ephemeral port handed out by bind(0) was taken by a node's outgoing connection before the node
    bound it (CI: "address already in use"); ports below that range are never taken that way."""
    import socket

    from node.testnet.processes import _ephemeral_range, free_port

    low, _ = _ephemeral_range()
    ports = [free_port() for _ in range(100)]
    assert len(set(ports)) == 100
    assert all(10_000 <= port < low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
