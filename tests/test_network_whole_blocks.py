"""An authored block small enough is gossiped whole: a peer imports it with no request round trip.

A header announcement costs the follower a blocks/1 request to the author before it can import; under
load that round trip made blocks late at the next slot's author (equal-height forks).
"""

from __future__ import annotations

import pytest

from node.chain_setup import load_chain_spec
from node.network import wire
from node.network.service import BLOCKS
from runtime.types import encode_block
from tests.helpers.chain import DEV_KEYS
from tests.helpers.network_node import InProcessNode, wait_for


@pytest.fixture
def author_and_follower(tmp_path):
    config = load_chain_spec(None, dev=True)
    author = InProcessNode(tmp_path / "author", config, seed=b"A" * 32, author=DEV_KEYS["Alice"])
    follower = InProcessNode(tmp_path / "follower", config, seed=b"F" * 32, bootnodes=[author.address])
    yield author, follower
    follower.close()
    author.close()


def test_a_follower_imports_gossiped_whole_blocks_without_asking_for_them(author_and_follower):
    author, follower = author_and_follower
    asked: list[bytes] = []
    fetch_range = follower.network.sync.fetch_range

    async def counting_fetch(peer, first, count, *, start_hash=None):
        if start_hash is not None:  # the announcement path asks by hash; catching up asks by number
            asked.append(start_hash)
        return await fetch_range(peer, first, count, start_hash=start_hash)
    follower.network.sync.fetch_range = counting_fetch
    wait_for(lambda: follower.ready_peers(), 20, "the handshake")
    start = follower.best()
    wait_for(lambda: follower.best() >= start + 3, 30, "three more blocks at the follower")
    assert asked == []
    assert follower.chain.store.hash_at(start + 3) == author.chain.store.hash_at(start + 3)


def test_a_gossiped_block_that_does_not_decode_is_malformed_and_changes_nothing(author_and_follower):
    author, follower = author_and_follower
    wait_for(lambda: follower.ready_peers(), 20, "the handshake")
    network, best = follower.network, follower.best()
    block = author.chain.store.block(author.chain.store.best_hash)
    junk = encode_block(block)[:-3]
    reports = network.metrics.peer_reports.labels("malformed")._value.get()
    follower.on_loop(network._on_gossip(network.topic(BLOCKS), author.network.peer_id, junk))
    assert network.metrics.peer_reports.labels("malformed")._value.get() == reports + 1
    assert follower.best() >= best and len(junk) < wire.MAX_WHOLE_BLOCK_GOSSIP


def test_blocks_skip_the_line_of_other_gossip_events(author_and_follower):
    """Under load the events queue holds seconds of transaction batches: blocks and announcements have a
    queue of their own. Here every other gossip event is lost, and the follower still follows."""
    author, follower = author_and_follower
    events = follower.network._events
    put = events.put_threadsafe
    events.put_threadsafe = lambda event: None if event[0] == "gossip" else put(event)
    wait_for(lambda: follower.ready_peers(), 20, "the handshake")
    start = follower.best()
    wait_for(lambda: follower.best() >= start + 3, 30, "three more blocks at the follower")
