"""Finality that settles on a block off this node's best chain moves the head there (fork choice's first
rule: the best chain contains the finalized block). Seen in the double-vote fault scenario: precommits of a
supermajority for a #1 that the node had left for a longer fork were refused ("not canonical") in every
round after, and finality stalled for good."""

from __future__ import annotations

import pytest

from consensus.finality.justification import Justification
from consensus.finality.store_environment import StoreEnvironment
from storage.block_status import DISPUTED, VerificationStatus
from storage.chainstore import ChainStoreError
from tests.helpers.chain import TestChain


def test_finalizing_a_block_off_the_best_chain_moves_the_head_onto_it(tmp_path):
    chain = TestChain(tmp_path / "db", finalize=False)
    try:
        store = chain.chain
        genesis = store.best_hash
        longer = [chain.author_block().block for _ in range(3)]
        fork = [chain.author_block(parent=genesis).block]
        fork.append(chain.author_block(parent=fork[0].hash).block)
        assert store.best_hash == longer[-1].hash
        moves = []
        chain.importer.head_listeners.append(moves.append)
        env = StoreEnvironment(store, now_ms=lambda: 0, block_status=lambda h: "verified",
                               submit_evidence=lambda call: None, route_through=chain.importer.route_through)
        env.finalize_block(fork[0].hash, 1, Justification(0, 1, fork[0].hash, 1, (), ()))
        assert store.finalized_header().hash == fork[0].hash
        assert store.best_hash == fork[-1].hash and store.hash_at(1) == fork[0].hash
        assert len(moves) == 1  # the re-org reaches the head listeners (the pool, the network)
        # a fork with a block this node did not verify: the head stays, and the store refuses
        disputed = chain.author_block(parent=store.hash_at(1)).block
        store.write_status(disputed.hash, VerificationStatus(DISPUTED, ("made-up report",)))
        best, moved = store.best_hash, len(moves)
        with pytest.raises(ChainStoreError, match="disputed"):
            env.finalize_block(disputed.hash, 2, Justification(0, 2, disputed.hash, 2, (), ()))
        assert store.best_hash == best and len(moves) == moved
        # without the route the store refuses: it finalizes only the best chain
        [chain.author_block() for _ in range(2)]
        side = chain.author_block(parent=fork[-1].hash).block
        bare = StoreEnvironment(store, now_ms=lambda: 0, block_status=lambda h: "verified",
                                submit_evidence=lambda call: None)
        with pytest.raises(ChainStoreError, match="not canonical"):
            bare.finalize_block(side.hash, 3, Justification(0, 2, side.hash, 3, (), ()))
    finally:
        chain.close()
