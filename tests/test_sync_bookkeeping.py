"""A run of blocks (sync) through ChainService.import_run_now: the bookkeeping that need not follow every
block waits for the run's end, progress is logged once a second, and the collector's heap is frozen
between runs; the indexes end exactly where importing block by block leaves them."""

from __future__ import annotations

import gc

import pytest
from structlog.testing import capture_logs

from consensus.signatures import SignatureVerifier
from runtime import crypto
from runtime.pallets import balances

BOB = crypto.dev_keypair("Bob")
CHARLIE = crypto.dev_keypair("Charlie")


@pytest.fixture(scope="module")
def verifier():
    with SignatureVerifier() as running:
        yield running


def authored_blocks(author, count: int) -> list:
    """`count` blocks from the author, each with transfers (new accounts: the state indexes move)."""
    blocks = []
    for number in range(count):
        author.send(BOB, balances.transfer(crypto.Keypair.from_seed(bytes([number + 1]) * 32).public, 10**12))
        author.send(CHARLIE, balances.transfer(BOB.public, 10**9 + number))
        blocks.append(author.author())
    return blocks


def test_a_run_moves_the_state_indexes_once_at_its_end_and_they_match_block_by_block(nodes, verifier):
    author, follower = nodes
    blocks = authored_blocks(author, 6)
    indexer = follower.service.indexer
    moves = []
    follow_best = indexer.follow_best
    indexer.follow_best = lambda: (moves.append(follower.store.best_hash), follow_best())[1]
    lagging = []
    for result in follower.service.import_run_now(blocks, verifier):
        result.raise_for_error()
        lagging.append(indexer.head != follower.store.best_hash)
    assert moves == [blocks[-1].hash]  # once, at the end (without the run: once per block)
    assert all(lagging)
    assert indexer.head == follower.store.best_hash == blocks[-1].hash
    assert indexer.history_number == blocks[-1].header.number  # the history is recorded for every block
    best = blocks[-1].hash
    assert indexer.keys_page(best, b"", None, 1000) == author.service.indexer.keys_page(best, b"", None, 1000)
    for who in (BOB.public, CHARLIE.public):
        assert indexer.account_history(who, None, 100) == author.service.indexer.account_history(who, None, 100)


def test_a_run_logs_its_progress_not_a_line_per_block(nodes, verifier):
    author, follower = nodes
    blocks = authored_blocks(author, 5)
    with capture_logs() as logs:
        for result in follower.service.import_run_now(blocks[:4], verifier):
            result.raise_for_error()
        follower.service.import_block_now(blocks[4]).raise_for_error()
    per_block = [entry for entry in logs if entry["event"] == "imported block"]
    progress = [entry for entry in logs if entry["event"] == "imported blocks"]
    assert [entry["number"] for entry in per_block] == [blocks[4].header.number]  # the block imported alone
    assert sum(entry["count"] for entry in progress) == 4
    assert progress[-1]["best"] == blocks[3].header.number


def test_a_run_stopped_early_still_ends_its_bookkeeping(nodes, verifier):
    author, follower = nodes
    blocks = authored_blocks(author, 4)
    results = follower.service.import_run_now(blocks, verifier)
    next(results).raise_for_error()
    results.close()  # the consumer stops (a failure further on, say)
    assert follower.service.indexer.head == follower.store.best_hash == blocks[0].hash
    assert follower.service._run is None


def test_the_heap_is_frozen_between_the_runs_of_a_sync_and_thawed_once_following(nodes, verifier):
    author, follower = nodes
    blocks = authored_blocks(author, 3)
    gc.unfreeze()
    try:
        for result in follower.service.import_run_now(blocks[:2], verifier):
            result.raise_for_error()
        assert gc.get_freeze_count() > 0
        follower.service.import_block_now(blocks[2]).raise_for_error()  # one block alone: following
        assert gc.get_freeze_count() == 0
        for result in follower.service.import_run_now(authored_blocks(author, 2), verifier):
            result.raise_for_error()
        assert gc.get_freeze_count() > 0
        follower.service._close()
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
