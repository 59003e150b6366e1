"""The finality service over a network service's finality topic (publish / subscribe / report), in process."""

from __future__ import annotations

import asyncio

from consensus.finality.messages import decode_message
from node.chain_service import ChainService
from node.chain_setup import ChainPaths, load_chain_spec
from node.clock import FakeClock
from node.finality_service import FinalityService
from runtime.finality import SignedVote
from tests.helpers.chain import DEV_KEYS

ALICE = DEV_KEYS["Alice"]


class FakeGossip:
    """What node/network's service offers the finality gadget."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.reports: list[tuple[str, str, str]] = []
        self.queue: asyncio.Queue | None = None

    async def publish(self, topic: str, data: bytes) -> None:
        self.published.append((topic, data))

    def subscribe(self, topic: str, maxsize: int = 1024) -> asyncio.Queue:
        assert topic == "finality"
        self.queue = asyncio.Queue(maxsize)
        return self.queue

    def report(self, peer: str, misbehaviour: str, reason: str = "") -> None:
        self.reports.append((peer, misbehaviour, reason))


def test_votes_go_out_on_the_finality_topic_and_a_peer_sending_junk_is_reported(tmp_path):
    config = load_chain_spec(None, dev=True)
    clock = FakeClock()
    chain = ChainService(config, ChainPaths(tmp_path, config.chain_id), clock=clock)
    gossip = FakeGossip()
    finality = FinalityService(chain, ALICE, clock, gossip=gossip)

    async def main():
        await chain.start()
        await finality.start()
        runner = asyncio.create_task(finality.run())
        try:
            slot = clock.now_ms() // config.slot_duration_ms + 1
            clock.time_ms = slot * config.slot_duration_ms
            await chain.author(slot, ALICE, clock.now_ms() + 500)
            for _ in range(20):
                clock.time_ms += config.slot_duration_ms // 4
                await finality.step()
                await asyncio.sleep(0)
            await gossip.queue.put(("12D3KooWjunk", b"\x93junk"))
            for _ in range(50):
                await asyncio.sleep(0.01)
                if gossip.reports:
                    break
            return chain.store.finalized_header().number
        finally:
            runner.cancel()
            await finality.stop()
            await chain.stop()

    finalized = asyncio.run(main())
    assert finalized == 1
    votes = [decode_message(data) for topic, data in gossip.published if topic == "finality"]
    assert any(isinstance(v, SignedVote) and v.voter == ALICE.public for v in votes)
    assert gossip.reports and gossip.reports[0][:2] == ("12D3KooWjunk", "malformed")
    assert chain.metrics.finality_gossip_bytes._value.get() > 0
