"""The application ping on a saturated machine: a late pong does not drop a peer that is visibly alive.

A missed pong counts against a peer only when nothing else came from it since the ping was sent; a
frozen peer (nothing at all) is still dropped (the SIGSTOP case is tests/test_network_cli.py's slow test).
The peer here is a raw py-libp2p host that completes the handshake but never answers a ping in time.
"""

from __future__ import annotations

import threading
import time

import pytest
import trio
from libp2p.custom_types import TProtocol

from node.chain_setup import load_chain_spec
from node.network import wire
from tests.helpers.network_node import InProcessNode, mute_peer, wait_for


@pytest.fixture
def node(tmp_path):
    running = InProcessNode(tmp_path / "node", load_chain_spec(None, dev=True), seed=b"N" * 32,
                            ping_interval_s=0.5, ping_timeout_s=0.5, max_failed_pings=2)
    yield running
    running.close()


def test_a_peer_that_misses_pongs_but_keeps_sending_is_kept_and_dropped_once_silent(node):
    raw = mute_peer(node)
    stop = threading.Event()

    def chatter() -> None:  # the peer's other traffic: a status request every 0.2 s
        while not stop.is_set():
            try:
                raw.exchange(node.network.peer_id, wire.STATUS, raw.status_frame(node.network.local_status()))
            except (Exception, trio.TooSlowError):
                pass
            stop.wait(0.2)
    talker = threading.Thread(target=chatter, daemon=True)
    try:
        talker.start()
        deadline = time.monotonic() + 4  # eight ping rounds, every one unanswered
        while time.monotonic() < deadline:
            assert raw.peer_id in node.ready_peers(), "a peer that kept sending data was dropped for late pongs"
            time.sleep(0.1)
        stop.set()
        talker.join(15)
        wait_for(lambda: raw.peer_id not in node.ready_peers(), 15, "the silent peer to be dropped")
    finally:
        stop.set()
        raw.close()


def test_streams_closed_before_their_request_do_not_get_an_honest_peer_banned(node):
    """A starved requester's deadline can pass between opening a stream and writing to it: the stream
    closes empty. That is cut short (cheap), not malformed: five in a row once banned honest validators."""
    raw = mute_peer(node)
    try:
        async def open_and_close() -> None:
            from libp2p.peer.id import ID
            stream = await raw.host.new_stream(ID.from_base58(node.network.peer_id), [TProtocol(wire.BLOCKS)])
            await stream.close()
        for _ in range(5):
            raw.run(open_and_close)
        wait_for(lambda: node.network.book.peers[raw.peer_id].reputation < 0, 10, "the reports")
        time.sleep(0.5)
        assert not node.network.book.is_banned(raw.peer_id) and raw.peer_id in node.ready_peers()
    finally:
        raw.close()
