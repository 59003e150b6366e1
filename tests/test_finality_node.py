"""The finality gadget in a node: a lone validator finalizes its own blocks through the voter (no special
path), justifications are stored with the block, and finality never moves backwards."""

from __future__ import annotations

import asyncio

import pytest

from consensus.finality.justification import decode_justification, verify_justification
from consensus.finality.store_environment import voter_set_of
from node.chain_service import ChainService
from node.chain_setup import ChainPaths, load_chain_spec
from node.clock import FakeClock
from node.finality_service import FinalityService
from runtime.state import Overlay
from storage.chainstore import ChainStoreError
from tests.helpers.chain import DEV_KEYS

ALICE = DEV_KEYS["Alice"]


def test_a_lone_validator_finalizes_through_the_gadget_and_stores_justifications(tmp_path):
    config = load_chain_spec(None, dev=True)
    clock = FakeClock()
    chain = ChainService(config, ChainPaths(tmp_path, config.chain_id), clock=clock)
    finality = FinalityService(chain, ALICE, clock)
    finalized_seen = []
    finality.finalized_listeners.append(lambda headers, j: finalized_seen.extend(h.number for h in headers))
    slot_ms = config.slot_duration_ms

    async def main():
        await chain.start()
        await finality.start()
        try:
            for _ in range(6):
                slot = clock.now_ms() // slot_ms + 1
                clock.time_ms = slot * slot_ms
                await chain.author(slot, ALICE, clock.now_ms() + slot_ms // 2)
                for _ in range(8):  # a slot's worth of voter timers
                    clock.time_ms += slot_ms // 8
                    await finality.step()
            store = chain.store
            return store.best_header(), store.finalized_header()
        finally:
            await finality.stop()

    best, finalized = asyncio.run(main())
    try:
        assert best.number == 6 and finalized.number >= 5
        assert finalized_seen == list(range(1, finalized.number + 1))  # every block, once, in order
        store = chain.store
        justification = decode_justification(store.justification(finalized.hash))
        voters = voter_set_of(Overlay(store.state_view(store.genesis_hash)))
        verify_justification(justification, store.genesis_hash, voters)
        assert justification.target == (finalized.hash, finalized.number)
        # finality never moves back
        with pytest.raises(ChainStoreError, match="cannot move back"):
            store.set_finalized(store.hash_at(1))
    finally:
        asyncio.run(chain.stop())
