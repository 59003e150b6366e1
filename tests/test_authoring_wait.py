"""An author waits, for a bounded part of its slot, for an earlier slot's block already on its way.

Under load the previous slot's block was often announced but still being fetched or imported when the
next slot began: its author built beside it, an equal-height fork (node/authoring_wait.py).
"""

from __future__ import annotations

import asyncio
import time

from node.authoring_wait import BlocksInFlight
from node.authorship import AuthorshipService
from node.chain_service import ChainService
from node.chain_setup import ChainPaths, dev_spec, load_chain_spec
from node.clock import FakeClock
from runtime.genesis import parse_genesis
from tests.helpers.chain import DEV_KEYS
from tests.helpers.chain_nodes import build_empty_block_on

ALICE = DEV_KEYS["Alice"]
IMPORT_DELAY_S = 0.2  # the earlier block is still on its way this long after Alice's slot began


def two_validator_chain(tmp_path) -> ChainService:
    """Alice authors the even slots, Bob the odd ones; the clock stands in Alice's slot 4."""
    spec = dev_spec(load_chain_spec(None, dev=True).spec)
    spec["validators"].append({"name": "Bob", "account": "//Bob", "stake": spec["validators"][0]["stake"]})
    config = parse_genesis(spec)
    return ChainService(config, ChainPaths(tmp_path / "db", config.chain_id),
                        clock=FakeClock(start_ms=4 * config.slot_duration_ms + 1))


def author_slot_4_while_bobs_block_arrives(chain: ChainService, *, announce: bool):
    """Bob's block of slot 3 (on genesis) reaches Alice IMPORT_DELAY_S into her slot 4: it is announced
    at once (when `announce`), imported later. Returns (Bob's block, the block Alice authored)."""
    async def main():
        await chain.start()
        try:
            bobs = await chain.call(build_empty_block_on, chain, chain.store.genesis_hash, 3)
            if announce:
                chain.in_flight.announced(bobs.header)

            async def arrive() -> None:
                await asyncio.sleep(IMPORT_DELAY_S)
                await chain.import_block(bobs)
                chain.in_flight.settled(bobs.hash)
            arriving = asyncio.create_task(arrive())
            author = AuthorshipService(chain, ALICE, chain.clock)
            await author._maybe_author(4, chain.clock.now_ms())
            await arriving
            return bobs, chain.store.block(chain.store.best_hash)
        finally:
            await chain.stop()
    return asyncio.run(main())


def test_an_author_waits_for_an_announced_earlier_block_and_builds_on_it(tmp_path):
    chain = two_validator_chain(tmp_path)
    bobs, best = author_slot_4_while_bobs_block_arrives(chain, announce=True)
    assert best.header.number == 2 and best.header.parent_hash == bobs.hash  # no fork at height 1
    assert best.header.digest.slot == 4
    assert chain.in_flight.waits == 1


def test_without_the_announcement_the_author_forks_beside_the_late_block(tmp_path):
    """The case the wait removes: the same late block, not announced, and Alice builds on genesis."""
    chain = two_validator_chain(tmp_path)
    bobs, best = author_slot_4_while_bobs_block_arrives(chain, announce=False)
    assert best.header.number == 1  # two blocks at height 1: Alice's and Bob's
    assert chain.in_flight.waits == 0


def test_the_wait_is_bounded_and_ignores_blocks_of_this_slot_or_at_the_best_height():
    async def main():
        in_flight = BlocksInFlight()
        header = lambda number, slot: type("H", (), {"hash": bytes([number, slot]) * 16, "number": number,  # noqa: E731
                                                        "digest": type("D", (), {"slot": slot})()})()
        in_flight.announced(header(5, 9))   # of this slot: not an earlier one
        in_flight.announced(header(4, 8))   # at the best height: building on the best does not fork beside it
        assert await in_flight.wait_for_earlier(9, lambda: 4, 500) < 50
        in_flight.announced(header(5, 8))   # never settles: the wait ends at its bound
        started = time.monotonic()
        waited = await in_flight.wait_for_earlier(9, lambda: 4, 150)
        assert 140 <= waited and time.monotonic() - started < 0.5
    asyncio.run(main())


def test_a_followed_block_whose_parent_is_still_importing_waits_for_it_instead_of_starting_a_sync(tmp_path):
    """Blocks can come faster than a loaded node imports them: the child of a block still in flight
    waits for it (and counts as in flight itself), then imports; no sync round is woken for it."""
    from node.chain_setup import load_chain_spec as spec_of
    from tests.helpers.network_node import InProcessNode

    config = spec_of(None, dev=True)
    slot_ms = config.slot_duration_ms
    clock = FakeClock(start_ms=(int(time.time() * 1000) // slot_ms - 10) * slot_ms)
    source = ChainService(config, ChainPaths(tmp_path / "source", config.chain_id), clock=clock)

    async def two_blocks():
        await source.start()
        try:
            first_slot = clock.now_ms() // slot_ms + 1
            first = (await source.author(first_slot, ALICE, deadline_ms=10**15)).block
            second = (await source.author(first_slot + 1, ALICE, deadline_ms=10**15)).block
            return first, second
        finally:
            await source.stop()
    first, second = asyncio.run(two_blocks())
    node = InProcessNode(tmp_path / "node", config, seed=b"W" * 32)
    try:
        sync, in_flight = node.network.sync, node.chain.in_flight

        async def follow_the_child_first():
            in_flight.announced(first.header)
            sync._wake.clear()
            following = asyncio.create_task(sync._follow("a peer", second.header, second))
            await asyncio.sleep(IMPORT_DELAY_S)
            assert second.hash in in_flight and not following.done()
            await node.network.adapter.import_block(first)
            in_flight.settled(first.hash)
            await asyncio.wait_for(following, 10)
            return sync._wake.is_set()
        woke_sync = node.on_loop(follow_the_child_first())
        assert node.best() == 2 and node.chain.store.best_hash == second.hash
        assert not woke_sync and second.hash not in in_flight
    finally:
        node.close()


def test_an_author_behind_a_longer_chain_still_importing_skips_its_slot(tmp_path):
    """Blocks #1 and #2 of earlier slots are still importing when Alice's slot begins (best #0): a block of
    hers at #1 could only be orphaned, so after the bounded wait she leaves the slot empty."""
    chain = two_validator_chain(tmp_path)

    async def main():
        await chain.start()
        try:
            bobs = await chain.call(build_empty_block_on, chain, chain.store.genesis_hash, 1)
            child = type("Header", (), {"hash": b"c" * 32, "number": 2, "digest": type("D", (), {"slot": 3})()})()
            chain.in_flight.announced(bobs.header)
            chain.in_flight.announced(child)  # never settles here: the wait ends at its bound
            author = AuthorshipService(chain, ALICE, chain.clock)
            await author._maybe_author(4, chain.clock.now_ms())
            return author.skipped_behind, chain.store.best_header().number
        finally:
            await chain.stop()
    skipped, best = asyncio.run(main())
    assert skipped == 1 and best == 0
