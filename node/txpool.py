"""The transaction pool (Substrate's graph pool, simplified).

A transaction the runtime calls valid is *ready* when every tag it `requires` is
provided by a ready transaction or needs nothing; otherwise it waits in *future*.
Tags are the runtime's (for signed transfers: (signer, nonce)), so a nonce gap
waits in future and the pool fills it in order when the missing nonce arrives.

- Priority decides between transactions providing the same tag: a newcomer must
  have strictly higher priority, and the incumbent is *usurped*.
- `ready()` yields transactions in an order an author can apply: a transaction
  only after those it requires, and otherwise by priority, then arrival.
- Limits on count and bytes evict the lowest priority (future first); a newcomer
  that would itself be evicted is refused (PoolFull) and nothing changes.
- Invalid transactions are banned for a while (TemporarilyBanned on resubmit).
- After each block: included transactions leave, the rest are re-validated
  against the new best state (moving between ready and future or out), expired
  ones leave, and transactions of retracted blocks come back.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from runtime.errors import GradchainError
from runtime.validity import InvalidTransaction, TransactionValidityError, UnknownTransaction, ValidTransaction


class PoolError(GradchainError):
    code = "pool"
    rpc_code = 1010


class AlreadyImported(PoolError):
    code = "already_imported"
    rpc_code = 1013


class TemporarilyBanned(PoolError):
    code = "temporarily_banned"
    rpc_code = 1012


class TooLowPriority(PoolError):
    code = "too_low_priority"
    rpc_code = 1014


class PoolFull(PoolError):
    code = "pool_full"
    rpc_code = 1016


REVALIDATE_PER_BLOCK = 512  # entries re-checked after each block; the author drops the rest if stale


@dataclass
class PoolLimits:
    ready_count: int = 8192
    ready_bytes: int = 20 * 1024 * 1024
    future_count: int = 1024
    future_bytes: int = 4 * 1024 * 1024
    ban_seconds: float = 1800.0


@dataclass
class _Entry:
    tx: Any
    hash: bytes
    size: int
    valid: ValidTransaction
    valid_till: int
    order: int
    ready: bool = False
    missing: set = field(default_factory=set)  # required tags not provided by ready transactions


@dataclass(frozen=True)
class PruneReport:
    included: int
    invalid: int
    expired: int
    retracted_back: int


class TransactionPool:
    def __init__(self, validate: Callable[[Any], ValidTransaction], tx_hash: Callable[[Any], bytes],
                 tx_size: Callable[[Any], int], limits: PoolLimits = PoolLimits(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._validate = validate
        self._hash = tx_hash
        self._size = tx_size
        self.limits = limits
        self._clock = clock
        self._entries: dict[bytes, _Entry] = {}
        self._provider: dict[bytes, bytes] = {}         # tag -> hash of the entry providing it (ready or future)
        self._waiting: dict[bytes, set[bytes]] = {}     # tag -> hashes of entries missing it
        self._banned: dict[bytes, float] = {}           # hash -> ban expiry
        self._order = itertools.count()
        self._bytes = {True: 0, False: 0}
        self._count = {True: 0, False: 0}
        self._listeners: list[Callable[[bytes, str, Any], None]] = []
        self._revalidate_from = 0

    # --- queries ------------------------------------------------------------------

    @property
    def ready_count(self) -> int:
        return self._count[True]

    @property
    def future_count(self) -> int:
        return self._count[False]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._entries

    def get(self, tx_hash: bytes) -> Any:
        entry = self._entries.get(tx_hash)
        return None if entry is None else entry.tx

    def status(self) -> dict[str, int]:
        return {"ready": self._count[True], "future": self._count[False], "ready_bytes": self._bytes[True],
                "future_bytes": self._bytes[False], "banned": len(self._banned)}

    def ready(self) -> Iterator[Any]:
        """Ready transactions in applicable order: requirements first, then priority, then arrival."""
        heap: list[tuple[int, int, bytes]] = []
        pending: dict[bytes, int] = {}
        dependants: dict[bytes, list[_Entry]] = {}
        for entry in self._entries.values():
            if not entry.ready:
                continue
            # A ready entry's requirements are met by the chain or by other ready entries.
            in_pool = [t for t in entry.valid.requires if t in self._provider]
            if in_pool:
                pending[entry.hash] = len(in_pool)
                for tag in in_pool:
                    dependants.setdefault(tag, []).append(entry)
            else:
                heap.append((-entry.valid.priority, entry.order, entry.hash))
        heapq.heapify(heap)
        while heap:
            _, _, tx_hash = heapq.heappop(heap)
            entry = self._entries[tx_hash]
            yield entry.tx
            for tag in entry.valid.provides:
                for dependant in dependants.pop(tag, ()):
                    pending[dependant.hash] -= 1
                    if pending[dependant.hash] == 0:
                        heapq.heappush(heap, (-dependant.valid.priority, dependant.order, dependant.hash))

    def subscribe(self, callback: Callable[[bytes, str, Any], None]) -> Callable[[], None]:
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _emit(self, tx_hash: bytes, status: str, info: Any = None) -> None:
        for listener in list(self._listeners):
            listener(tx_hash, status, info)

    # --- submission ---------------------------------------------------------------------

    def submit(self, tx: Any, *, at_block: int) -> tuple[bytes, str]:
        tx_hash = self._hash(tx)
        if tx_hash in self._entries:
            raise AlreadyImported(f"transaction 0x{tx_hash.hex()[:16]} is already in the pool")
        expiry = self._banned.get(tx_hash)
        if expiry is not None:
            if expiry > self._clock():
                raise TemporarilyBanned(f"transaction 0x{tx_hash.hex()[:16]} was invalid; it is banned for a while")
            del self._banned[tx_hash]
        try:
            valid = self._validate(tx)
        except InvalidTransaction:
            self._ban(tx_hash)
            raise
        except UnknownTransaction:
            raise
        entry = _Entry(tx, tx_hash, self._size(tx), valid, _valid_till(at_block, valid.longevity), next(self._order))
        self._insert(entry)
        return tx_hash, "ready" if entry.ready else "future"

    def submit_many(self, txs: Iterable[Any], *, at_block: int) -> list:
        results: list = []
        for tx in txs:
            try:
                results.append(self.submit(tx, at_block=at_block))
            except (PoolError, TransactionValidityError) as exc:
                results.append(exc)
        return results

    def _insert(self, entry: _Entry) -> None:
        usurped = []
        for tag in entry.valid.provides:
            incumbent_hash = self._provider.get(tag)
            if incumbent_hash is not None:
                incumbent = self._entries[incumbent_hash]
                if entry.valid.priority <= incumbent.valid.priority:
                    raise TooLowPriority(f"a transaction with the same nonce/tag and priority "
                                         f"{incumbent.valid.priority} is in the pool; raise the tip")
                usurped.append(incumbent)
        self._check_room(entry)
        for incumbent in usurped:
            self._remove(incumbent.hash, "usurped", entry.hash)
        self._entries[entry.hash] = entry
        for tag in entry.valid.provides:
            self._provider[tag] = entry.hash
        entry.missing = {t for t in entry.valid.requires if not self._is_ready_tag(t)}
        for tag in entry.missing:
            self._waiting.setdefault(tag, set()).add(entry.hash)
        self._account(entry, +1)
        if entry.missing:
            self._emit(entry.hash, "future")
        else:
            self._promote(entry)
        self._enforce_limits()

    def _is_ready_tag(self, tag: bytes) -> bool:
        provider = self._provider.get(tag)
        return provider is not None and self._entries[provider].ready

    def _promote(self, entry: _Entry) -> None:
        """Move an entry to ready, then everything that was waiting only for it, in order."""
        stack = [entry]
        while stack:
            current = stack.pop()
            if current.ready:
                continue
            self._account(current, -1)
            current.ready = True
            self._account(current, +1)
            self._emit(current.hash, "ready")
            for tag in current.valid.provides:
                for waiter_hash in sorted(self._waiting.pop(tag, set()), key=lambda h: self._entries[h].order):
                    waiter = self._entries.get(waiter_hash)
                    if waiter is None:
                        continue
                    waiter.missing.discard(tag)
                    if not waiter.missing:
                        stack.append(waiter)

    def _account(self, entry: _Entry, sign: int) -> None:
        self._count[entry.ready] += sign
        self._bytes[entry.ready] += sign * entry.size

    def _check_room(self, entry: _Entry) -> None:
        """Refuse a newcomer that the limits would evict first (it has the lowest priority)."""
        full_count = len(self._entries) + 1 > self.limits.ready_count + self.limits.future_count
        full_bytes = sum(self._bytes.values()) + entry.size > self.limits.ready_bytes + self.limits.future_bytes
        if not (full_count or full_bytes):
            return
        lowest = min(self._entries.values(), key=lambda e: (e.valid.priority, -e.order), default=None)
        if lowest is None or entry.valid.priority <= lowest.valid.priority:
            raise PoolFull("the pool is full; raise the tip to replace a lower-priority transaction")

    def _enforce_limits(self) -> None:
        limits = self.limits
        for ready, count, size in ((False, limits.future_count, limits.future_bytes),
                                   (True, limits.ready_count, limits.ready_bytes)):
            while self._count[ready] > count or self._bytes[ready] > size:
                victim = min((e for e in self._entries.values() if e.ready == ready),
                             key=lambda e: (e.valid.priority, -e.order))
                self._remove(victim.hash, "dropped", "pool limit")

    # --- removal --------------------------------------------------------------------------

    def _remove(self, tx_hash: bytes, status: str | None, info: Any = None, *, in_chain: bool = False) -> None:
        """Remove one entry. If it left because a block included it (`in_chain`), what it provides is
        now provided by the chain and its waiters are released; otherwise ready dependants go back to future."""
        entry = self._entries.pop(tx_hash, None)
        if entry is None:
            return
        self._account(entry, -1)
        for tag in entry.valid.provides:
            if self._provider.get(tag) == tx_hash:
                del self._provider[tag]
        for tag in entry.missing:
            waiting = self._waiting.get(tag)
            if waiting is not None:
                waiting.discard(tx_hash)
                if not waiting:
                    del self._waiting[tag]
        if in_chain:
            for tag in entry.valid.provides:
                self._release(tag)
        elif entry.ready:
            self._demote_dependants(entry.valid.provides)
        if status is not None:
            self._emit(tx_hash, status, info)

    def _release(self, tag: bytes) -> None:
        """`tag` is now provided by the chain: entries waiting only for it become ready."""
        for waiter_hash in sorted(self._waiting.pop(tag, set()), key=lambda h: self._entries[h].order):
            waiter = self._entries.get(waiter_hash)
            if waiter is not None:
                waiter.missing.discard(tag)
                if not waiter.missing:
                    self._promote(waiter)

    def _demote_dependants(self, lost_tags: tuple) -> None:
        lost = list(lost_tags)
        while lost:
            tag = lost.pop()
            for other in self._entries.values():
                if other.ready and tag in other.valid.requires:
                    self._account(other, -1)
                    other.ready = False
                    self._account(other, +1)
                    other.missing.add(tag)
                    self._waiting.setdefault(tag, set()).add(other.hash)
                    self._emit(other.hash, "future")
                    lost.extend(other.valid.provides)

    def _ban(self, tx_hash: bytes) -> None:
        now = self._clock()
        if len(self._banned) > 100_000:
            self._banned = {h: t for h, t in self._banned.items() if t > now}
        self._banned[tx_hash] = now + self.limits.ban_seconds

    def remove_invalid(self, hashes: Iterable[bytes]) -> None:
        for tx_hash in hashes:
            self._remove(tx_hash, "invalid")
            self._ban(tx_hash)

    # --- after a block ----------------------------------------------------------------------

    def on_block_imported(self, *, number: int, included: Iterable[bytes],
                          retracted: Iterable[Any] = ()) -> PruneReport:
        """After a new best block: drop what it included, bring back what a re-org retracted,
        drop expired transactions, and re-validate a bounded share of the rest."""
        removed = 0
        for tx_hash in included:
            if tx_hash in self._entries:
                self._remove(tx_hash, None, in_chain=True)
                removed += 1
        back = 0
        for tx in retracted:
            if self._hash(tx) not in self._entries:
                try:
                    self.submit(tx, at_block=number)
                    back += 1
                except (PoolError, TransactionValidityError):
                    pass
        expired = [e.hash for e in self._entries.values() if e.valid_till < number]
        for tx_hash in expired:
            self._remove(tx_hash, "dropped", "expired")
        invalid = self._revalidate(REVALIDATE_PER_BLOCK)
        return PruneReport(removed, invalid, len(expired), back)

    def _revalidate(self, budget: int) -> int:
        """Re-check up to `budget` entries against the new best state, round-robin over the pool."""
        entries = list(self._entries.values())
        if not entries:
            return 0
        start = self._revalidate_from % len(entries)
        batch = (entries[start:] + entries[:start])[:budget]
        self._revalidate_from = start + len(batch)
        invalid = 0
        for entry in batch:
            if entry.hash not in self._entries:
                continue
            try:
                valid = self._validate(entry.tx)
            except InvalidTransaction:
                invalid += 1
                self._remove(entry.hash, "invalid")
                self._ban(entry.hash)
                continue
            except UnknownTransaction:
                self._remove(entry.hash, "dropped", "unknown validity")
                continue
            entry.valid = dataclasses.replace(valid, provides=entry.valid.provides)
            if not entry.ready:
                for tag in [t for t in entry.missing if t not in valid.requires]:
                    entry.missing.discard(tag)
                    waiting = self._waiting.get(tag)
                    if waiting is not None:
                        waiting.discard(entry.hash)
                if not entry.missing:
                    self._promote(entry)
        return invalid


def _valid_till(at_block: int, longevity: int) -> int:
    return at_block + longevity if longevity < (1 << 63) else (1 << 63)
