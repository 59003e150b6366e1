"""FedAvgM through the node: a task with server momentum closes two rounds; in the second the momentum
(the first round's step) comes from the chain's model history, and another validator reproduces it."""

from __future__ import annotations

from consensus.useful_work import encode_tensors
from consensus.useful_work.rounds import RoundWork, reports_in
from runtime import api as runtime_api
from runtime.hashing import blake2b_256
from runtime.pallets import balances, training
from runtime.state import Overlay
from tests.helpers.chain_nodes import ALICE, author_and_import
from tests.helpers.useful_work import MLP, base_model, trained_deltas
from tests.helpers.useful_work_chain import TRAINERS, held_out_task, publish, sealed_held_out


def test_a_momentum_task_reports_two_rounds_that_a_validator_reproduces(nodes):
    author, follower = nodes
    ciphertext, sealed = sealed_held_out((author, follower))
    config = held_out_task(ciphertext, sealed, rounds=2, max_updates=8, server_lr_ppm=1_000_000,
                           server_momentum_ppm=500_000)

    def step(transactions=()):
        return author_and_import(author, follower, transactions)

    def play_round(round_number: int, scale: float):
        updates = [encode_tensors({n: t * scale for n, t in delta.items()}) for delta in trained_deltas(MLP)]
        publish((author, follower), *updates, now_block=2)
        salt = bytes([round_number + 1]) * 32
        task = runtime_api.task(Overlay(author.store.state_view(author.store.best_hash)), 0)
        commit_end = training.round_windows(task)[0]
        step([(t, training.commit_update(0, round_number, training.update_commitment(blake2b_256(u), t.public, salt)))
              for t, u in zip(TRAINERS, updates)])
        while author.store.best_header().number + 1 < commit_end:
            step()
        step([(t, training.reveal_update(0, round_number, blake2b_256(u), salt, 288, b"\x00" * 32))
              for t, u in zip(TRAINERS, updates)])
        for _ in range(10):  # until the round's report is in a block (its seed must be known first)
            block = step()
            if reports_in(block):
                return block
        raise AssertionError(f"round {round_number} was never reported")

    step([(ALICE, balances.transfer(t.public, 10**16)) for t in TRAINERS])
    step([(ALICE, training.create_task(config))])  # round 0: commit until block 4, reveal until 6
    first = play_round(0, 1.0)
    state = Overlay(author.store.state_view(first.hash))
    assert training.Rounds.get(state, (0, 0)).adopted
    assert runtime_api.previous_model(state, 0) == base_model(MLP).model_hash  # the step just taken
    second = play_round(1, 0.5)
    (report,) = reports_in(second)
    assert report.round == 1
    # the follower re-measured both rounds on import (with the momentum) and found nothing wrong
    assert follower.store.verification_status(first.hash).state == "verified"
    assert follower.store.verification_status(second.hash).state == "verified"
    # a validator with a cold cache reproduces the second round, momentum included
    fresh = RoundWork(follower.service.blobs, ALICE)
    parent = follower.store.header(second.header.parent_hash)
    parent_state = Overlay(follower.store.state_view(parent.hash))
    task = runtime_api.task(parent_state, 0)
    inputs = fresh.inputs(parent_state, 0, task, bytes(report.subset_seed))
    assert inputs.previous is not None and inputs.previous.model_hash == base_model(MLP).model_hash
    verdict = fresh.verify_block(parent_state, parent, second)
    assert verdict.ok and verdict.checked == 1, verdict
