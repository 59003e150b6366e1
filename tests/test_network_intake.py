"""A peer's transaction batch waits for the pool on its own task, never on the network's event loop.

A batch waits for the chain thread (behind a block import or an authoring); a block announcement that
arrived meanwhile waited with it, reached the next slot's author late, and the cluster forked at equal
height under load (scripts/bench/network.py).
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from node.chain_setup import load_chain_spec
from node.network import wire
from node.network.transactions import TRANSACTIONS
from runtime.executive import sign_extrinsic
from runtime.pallets import balances
from tests.helpers.chain import DEV_KEYS
from tests.helpers.network_node import InProcessNode, wait_for


@pytest.fixture
def node(tmp_path):
    running = InProcessNode(tmp_path / "node", load_chain_spec(None, dev=True), seed=b"I" * 32)
    yield running
    running.close()


def test_a_transaction_batch_waiting_for_a_busy_chain_thread_does_not_hold_the_gossip_events(node):
    network = node.network
    transfer = sign_extrinsic(DEV_KEYS["Alice"], balances.transfer(DEV_KEYS["Bob"].public, 10**11), nonce=0,
                              genesis_hash=node.chain.store.genesis_hash)
    batch = wire.encode(wire.TransactionBatch((transfer.encoded,)))
    release = threading.Event()
    busy = node.thread.submit(node.chain.call(release.wait, 30))  # the chain thread importing, say
    try:
        async def gossip_both() -> None:
            await network._on_gossip(network.topic(TRANSACTIONS), "a peer", batch)
            await network._on_gossip(network.topic(TRANSACTIONS), "a peer", batch)
        # both return at once, though the pool cannot take the batch yet (before: the first waited)
        node.on_loop(asyncio.wait_for(gossip_both(), 2))
        assert transfer.hash not in node.chain.pool
    finally:
        release.set()
    busy.result(10)
    wait_for(lambda: transfer.hash in node.chain.pool, 10, "the batch to reach the pool")
