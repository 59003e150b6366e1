"""Serving block ranges sends the stored bytes: no decode and re-encode of every block served (sync)."""

from __future__ import annotations

import asyncio

from node.chain_service import ChainService
from node.chain_setup import ChainPaths, load_chain_spec
from node.clock import FakeClock
from node.network.chain_adapter import ChainAdapter, stored_block_bytes
from runtime.executive import sign_extrinsic
from runtime.pallets import balances
from runtime.types import decode_block, encode_block
from tests.helpers.chain import DEV_KEYS

ALICE, BOB = DEV_KEYS["Alice"], DEV_KEYS["Bob"]


def test_served_blocks_are_the_stored_bytes_and_equal_the_encoding_of_each_block(tmp_path):
    config = load_chain_spec(None, dev=True)
    clock = FakeClock(start_ms=0)
    chain = ChainService(config, ChainPaths(tmp_path / "db", config.chain_id), clock=clock)
    adapter = ChainAdapter(chain)

    async def main():
        await chain.start()
        try:
            genesis = chain.store.genesis_hash
            nonce = 0
            for slot in range(1, 6):  # blocks of 0, 3, 6, 9, 12 transfers
                transfers = [sign_extrinsic(BOB, balances.transfer(ALICE.public, 10**11), nonce=n, genesis_hash=genesis)
                             for n in range(nonce, nonce + 3 * (slot - 1))]
                nonce += len(transfers)
                await chain.submit_many(transfers)
                clock.time_ms = slot * config.slot_duration_ms
                await chain.author(slot, ALICE, deadline_ms=clock.now_ms() + 10**9)
            served = await adapter.encoded_blocks(0, None, 10, 10**9)
            by_hash = await adapter.encoded_blocks(0, chain.store.hash_at(2), 10, 10**9)
            store = chain.store
            return served, by_hash, [encode_block(store.block(store.hash_at(n))) for n in range(6)], \
                stored_block_bytes(store, b"\x00" * 32)
        finally:
            await chain.stop()

    served, by_hash, expected, missing = asyncio.run(main())
    assert served == expected and by_hash == expected[2:] and missing is None
    assert [len(decode_block(b).extrinsics) for b in served[1:]] == [2 + 0, 2 + 3, 2 + 6, 2 + 9, 2 + 12]
