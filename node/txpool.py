"""The transaction pool (Substrate's graph pool, simplified).

The pool is generic over the transaction object: it sees a transaction only
through three functions it is given (validate, hash, size) and the runtime's
answer, `runtime.validity.ValidTransaction` (priority, requires, provides,
longevity). Tags are the runtime's; for signed transfers a transaction provides
(signer, nonce) and requires (signer, nonce - 1) until the chain has nonce - 1.

- A transaction is *ready* when each tag it requires is provided by a ready
  transaction in the pool (or it requires nothing); otherwise it waits in
  *future*. When one becomes ready, those waiting only for it follow, in arrival order.
- At most one transaction provides a tag. A newcomer replaces the holders of
  its tags only with strictly higher priority (they are *usurped*); otherwise
  TooLowPriority.
- `ready()` yields transactions in an order an author can apply: a transaction
  only after those providing what it requires; otherwise by priority, then arrival.
- Over a count or byte limit, the lowest priority (newest among equals) is
  evicted with everything that depends on it, future queue first, then ready.
  A newcomer that would itself be evicted is refused (PoolFull) and the pool is
  left exactly as it was. Limits are enforced at admission only: after a block
  (a re-org handing transactions back, promotions) the pool may stay over them
  until blocks drain it, refusing equal-priority newcomers meanwhile. Evicting
  there dropped transactions the pool had accepted, in a re-org under overload
  the oldest of their senders, and every later nonce waited on the gap forever.
- Invalid transactions are banned for `ban_seconds` (TemporarilyBanned).
- After each block (`on_block_imported`): included transactions leave, expired
  ones leave, those of retracted blocks come back (ordered before every pooled
  one), and every one is validated again against the new best state, which may
  move it between the queues or out; or, for a block that extends the chain,
  the tags it provided are pruned without validating again.

Cost: submit, removal and each step of `ready()` are O(log n + tags touched);
only `on_block_imported` is O(pool), because it calls validate on every entry
(pruning by tags calls it on none, unless the block held transactions unknown here).
Not thread-safe: the chain service calls it from its one chain thread.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from typing import Any, Callable, Iterable, Iterator

import structlog

from node.txpool_blocks import BlockPruning
from node.txpool_types import (  # noqa: F401 (re-exported: the pool's errors and types were defined here)
    ABSENT, FUTURE, READY, AlreadyImported, PoolEntry, PoolError, PoolFull, PoolLimits, PruneReport,
    TemporarilyBanned, TooLowPriority,
)
from runtime.validity import InvalidTransaction, UnknownReason, UnknownTransaction, ValidTransaction

log = structlog.get_logger("txpool")

BAN_CAPACITY = 100_000  # most hashes remembered as banned; the oldest bans go first
_NOTHING: dict = {}      # read-only default for index lookups


class TransactionPool(BlockPruning):
    def __init__(self, validate: Callable[[Any], ValidTransaction], tx_hash: Callable[[Any], bytes],
                 tx_size: Callable[[Any], int], limits: PoolLimits = PoolLimits(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._validate = validate
        self._tx_hash = tx_hash
        self._tx_size = tx_size
        self.limits = limits
        self._clock = clock
        self._order = itertools.count()
        self._first_order = 0  # retracted transactions are ordered below it (_retracted_entries)
        self._gen = itertools.count(1)
        self._banned: dict[bytes, float] = {}                 # hash -> when the ban ends
        self._ban_queue: deque[tuple[float, bytes]] = deque()  # the same, oldest first, for purging
        self._listeners: list[Callable[[bytes, str, Any], None]] = []
        # Status changes are collected during one operation and announced at its end as net
        # changes, so a failed operation announces nothing and a watcher never sees a flicker.
        self._initial: dict[bytes, str] = {}                  # hash -> status when the operation first touched it
        self._removed: dict[bytes, tuple[str | None, Any]] = {}  # hash -> (event, info) of its removal
        self._clear()

    def _clear(self) -> None:
        self._entries: dict[bytes, PoolEntry] = {}
        self._provider: dict[bytes, PoolEntry] = {}                # tag -> the entry providing it
        self._dependants: dict[bytes, dict[bytes, PoolEntry]] = {}  # tag -> entries requiring it
        self._count = {True: 0, False: 0}                       # by entry.ready
        self._bytes = {True: 0, False: 0}
        # Heaps with lazy deletion: an item is current while its gen equals the entry's.
        self._evictable: dict[bool, list[tuple]] = {True: [], False: []}  # (priority, -order, gen, hash)
        self._roots: list[tuple] = []  # (-priority, order, gen, hash) of ready entries that require nothing

    # --- queries ---------------------------------------------------------------

    @property
    def ready_count(self) -> int:
        return self._count[True]

    @property
    def future_count(self) -> int:
        return self._count[False]

    @property
    def ready_bytes(self) -> int:
        return self._bytes[True]

    @property
    def future_bytes(self) -> int:
        return self._bytes[False]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._entries

    def get(self, tx_hash: bytes) -> Any:
        entry = self._entries.get(tx_hash)
        return None if entry is None else entry.tx

    def is_ready(self, tx_hash: bytes) -> bool:
        entry = self._entries.get(tx_hash)
        return entry is not None and entry.ready

    def provider(self, tag: bytes) -> bytes | None:
        """The hash of the pooled transaction providing `tag` (e.g. an account's nonce), if any."""
        entry = self._provider.get(tag)
        return None if entry is None else entry.hash

    def is_banned(self, tx_hash: bytes) -> bool:
        until = self._banned.get(tx_hash)
        return until is not None and until > self._clock()

    def status(self) -> dict[str, int]:
        return {"ready": self._count[True], "future": self._count[False], "ready_bytes": self._bytes[True],
                "future_bytes": self._bytes[False], "banned": len(self._banned)}

    def ready(self) -> Iterator[Any]:
        """The ready queue in the order an author should apply it: a transaction only after those providing
        what it requires; among those available, highest priority first, then earliest arrival.
        Taking is not removing. Each step costs O(log n); starting copies the list of roots.
        If the pool changes during the iteration, the rest may skip transactions, but it never
        yields one twice or one that has left."""
        heap = self._roots.copy()  # a copy of a heap is a heap
        waiting: dict[bytes, int] = {}  # hash -> required tags not yet yielded
        yielded: set[bytes] = set()
        while heap:
            _, _, gen, tx_hash = heapq.heappop(heap)
            entry = self._entries.get(tx_hash)  # not cached: on_block_imported replaces the indexes
            if entry is None or entry.gen != gen or tx_hash in yielded:
                continue
            yielded.add(tx_hash)
            yield entry.tx
            for tag in entry.provides:
                for dependant in self._dependants.get(tag, _NOTHING).values():
                    if dependant.ready:
                        left = waiting.get(dependant.hash, len(dependant.requires)) - 1
                        waiting[dependant.hash] = left
                        if left == 0:
                            heapq.heappush(heap, (-dependant.priority, dependant.order, dependant.gen, dependant.hash))

    def future(self) -> Iterator[Any]:
        """The future queue in arrival order (O(n log n): for RPC and tests, not for authoring)."""
        return (e.tx for e in sorted((e for e in self._entries.values() if not e.ready), key=lambda e: e.order))

    def subscribe(self, callback: Callable[[bytes, str, Any], None]) -> Callable[[], None]:
        """Call `callback(hash, status, info)` on each status change: "future", "ready", "dropped",
        "invalid", or "usurped" (info: the usurper's hash). Returns the unsubscribe function."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)
        return unsubscribe

    # --- submission ---------------------------------------------------------------

    def submit(self, tx: Any, *, at_block: int) -> tuple[bytes, str]:
        """Add a transaction validated at best block `at_block`; returns (hash, "ready" | "future")."""
        self._purge_bans()
        tx_hash = self._call(self._tx_hash, tx, "hash")
        if tx_hash in self._entries:
            raise AlreadyImported(f"transaction 0x{tx_hash.hex()} is already in the pool")
        if self.is_banned(tx_hash):
            raise TemporarilyBanned(f"transaction 0x{tx_hash.hex()} was found invalid recently; "
                                    f"it is refused for up to {self.limits.ban_seconds:g} s")
        valid = self._checked_validate(tx, tx_hash)
        entry = PoolEntry(tx, tx_hash, self._call(self._tx_size, tx, "size"), next(self._order))
        entry.set_validity(valid, at_block)
        incumbents = self._holders_of(entry.provides)
        for incumbent in incumbents:
            # A replacement must pay more than every transaction it pushes out.
            if incumbent.priority >= entry.priority:
                raise TooLowPriority(f"transaction 0x{incumbent.hash.hex()} provides the same tag (nonce) with "
                                     f"priority {incumbent.priority}; a replacement needs a higher tip")
        self._remove_all(incumbents, "usurped", tx_hash)
        self._link(entry)
        victims = self._plan_eviction(entry)
        if victims is None:
            # Undo: readiness is a function of the set of entries, so unlinking the newcomer and
            # linking the incumbents back (with their arrival order) restores the pool exactly.
            self._unlink(entry, ())
            for incumbent in incumbents:
                self._link(incumbent)
            self._initial, self._removed = {}, {}
            raise PoolFull("the pool is full of transactions with at least this priority; raise the tip or retry later")
        self._remove_all(victims, "dropped")
        self._announce()
        return tx_hash, READY if entry.ready else FUTURE

    def submit_many(self, txs: Iterable[Any], *, at_block: int) -> list[tuple[bytes, str] | Exception]:
        """Submit each in turn; a rejection is returned in its place, not raised."""
        results: list[tuple[bytes, str] | Exception] = []
        for tx in txs:
            try:
                results.append(self.submit(tx, at_block=at_block))
            except (PoolError, InvalidTransaction, UnknownTransaction) as exc:
                results.append(exc)
        return results

    def _call(self, function: Callable[[Any], Any], tx: Any, what: str) -> Any:
        try:
            return function(tx)
        except Exception as exc:  # a malformed object must not take the caller down
            raise UnknownTransaction(UnknownReason.CANNOT_LOOKUP, f"cannot compute the transaction's {what}: {exc}")

    def _checked_validate(self, tx: Any, tx_hash: bytes) -> ValidTransaction:
        try:
            valid = self._validate(tx)
        except InvalidTransaction:
            self._ban(tx_hash)
            raise
        except UnknownTransaction:
            raise
        except Exception as exc:
            log.exception("validate_transaction failed", tx=tx_hash.hex())
            raise UnknownTransaction(UnknownReason.CANNOT_LOOKUP, f"the runtime could not validate it: {exc}")
        if not isinstance(valid, ValidTransaction):
            raise UnknownTransaction(UnknownReason.CANNOT_LOOKUP, f"validate returned {type(valid).__name__}")
        return valid

    # --- removal ------------------------------------------------------------------

    def remove_invalid(self, hashes: Iterable[bytes]) -> list[bytes]:
        """Remove these transactions and everything depending on them; ban these (not their dependants).
        Returns the hashes removed."""
        self._purge_bans()
        named = list(dict.fromkeys(hashes))
        for tx_hash in named:
            self._ban(tx_hash)
        doomed = self._with_dependants([self._entries[h] for h in named if h in self._entries])
        leaving = set(doomed)
        named_set = set(named)
        for entry in doomed.values():
            self._drop(entry, "invalid" if entry.hash in named_set else "dropped", None, leaving)
        self._announce()
        return list(doomed)

    # --- after a block ------------------------------------------------------------
    # --- the indexes: link, unlink, promote, demote ---------------------------------

    def _holders_of(self, tags: tuple[bytes, ...]) -> list[PoolEntry]:
        holders = {}
        for tag in tags:
            holder = self._provider.get(tag)
            if holder is not None:
                holders[holder.hash] = holder
        return list(holders.values())

    def _link(self, entry: PoolEntry) -> None:
        """Add an entry whose tags no other entry provides, as future, then promote it if it can be ready."""
        self._touch(entry)
        self._entries[entry.hash] = entry
        for tag in entry.provides:
            self._provider[tag] = entry
        for tag in entry.requires:
            self._dependants.setdefault(tag, {})[entry.hash] = entry
        provider = self._provider
        entry.missing = {t for t in entry.requires if t not in provider or not provider[t].ready}
        entry.ready = False
        self._count[False] += 1
        self._bytes[False] += entry.size
        if entry.missing:
            self._refresh(entry)
        else:
            self._promote(entry)

    def _promote(self, first: PoolEntry) -> None:
        """Make `first` ready, then every entry that was waiting only for it, in arrival order."""
        queue = [(first.order, first.hash)]
        while queue:
            _, tx_hash = heapq.heappop(queue)
            entry = self._entries[tx_hash]
            if entry.ready or entry.missing:
                continue
            self._move(entry, True)
            for tag in entry.provides:
                for dependant in self._dependants.get(tag, _NOTHING).values():
                    dependant.missing.discard(tag)
                    if not dependant.missing and not dependant.ready:
                        heapq.heappush(queue, (dependant.order, dependant.hash))

    def _unlink(self, entry: PoolEntry, leaving: Iterable[bytes]) -> None:
        """Take an entry out; ready entries that needed it go back to future unless they are `leaving` too."""
        self._touch(entry)
        del self._entries[entry.hash]
        self._count[entry.ready] -= 1
        self._bytes[entry.ready] -= entry.size
        for tag in entry.provides:
            if self._provider.get(tag) is entry:
                del self._provider[tag]
        for tag in entry.requires:
            waiting = self._dependants[tag]
            del waiting[entry.hash]
            if not waiting:
                del self._dependants[tag]
        if entry.ready:
            self._demote(entry.provides, leaving)

    def _demote(self, lost_tags: Iterable[bytes], leaving: Iterable[bytes]) -> None:
        stack = list(lost_tags)
        while stack:
            tag = stack.pop()
            for dependant in self._dependants.get(tag, _NOTHING).values():
                if dependant.hash in leaving:
                    continue
                dependant.missing.add(tag)
                if dependant.ready:
                    self._move(dependant, False)
                    stack.extend(dependant.provides)

    def _move(self, entry: PoolEntry, ready: bool) -> None:
        self._touch(entry)
        self._count[entry.ready] -= 1
        self._bytes[entry.ready] -= entry.size
        entry.ready = ready
        self._count[ready] += 1
        self._bytes[ready] += entry.size
        self._refresh(entry)

    def _refresh(self, entry: PoolEntry) -> None:
        """Push current heap items for the entry; its older items become stale."""
        entry.gen = gen = next(self._gen)
        heap = self._evictable[entry.ready]
        heapq.heappush(heap, (entry.priority, -entry.order, gen, entry.hash))
        if entry.ready and not entry.requires:
            heapq.heappush(self._roots, (-entry.priority, entry.order, gen, entry.hash))
        if len(heap) + len(self._roots) > 4 * len(self._entries) + 1024:
            self._compact_heaps()

    def _compact_heaps(self) -> None:
        entries = self._entries.values()
        for ready, heap in self._evictable.items():
            heap[:] = [(e.priority, -e.order, e.gen, e.hash) for e in entries if e.ready == ready]
            heapq.heapify(heap)
        self._roots[:] = [(-e.priority, e.order, e.gen, e.hash) for e in entries if e.ready and not e.requires]
        heapq.heapify(self._roots)

    def _with_dependants(self, roots: Iterable[PoolEntry]) -> dict[bytes, PoolEntry]:
        found: dict[bytes, PoolEntry] = {}
        stack = list(roots)
        while stack:
            entry = stack.pop()
            if entry.hash not in found:
                found[entry.hash] = entry
                for tag in entry.provides:
                    stack.extend(self._dependants.get(tag, _NOTHING).values())
        return found

    def _drop(self, entry: PoolEntry, event: str | None, info: Any, leaving: Iterable[bytes]) -> None:
        self._unlink(entry, leaving)
        self._removed[entry.hash] = (event, info)

    def _remove_all(self, doomed: list[PoolEntry], event: str, info: Any = None) -> None:
        leaving = {e.hash for e in doomed}
        for entry in doomed:
            self._drop(entry, event, info, leaving)

    # --- limits -----------------------------------------------------------------------

    def _plan_eviction(self, newcomer: PoolEntry | None) -> list[PoolEntry] | None:
        """The entries to evict to get within the limits, or None if `newcomer` would be among them.
        Planning first keeps a refused newcomer from changing anything."""
        limits = self.limits
        count, size = dict(self._count), dict(self._bytes)
        victims: dict[bytes, PoolEntry] = {}
        popped: list[tuple[list, tuple]] = []
        for ready, max_count, max_bytes in ((False, limits.future_count, limits.future_bytes),
                                            (True, limits.ready_count, limits.ready_bytes)):
            heap = self._evictable[ready]
            while (count[ready] > max_count or size[ready] > max_bytes) and heap:
                item = heapq.heappop(heap)
                entry = self._entries.get(item[3])
                if entry is None or entry.gen != item[2]:
                    continue  # stale
                popped.append((heap, item))
                if newcomer is not None and entry.hash not in victims and entry.priority >= newcomer.priority:
                    # heads come lowest priority first: from here on only equals or betters, which a
                    # newcomer never pushes out (also when a block left the pool over its limits: that
                    # dropped transactions the pool had accepted). Stopping here keeps a refusal O(log n).
                    for heap_of, popped_item in popped:
                        heapq.heappush(heap_of, popped_item)
                    return None
                for victim in self._with_dependants([entry]).values():
                    if victim.hash not in victims:
                        victims[victim.hash] = victim
                        count[victim.ready] -= 1
                        size[victim.ready] -= victim.size
        if newcomer is not None and newcomer.hash in victims:  # as the dependant of a lower priority
            for heap, item in popped:
                heapq.heappush(heap, item)
            return None
        return list(victims.values())

    # --- bans ---------------------------------------------------------------------------

    def _ban(self, tx_hash: bytes) -> None:
        until = self._clock() + self.limits.ban_seconds
        self._banned[tx_hash] = until
        self._ban_queue.append((until, tx_hash))
        while len(self._banned) > BAN_CAPACITY:
            self._forget_oldest_ban()

    def _purge_bans(self) -> None:
        now = self._clock()
        while self._ban_queue and self._ban_queue[0][0] <= now:
            self._forget_oldest_ban()

    def _forget_oldest_ban(self) -> None:
        until, tx_hash = self._ban_queue.popleft()
        if self._banned.get(tx_hash) == until:
            del self._banned[tx_hash]

    # --- status events ---------------------------------------------------------------------

    def _touch(self, entry: PoolEntry) -> None:
        if entry.hash not in self._initial:
            present = self._entries.get(entry.hash) is entry
            self._initial[entry.hash] = (READY if entry.ready else FUTURE) if present else ABSENT

    def _announce(self) -> None:
        """Tell listeners the net change of every transaction the operation touched."""
        initial, removed = self._initial, self._removed
        self._initial, self._removed = {}, {}
        if not self._listeners:
            return
        for tx_hash, before in initial.items():
            entry = self._entries.get(tx_hash)
            if entry is None:
                event, info = removed.get(tx_hash, (None, None))
                if before != ABSENT and event is not None:
                    self._emit(tx_hash, event, info)
            elif (after := READY if entry.ready else FUTURE) != before:
                self._emit(tx_hash, after, None)

    def _emit(self, tx_hash: bytes, status: str, info: Any) -> None:
        for listener in list(self._listeners):
            try:
                listener(tx_hash, status, info)
            except Exception:  # a watcher's bug must not break the pool or the submitter
                log.exception("pool listener failed", tx=tx_hash.hex(), status=status)
