"""A validator far behind its peers catches up before it authors (node/network/sync.py: is_major_syncing).

Seen in the late-node cluster test under load: Dave, started 40 blocks behind, authored its own blocks on
its stale head every time its slot came while its sync rounds were still fetching, and never caught up
within the test's bound. The rule is Substrate's: no authoring while the peers' best is more than
MAJOR_SYNC_BLOCKS ahead; the median peer counts, so one peer claiming a far higher best cannot silence
an author.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from node.authorship import AuthorshipService
from node.chain_service import ChainService
from node.chain_setup import ChainPaths, dev_spec, load_chain_spec
from node.clock import FakeClock
from node.network.sync import MAJOR_SYNC_BLOCKS, BlockSync
from runtime.genesis import parse_genesis
from tests.helpers.chain import DEV_KEYS


def sync_with_peers(*bests: int) -> BlockSync:
    peers = [SimpleNamespace(status=SimpleNamespace(best_number=best)) for best in bests]
    return BlockSync(SimpleNamespace(book=SimpleNamespace(ready_peers=lambda: peers)))


def test_major_syncing_is_the_median_peer_more_than_the_margin_ahead():
    assert not sync_with_peers().is_major_syncing(0)  # no peers: a lone validator authors
    assert not sync_with_peers(10 + MAJOR_SYNC_BLOCKS, 12, 9).is_major_syncing(10)  # following: a block or two
    assert sync_with_peers(40, 41, 42).is_major_syncing(11)
    assert sync_with_peers(11 + MAJOR_SYNC_BLOCKS + 1, 60, 3).is_major_syncing(11)  # the median is 17 > 16
    assert not sync_with_peers(10**9, 12, 11).is_major_syncing(11)  # one liar is not the median
    assert not sync_with_peers(10**9, 11).is_major_syncing(11)  # of two, the lower counts


def run_slot(tmp_path, major_syncing) -> tuple[ChainService, AuthorshipService, int]:
    """Alice's slot 4 on a fresh dev chain; returns the chain, the author and the best number after."""
    config = parse_genesis(dev_spec(load_chain_spec(None, dev=True).spec))
    chain = ChainService(config, ChainPaths(tmp_path / "db", config.chain_id),
                         clock=FakeClock(start_ms=4 * config.slot_duration_ms + 1))

    async def main():
        await chain.start()
        try:
            author = AuthorshipService(chain, DEV_KEYS["Alice"], chain.clock, major_syncing=major_syncing)
            await author._maybe_author(4, chain.clock.now_ms())
            return author, chain.store.best_header().number
        finally:
            await chain.stop()
    author, best = asyncio.run(main())
    return chain, author, best


def test_a_validator_far_behind_leaves_its_slot_empty_and_authors_once_caught_up(tmp_path):
    asked: list[int] = []

    def far_behind(best: int) -> bool:
        asked.append(best)
        return True
    _, author, best = run_slot(tmp_path / "behind", far_behind)
    assert asked == [0] and best == 0 and author.authored == 0 and author.skipped_syncing == 1

    _, author, best = run_slot(tmp_path / "caught_up", lambda best: False)
    assert best == 1 and author.authored == 1 and author.skipped_syncing == 0
