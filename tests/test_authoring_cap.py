"""An authored block stays small enough for peers to import within its slot: a count cap and a time cap.

Under a backlog the author takes at most AuthoringCap.max_transactions from the pool, and adds
transactions for at most build_share of the slot from when it starts building; what is left waits in
the pool for the next blocks and nothing is lost."""

from __future__ import annotations

import asyncio

import pytest

from node.authoring_cap import AuthoringCap
from node.chain_service import ChainService
from node.chain_setup import ChainPaths, load_chain_spec
from node.clock import FakeClock
from runtime.executive import sign_extrinsic
from runtime.pallets import balances
from tests.helpers.chain import DEV_KEYS

ALICE, BOB = DEV_KEYS["Alice"], DEV_KEYS["Bob"]
TRANSFERS = 30


class TickingClock(FakeClock):
    """Every reading of the time moves it on by `tick_ms`: building is slow, as on a saturated machine."""

    def __init__(self, tick_ms: int) -> None:
        super().__init__(start_ms=0)
        self.tick_ms = tick_ms

    def now_ms(self) -> int:
        self.time_ms += self.tick_ms
        return self.time_ms


def signed_count(block) -> int:
    return sum(1 for x in block.extrinsics if x.signed is not None)


def author_until_empty(tmp_path, cap: AuthoringCap, clock) -> list[int]:
    """Fill the pool with TRANSFERS transfers, then author blocks (each at a generous slot deadline) until
    the pool is empty; the signed transactions in each block."""
    config = load_chain_spec(None, dev=True)
    chain = ChainService(config, ChainPaths(tmp_path / "db", config.chain_id), clock=clock, authoring_cap=cap)
    sizes = []

    async def main():
        await chain.start()
        try:
            genesis = chain.store.genesis_hash
            transfers = [sign_extrinsic(BOB, balances.transfer(ALICE.public, 10**11), nonce=n, genesis_hash=genesis)
                         for n in range(TRANSFERS)]
            assert all(isinstance(r, tuple) for r in await chain.submit_many(transfers))
            slot = clock.now_ms() // config.slot_duration_ms + 1
            while chain.pool.ready_count and len(sizes) < TRANSFERS:
                clock.time_ms = max(clock.time_ms, slot * config.slot_duration_ms)
                authored = await chain.author(slot, ALICE, deadline_ms=clock.now_ms() + 10**9)
                sizes.append(signed_count(authored.block))
                slot += 1
        finally:
            await chain.stop()

    asyncio.run(main())
    return sizes


def test_a_backlog_is_spread_over_blocks_of_at_most_max_transactions(tmp_path):
    sizes = author_until_empty(tmp_path, AuthoringCap(max_transactions=12), FakeClock(start_ms=0))
    assert sizes == [12, 12, 6]  # every transfer included, none lost, no block over the cap


def test_without_a_cap_one_block_takes_the_whole_backlog(tmp_path):
    assert author_until_empty(tmp_path, AuthoringCap(max_transactions=10_000), FakeClock(start_ms=0)) == [TRANSFERS]


def test_building_stops_after_its_share_of_the_slot_even_with_a_late_slot_deadline(tmp_path):
    # each reading of the clock costs 1% of the slot; building may take 10% of it from when it starts
    config = load_chain_spec(None, dev=True)
    clock = TickingClock(tick_ms=config.slot_duration_ms // 100)
    sizes = author_until_empty(tmp_path, AuthoringCap(max_transactions=10_000, build_share=0.1), clock)
    assert sum(sizes) == TRANSFERS and len(sizes) > 1
    assert max(sizes) <= 10


@pytest.mark.parametrize("fields", [{"max_transactions": -1}, {"build_share": 0}, {"build_share": 1.5}])
def test_a_nonsensical_cap_is_refused(fields):
    with pytest.raises(ValueError):
        AuthoringCap(**fields)
