"""Peer upkeep that the trio side cannot finish in time never ends the network service.

Under load a validator's network stopped for good: its ping loop dropped a silent peer, the disconnect
on the starved trio thread took over 10 s, and the timeout ended the service (and the node).
"""

from __future__ import annotations

import time

import pytest
import trio

from node.chain_setup import load_chain_spec
from node.network import peering
from tests.helpers.network_node import InProcessNode, mute_peer, wait_for


@pytest.fixture
def node(tmp_path):
    running = InProcessNode(tmp_path / "node", load_chain_spec(None, dev=True), seed=b"P" * 32,
                            ping_interval_s=0.5, ping_timeout_s=0.5, max_failed_pings=2)
    yield running
    running.close()


def test_a_disconnect_that_times_out_drops_the_peer_here_and_the_network_keeps_running(node, monkeypatch):
    monkeypatch.setattr(peering, "TRIO_STEP_TIMEOUT_S", 0.5)

    async def stuck_disconnect(peer: str) -> None:  # as on a starved trio thread
        await trio.sleep(30)
    monkeypatch.setattr(node.network.host, "disconnect", stuck_disconnect)
    raw = mute_peer(node)  # never answers a ping: the ping loop disconnects it
    try:
        wait_for(lambda: raw.peer_id not in node.ready_peers(), 15, "the silent peer to be dropped")
        time.sleep(1.5)  # more ping rounds, after the disconnect timed out
        assert not node.future.done(), "the node stopped"
        assert all(not task.done() for task in node.network._tasks), "a network task ended"
        assert node.on_loop(node.network.unban("nobody")) is False  # the service still answers
    finally:
        raw.close()
