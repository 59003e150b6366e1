"""A round reported between a newcomer's election and its key's arrival: unverifiable to the newcomer (no
vote) until the key comes, then checked again and voted for (node/held_out_keys.py).

Without the second check the newcomer kept the block `verified` with the round unchecked for good, and
its voter would never vote for that block nor any descendant: newcomers holding more than a third of the
stake would stall finality. Two chain services on one fake clock: Alice authors; Eve follows with her
own key, bonds at block 1, is elected at block 4 (era_length 4); the task's key is sealed to Alice only.
"""

from __future__ import annotations

import asyncio

from consensus.finality.ports import UNVERIFIABLE, VERIFIED
from consensus.import_queue import expected_author
from consensus.useful_work import encode_tensors
from consensus.useful_work.key_resealing import reseal_calls
from node.chain_service import ChainService
from node.chain_setup import ChainPaths, dev_spec
from node.clock import FakeClock
from node.finality_service import FinalityService
from runtime.executive import sign_extrinsic
from runtime.genesis import parse_genesis
from runtime.hashing import blake2b_256
from runtime.pallets import balances, held_out_keys, system, training, validators
from runtime.state import Overlay
from tests.helpers.chain import DEV_KEYS, dev_genesis
from tests.helpers.useful_work import MLP, trained_deltas
from tests.helpers.useful_work_chain import TRAINERS, held_out_task, publish, sealed_held_out

ALICE, EVE = DEV_KEYS["Alice"], DEV_KEYS["Eve"]
NOT_SEALED = "task 0 round 0: the held-out key is not sealed to this validator"


class Service:
    """A chain service driven by hand on the test's thread (tests/helpers/chain_nodes.py's Node, any key)."""

    def __init__(self, path, config, clock: FakeClock, keypair) -> None:
        self.service = ChainService(config, ChainPaths(path, config.chain_id), clock=clock, validator_key=keypair,
                                    inline_useful_work=True)
        self.service._open()
        self.store = self.service.store


def short_era_config():
    spec = dev_spec(dev_genesis().spec)
    spec["parameters"] = dict(spec["parameters"], era_length=4, unbonding_period=100)
    spec["offences"] = {"evidence_window": 10}
    return parse_genesis(spec, "short-era dev spec")


def test_a_round_reported_before_the_newcomers_key_is_checked_again_when_the_key_arrives(tmp_path):
    config = short_era_config()
    clock = FakeClock(start_ms=0)
    alice, eve = Service(tmp_path / "a", config, clock, ALICE), Service(tmp_path / "e", config, clock, EVE)
    finality = FinalityService(eve.service, EVE, clock)
    finality._loop = asyncio.new_event_loop()  # its wake-ups queue there; the test polls nothing
    finality._make_voter()
    eve.service.block_listeners.append(finality._on_block_chain_thread)
    eve.service.status_listeners.append(finality._on_status_chain_thread)
    slot = 0

    def step(transactions=()):
        """Alice authors the next block in one of her slots (with `transactions`); Eve imports it."""
        nonlocal slot
        sent: dict[bytes, int] = {}
        for keypair, call in transactions:
            account = system.Account.get(Overlay(alice.store.state_view(alice.store.best_hash)), keypair.public)
            nonce = (account.nonce if account else 0) + sent.get(keypair.public, 0)
            sent[keypair.public] = sent.get(keypair.public, 0) + 1
            alice.service._submit(sign_extrinsic(keypair, call, nonce=nonce, genesis_hash=alice.store.genesis_hash))
        members = [v.account for v in validators.Validators.get(Overlay(alice.store.state_view(alice.store.best_hash)))]
        slot += 1
        while expected_author(members, slot) != ALICE.public:
            slot += 1
        clock.time_ms = slot * config.slot_duration_ms
        block = alice.service._author(slot, ALICE, clock.now_ms() + 60_000).block
        assert eve.service.import_block_now(block).is_best
        return block

    try:
        ciphertext, sealed = sealed_held_out((alice, eve))  # the key sealed to Alice only
        task = held_out_task(ciphertext, sealed, rounds=2)
        stake = config.parameters.min_validator_stake
        step([*((ALICE, balances.transfer(t.public, 10**16)) for t in TRAINERS),
              (EVE, validators.bond(stake)), (EVE, validators.validate())])           # block 1
        step([(ALICE, training.create_task(task))])                                  # block 2: round 0 starts
        updates = [encode_tensors(delta) for delta in trained_deltas(MLP)]
        salt = b"\x05" * 32
        publish((alice, eve), *updates, now_block=2)
        step([(t, training.commit_update(0, 0, training.update_commitment(blake2b_256(u), t.public, salt)))
              for t, u in zip(TRAINERS, updates)])                                   # block 3
        election = step()                                                            # block 4: the era change
        members = validators.Validators.get(Overlay(eve.store.state_view(election.hash)))
        assert EVE.public in [v.account for v in members]
        step([(t, training.reveal_update(0, 0, blake2b_256(u), salt, 288, b"\x00" * 32))
              for t, u in zip(TRAINERS, updates)])                                   # block 5
        step()                                                                       # block 6: the seed block
        report = step()                                                              # block 7: the report

        # Eve is a validator now but holds no key: she cannot check the round, says so, and would not vote
        status = eve.store.verification_status(report.hash)
        assert status.state == VERIFIED and NOT_SEALED in status.unchecked[0]
        assert finality._block_status(report.hash) == UNVERIFIABLE

        # a holder (what Alice's node submits by itself at the era change, late here) seals the key to Eve
        state = Overlay(alice.store.state_view(alice.store.best_hash))
        [reseal] = reseal_calls(state, ALICE, alice.service.blobs.get)
        assert reseal.validator == EVE.public
        arrival = step([(ALICE, reseal.call)])                                       # block 8
        assert held_out_keys.Resealed.get(Overlay(eve.store.state_view(arrival.hash)), (0, EVE.public))

        # Eve opened the held-out set with it and checked block 7 again: verified, nothing left unchecked
        status = eve.store.verification_status(report.hash)
        assert status.state == VERIFIED and status.unchecked == (), status
        assert finality._block_status(report.hash) == VERIFIED
    finally:
        finality._loop.close()
        eve.service._close()
        alice.service._close()
