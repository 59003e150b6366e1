"""Finality for a node that synced: the justifications of set-change blocks and of the finalized head.

A node that imported blocks from peers did not see their finality rounds. When its
finalized block lags its best by more than CATCH_UP_LAG blocks, it asks a peer
(/gradchain/justifications/1) for the justifications of the set-change blocks above
its finality (the chain's set history, as this node derived it by executing the
blocks) and of the peer's finalized head. Each is checked against the set this node
derived for its target (consensus/finality/catch_up.py), lowest first, so the old
set's proof of each change comes before any proof by the new set. A proof that does
not verify is refused and its peer reported (`bad_justification`: a ban).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from node.network import wire
from runtime.errors import GradchainError

if TYPE_CHECKING:
    from node.network.service import NetworkService

log = structlog.get_logger("sync")
CATCH_UP_LAG = 8  # blocks between finalized and best before a node asks peers (the voter is usually within 2)
RECHECK_S = 2.0
PEERS_PER_ROUND = 3


class JustificationSync:
    def __init__(self, network: "NetworkService") -> None:
        self.network = network
        self.finalized_by_peers = 0  # blocks finalized with peers' justifications (for tests and logs)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), RECHECK_S)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                while await self.catch_up():
                    pass  # finality moved: more may follow at once (the next set's blocks)
            except Exception:  # a round that failed is retried; the node keeps running
                log.exception("justification sync round failed")

    async def catch_up(self) -> bool:
        """One round: ask peers for the proofs this node lacks; True if finality moved."""
        adapter = self.network.adapter
        head = adapter.head()
        if head.best.number - head.finalized.number <= CATCH_UP_LAG:
            return False
        changes = await adapter.set_changes_to_prove()
        peers = sorted(self.network.book.ready_peers(), key=lambda p: -p.status.finalized_number)
        for peer in peers[:PEERS_PER_ROUND]:
            entries = await self.fetch(peer.peer_id, [h for h, _ in changes])
            moved = False
            for entry in sorted(entries, key=lambda e: e.block_number):
                try:
                    if await adapter.import_justification(entry.justification, entry.block_hash):
                        moved = True
                        self.finalized_by_peers += 1
                except GradchainError as exc:  # BadJustification: forged or for another chain
                    self.network.report(peer.peer_id, "bad_justification", f"justification of "
                                        f"#{entry.block_number}: {exc.message}")
                    break
            if moved:
                return True
        return False

    async def serve(self, request: bytes) -> list[bytes]:
        """The reply frames to a justifications request: a count, then the entries (WireError if bad)."""
        ask = wire.decode(wire.JustificationRequest, request)
        if len(ask.block_hashes) > wire.MAX_JUSTIFICATIONS_PER_REQUEST:
            raise wire.WireError(f"{len(ask.block_hashes)} justifications asked for, at most "
                                 f"{wire.MAX_JUSTIFICATIONS_PER_REQUEST} per request")
        entries = await self.network.adapter.justifications(list(ask.block_hashes), ask.finalized_head,
                                                            wire.RESPONSE_BUDGET)
        frames = [wire.encode(wire.JustificationEntry(wire.BlockHash(h), wire.BlockNumber(n),
                                                      wire.JustificationData(j))) for h, n, j in entries]
        return [len(frames).to_bytes(4, "big"), *frames]

    async def fetch(self, peer: str, block_hashes: list[bytes]) -> list[wire.JustificationEntry]:
        """The peer's stored justifications of these blocks and of its finalized head; [] on any failure."""
        request = wire.JustificationRequest(tuple(wire.BlockHash(h) for h in
                                                  block_hashes[:wire.MAX_JUSTIFICATIONS_PER_REQUEST]), True)
        try:
            frames = await self.network.request(peer, wire.JUSTIFICATIONS, wire.encode(request),
                                                max_frame=wire.MAX_JUSTIFICATION_FRAME,
                                                max_total=wire.RESPONSE_BUDGET + wire.MAX_JUSTIFICATION_FRAME + 4096)
            if not frames or len(frames[0]) != 4:
                raise wire.CutShort("a justifications reply without its count")
            count = int.from_bytes(frames[0], "big")
            if count > len(request.block_hashes) + 1:
                raise wire.WireError(f"a justifications reply of {count} entries, more than asked for")
            if count != len(frames) - 1:
                raise wire.CutShort("a justifications reply with fewer entries than it announced")
            entries = [wire.decode(wire.JustificationEntry, frame, max_length=wire.MAX_JUSTIFICATION_FRAME)
                       for frame in frames[1:]]
        except GradchainError as exc:
            kind = "oversized" if isinstance(exc, wire.FrameTooLarge) else \
                "cut_short" if isinstance(exc, wire.CutShort) else "malformed"
            self.network.report(peer, kind, f"justifications reply: {exc.message}")
            return []
        except Exception as exc:  # timeout, the peer went away
            log.debug("justifications request failed", peer=peer, error=repr(exc))
            return []
        return entries
