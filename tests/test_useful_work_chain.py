"""Useful work through the node: the author measures due rounds into its block, every validator
re-measures on import, and a block whose report does not reproduce is disputed and never finalized."""

from __future__ import annotations

import dataclasses
import json

import pytest

from consensus.useful_work.rounds import RoundWork, reports_in
from runtime.hashing import blake2b_256
from runtime.pallets import training
from runtime.state import Overlay
from storage.chainstore import ChainStoreError
from tests.helpers.chain_nodes import ALICE, Node
from tests.helpers.forgeries import inflate_first_score
from tests.helpers.useful_work import MLP, base_model
from tests.helpers.useful_work_chain import TRAINERS, run_round


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
    blobs.put(blake2b_256(stray), stray, now_block=report_block.header.number)
    task = training.Tasks.get(Overlay(author.store.state_view(report_block.hash)), 0)
    kept = [task.model, task.config.initial_model, task.config.held_out, *updates]
    author.service.blob_grace_blocks = 5
    while author.store.best_header().number < 50:  # collection runs every 50 blocks
        author.author()
    assert blobs.get(blake2b_256(stray)) is None
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
