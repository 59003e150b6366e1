"""The node key, the networking flags and the system_* RPC methods of a networked node."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import pytest

from node.network.config import NodeKeyError, node_peer_id, read_node_key
from node.testnet.processes import ROOT, Cluster, NodeProcess, wait_until, write_spec

GRADCHAIN = [sys.executable, "-m", "node.cli"]


def test_generate_node_key_writes_a_private_file_and_prints_its_peer_id(tmp_path):
    path = tmp_path / "node_key"
    result = subprocess.run([*GRADCHAIN, "key", "generate-node-key", "--file", str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert result.stdout.strip() == node_peer_id(read_node_key(path))
    again = subprocess.run([*GRADCHAIN, "key", "generate-node-key", "--file", str(path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr  # never overwrites an identity


def test_a_malformed_bootnode_is_a_one_line_error_at_start(tmp_path):
    spec = write_spec(tmp_path / "spec.json")
    for bad in ("/ip4/127.0.0.1/tcp/30333",):  # no /p2p/<peer id> (check_peer_address covers the rest)
        result = subprocess.run([*GRADCHAIN, "--chain", str(spec), "--base-path", str(tmp_path / "b"), "--no-rpc",
                                 "--no-prometheus", "--bootnodes", bad], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("Error:") and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_node_key_readable_by_others_or_of_the_wrong_size_is_refused(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(b"x" * 32)
    path.chmod(0o644)
    with pytest.raises(NodeKeyError, match="chmod 600"):
        read_node_key(path)
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(NodeKeyError, match="expected 32 bytes"):
        read_node_key(path)


def _log_events(node: NodeProcess) -> list[dict]:
    events = []
    for line in node.log_path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return events


@pytest.mark.slow
def test_the_node_key_is_made_once_under_the_base_path_and_the_peer_id_survives_a_restart(tmp_path):
    spec = write_spec(tmp_path / "spec.json")
    node = NodeProcess("Alice", tmp_path / "alice", spec)
    try:
        ids = []
        for _ in range(2):
            node.start(use_node_key=False)
            node.wait_rpc()
            ids.append(node.call("system_localPeerId"))
            addresses = node.call("system_localListenAddresses")
            assert addresses == [f"/ip4/127.0.0.1/tcp/{node.p2p_port}/p2p/{ids[-1]}"]
            node.stop()
        key_path = node.base / "data" / "chains" / "gradchain_nettest" / "network" / "secret_ed25519"
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        assert ids[0] == ids[1] == node_peer_id(read_node_key(key_path))
        events = [e.get("event") for e in _log_events(node)]
        started = [e for e in _log_events(node) if e.get("event") == "network started"]
        assert started and started[0]["peer_id"] == ids[0] and started[0]["listen"] == addresses
        # the network starts after the chain is open and stops before its database closes
        assert events.index("chain opened") < events.index("network started")
        assert events.index("network stopped") < events.index("database closed")
    finally:
        node.stop()


@pytest.mark.slow
def test_no_network_runs_a_lone_node_and_says_so_over_rpc(tmp_path):
    spec = write_spec(tmp_path / "spec.json")
    node = NodeProcess("Alice", tmp_path / "alice", spec)
    try:
        node.start((), "--no-network")
        node.wait_rpc()
        assert node.call("system_health") == {"peers": 0, "isSyncing": False, "shouldHavePeers": False}
        assert not any(e.get("event") == "network started" for e in _log_events(node))
        with pytest.raises(Exception, match="without networking"):
            node.call("system_localPeerId")
    finally:
        node.stop()


@pytest.mark.slow
def test_ban_unban_and_reserved_peers_over_rpc(tmp_path):
    with Cluster(tmp_path, ("Alice", "Bob")) as cluster:
        alice, bob = cluster.nodes
        try:
            alice.start()  # no bootnodes: Alice learns of Bob only through the RPC below
            bob.start()
            alice.wait_rpc()
            bob.wait_rpc()
            alice.call("system_addReservedPeer", bob.address)
            wait_until(lambda: alice.peers() == 1 and bob.peers() == 1, 30, "Alice to dial Bob", cluster.nodes)
            assert [p["peerId"] for p in alice.call("system_peers")] == [bob.peer_id]
            alice.call("system_banPeer", bob.peer_id, 600)
            wait_until(lambda: alice.peers() == 0 and bob.peers() == 0, 20, "the ban to cut Bob off", cluster.nodes)
            assert alice.call("system_unbanPeer", bob.peer_id) is True
            wait_until(lambda: alice.peers() == 1, 30, "the reserved peer redialled after the unban", cluster.nodes)
            alice.call("system_removeReservedPeer", bob.peer_id)
            with pytest.raises(Exception, match="multiaddress"):
                alice.call("system_addReservedPeer", "not an address")
            metrics_free = alice.call("system_syncState")
            assert set(metrics_free) == {"startingBlock", "currentBlock", "highestBlock"}
        except AssertionError:
            raise
        except Exception as exc:
            raise AssertionError(f"{exc!r}\n{cluster.tails()}") from exc


@pytest.mark.slow
def test_a_frozen_peer_is_dropped_by_the_application_ping_and_metrics_count_peers(tmp_path):
    import signal
    import urllib.request

    from node.testnet.processes import free_port

    with Cluster(tmp_path, ("Alice", "Bob")) as cluster:
        alice, bob = cluster.nodes
        metrics_port = free_port()
        try:
            alice.start([bob.address], prometheus_port=metrics_port)
            bob.start([alice.address])
            alice.wait_rpc()
            bob.wait_rpc()
            wait_until(lambda: alice.peers() == 1, 30, "the connection", cluster.nodes)

            def metric(name: str) -> float:
                text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
                return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))
            wait_until(lambda: metric("gradchain_peers") == 1, 10, "the peers gauge", cluster.nodes)
            assert metric("gradchain_p2p_bytes_in") > 0 and metric("gradchain_p2p_bytes_out") > 0
            assert metric("gradchain_p2p_messages_dropped") == 0
            assert metric("gradchain_sync_target") >= 0

            bob.process.send_signal(signal.SIGSTOP)  # frozen: its TCP connection stays open
            try:
                wait_until(lambda: alice.peers() == 0, 30, "Alice to drop the frozen Bob", cluster.nodes)
            finally:
                bob.process.send_signal(signal.SIGCONT)
            wait_until(lambda: alice.peers() == 1, 30, "Bob back after he thawed", cluster.nodes)
        except AssertionError:
            raise
        except Exception as exc:
            raise AssertionError(f"{exc!r}\n{cluster.tails()}") from exc
