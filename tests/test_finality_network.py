"""Finality on real networks: four `gradchain` validators as processes on 127.0.0.1 (node/testnet/processes.py).

All four finalize and agree; with one of four stopped finality goes on; with two stopped it stalls, and
resumes when they return; a validator that signs two prevotes in one round is reported by the others
and slashed. Every wait has a deadline, every process is stopped by pid, log tails print on failure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

cluster_module = pytest.importorskip("node.testnet.processes")  # the network (issue 13)
Cluster, wait_until = cluster_module.Cluster, cluster_module.wait_until

from consensus.finality.justification import decode_justification  # noqa: E402
from runtime import crypto  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
DAVE = crypto.dev_keypair("Dave")


def finalized(node) -> int:
    return int(node.call("chain_getHeader", node.call("chain_getFinalizedHead"))["number"], 16)


def running(nodes):
    return [n for n in nodes if n.process is not None and n.process.poll() is None]


def test_finality_with_all_one_and_two_validators_offline(tmp_path):
    with Cluster(tmp_path) as cluster:
        alice, bob, charlie, dave = cluster.nodes
        cluster.start()
        wait_until(lambda: all(n.peers() >= 3 for n in cluster.nodes), 60, "every node to have 3 peers",
                   cluster.nodes)
        wait_until(lambda: all(finalized(n) >= 3 for n in cluster.nodes), 90, "finality on all four", cluster.nodes)
        height = min(finalized(n) for n in cluster.nodes)
        assert len({n.call("chain_getBlockHash", height) for n in cluster.nodes}) == 1
        block = alice.call("chain_getBlock", alice.call("chain_getFinalizedHead"))
        assert decode_justification(bytes.fromhex(block["justifications"][0][1][2:])).set_id == 0

        dave.stop()  # one of four: more than 2/3 of the stake remains
        start = finalized(alice)
        wait_until(lambda: finalized(alice) >= start + 3, 90, "finality without Dave", running(cluster.nodes))

        charlie.stop()  # two of four: half the stake, not more than 2/3
        stalled_at = finalized(alice)
        best = alice.best()
        wait_until(lambda: alice.best() >= best + 4, 60, "blocks while finality stalls", running(cluster.nodes))
        assert finalized(alice) <= stalled_at + 1  # at most a round already under way completes
        assert finalized(bob) <= stalled_at + 1

        cluster.start([charlie, dave])  # they return: finality resumes
        wait_until(lambda: all(finalized(n) >= stalled_at + 3 for n in cluster.nodes), 120,
                   "finality to resume on all four", cluster.nodes)


def test_a_double_voter_is_reported_slashed_and_the_reporter_paid(tmp_path, monkeypatch):
    wrapper = str(ROOT / "tests" / "double_voter.py")
    real_popen = cluster_module.subprocess.Popen

    def popen(command, *args, **kwargs):
        if "--name" in command and command[command.index("--name") + 1] == "Dave":
            command = [command[0], wrapper, *command[3:]]  # python tests/double_voter.py <the same arguments>
        return real_popen(command, *args, **kwargs)
    monkeypatch.setattr(cluster_module.subprocess, "Popen", popen)
    with Cluster(tmp_path) as cluster:
        alice, dave = cluster.nodes[0], cluster.nodes[3]
        cluster.start()
        wait_until(lambda: all(n.peers() >= 3 for n in cluster.nodes), 60, "every node to have 3 peers",
                   cluster.nodes)
        stake = int(alice.call("explorer_validators")[3]["stake"])

        def slashed():
            history = alice.call("explorer_accountHistory", "0x" + DAVE.public.hex())
            found = [e for entry in history for e in alice.call("explorer_events", entry["hash"])
                     if "OffenceReported" in json.dumps(e)]
            return found or None
        events = wait_until(slashed, 120, "Dave to be reported", cluster.nodes)
        text = json.dumps(events[0])
        assert "0x" + DAVE.public.hex() in text
        fields = _flatten(events[0])
        assert int(fields["reward"]) > 0 and fields["reporter"] != "0x" + DAVE.public.hex()  # the reporter is paid
        reserved = int(alice.call("explorer_account", "0x" + DAVE.public.hex())["reserved"])
        assert reserved < stake  # the bond lost its slash
        assert "equivocated on purpose" in dave.log_path.read_text()


def _flatten(value, into=None) -> dict:
    """Every key of a nested JSON object, at any depth (an event's fields, wherever the shape puts them)."""
    into = {} if into is None else into
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                _flatten(item, into)
            else:
                into.setdefault(key, item)
    elif isinstance(value, list):
        for item in value:
            _flatten(item, into)
    return into
