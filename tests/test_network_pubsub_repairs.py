"""py-libp2p's Pubsub as this node runs it (node/network/libp2p_repairs.py): large messages published at
once arrive intact, and an RPC that does not parse ends one stream, never the network thread.

Both broke a validator in the network bench once blocks (~230 KB) were gossiped whole: yamux locks per
64 KiB frame, so two large messages written at once interleaved; the peer's read loop then let
protobuf's DecodeError escape and the whole network thread ended.
"""

from __future__ import annotations

import asyncio
import os

import pytest
import trio
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11

from node.chain_setup import load_chain_spec
from node.network.service import ANNOUNCE
from tests.helpers.network_node import InProcessNode, RawPeer, mute_peer, wait_for

LARGE = 240_000  # bytes: about a block of 1,500 transfers (what a blocks topic would carry)


@pytest.fixture
def pair(tmp_path):
    config = load_chain_spec(None, dev=True)
    first = InProcessNode(tmp_path / "a", config, seed=b"A" * 32)
    second = InProcessNode(tmp_path / "b", config, seed=b"B" * 32, bootnodes=[first.address])
    yield first, second
    second.close()
    first.close()


def test_large_gossip_messages_published_at_once_all_arrive_intact(pair):
    sender, receiver = pair
    received: list[bytes] = []
    receiver.network._on_announcement = lambda origin, data: _append(received, data)
    wait_for(lambda: sender.ready_peers() and receiver.ready_peers(), 20, "the handshake")
    sent = [os.urandom(LARGE) for _ in range(8)]

    async def publish_all() -> None:
        await asyncio.gather(*(sender.network.publish(ANNOUNCE, data, paced=False) for data in sent))
    wait_for(lambda: receiver.network.host.pubsub.peer_topics.get(sender.network.topic(ANNOUNCE)), 20,
             "the receiver's subscription to reach the sender")
    sender.on_loop(publish_all(), timeout=60)
    wait_for(lambda: len(received) == len(sent), 30, "every message")
    assert sorted(received) == sorted(sent)
    # gossipsub also writes from other tasks than its queue's: recent messages re-sent to a peer that
    # (re)subscribes, while new ones are published
    more = [os.urandom(LARGE) for _ in range(8)]
    router, peer = sender.network.host.pubsub.router, receiver.network.host.pubsub.host.get_id()

    async def resend_while_publishing() -> None:
        async with trio.open_nursery() as nursery:
            for data in more:
                nursery.start_soon(sender.network.host.publish, sender.network.topic(ANNOUNCE), data)
                nursery.start_soon(router.send_recent_messages, peer, sender.network.topic(ANNOUNCE))
    sender.on_loop(sender.network._on_trio(resend_while_publishing, timeout=60), timeout=70)
    wait_for(lambda: len(received) == len(sent) + len(more), 30, "every further message")
    assert sorted(received) == sorted(sent + more)
    assert receiver.network.thread.error is None and sender.network.thread.error is None


async def _append(received: list, data: bytes) -> None:
    received.append(data)


def test_a_pubsub_rpc_that_does_not_parse_ends_its_stream_not_the_network(tmp_path):
    node = InProcessNode(tmp_path / "node", load_chain_spec(None, dev=True), seed=b"N" * 32)
    raw: RawPeer | None = None
    try:
        raw = mute_peer(node)
        junk = b"\xff" * 64
        raw.exchange(node.network.peer_id, PROTOCOL_ID_V11, bytes([len(junk)]) + junk, read=False)
        reports = node.network.metrics.peer_reports.labels("malformed")
        wait_for(lambda: reports._value.get() >= 1, 10, "the junk RPC to be reported")
        assert node.network.thread.error is None
        assert all(not task.done() for task in node.network._tasks)
        other = RawPeer(b"O" * 32)  # the node still accepts and serves peers
        try:
            other.connect(node.address)
            wait_for(lambda: other.connected_to(node.network.peer_id), 10, "a new peer to connect")
        finally:
            other.close()
    finally:
        if raw is not None:
            raw.close()
        node.close()
