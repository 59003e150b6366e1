"""The authorship service: wake at every slot, and author a block when the slot is ours."""

from __future__ import annotations

from typing import Callable

import structlog

from consensus.import_queue import expected_author
from consensus.slots import slot_at, slot_start_ms
from node.authoring_wait import WAIT_SHARE
from node.chain_service import ChainService
from node.service import Service
from runtime.crypto import Keypair
from runtime.errors import GradchainError

log = structlog.get_logger("authorship")

# Share of a slot spent adding transactions; the rest is left for sealing, commit and propagation.
BUILD_PROPORTION = 0.5


class AuthorshipService(Service):
    name = "authorship"

    def __init__(self, chain: ChainService, keypair: Keypair, clock, *, max_blocks: int | None = None,
                 major_syncing: Callable[[int], bool] | None = None) -> None:
        self.chain = chain
        # given our best number, whether peers are far ahead (node/network/sync.py: is_major_syncing)
        self.major_syncing = major_syncing
        self.keypair = keypair
        self.clock = clock
        self.slot_ms = chain.config.slot_duration_ms
        self.max_blocks = max_blocks  # stop after this many blocks (tests, benchmarks)
        self.authored = 0
        self.missed_slots = 0
        self.skipped_behind = 0  # own slots left empty: blocks of a longer chain were still importing here
        self.skipped_syncing = 0  # own slots left empty: peers were far ahead, this node was catching up
        self._last_slot = -1

    async def run(self) -> None:
        log.info("authoring", validator="0x" + self.keypair.public.hex()[:16], slot_ms=self.slot_ms)
        while self.max_blocks is None or self.authored < self.max_blocks:
            now = self.clock.now_ms()
            slot = slot_at(now, self.slot_ms)
            if slot > self._last_slot:
                if self._last_slot >= 0 and slot > self._last_slot + 1:
                    self.missed_slots += slot - self._last_slot - 1
                self._last_slot = slot
                await self._maybe_author(slot, now)
            await self.clock.sleep_until(slot_start_ms(slot + 1, self.slot_ms))

    async def _maybe_author(self, slot: int, now: int) -> None:
        authorities = await self.chain.authorities()
        if expected_author(authorities, slot) != self.keypair.public:
            return
        best = self.chain.store.best_header().number
        if self.major_syncing is not None and self.major_syncing(best):
            self.skipped_syncing += 1
            log.info("slot skipped: catching up with peers far ahead", slot=slot, best=best)
            return
        # a block of an earlier slot on its way here: building now would fork beside it (node/authoring_wait.py)
        waited = await self.chain.in_flight.wait_for_earlier(slot, lambda: self.chain.store.best_header().number,
                                                             self.slot_ms * WAIT_SHARE)
        if waited > 0.5:
            log.info("waited for an earlier slot's block", slot=slot, ms=round(waited, 1))
        best = self.chain.store.best_header().number
        ahead = [b.number for b in self.chain.in_flight.awaited(slot, best) if b.number > best + 1]
        if ahead:
            # still importing a chain longer than the block this node would add: that block could only be
            # orphaned, and every peer would execute it for nothing
            self.skipped_behind += 1
            log.info("slot skipped: blocks of a longer chain are still importing here", slot=slot, best=best,
                     importing=max(ahead))
            return
        # the time waited is added to the building time (the cap still bounds it: node/authoring_cap.py)
        deadline = slot_start_ms(slot, self.slot_ms) + int(self.slot_ms * BUILD_PROPORTION + waited)
        try:
            authored = await self.chain.author(slot, self.keypair, deadline)
        except GradchainError as exc:  # this slot is lost; the next one may succeed
            log.error("authoring failed", slot=slot, error=exc.message)
            return
        if authored is not None:
            self.authored += 1
