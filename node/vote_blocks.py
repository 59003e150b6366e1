"""Fetching the blocks that finality votes name, when this node has not imported them.

A vote counts for its block and the block's ancestors only once the voter knows
that block (consensus/finality/votes.py). Sync follows the longest chain, so a
fork that lost is never fetched by the nodes that did not build it: after a
healed 2|2 partition, the votes the other side cast for its own fork could never
count here, and a round that needed them never ended (Substrate's GRANDPA waits
for such blocks and asks sync for them too). This asks peers for each unknown
block a vote names, one block at a time by hash down to a block it has, and
imports the run through the chain's import entry point.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

log = structlog.get_logger("finality")

MAX_FORK_BLOCKS = 64  # blocks fetched for one vote target at most (a longer fork waits for sync)
GRACE_S = 1.0  # a block named by a vote usually arrives by itself (announced) within this
RETRY_S = 5.0  # a target asked for is not asked for again before this
MAX_PEERS_ASKED = 3
MAX_REMEMBERED = 256


class VoteBlockFetcher:
    """Runs on the asyncio loop, next to the network service whose sync and chain adapter it uses."""

    def __init__(self, network: Any) -> None:
        self.network = network
        self.first_seen: dict[bytes, float] = {}  # target hash -> when a vote named it unknown here
        self.asked: dict[bytes, float] = {}  # target hash -> when it was last asked for
        self.tasks: set[asyncio.Task] = set()

    def want(self, targets: list[tuple[bytes, int]], finalized_number: int) -> None:
        """Start fetching every target unknown for a while and not asked for recently."""
        now = time.monotonic()
        for block_hash, number in targets:
            if now < self.first_seen.setdefault(block_hash, now) + GRACE_S:
                continue
            if now < self.asked.get(block_hash, 0.0) + RETRY_S:
                continue
            self.asked[block_hash] = now
            task = asyncio.create_task(self._fetch(block_hash, number, finalized_number))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        for remembered in (self.first_seen, self.asked):
            while len(remembered) > MAX_REMEMBERED:
                del remembered[next(iter(remembered))]

    def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    async def _fetch(self, block_hash: bytes, number: int, finalized_number: int) -> None:
        adapter, sync = self.network.adapter, self.network.sync
        peers = [p.peer_id for p in self.network.book.ready_peers()][:MAX_PEERS_ASKED]
        for peer in peers:
            run, want, at = [], block_hash, number
            while at > finalized_number and len(run) < MAX_FORK_BLOCKS and not adapter.has_block(want):
                blocks = await sync.fetch_range(peer, at, 1, start_hash=want)
                if not blocks or blocks[0].hash != want:
                    break
                run.append(blocks[0])
                want, at = blocks[0].header.parent_hash, at - 1
            if not adapter.has_block(want):
                continue  # this peer could not link it to a block we have: ask the next
            if run:
                imported, failure = await adapter.import_blocks(list(reversed(run)))
                log.info("fetched the blocks a vote names", number=number, hash=block_hash.hex()[:16],
                         imported=imported, failure=None if failure is None else failure[1].kind)
            return
