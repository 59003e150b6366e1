"""A validator elected at an era change receives the held-out key and votes on the next round
(real node processes and libp2p hosts on 127.0.0.1; issue 14 item 7).

Alice, Bob, Charlie and Dave validate; Ferdie runs a validator node outside the set. Eve creates a
digits task while the set is {Alice, Bob, Charlie, Dave}: its held-out key is sealed to those four
(tests/faults/training.py, two trainers on Alice and Bob). Once a round of it closed, Ferdie bonds
and declares it validates; the next era change elects it. Until then Ferdie cannot check the task's
rounds: its node says so (`unchecked`, "not sealed to this validator") and it votes for none of them.
At the era change a holder's node seals the key to Ferdie by itself (held_out_keys.reseal_held_out_key);
Ferdie opens the held-out set with it, marks the next round's block `verified` with nothing unchecked,
and its precommits (in the justifications the nodes store) are for that block or its descendants.
"""

from __future__ import annotations

import json
import time

import pytest

from consensus.finality.justification import decode_justification
from consensus.useful_work.key_resealing import key_opens, open_sealed_key
from node.testnet.processes import STAKE, LocalTestnet, TestnetNode, tails, wait_until
from rpc.client import Client
from runtime import crypto
from runtime.pallets import held_out_keys, validators
from scripts._tasks import ChainAccount
from tests.faults import invariants
from tests.faults.training import TrainingLoad
from tests.helpers.processes import log_records

pytestmark = pytest.mark.slow
ERA = 15
NEWCOMER = "//Ferdie"  # endowed on every testnet, no validator; //Eve creates the task (TrainingLoad)
NOT_SEALED = "the held-out key is not sealed to this validator"


def account_of(node: TestnetNode) -> str:
    return json.loads(node.key_file.read_text())["public"]


def events_of(node: TestnetNode, number: int, name: str) -> list[dict]:
    return [e for e in node.call("explorer_events", invariants.hash_at(node, number)) or [] if e.get("event") == name]


def verification(node: TestnetNode, block_hash: str) -> dict | None:
    """The node's verdict on the block, once it has one (None while unknown or pending)."""
    status = node.call("chain_getBlockVerification", block_hash)
    return None if status is None or status["status"] == "pending" else status


def precommits_of(node: TestnetNode, voter: str, numbers: range) -> list[tuple[int, str]]:
    """(target number, target hash) of `voter`'s precommits in the justifications `node` stored with the blocks."""
    found = []
    for number in numbers:
        block = node.call("chain_getBlock", invariants.hash_at(node, number))
        for _, encoded in (block or {}).get("justifications") or []:
            justification = decode_justification(bytes.fromhex(encoded[2:]))
            found += [(v.target_number, "0x" + bytes(v.target_hash).hex()) for v in justification.precommits
                      if "0x" + bytes(v.voter).hex() == voter]
    return found


def test_a_validator_elected_at_an_era_change_receives_the_held_out_key_and_votes_on_the_next_round(tmp_path):
    started = time.monotonic()
    testnet = LocalTestnet(tmp_path / "net", 4, slot_ms=1000)
    spec = json.loads(testnet.spec_path.read_text())
    spec["parameters"]["era_length"] = ERA
    testnet.spec_path.write_text(json.dumps(spec, indent=2))
    alice, bob = testnet.node("Alice"), testnet.node("Bob")
    ferdie = TestnetNode("Ferdie", tmp_path / "net" / "ferdie", testnet.spec_path)  # key //Ferdie, --validator
    everyone = [*testnet.nodes, ferdie]
    newcomer = account_of(ferdie)
    holders = {account_of(n) for n in testnet.nodes}
    load = TrainingLoad([alice, bob], tmp_path / "training")
    try:
        testnet.start()
        ferdie.start([n.address for n in testnet.nodes])
        wait_until(lambda: all(n.peers() >= 4 for n in everyone), 90, "4 peers each", everyone)
        load.start()
        task = load.task_id
        sealed_to = {v["validator"] for v in alice.call("training_task", task)["config"]["sealed_keys"]}
        assert sealed_to == holders and newcomer not in sealed_to
        print(f"task {task} created at {time.monotonic() - started:.1f} s")

        # a round closes while Ferdie is no validator and holds no key: it cannot check it, and says so
        first = wait_until(lambda: invariants.closed_rounds(alice, task), 90, "the task's first round", everyone)
        before_key = first[0][1]
        before_key_hash = invariants.hash_at(alice, before_key)
        status = wait_until(lambda: verification(ferdie, before_key_hash), 60, "Ferdie's verdict on the first round",
                            everyone)
        assert status["status"] == "verified" and any(NOT_SEALED in u for u in status["unchecked"]), status

        account = ChainAccount(Client(alice.rpc_url, timeout=30), crypto.keypair_from_uri(NEWCOMER))
        account.send(validators.bond(STAKE))
        wait_until(lambda: int(alice.call("explorer_account", newcomer)["reserved"]) == STAKE, 30, "Ferdie's bond",
                   everyone)
        account.send(validators.validate())
        wait_until(lambda: newcomer in {v["account"] for v in alice.call("explorer_validators")}, 3 * ERA + 30,
                   "Ferdie elected at an era change", everyone)
        election = next(k * ERA for k in range(1, invariants.best(alice) // ERA + 1)
                        if newcomer in {v["account"] for v in
                                        alice.call("explorer_validators", invariants.hash_at(alice, k * ERA))})
        assert election > before_key  # the task and its first round came first
        print(f"Ferdie elected at #{election}, {time.monotonic() - started:.1f} s")

        # a holder's node seals the key to Ferdie by itself, in a block after the era change
        def resealed() -> tuple[int, dict] | None:
            for number in range(election + 1, invariants.best(alice) + 1):
                for event in events_of(alice, number, "held_out_keys.KeyResealed"):
                    if event["validator"] == newcomer and int(event["task"]) == task:
                        return number, event
            return None
        reseal_block, event = wait_until(resealed, 30, "the key re-sealed to Ferdie", everyone)
        assert event["sealer"] in holders
        sealers = [n for n in testnet.nodes if account_of(n) == event["sealer"]]
        sealed_at = log_records(sealers[0], "re-sealed held-out keys to new validators")
        assert election in [r["number"] for r in sealed_at]  # its node submitted the call by itself
        # what Ferdie's node checks, checked here too: the sealed key opens the held-out blob to its declared data
        at = invariants.hash_at(alice, reseal_block)
        storage_key = held_out_keys.Resealed.key_of((task, bytes.fromhex(newcomer[2:])))
        stored = alice.call("state_getStorage", "0x" + storage_key.hex(), at)
        resealed_keys = held_out_keys.Resealed.decode_value(bytes.fromhex(stored[2:]))
        config = alice.call("training_task", task)["config"]
        held_out = bytes.fromhex(config["held_out"][2:])
        plaintext = alice.call("state_getStorage", "0x" + held_out_keys.PlaintextHash.key_of(task).hex(), at)
        assert plaintext is not None  # the creator declared it: a key cannot open the blob to other data
        plaintext_hash = held_out_keys.PlaintextHash.decode_value(bytes.fromhex(plaintext[2:]))
        ciphertext = Client(ferdie.rpc_url, timeout=30).get_blob(held_out)  # Ferdie's node holds the blob
        assert {"0x" + bytes(r.sealer).hex() for r in resealed_keys} <= holders
        for resealed_key in resealed_keys:  # every holder that sealed in that block sealed a working key
            key = open_sealed_key(resealed_key.sealed, crypto.keypair_from_uri(NEWCOMER))
            assert key is not None and key_opens(key, ciphertext, held_out, plaintext_hash)

        # the next round: Ferdie checks it (verified, nothing unchecked) and votes for its block
        def next_round() -> int | None:
            return next((closed for _, closed in invariants.closed_rounds(alice, task) if closed > reseal_block), None)
        after_key = wait_until(next_round, 90, "a round of the task closed after the re-seal", everyone)
        wait_until(lambda: invariants._verified_here(ferdie, invariants.hash_at(alice, after_key)), 60,
                   "Ferdie's verdict on the round after the key", everyone)
        assert reseal_block in [r["number"] for r in log_records(ferdie, "held-out key received")]
        wait_until(lambda: all(invariants.finalized(n) >= after_key + 2 for n in everyone), 60,
                   f"finality past #{after_key}", everyone)
        load.stop()
        final = invariants.finalized(alice)
        votes = [v for n in everyone for v in precommits_of(n, newcomer, range(after_key, final + 1))]
        for_round = [v for v in votes if v[0] >= after_key and invariants.hash_at(alice, v[0]) == v[1]]
        assert for_round, f"no precommit of Ferdie for #{after_key} or a descendant in the justifications"

        # before the key Ferdie voted for nothing: none of its precommits is at or below the election block
        earlier = [v for n in everyone for v in precommits_of(n, newcomer, range(1, election + 1))]
        assert earlier == [], earlier
        status = verification(ferdie, before_key_hash)
        assert any(NOT_SEALED in u for u in status["unchecked"])  # still said, not hidden

        outcome = invariants.Outcome("held-out key at an era change")
        invariants.check_issuance(testnet, outcome)
        assert outcome.violations == []
        print(f"round closed at #{after_key} verified and voted by Ferdie (key re-sealed at #{reseal_block}); "
              f"{len(for_round)} precommits; {time.monotonic() - started:.1f} s")
    except BaseException:
        print(tails(everyone, 30))
        raise
    finally:
        load.stop()
        ferdie.stop()
        testnet.stop()
