"""Forks that finality excluded are pruned: their blocks, states and statuses go; the canonical chain and
forks above finality stay."""

from __future__ import annotations

import pytest

from storage import schema
from storage.fork_pruning import prune_excluded_forks
from tests.helpers.chain import DEV_KEYS, TestChain

BOB, CHARLIE = DEV_KEYS["Bob"], DEV_KEYS["Charlie"]


@pytest.fixture
def chain(tmp_path):
    test_chain = TestChain(tmp_path / "db", finalize=False)
    yield test_chain
    test_chain.close()


def test_a_fork_below_finality_is_pruned_and_one_above_is_kept(chain):
    store = chain.chain
    canonical = [chain.author_block().block for _ in range(4)]  # #1..#4
    # a fork off #1 (two blocks, with a transfer so its states differ) and one off #3
    low = chain.author_block([chain.transfer(BOB, CHARLIE.public, 10**12)], parent=canonical[0].hash).block
    low_child = chain.author_block(parent=low.hash).block
    high = chain.author_block([chain.transfer(BOB, CHARLIE.public, 10**12)], parent=canonical[2].hash).block
    assert store.best_hash == canonical[-1].hash
    low_version = store.stored_state(low.hash).version
    assert any(True for _ in store.db.keys_with_prefix(schema.trie_version_prefix(low_version)))
    store.set_finalized(canonical[2].hash)  # #3: the fork off #1 can never be canonical; the one off #3 can
    assert prune_excluded_forks(store) == 2
    for gone in (low, low_child):
        assert store.header(gone.hash) is None and store.verification_status(gone.hash) is None
        assert store.stored_state(gone.hash) is None
    assert not any(True for _ in store.db.keys_with_prefix(schema.trie_version_prefix(low_version)))
    assert set(store.leaves()) == {canonical[-1].hash, high.hash}
    assert store.header(high.hash) is not None
    # the canonical chain's states are whole: every canonical block's state still reads
    for block in canonical:
        assert chain.account(BOB.public, block.hash) is not None
    assert prune_excluded_forks(store) == 0
