"""Transactions a re-org hands back to the pool are gossiped again, and a peer takes them again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from node.chain_service import ChainService
from node.chain_setup import ChainPaths, dev_spec, load_chain_spec
from node.clock import FakeClock
from node.network import transactions as gossip_module
from node.network import wire
from node.network.transactions import TransactionGossip
from runtime.executive import sign_extrinsic
from runtime.genesis import parse_genesis
from runtime.pallets import balances
from tests.helpers.chain import DEV_KEYS
from tests.helpers.chain_nodes import build_empty_block_on

ALICE, BOB = DEV_KEYS["Alice"], DEV_KEYS["Bob"]


def test_a_reorg_tells_its_listeners_which_transactions_came_back(tmp_path):
    spec = dev_spec(load_chain_spec(None, dev=True).spec)
    spec["validators"].append({"name": "Bob", "account": "//Bob", "stake": spec["validators"][0]["stake"]})
    config = parse_genesis(spec)
    chain = ChainService(config, ChainPaths(tmp_path / "db", config.chain_id), clock=FakeClock(start_ms=0))
    heard: list[list] = []

    async def main():
        await chain.start()
        try:
            chain.retracted_listeners.append(heard.append)
            transfer = sign_extrinsic(ALICE, balances.transfer(BOB.public, 10**11), nonce=0,
                                      genesis_hash=chain.store.genesis_hash)
            await chain.submit(transfer)
            await chain.author(2, ALICE, deadline_ms=10**15)  # includes the transfer
            assert heard == []
            parent = chain.store.genesis_hash
            for slot in (3, 5):  # Bob's longer fork without it
                block = await chain.call(build_empty_block_on, chain, parent, slot)
                await chain.import_block(block)
                parent = block.hash
            return transfer
        finally:
            await chain.stop()

    transfer = asyncio.run(main())
    assert heard == [[transfer]]


class Network:
    """What TransactionGossip needs of the network service: its config, peers, publish and the pool."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(tx_batch_interval_s=0.01)
        self.book = SimpleNamespace(ready_peers=lambda: ["a peer"])
        self.published: list[bytes] = []
        self.submitted: list = []

        async def submit_transactions(extrinsics):
            self.submitted.extend(extrinsics)
            return [(x.hash, "ready") for x in extrinsics]
        self.adapter = SimpleNamespace(submit_transactions=submit_transactions)

    async def publish(self, topic: str, data: bytes) -> None:
        self.published.extend(wire.decode(wire.TransactionBatch, data).extrinsics)


def test_handed_back_transactions_are_published_again_and_taken_again_after_a_while(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(gossip_module, "monotonic", lambda: now[0])
    transfer = sign_extrinsic(ALICE, balances.transfer(BOB.public, 10**11), nonce=0, genesis_hash=b"\x01" * 32)
    sender, receiver = Network(), Network()
    sending, receiving = TransactionGossip(sender), TransactionGossip(receiver)

    async def publish_pending(gossip: TransactionGossip) -> None:
        task = asyncio.create_task(gossip.run())
        await asyncio.sleep(0.05)
        task.cancel()

    async def main():
        sending.on_admitted(transfer)
        sending.on_admitted(transfer)  # admitted again (a pool status change): published once
        await publish_pending(sending)
        assert sender.published == [transfer.encoded]
        batch = wire.encode(wire.TransactionBatch((transfer.encoded,)))
        await receiving.on_gossip("sender", batch)
        await receiving.on_gossip("sender", batch)  # heard again at once: not submitted twice
        assert [x.hash for x in receiver.submitted] == [transfer.hash]
        sending.regossip([transfer])  # a re-org handed it back
        await publish_pending(sending)
        assert sender.published == [transfer.encoded, transfer.encoded]
        now[0] += gossip_module.KNOWN_FOR_S + 1
        await receiving.on_gossip("sender", batch)  # a while later, it is taken again
        assert [x.hash for x in receiver.submitted] == [transfer.hash, transfer.hash]

    asyncio.run(main())
