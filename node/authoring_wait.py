"""An author waits, for a bounded part of its slot, for the previous slots' blocks already on their way.

Under load the block of slot s often reached the author of slot s+1 as an announcement whose body was
still being fetched or imported when slot s+1 began. The author then built on the block below it, a
second block at the same height: an equal-height fork that wasted one of the two blocks (measured in
scripts/bench/network.py: 23-49 re-orgs a minute, included transfers/s down from ~990 to 536-719).

The network notes each block a peer announced or sent (`announced`) and when its import ended, one way
or another (`settled`). Before authoring, the author waits while a block of an earlier slot that would
extend its best chain is still in flight, up to `max_wait_ms`, then builds on whatever is best by then.
Everything here runs on the node's event loop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from runtime.types import Header

WAIT_SHARE = 0.4  # of a slot: the longest an author waits for an in-flight block
STALE_S = 30.0  # an entry never settled (a bug, a cancelled task) stops counting after this long


@dataclass(frozen=True)
class InFlight:
    number: int
    slot: int
    since: float  # time.monotonic()


class BlocksInFlight:
    def __init__(self) -> None:
        self._blocks: dict[bytes, InFlight] = {}
        self._settled = asyncio.Event()
        self.waits = 0  # how many times an author waited (and for how long in all): metrics, logs
        self.waited_ms = 0.0

    def announced(self, header: Header) -> None:
        self._blocks.setdefault(header.hash, InFlight(header.number, header.digest.slot, time.monotonic()))

    def settled(self, block_hash: bytes) -> None:
        """The block's import ended (imported, known, refused) or was given up."""
        if self._blocks.pop(block_hash, None) is not None:
            self._settled.set()

    def __contains__(self, block_hash: bytes) -> bool:
        return block_hash in self._blocks

    async def wait_settled(self, block_hash: bytes, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until `block_hash` is no longer in flight."""
        deadline = time.monotonic() + timeout_s
        while block_hash in self._blocks and (left := deadline - time.monotonic()) > 0:
            self._settled.clear()
            try:
                await asyncio.wait_for(self._settled.wait(), left)
            except TimeoutError:
                return

    def awaited(self, slot: int, best_number: int) -> list[InFlight]:
        """The in-flight blocks an author of `slot` on a best chain of `best_number` should wait for: of an
        earlier slot, higher than its best (so building now would fork beside them)."""
        now = time.monotonic()
        for block_hash in [h for h, b in self._blocks.items() if now - b.since > STALE_S]:
            del self._blocks[block_hash]
        return [b for b in self._blocks.values() if b.slot < slot and b.number > best_number]

    async def wait_for_earlier(self, slot: int, best_number, max_wait_ms: float) -> float:
        """Wait while `awaited(slot, best_number())` is not empty, at most `max_wait_ms`; the ms waited."""
        started = time.monotonic()
        deadline = started + max_wait_ms / 1000
        while self.awaited(slot, best_number()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._settled.clear()
            try:
                await asyncio.wait_for(self._settled.wait(), left)
            except TimeoutError:
                break
        waited = (time.monotonic() - started) * 1000
        if waited > 0.5:
            self.waits += 1
            self.waited_ms += waited
        return waited
