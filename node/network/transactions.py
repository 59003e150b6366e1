"""Transaction gossip: batches of pool-admitted transactions, each transaction sent and submitted once.

py-libp2p's gossipsub drops silently past a few hundred messages a second, so a
transaction is never a message of its own: admitted transactions are collected
for tx_batch_interval_s and published as TransactionBatch messages (under 3/4 of
gossipsub's 1 MiB cap). Gossipsub does not relay this topic by itself (a topic
validator takes each peer's batch and stops it): a transaction heard from a peer
is submitted to the pool once, and published onwards only after the pool admitted
it (the pool's listener feeds `on_admitted`), so junk and invalid transactions
stop at the first honest node. Hashes are remembered (KNOWN_TRANSACTIONS) so each
transaction is submitted once and published once; except that a re-org's handed-back
transactions are published again (`regossip`: a peer whose pool was full, or that
found one stale on the fork it then left, may lack them), and a receiver takes a
known hash again once KNOWN_FOR_S has passed.
"""

from __future__ import annotations

import asyncio
import math
from time import monotonic
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

import structlog

from node.network import wire
from runtime.errors import GradchainError
from runtime.hashing import blake2b_256
from runtime.types import Extrinsic, decode_extrinsic
from runtime.validity import InvalidReason, InvalidTransaction

if TYPE_CHECKING:
    from node.network.service import NetworkService

log = structlog.get_logger("network")
TRANSACTIONS = "transactions"
NEVER_HONEST = {InvalidReason.BAD_PROOF, InvalidReason.BAD_SIGNER, InvalidReason.CALL, InvalidReason.BAD_MANDATORY,
                InvalidReason.MANDATORY_VALIDATION}
MAX_REPORTS_PER_BATCH = 5
KNOWN_TRANSACTIONS = 100_000  # hashes remembered so a transaction is gossiped and submitted once
KNOWN_FOR_S = 30.0  # a hash heard again after this long is submitted again (a re-org's re-gossip)
INTAKE_BATCHES = 256  # peers' batches waiting for the pool; past it a batch is dropped and counted


class TransactionGossip:
    def __init__(self, network: "NetworkService") -> None:
        self.network = network
        self._known_transactions: OrderedDict[bytes, float] = OrderedDict()  # submitted or heard of -> when
        self._published: OrderedDict[bytes, None] = OrderedDict()
        self._outgoing_transactions: deque[Extrinsic] = deque()
        self._admitted: deque[Extrinsic] = deque()  # from the chain thread, not yet taken on the loop
        self._admitted_wake_pending = False
        # peers' batches, submitted to the pool in arrival order by `intake`, never on the network's event
        # loop: a batch waits for the chain thread (behind block imports), and block announcements queued
        # behind it arrived late at the next slot's author, which then forked at equal height
        self._incoming: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(INTAKE_BATCHES)
        self.dropped_batches = 0

    def on_admitted_threadsafe(self, loop: asyncio.AbstractEventLoop, extrinsic: Extrinsic) -> None:
        """on_admitted from the chain thread: one wake-up of the loop for all the transactions a pool
        operation admits, not one each (each is a write to the loop's pipe and a GIL hand-over)."""
        self._admitted.append(extrinsic)  # before the check below: a drain under way takes it
        if not self._admitted_wake_pending:
            self._admitted_wake_pending = True
            loop.call_soon_threadsafe(self._take_admitted)

    def _take_admitted(self) -> None:
        self._admitted_wake_pending = False
        while self._admitted:
            self.on_admitted(self._admitted.popleft())

    def on_gossip_nowait(self, origin: str, data: bytes) -> None:
        """A peer's batch, queued for `intake` (this returns at once)."""
        try:
            self._incoming.put_nowait((origin, data))
        except asyncio.QueueFull:
            self.dropped_batches += 1

    async def intake(self) -> None:
        while True:
            origin, data = await self._incoming.get()
            try:
                await self.on_gossip(origin, data)
            except Exception:  # the chain is closing, or a bug: one batch lost, never the intake
                log.exception("a peer's transaction batch was not submitted", peer=origin)

    async def on_gossip(self, origin: str, data: bytes) -> None:
        try:
            batch = wire.decode(wire.TransactionBatch, data, max_length=wire.MAX_GOSSIP_BYTES)
            if len(batch.extrinsics) > wire.MAX_TRANSACTIONS_PER_BATCH:
                raise wire.WireError(f"{len(batch.extrinsics)} transactions in one batch")
            # an extrinsic's hash is the hash of its canonical bytes: known ones are skipped undecoded
            known, stale_before = self._known_transactions, monotonic() - KNOWN_FOR_S
            fresh = [decode_extrinsic(x) for x in batch.extrinsics
                     if known.get(blake2b_256(x), -math.inf) < stale_before]
        except GradchainError as exc:
            self.network.report(origin, "malformed", f"transactions: {exc.message}")
            return
        for extrinsic in fresh:
            self._remember(extrinsic.hash)
        if not fresh:
            return
        results = await self.network.adapter.submit_transactions(fresh)
        # a relayer publishes only what its pool admitted: a forged signature or an inherent from it is
        # misbehaviour (a stale nonce or a fee it can no longer pay may be an honest race, and is not)
        forged = [r for r in results if isinstance(r, InvalidTransaction) and r.reason in NEVER_HONEST]
        for error in forged[:MAX_REPORTS_PER_BATCH]:
            self.network.report(origin, "bad_transaction", error.message)

    def _remember(self, transaction_hash: bytes, seen: OrderedDict | None = None) -> None:
        seen = self._known_transactions if seen is None else seen
        seen[transaction_hash] = monotonic()
        seen.move_to_end(transaction_hash)
        if len(seen) > KNOWN_TRANSACTIONS:
            seen.popitem(last=False)

    def regossip(self, extrinsics: list[Extrinsic]) -> None:
        """Publish again what a re-org handed back to this node's pool (on_admitted publishes once)."""
        for extrinsic in extrinsics:
            self._remember(extrinsic.hash)
            self._remember(extrinsic.hash, self._published)
            self._outgoing_transactions.append(extrinsic)

    def on_admitted(self, extrinsic: Extrinsic) -> None:
        if extrinsic.hash not in self._published:
            self._remember(extrinsic.hash)
            self._remember(extrinsic.hash, self._published)
            self._outgoing_transactions.append(extrinsic)

    async def run(self) -> None:
        """Gossip admitted transactions in batches (never one message each: gossipsub would drop them)."""
        while True:
            await asyncio.sleep(self.network.config.tx_batch_interval_s)
            while self._outgoing_transactions:
                batch, size = [], 0
                while self._outgoing_transactions and len(batch) < wire.MAX_TRANSACTIONS_PER_BATCH:
                    encoded = self._outgoing_transactions[0].encoded
                    if batch and size + len(encoded) > wire.MAX_GOSSIP_BYTES * 3 // 4:
                        break
                    batch.append(encoded)
                    size += len(encoded)
                    self._outgoing_transactions.popleft()
                if self.network.book.ready_peers():
                    await self.network.publish(TRANSACTIONS, wire.encode(wire.TransactionBatch(tuple(batch))))
