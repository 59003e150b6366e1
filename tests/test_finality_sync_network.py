"""A node that joins late syncs finality across validator-set changes (real node processes on 127.0.0.1).

Four validators with an era every 15 blocks; Dave chills at the start, so an era change elects
{Alice, Bob, Charlie}. Once the validators finalized past two era changes, a fifth node (not a
validator) starts from genesis: it syncs the blocks, fetches the justifications the voters stored
with the set-change blocks and the finalized head, checks each against the set it derived by
executing the chain (the old set signs the change block), and ends with the same finalized block.
Finality gossip cannot do this for it: commits of a later set are not checkable under set 0.
"""

from __future__ import annotations

import json
import time

import pytest

from consensus.finality.justification import decode_justification
from node.keystore import write_key_file
from node.network.config import node_peer_id, write_node_key
from node.testnet.processes import LocalTestnet, TestnetNode, free_port
from rpc.client import Client
from runtime import crypto
from runtime.pallets import validators
from scripts._tasks import ChainAccount
from tests.faults import invariants
from tests.helpers.processes import log_records

pytestmark = pytest.mark.slow
ERA = 15


def test_a_late_node_verifies_the_set_change_justifications_and_ends_equally_final(tmp_path):
    started = time.monotonic()
    testnet = LocalTestnet(tmp_path / "net", 4, slot_ms=1000)
    spec = json.loads(testnet.spec_path.read_text())
    spec["parameters"]["era_length"] = ERA
    testnet.spec_path.write_text(json.dumps(spec, indent=2))
    alice = testnet.node("Alice")
    base = tmp_path / "net" / "late"
    base.mkdir()
    write_key_file(base / "validator.json", "//Ferdie", 42)  # a key of no validator: it follows, never votes
    late = TestnetNode("Late", base, testnet.spec_path, free_port(), free_port(), free_port(),
                       node_peer_id(write_node_key(base / "node_key")))
    everyone = [*testnet.nodes, late]
    try:
        testnet.start()
        testnet.wait_until(lambda: all(n.call("system_health")["peers"] >= 3 for n in testnet.nodes), 90,
                           "3 peers each")
        dave = ChainAccount(Client(alice.rpc_url, timeout=30), crypto.keypair_from_uri("//Dave"))
        dave.send(validators.chill())
        target = 2 * ERA + 2
        testnet.wait_until(lambda: invariants.finalized(alice) >= target, 120, f"finality past #{target}")
        assert len(alice.call("explorer_validators")) == 3  # the set changed: Dave is out
        late.start([n.address for n in testnet.nodes])
        testnet.wait_until(late.answers_rpc, 60, "the late node's RPC")
        testnet.wait_until(lambda: invariants.finalized(late) >= target, 90, "the late node's finality")
        for number in range(1, target + 1):
            assert invariants.hash_at(late, number) == invariants.hash_at(alice, number)
        caught_up = log_records(late, "finalized with a peer's justification")
        assert [r["number"] for r in caught_up][:2] == [ERA, 2 * ERA]  # the set changes first, in order
        assert [r["set_id"] for r in caught_up][:2] == [0, 1]  # each proven by the old set
        block = late.call("chain_getBlock", invariants.hash_at(late, 2 * ERA))
        assert decode_justification(bytes.fromhex(block["justifications"][0][1][2:])).set_id == 1
        print(f"late node final at #{invariants.finalized(late)} after {time.monotonic() - started:.1f} s")
    except BaseException:
        print("\n".join(f"--- {n.name} ---\n{n.tail(30)}" for n in everyone))
        raise
    finally:
        late.stop()  # a synced node exits at once now (tests/test_node_exit.py)
        testnet.stop()
