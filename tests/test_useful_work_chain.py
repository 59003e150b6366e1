"""Useful work through the node: the author measures due rounds into its block, every validator
re-measures on import, and a block whose report does not reproduce is disputed and never finalized."""

from __future__ import annotations

import dataclasses
import json

import pytest

from consensus.useful_work import encode_tensors
from consensus.useful_work.fixed_point import norm_to_fixed
from consensus.useful_work.rounds import RoundWork, reports_in
from consensus.useful_work.secrecy import encrypt_held_out
from runtime import crypto
from runtime.hashing import blake2b_256
from runtime.pallets import balances, training
from runtime.pallets.training import ModelSpec, SealedKey, Score, TaskConfig
from runtime.state import Overlay
from storage.chainstore import ChainStoreError
from tests.helpers.chain_nodes import ALICE, Node
from tests.helpers.useful_work import MLP, base_model, digits_split, trained_deltas

TRAINERS = [crypto.keypair_from_uri(f"//UsefulWork//{i}") for i in range(5)]


def _hash(data: bytes) -> bytes:
    return blake2b_256(data)


def run_round(author: Node, follower: Node, *, tamper=None) -> tuple:
    """A task whose held-out key is sealed to Alice, five trainers' real updates, up to the report block.

    Every block the author makes is imported by the follower. `tamper(report)` lets the author lie."""
    split = digits_split()
    ciphertext, sealed = encrypt_held_out(split.held_out_features, split.held_out_labels, [ALICE.public])
    for node in (author, follower):
        for data in (ciphertext, base_model(MLP).to_blob()):
            node.service.blobs.put(_hash(data), data, now_block=0)
    config = TaskConfig(ModelSpec("mlp", (64, 32, 10)), base_model(MLP).model_hash, training.METRIC_LOSS,
                        _hash(ciphertext), len(ciphertext), 200, (SealedKey(ALICE.public, sealed[ALICE.public]),),
                        10**15, 1, 2, 2, 1, 0, 1 << 20, norm_to_fixed(50.0), 10**12, 0, 0)
    blocks = []

    def step(transactions=()):
        sent: dict[bytes, int] = {}
        for keypair, call in transactions:
            author.send(keypair, call, sent.get(keypair.public, 0))
            sent[keypair.public] = sent.get(keypair.public, 0) + 1
        block = author.author()
        blocks.append(block)
        result = follower.service.import_block_now(block)
        assert result.is_best
        return block

    step([(ALICE, balances.transfer(t.public, 10**16)) for t in TRAINERS])
    step([(ALICE, training.create_task(config))])  # block 2: round 0 starts at 2, commit until 4, reveal until 6
    updates = [encode_tensors(delta) for delta in trained_deltas(MLP)]
    salt = b"\x05" * 32
    for node in (author, follower):
        for data in updates:
            node.service.blobs.put(_hash(data), data, now_block=2)
    step([(t, training.commit_update(0, 0, training.update_commitment(_hash(u), t.public, salt)))
          for t, u in zip(TRAINERS, updates)])                                     # block 3
    step()                                                                         # block 4: closes the commit window
    if tamper is not None:  # the author measures once the seed block is in, right after block 6
        real_measure = author.service.work.measure
        author.service.work.measure = lambda inputs: tamper(real_measure(inputs))
    step([(t, training.reveal_update(0, 0, _hash(u), salt, 288, b"\x00" * 32))
          for t, u in zip(TRAINERS, updates)])                                     # block 5
    step()                                                                         # block 6: the seed block
    report_block = step()                                                          # block 7: the report
    return report_block, blocks, [_hash(u) for u in updates]


def test_the_author_reports_the_round_and_a_validator_reproduces_it(nodes):
    author, follower = nodes
    report_block, _, updates = run_round(author, follower)
    (report,) = reports_in(report_block)
    assert sorted(s.update for s in report.scores) == sorted(updates)
    summary = training.Rounds.get(Overlay(author.store.state_view(report_block.hash)), (0, 0))
    assert summary is not None and summary.revealed == 5 and summary.adopted
    assert summary.model_score.loss_ppm < summary.base.loss_ppm
    # the follower re-measured the block on import and found nothing wrong
    assert follower.store.verification_status(report_block.hash).state == "verified"
    follower.store.set_finalized(report_block.hash)
    # both nodes hold the new global model's blob: trainers can download it from either
    new_model = training.Tasks.get(Overlay(follower.store.state_view(report_block.hash)), 0).model
    assert new_model == report.new_model
    assert author.service.blobs.get(new_model) is not None and follower.service.blobs.get(new_model) is not None
    # a validator with a cold cache reproduces it too, and says so
    fresh = RoundWork(follower.service.blobs, ALICE)
    parent = follower.store.header(report_block.header.parent_hash)
    verdict = fresh.verify_block(Overlay(follower.store.state_view(parent.hash)), parent, report_block)
    assert verdict.ok and verdict.checked == 1 and verdict.reasons == []


def inflate_first_score(report):
    first = report.scores[0]
    # published losses are multiples of LOSS_QUANTUM_PPM; three quanta are beyond the tolerance plus rounding
    lied = dataclasses.replace(first, without=Score(first.without.accuracy_ppm,
                                                    first.without.loss_ppm + 3 * training.LOSS_QUANTUM_PPM))
    return dataclasses.replace(report, scores=(lied,) + report.scores[1:])


def swap_aggregate(report):
    return dataclasses.replace(report, new_model=b"\x42" * 32)


@pytest.mark.parametrize("tamper,reason", [
    (inflate_first_score, "(the aggregate without it): reported loss"),
    (swap_aggregate, "aggregate: reported model hash 0x" + "42" * 32),
])
def test_a_falsified_report_is_disputed_with_its_reason_and_never_finalized(nodes, tamper, reason):
    author, follower = nodes
    report_block, blocks, _ = run_round(author, follower, tamper=tamper)
    status = follower.store.verification_status(report_block.hash)
    assert status.state == "disputed", "the follower should have disputed the block"
    assert any(reason in line for line in status.reasons), status.reasons
    record = json.loads(follower.store.dispute_evidence(report_block.hash))  # what a signed dispute hashes
    assert record["number"] == report_block.header.number and record["author"] == ALICE.public.hex()
    assert record["reasons"] == list(status.reasons)
    assert follower.store.best_hash == blocks[-2].hash  # re-organized away from the disputed block
    assert follower.service.metrics.disputed_blocks._value.get() == 1
    with pytest.raises(ChainStoreError, match="disputed"):
        follower.store.set_finalized(report_block.hash)
    follower.store.set_finalized(blocks[-2].hash)  # its ancestors are fine
    # a later block on top of it cannot be finalized either
    child = author.author()
    assert not follower.service.import_block_now(child).is_best  # never best on top of a disputed block
    with pytest.raises(ChainStoreError, match="disputed"):
        follower.store.set_finalized(child.hash)


def test_a_node_without_a_sealed_key_skips_the_round_and_says_why(nodes, tmp_path):
    author, follower = nodes
    report_block, _, _ = run_round(author, follower)
    outsider = RoundWork(follower.service.blobs, TRAINERS[0])
    parent = follower.store.header(report_block.header.parent_hash)
    verdict = outsider.verify_block(Overlay(follower.store.state_view(parent.hash)), parent, report_block)
    assert verdict.ok and verdict.checked == 0
    assert verdict.skipped == ["task 0 round 0: the held-out key is not sealed to this validator"]


def test_blobs_no_task_refers_to_are_collected_after_the_grace_period(nodes):
    author, follower = nodes
    report_block, _, updates = run_round(author, follower)
    blobs = author.service.blobs
    stray = b"an upload nobody revealed" * 10
    blobs.put(_hash(stray), stray, now_block=report_block.header.number)
    task = training.Tasks.get(Overlay(author.store.state_view(report_block.hash)), 0)
    kept = [task.model, task.config.initial_model, task.config.held_out, *updates]
    author.service.blob_grace_blocks = 5
    while author.store.best_header().number < 50:  # collection runs every 50 blocks
        author.author()
    assert blobs.get(_hash(stray)) is None
    assert all(blobs.get(blob_hash) is not None for blob_hash in kept)


def test_a_validator_missing_a_blob_the_block_reports_sound_does_not_dispute_it(nodes, tmp_path):
    author, follower = nodes
    report_block, _, updates = run_round(author, follower)
    lacking = Node(tmp_path / "c", author.clock, finalize=False)
    try:
        parent = follower.store.header(report_block.header.parent_hash)
        held_out = training.Tasks.get(Overlay(follower.store.state_view(parent.hash)), 0).config.held_out
        for blob_hash in (*updates[1:], held_out, base_model(MLP).model_hash):  # all but the first update
            lacking.service.blobs.put(blob_hash, follower.service.blobs.get(blob_hash), now_block=0)
        work = RoundWork(lacking.service.blobs, ALICE)
        verdict = work.verify_block(Overlay(follower.store.state_view(parent.hash)), parent, report_block)
        assert verdict.ok and verdict.checked == 0 and verdict.reasons == []
        assert len(verdict.skipped) == 1 and "not in the blob store yet" in verdict.skipped[0]
    finally:
        lacking.close()


def test_a_failure_while_checking_never_fails_the_import(nodes):
    author, follower = nodes

    def broken(*args):
        raise RuntimeError("a bug in the checker")
    follower.service.work.check_gathered = broken
    report_block, _, _ = run_round(author, follower)  # every block imported, the report block included
    assert follower.store.best_hash == report_block.hash
    assert follower.store.verification_status(report_block.hash).state == "pending"  # not checked: not verified


def test_a_report_the_runtime_refuses_is_left_out_and_the_block_still_authored(nodes):
    author, follower = nodes
    wrong_round = lambda report: dataclasses.replace(report, round=report.round + 1)  # noqa: E731
    report_block, _, _ = run_round(author, follower, tamper=wrong_round)
    assert reports_in(report_block) == []  # authored without the refused report
    assert follower.store.best_hash == report_block.hash
    task = training.Tasks.get(Overlay(follower.store.state_view(report_block.hash)), 0)
    assert task.round == 0  # the round stays open for the next block's report
    del author.service.work.measure  # honest again (the class method)
    for _ in range(2):  # a report measured before the fix is refused (and dropped) once more, then re-measured
        closing = author.author()
        follower.service.import_block_now(closing)
        if reports_in(closing):
            break
    assert len(reports_in(closing)) == 1
    assert training.Rounds.get(Overlay(follower.store.state_view(closing.hash)), (0, 0)) is not None


def test_an_author_lacking_a_revealed_update_waits_for_it_then_reports_it_missing(nodes, tmp_path):
    # a blob only late (a reveal a block before, a partition just healed) must not be reported missing at once:
    # the validators that hold it would measure it sound and dispute the block (tests/faults saw it)
    from consensus.useful_work.rounds import MISSING_UPDATE_GRACE_BLOCKS
    author, follower = nodes
    report_block, _, updates = run_round(author, follower)
    parent = follower.store.header(report_block.header.parent_hash)
    state = Overlay(follower.store.state_view(parent.hash))
    lacking = Node(tmp_path / "c", author.clock, finalize=False)
    try:
        held_out = training.Tasks.get(state, 0).config.held_out
        for blob_hash in (*updates[1:], held_out, base_model(MLP).model_hash):  # all but the first update
            lacking.service.blobs.put(blob_hash, follower.service.blobs.get(blob_hash), now_block=0)
        work = RoundWork(lacking.service.blobs, ALICE)
        assert work.due_inputs(state, parent) == []  # the first block the round is due in: it waits
        last_wait = dataclasses.replace(parent, number=parent.number + MISSING_UPDATE_GRACE_BLOCKS - 1)
        assert work.due_inputs(state, last_wait) == []
        after = dataclasses.replace(parent, number=parent.number + MISSING_UPDATE_GRACE_BLOCKS)
        [inputs] = work.due_inputs(state, after)  # the grace is over: reported, the absent update missing
        fates = {s.update: s.status for s in work.measure(inputs).scores}
        assert fates[updates[0]] == training.UPDATE_MISSING
        assert all(fates[u] == training.UPDATE_OK for u in updates[1:])
        # the blob arrives in time: the round is reported in the first block it is due in, the update sound
        lacking.service.blobs.put(updates[0], follower.service.blobs.get(updates[0]), now_block=0)
        [inputs] = work.due_inputs(state, parent)
        assert all(s.update_blob is not None for s in inputs.submissions)
    finally:
        lacking.close()
