"""Keeping the right peers: reputation and bans, reserved and boot peers dialled (again at once when
they drop), and the application ping that drops a frozen peer.

What the peers sent and what it means stays in NetworkService (node/network/service.py); this part
only decides who stays connected. Nothing here may end the network service: a disconnect or a ban
that the trio side cannot finish in time (a starved machine) is logged, and the peer is forgotten
on this side anyway (seen under load: "disconnect took over 10 s" ended a validator's network).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING

import structlog

from node.network import wire
from node.network.config import check_peer_address

if TYPE_CHECKING:
    from node.network.service import NetworkService

log = structlog.get_logger("network")
TRIO_STEP_TIMEOUT_S = 10.0  # a disconnect, ban or dial on the trio side


class Peering:
    def __init__(self, network: "NetworkService") -> None:
        self.network = network
        self.book = network.book
        self.config = network.config
        self._dial_wake = asyncio.Event()

    def wake_dialer(self) -> None:
        self._dial_wake.set()

    # --- reputation and bans --------------------------------------------------------------

    def report(self, peer: str, misbehaviour: str, reason: str = "") -> None:
        """Lower a peer's reputation for `misbehaviour` (a key of peers.MISBEHAVIOUR); ban it at the threshold."""
        self.network.metrics.peer_reports.labels(misbehaviour).inc()
        log.info("peer misbehaved", peer=peer, misbehaviour=misbehaviour, reason=reason[:200])
        if self.book.report(peer, misbehaviour):
            self.network._spawn(self.ban(peer))

    async def ban(self, peer: str, seconds: float | None = None) -> None:
        self.book.ban(peer, seconds) if seconds is not None else self.book.ban(peer)
        self.book.peers.pop(peer, None)
        log.warning("peer banned", peer=peer)
        await self._on_trio_quietly("ban", self.network.host.ban, peer)

    async def unban(self, peer: str) -> bool:
        was = self.book.unban(peer)
        await self._on_trio_quietly("unban", self.network.host.unban, peer)
        self._dial_wake.set()
        return was

    async def add_reserved(self, address: str) -> str:
        peer = check_peer_address(address)
        self.book.reserved[peer] = address
        self._dial_wake.set()
        return peer

    async def remove_reserved(self, peer: str) -> bool:
        removed = self.book.reserved.pop(peer, None) is not None
        if removed and self.config.reserved_only:
            await self.disconnect(peer)
        return removed

    async def disconnect(self, peer: str) -> None:
        self.book.peers.pop(peer, None)
        await self._on_trio_quietly("disconnect", self.network.host.disconnect, peer)

    async def _on_trio_quietly(self, what: str, function, peer: str) -> None:
        try:
            await self.network._on_trio(function, peer, timeout=TRIO_STEP_TIMEOUT_S)
        except Exception as exc:  # the trio thread is starved or the peer already gone: never fatal
            log.warning("peer step not finished", step=what, peer=peer, error=repr(exc))

    # --- dialling ----------------------------------------------------------------------------

    async def dial_loop(self) -> None:
        while True:
            targets = {a.rsplit("/p2p/", 1)[-1]: a for a in self.config.bootnodes}
            targets.update(self.book.reserved)
            dials = [self._dial(address) for peer, address in targets.items()
                     if peer not in self.book.peers and peer != self.network.peer_id and not self.book.is_banned(peer)]
            if dials:
                await asyncio.gather(*dials)
            self._dial_wake.clear()
            try:
                await asyncio.wait_for(self._dial_wake.wait(), self.config.dial_interval_s)
            except TimeoutError:
                pass

    async def _dial(self, address: str) -> None:
        try:
            await self.network._on_trio(self.network.host.dial, address, timeout=TRIO_STEP_TIMEOUT_S)
        except Exception as exc:  # unreachable for now; the loop tries again
            log.debug("dial failed", address=address, error=repr(exc))

    # --- liveness ----------------------------------------------------------------------------

    async def ping_loop(self) -> None:
        """py-libp2p does not notice a frozen peer: ask every peer for a pong and drop the silent ones.
        A peer that never completed the handshake (it does not speak our protocols) is dropped too.

        A saturated machine must not split the network: a missed pong counts only if nothing at all
        came from the peer since the ping was sent (any request, reply or gossip it sent proves it
        alive), and not at all in a round where this node itself woke late (its own loop was starved,
        so its timeouts measured its own slowness, not the peer's)."""
        while True:
            slept_from = time.monotonic()
            await asyncio.sleep(self.config.ping_interval_s)
            late = time.monotonic() - slept_from - self.config.ping_interval_s
            cutoff = time.monotonic() - self.config.handshake_deadline_s
            for peer in [p.peer_id for p in self.book.peers.values() if not p.ready and p.connected_at < cutoff]:
                log.info("peer never completed the handshake: disconnecting", peer=peer)
                self.network._spawn(self.disconnect(peer))
            starved = late > self.config.ping_timeout_s / 2
            await asyncio.gather(*(self._ping(p.peer_id, count_failure=not starved) for p in self.book.ready_peers()),
                                 return_exceptions=True)

    async def _ping(self, peer: str, *, count_failure: bool = True) -> None:
        nonce = secrets.token_bytes(8)
        sent = time.monotonic()
        try:
            frames = await self.network.request(peer, wire.PING, nonce, max_frame=8,
                                                timeout=self.config.ping_timeout_s)
            ok = frames == [nonce]
        except Exception:
            ok = False
        known = self.book.peers.get(peer)
        if known is None:
            return
        if not ok and (not count_failure or self.network.host.heard_from.get(peer, 0.0) >= sent):
            log.info("late pong forgiven: the peer sent other data meanwhile, or this node was starved", peer=peer)
            return
        known.failed_pings = 0 if ok else known.failed_pings + 1
        if known.failed_pings >= self.config.max_failed_pings:
            log.warning("peer stopped answering pings: disconnecting", peer=peer)
            await self.disconnect(peer)
            self._dial_wake.set()
