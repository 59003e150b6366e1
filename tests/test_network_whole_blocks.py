"""An authored block small enough is pushed whole to each peer on a stream of its own: a peer imports it
with no request round trip, and it waits behind no gossip.

A header announcement costs the follower a blocks/1 request to the author before it can import, and the
announcement itself waits behind the transaction gossip on the pubsub streams: under load both made
blocks late at the next slot's author (equal-height forks).
"""

from __future__ import annotations

import pytest

from node.chain_setup import load_chain_spec
from node.network import wire
from runtime.types import encode_block
from tests.helpers.chain import DEV_KEYS
from tests.helpers.network_node import InProcessNode, RawPeer, mute_peer, wait_for


@pytest.fixture
def author_and_follower(tmp_path):
    config = load_chain_spec(None, dev=True)
    author = InProcessNode(tmp_path / "author", config, seed=b"A" * 32, author=DEV_KEYS["Alice"])
    follower = InProcessNode(tmp_path / "follower", config, seed=b"F" * 32, bootnodes=[author.address])
    yield author, follower
    follower.close()
    author.close()


def test_a_follower_imports_pushed_blocks_without_asking_for_them_and_without_gossip(author_and_follower):
    author, follower = author_and_follower
    asked: list[bytes] = []
    fetch_range = follower.network.sync.fetch_range

    async def counting_fetch(peer, first, count, *, start_hash=None):
        if start_hash is not None:  # the announcement path asks by hash; catching up asks by number
            asked.append(start_hash)
        return await fetch_range(peer, first, count, start_hash=start_hash)
    follower.network.sync.fetch_range = counting_fetch
    events = follower.network._urgent_events  # every announcement lost: the push alone must do
    put = events.put_threadsafe
    events.put_threadsafe = lambda event: None if event[0] == "gossip" else put(event)
    wait_for(lambda: follower.ready_peers(), 20, "the handshake")
    start = follower.best()
    wait_for(lambda: follower.best() >= start + 3, 30, "three more blocks at the follower")
    assert asked == []
    assert follower.chain.store.hash_at(start + 3) == author.chain.store.hash_at(start + 3)


def test_announcements_skip_the_line_of_other_gossip_events(author_and_follower):
    """Under load the events queue holds seconds of transaction batches: announcements have a queue of
    their own. Here every other gossip event is lost and no block is pushed, and the follower follows."""
    author, follower = author_and_follower
    author.network._push = lambda peer, data: _nothing()
    events = follower.network._events
    put = events.put_threadsafe
    events.put_threadsafe = lambda event: None if event[0] == "gossip" else put(event)
    wait_for(lambda: follower.ready_peers(), 20, "the handshake")
    start = follower.best()
    wait_for(lambda: follower.best() >= start + 3, 30, "three more blocks at the follower")


async def _nothing() -> None:
    return None


def test_a_pushed_block_that_does_not_decode_is_malformed_and_changes_nothing(tmp_path):
    node = InProcessNode(tmp_path / "node", load_chain_spec(None, dev=True), seed=b"N" * 32)
    raw: RawPeer | None = None
    try:
        raw = mute_peer(node)
        best = node.best()
        block = node.chain.store.block(node.chain.store.best_hash)
        junk = encode_block(block)[:-3]
        reports = node.network.metrics.peer_reports.labels("malformed")
        raw.exchange(node.network.peer_id, wire.BLOCK_PUSH, len(junk).to_bytes(4, "big") + junk)
        wait_for(lambda: reports._value.get() >= 1, 10, "the junk block to be reported")
        too_big = b"\0" * (wire.MAX_PUSHED_BLOCK + 1)
        raw.exchange(node.network.peer_id, wire.BLOCK_PUSH, len(too_big).to_bytes(4, "big") + too_big[:1000])
        oversized = node.network.metrics.peer_reports.labels("oversized")
        wait_for(lambda: oversized._value.get() >= 1, 10, "the oversized push to be reported")
        assert node.best() == best and node.network.thread.error is None
    finally:
        if raw is not None:
            raw.close()
        node.close()
