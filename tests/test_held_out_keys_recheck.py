"""A validator elected after a task was made gets its held-out key and uses it (node/held_out_keys.py).

A round reported between a newcomer's election and its key's arrival: unverifiable to the newcomer (no
vote) until the key comes, then checked again and voted for.

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
from node.held_out_keys import RESEAL, RESEAL_RETRY_BLOCKS
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


def short_era_config(era_length: int = 4):
    spec = dev_spec(dev_genesis().spec)
    spec["parameters"] = dict(spec["parameters"], era_length=era_length, unbonding_period=100)
    spec["offences"] = {"evidence_window": 10}
    return parse_genesis(spec, "short-era dev spec")


class Author:
    """Alice authoring alone, in her slots of the current set, on a fake clock."""

    def __init__(self, node: Service, config, clock: FakeClock) -> None:
        self.node, self.config, self.clock, self.slot = node, config, clock, 0

    def step(self, transactions=()):
        """The next block, with `transactions` ((keypair, call), one per signer)."""
        store = self.node.store
        for keypair, call in transactions:
            account = system.Account.get(Overlay(store.state_view(store.best_hash)), keypair.public)
            self.node.service._submit(sign_extrinsic(keypair, call, nonce=account.nonce if account else 0,
                                                     genesis_hash=store.genesis_hash))
        members = [v.account for v in validators.Validators.get(Overlay(store.state_view(store.best_hash)))]
        self.slot += 1
        while expected_author(members, self.slot) != ALICE.public:
            self.slot += 1
        self.clock.time_ms = self.slot * self.config.slot_duration_ms
        return self.node.service._author(self.slot, ALICE, self.clock.now_ms() + 60_000).block


def finality_of(node: Service, keypair, clock: FakeClock) -> FinalityService:
    """The node's finality service, its chain-thread hooks attached (the test's thread is the chain thread)."""
    finality = FinalityService(node.service, keypair, clock)
    finality._loop = asyncio.new_event_loop()  # its wake-ups queue there; the test polls nothing
    finality._make_voter()
    node.service.block_listeners.append(finality._on_block_chain_thread)
    node.service.status_listeners.append(finality._on_status_chain_thread)
    return finality


def test_a_task_created_with_a_key_sealed_before_an_election_reaches_the_newcomer_at_once(tmp_path):
    """A creator that read the set before an election seals to the old set; a holder's node seals to the
    newcomer when the task's block arrives, not an era later."""
    config = short_era_config()
    clock = FakeClock(start_ms=0)
    alice = Service(tmp_path / "a", config, clock, ALICE)
    holder = finality_of(alice, ALICE, clock)  # Alice's node: it submits the reseal by itself
    step = Author(alice, config, clock).step

    try:
        ciphertext, sealed = sealed_held_out((alice,))  # sealed to Alice: the set the creator read
        stake = config.parameters.min_validator_stake
        step([(EVE, validators.bond(stake))])
        step([(EVE, validators.validate())])
        step()
        election = step()                                                            # block 4: Eve elected
        assert EVE.public in [v.account for v in validators.Validators.get(Overlay(alice.store.state_view(election.hash)))]
        created = step([(ALICE, training.create_task(held_out_task(ciphertext, sealed, rounds=2)))])  # block 5
        assert created.header.number == 5
        nxt = step()                                                                 # block 6
        [resealed] = held_out_keys.Resealed.get(Overlay(alice.store.state_view(nxt.hash)), (0, EVE.public))
        assert resealed.sealer == ALICE.public and resealed.at == 6  # not at the next era change (block 8)
        step()
        assert not any(x.signed and x.call.name == "held_out_keys.reseal_held_out_key"
                       for x in alice.service.pool.ready())  # sealed once, nothing left to submit
    finally:
        holder._loop.close()
        alice.service._close()


def test_a_reseal_lost_at_the_era_change_is_submitted_again_within_the_retry_period(tmp_path):
    era = 20
    assert era < 2 * RESEAL_RETRY_BLOCKS < 2 * era  # the retry comes after the election, before the next era
    config = short_era_config(era)
    clock = FakeClock(start_ms=0)
    alice = Service(tmp_path / "a", config, clock, ALICE)
    holder = finality_of(alice, ALICE, clock)
    step = Author(alice, config, clock).step

    def pooled_reseals():
        return [x.hash for x in alice.service.pool.ready() if x.signed and x.call.name == RESEAL]

    try:
        ciphertext, sealed = sealed_held_out((alice,))
        step([(EVE, validators.bond(config.parameters.min_validator_stake))])
        step([(ALICE, training.create_task(held_out_task(ciphertext, sealed, rounds=20)))])  # block 2: active to the end
        step([(EVE, validators.validate())])
        while alice.store.best_header().number < era:                               # Eve elected at `era`
            step()
        lost = pooled_reseals()
        assert len(lost) == 1  # submitted at the era change...
        alice.service.pool.remove_invalid(lost)  # ...and lost (evicted, or dropped with a re-org)
        retry = 2 * RESEAL_RETRY_BLOCKS  # the first multiple after the era change
        while alice.store.best_header().number < retry:
            assert not held_out_keys.Resealed.get(Overlay(alice.store.state_view(step().hash)), (0, EVE.public))
        retried = step()                                                             # the block after the retry
        [resealed] = held_out_keys.Resealed.get(Overlay(alice.store.state_view(retried.hash)), (0, EVE.public))
        assert resealed.at == retry + 1  # not at the next era change (2 * era)
    finally:
        holder._loop.close()
        alice.service._close()


def test_a_round_reported_before_the_newcomers_key_is_checked_again_when_the_key_arrives(tmp_path):
    config = short_era_config()
    clock = FakeClock(start_ms=0)
    alice, eve = Service(tmp_path / "a", config, clock, ALICE), Service(tmp_path / "e", config, clock, EVE)
    finality = finality_of(eve, EVE, clock)
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
