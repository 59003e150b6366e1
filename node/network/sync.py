"""Catching up with peers, and following their announcements.

A node whose best block is behind a peer's downloads ranges of blocks by number
from up to MAX_PARALLEL peers at once (consecutive windows, one per peer),
checks that each reply is a linked run of blocks, and imports them in order
through the chain's import entry point. When the first block does not attach
(a fork below our best), it asks again from further back, doubling the distance
down to the finalized block. Announcements of blocks whose parent we have are
fetched from the announcer and imported at once; anything else wakes the sync.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING

import structlog

from node.network import wire
from runtime.errors import GradchainError
from runtime.types import MAX_BLOCK_BYTES, Block, Header, decode_block

if TYPE_CHECKING:
    from node.network.service import NetworkService

log = structlog.get_logger("sync")
MAX_PARALLEL = 4
RECHECK_S = 2.0
# A node this many blocks below its peers is catching up, not following (Substrate's MAJOR_SYNC_BLOCKS):
# a validator does not author then (its block could only be orphaned, and building on a stale head
# while blocks are still to import slows the catch-up).
MAJOR_SYNC_BLOCKS = 5
PARENT_WAIT_S = 5.0  # a followed block whose parent is itself in flight waits this long for it


class BlockSync:
    def __init__(self, network: "NetworkService") -> None:
        self.network = network
        self.target = 0
        self.starting_block = 0
        self.is_syncing = False
        # how far below our best the next request starts, doubled while the first block does not attach
        # (a fork below our best); kept across rounds, so a round whose fetch failed (a busy peer) does
        # not throw away the walk back made so far
        self._back = 0
        self._wake = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()

    def wake(self) -> None:
        self._wake.set()

    def is_major_syncing(self, best_number: int) -> bool:
        """Whether the median of the ready peers' best blocks is more than MAJOR_SYNC_BLOCKS above
        `best_number`. The median, not the highest: one peer claiming a far higher best (a lie, or a
        fork of its own) cannot stop this validator from authoring."""
        bests = sorted(p.status.best_number for p in self.network.book.ready_peers())
        return bool(bests) and bests[(len(bests) - 1) // 2] > best_number + MAJOR_SYNC_BLOCKS

    def on_local_block(self, block: Block) -> None:
        self.target = max(self.target, block.header.number)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), RECHECK_S)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._catch_up()
            except Exception:  # a sync round that failed is retried; the node keeps running
                log.exception("sync round failed")

    async def _catch_up(self) -> None:
        network, adapter = self.network, self.network.adapter
        prefetch: tuple[int, asyncio.Task] | None = None  # the next windows, fetched while a run imports
        try:
            while True:
                head = adapter.head()
                peers = network.book.ready_peers()
                ahead = [p for p in peers if p.status.best_number > head.best.number]
                if not ahead:
                    # A peer as high as us on a fork we do not have (both sides of a healed partition):
                    # fetch it from one block below our best, walking back to the common ancestor, so fork
                    # choice's tie rule can pick the same head on every node rather than waiting for
                    # one fork to grow.
                    ahead = [p for p in peers if p.status.best_number == head.best.number
                             and p.status.best_hash != head.best.hash and not adapter.has_block(p.status.best_hash)]
                    self._back = max(self._back, 1)
                if not ahead:
                    self.is_syncing, self._back = False, 0
                    return
                if not self.is_syncing:
                    self.is_syncing, self.starting_block = True, head.best.number
                self.target = max(self.target, *(p.status.best_number for p in ahead))
                start = max(head.finalized.number + 1, head.best.number + 1 - self._back)
                fetch_started = time.perf_counter()
                if prefetch is not None and prefetch[0] == start:
                    run = await prefetch[1]
                else:
                    if prefetch is not None:
                        prefetch[1].cancel()
                    run = await self._fetch_windows(start, ahead)
                prefetch = None
                fetched = time.perf_counter()
                if not run:
                    return  # nobody answered usefully: the next wake or recheck tries again
                following = run[-1][1].header.number + 1
                if any(p.status.best_number >= following for p in ahead):
                    prefetch = (following, asyncio.create_task(self._fetch_windows(following, ahead)))
                imported, failure = await adapter.import_blocks([b for _, b in run])
                if failure is not None:
                    index, outcome = failure
                    if outcome.kind == "unknown_parent" and index == 0 and start > head.finalized.number + 1:
                        self._back = max(1, self._back * 2)
                        continue
                    if outcome.is_misbehaviour:
                        network.report(run[index][0], "bad_block", outcome.reason)
                    return
                self._back = 0
                if not imported:
                    # all known already: the best chain stops below them here (fork choice would not take
                    # them, e.g. a block this node disputes), so asking again now would only spin
                    return
                log.info("synced blocks", imported=imported, best=run[-1][1].header.number, target=self.target,
                         fetch_ms=round((fetched - fetch_started) * 1000),
                         import_ms=round((time.perf_counter() - fetched) * 1000))
        finally:
            if prefetch is not None:
                prefetch[1].cancel()

    async def _fetch_windows(self, start: int, ahead: list) -> list[tuple[str, Block]]:
        """Consecutive windows from `start`, one per peer (the most advanced first), joined into one
        linked run (peer, block) up to the first gap."""
        step = wire.MAX_BLOCKS_PER_REQUEST
        ahead = sorted(ahead, key=lambda p: -p.status.best_number)
        jobs = [(peer.peer_id, start + i * step) for i, peer in enumerate(ahead[:MAX_PARALLEL])
                if peer.status.best_number >= start + i * step]
        replies = await asyncio.gather(*(self.fetch_range(peer, first, step) for peer, first in jobs))
        run: list[tuple[str, Block]] = []
        for (peer, first), blocks in zip(jobs, replies):
            if not blocks or blocks[0].header.number != first or (
                    run and blocks[0].header.parent_hash != run[-1][1].hash):
                break
            run.extend((peer, b) for b in blocks)
            if len(blocks) < step:
                break
        return run

    async def fetch_range(self, peer: str, first: int, count: int, *, start_hash: bytes | None = None) -> list[Block]:
        """A linked run of up to `count` blocks from `first` (or from `start_hash`); [] on any failure."""
        request = wire.BlockRequest(wire.BlockNumber(first), start_hash, wire.Count(count))
        try:
            frames = await self.network.request(peer, wire.BLOCKS, wire.encode(request), max_frame=MAX_BLOCK_BYTES,
                                                max_total=wire.RESPONSE_BUDGET + MAX_BLOCK_BYTES + 4096)
            if not frames:
                raise wire.CutShort("an empty blocks reply")
            if len(frames[0]) != 4 or int.from_bytes(frames[0], "big") > count:
                raise wire.WireError(f"a blocks reply announcing more than the {count} blocks asked for")
            if int.from_bytes(frames[0], "big") != len(frames) - 1:
                raise wire.CutShort("a blocks reply with fewer blocks than it announced")
            blocks = [decode_block(frame) for frame in frames[1:]]
        except GradchainError as exc:
            self.network.report(peer, _misbehaviour_of(exc), f"blocks reply: {exc.message}")
            return []
        except Exception as exc:  # timeout, the peer went away
            log.debug("blocks request failed", peer=peer, error=repr(exc))
            return []
        for parent, child in zip(blocks, blocks[1:]):
            if child.header.parent_hash != parent.hash or child.header.number != parent.header.number + 1:
                self.network.report(peer, "malformed", "blocks reply is not a linked run")
                return []
        return blocks

    # --- announcements ---------------------------------------------------------------

    async def on_announcement(self, origin: str, header: Header) -> None:
        self._note_peer_best(origin, header)
        self._spawn(self._follow(origin, header))

    def on_block(self, origin: str, block: Block) -> None:
        """A whole block pushed by its author (small enough to skip the request round trip)."""
        self._note_peer_best(origin, block.header)
        self._spawn(self._follow(origin, block.header, block))

    def _note_peer_best(self, origin: str, header: Header) -> None:
        peer = self.network.book.peers.get(origin)
        if peer is not None and peer.status is not None and header.number > peer.status.best_number:
            peer.status = dataclasses.replace(peer.status, best_number=header.number, best_hash=header.hash)
        self.target = max(self.target, header.number)

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _follow(self, origin: str, header: Header, block: Block | None = None) -> None:
        """Fetch (unless pushed whole) and import an announced block whose parent is here. While it is on
        its way, the author of the next slot waits for it (node/authoring_wait.py) instead of forking."""
        adapter = self.network.adapter
        if adapter.has_block(header.hash) or adapter.is_in_flight(header.hash):  # pushed, announced: once
            return
        if not adapter.has_block(header.parent_hash) and not adapter.is_in_flight(header.parent_hash):
            self.wake()
            return
        announced = time.perf_counter()
        adapter.block_in_flight(header)
        try:
            if not await adapter.parent_arrives(header, PARENT_WAIT_S):
                self.wake()
                return
            if block is not None:
                await self._import_followed(origin, block, announced, announced)
                return
            sources = [origin] + [p.peer_id for p in self.network.book.ready_peers() if p.peer_id != origin]
            for source in sources[:3]:
                if source not in self.network.book.peers:
                    continue
                blocks = await self.fetch_range(source, header.number, 1, start_hash=header.hash)
                if not blocks:
                    continue
                if blocks[0].hash != header.hash:
                    self.network.report(source, "malformed", "a block that is not the one asked for")
                    continue
                await self._import_followed(source, blocks[0], announced, time.perf_counter())
                return
        finally:
            adapter.block_settled(header.hash)

    async def _import_followed(self, source: str, block: Block, announced: float, fetched: float) -> None:
        outcome = await self.network.adapter.import_block(block)
        if outcome.is_misbehaviour:
            self.network.report(source, "bad_block", outcome.reason)
        elif outcome.kind == "unknown_parent":
            self.wake()
        # the path of a block from its announcement to this node's chain, counted per node (the bench
        # reads these: a late block at the next slot's author is an equal-height fork)
        log.info("followed block", number=block.header.number, hash=block.hash.hex()[:16], outcome=outcome.kind,
                 fetch_ms=round((fetched - announced) * 1000, 1),
                 import_ms=round((time.perf_counter() - fetched) * 1000, 1))


def _misbehaviour_of(error: GradchainError) -> str:
    if isinstance(error, wire.FrameTooLarge):
        return "oversized"
    if isinstance(error, wire.CutShort):
        return "cut_short"
    return "malformed"
