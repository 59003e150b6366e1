"""The node's services in-process: slot authorship with a fake clock, import, the pool, re-orgs."""

from __future__ import annotations

import asyncio

import pytest

from node.authorship import AuthorshipService
from node.chain_service import ChainService
from node.chain_setup import ChainPaths, dev_spec, load_chain_spec
from node.clock import FakeClock
from node.service import LoopThread, Service, ServiceFailed, ServiceTree
from runtime import crypto
from runtime.executive import sign_extrinsic
from runtime.genesis import parse_genesis
from runtime.pallets import balances, system
from runtime.state import Overlay
from tests.helpers.chain import DEV_KEYS
from tests.helpers.chain_nodes import build_empty_block_on

ALICE, BOB = DEV_KEYS["Alice"], DEV_KEYS["Bob"]


def dev_config():
    return load_chain_spec(None, dev=True)


def account(chain: ChainService, who: bytes):
    store = chain.store
    return system.Account.get(Overlay(store.state_view(store.best_hash)), who)


async def run_services(services, stop_after) -> None:
    stop = asyncio.Event()
    tree = ServiceTree(services, shutdown_timeout=30)
    runner = asyncio.create_task(tree.run(stop))
    await asyncio.wait([asyncio.create_task(tree.started.wait()), runner], return_when=asyncio.FIRST_COMPLETED)
    await stop_after()
    stop.set()
    await runner


def test_a_dev_node_authors_hundreds_of_blocks_that_a_second_node_imports(tmp_path):
    config = dev_config()
    clock = FakeClock()
    author = ChainService(config, ChainPaths(tmp_path / "a", config.chain_id), clock=clock, finalize_own_blocks=True)
    follower = ChainService(config, ChainPaths(tmp_path / "b", config.chain_id), clock=clock)
    blocks = []
    author.block_listeners.append(lambda block, how: blocks.append(block))
    authorship = AuthorshipService(author, ALICE, clock, max_blocks=300)

    async def scenario():
        genesis_hash = author.store.genesis_hash
        transfers = [sign_extrinsic(BOB, balances.transfer(bytes([i + 1]) * 32, 10**11), nonce=i,
                                    genesis_hash=genesis_hash) for i in range(200)]
        results = await author.submit_many(list(reversed(transfers)))  # nonce gaps first: all wait in future
        assert all(isinstance(r, tuple) for r in results), results
        await authorship.run()
        for block in blocks:
            await follower.import_block(block)

    async def main():
        await run_services([author, follower], scenario)

    asyncio.run(main())
    assert authorship.authored == 300 and authorship.missed_slots == 0
    assert len(blocks) == 300
    included = sum(1 for b in blocks for x in b.extrinsics if x.signed is not None)  # inherents aside
    assert included == 200
    # reopen both databases: they agree, and every transfer arrived
    for path in ("a", "b"):
        chain = ChainService(config, ChainPaths(tmp_path / path, config.chain_id), clock=clock)
        asyncio.run(chain.start())
        try:
            assert chain.store.best_header().number == 300
            assert chain.store.best_header().state_root == blocks[-1].header.state_root
            assert account(chain, BOB.public).nonce == 200
        finally:
            asyncio.run(chain.stop())


def test_transactions_of_a_retracted_block_return_to_the_pool(tmp_path):
    spec = dev_spec(dev_config().spec)
    spec["validators"].append({"name": "Bob", "account": "//Bob", "stake": spec["validators"][0]["stake"]})
    config = parse_genesis(spec)
    clock = FakeClock(start_ms=0)
    chain = ChainService(config, ChainPaths(tmp_path / "db", config.chain_id), clock=clock)

    async def main():
        await chain.start()
        try:
            genesis = chain.store.genesis_hash
            transfer = sign_extrinsic(ALICE, balances.transfer(BOB.public, 10**11), nonce=0, genesis_hash=genesis)
            await chain.submit(transfer)
            # Alice (slot 2) includes the transfer; Bob builds a longer fork from genesis (slots 3, 5).
            mine = await chain.author(2, ALICE, deadline_ms=10**15)
            assert transfer in mine.block.extrinsics and chain.pool.ready_count == 0
            parent = genesis
            for slot in (3, 5):
                block = await chain.call(build_empty_block_on, chain, parent, slot)
                await chain.import_block(block)
                parent = block.hash
            assert chain.store.best_hash == parent
            assert chain.pool.get(transfer.hash) == transfer  # back in the pool after the re-org ...
            assert chain.pool.is_ready(transfer.hash) and chain.pool.ready_count == 1  # ... ready for the new best
        finally:
            await chain.stop()

    asyncio.run(main())


class Failing(Service):
    name = "failing"

    async def run(self) -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("boom")


class Recorder(Service):
    name = "recorder"

    def __init__(self) -> None:
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")


def test_a_failing_service_stops_the_others_and_surfaces_its_error():
    recorder = Recorder()

    async def main():
        await ServiceTree([recorder, Failing()]).run(asyncio.Event())

    with pytest.raises(ServiceFailed, match="boom"):
        asyncio.run(main())
    assert recorder.events == ["start", "stop"]


def test_a_loop_thread_runs_coroutines_for_another_loop():
    thread = LoopThread("side")
    thread.start()
    try:
        async def where() -> str:
            import threading

            return threading.current_thread().name

        assert asyncio.run(thread.call(where(), timeout=5)) == "side"
    finally:
        thread.stop()


def test_dev_keys_match_the_dev_chain():
    config = dev_config()
    assert [v for v, _ in config.validators] == [crypto.dev_keypair("Alice").public]


def test_the_metrics_endpoint_serves_prometheus_text(tmp_path):
    import aiohttp

    from node.metrics import MetricsService, NodeMetrics

    config = dev_config()
    metrics = NodeMetrics()
    clock = FakeClock()
    chain = ChainService(config, ChainPaths(tmp_path, config.chain_id), metrics=metrics, clock=clock,
                         finalize_own_blocks=True)
    service = MetricsService(metrics, 0)

    async def main() -> str:
        await chain.start()
        await service.start()
        try:
            await AuthorshipService(chain, ALICE, clock, max_blocks=3).run()
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{service.port}/metrics") as response:
                    return await response.text()
        finally:
            await service.stop()
            await chain.stop()

    text = asyncio.run(main())
    assert "gradchain_best_height 3.0" in text and "gradchain_finalized_height 3.0" in text
    assert "gradchain_block_import_seconds_bucket" in text and "gradchain_txpool_ready 0.0" in text
