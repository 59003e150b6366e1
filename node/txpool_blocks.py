"""What the transaction pool does after each block (`on_block_imported`): included and expired
transactions leave, those of retracted blocks come back, and the rest are validated again (or, for a
block that extends the chain, pruned by the tags it provided). A part of TransactionPool
(node/txpool.py), over the same indexes."""

from __future__ import annotations

import itertools
from typing import Any, Iterable

from node.txpool_types import ABSENT, FUTURE, READY, PoolEntry, PruneReport
from runtime.validity import InvalidTransaction, UnknownTransaction


class BlockPruning:
    """TransactionPool's handling of a new best block; the pool's indexes and helpers are its own."""

    def on_block_imported(self, *, number: int, included: Iterable[bytes],
                          retracted: Iterable[Any] = (), revalidate: bool = True) -> PruneReport:
        """Block `number` is the new best: drop what it included and what expired, bring back the
        transactions of retracted (re-orged away) blocks, and validate everything again.

        revalidate=False (a block that extends the best chain, no re-org) skips validating every entry
        again, O(pool) validations per block, the largest cost of a node under a backlog: the tags the
        included transactions provided are now the chain's, so whoever required them stops waiting
        (Substrate's pruning by tags). Only the future queue is validated again, and only if the block
        included a transaction this pool never held (its tags are unknown here). An entry the block made
        invalid some other way stays until the next full revalidation or until an author finds it
        invalid (remove_invalid): the caller revalidates fully every few blocks."""
        self._purge_bans()
        included = set(included)
        retracted = list(retracted)
        if not revalidate and not retracted:
            return self._prune_by_tags(number, included)
        for entry in self._entries.values():
            self._touch(entry)  # remember every status, to announce only the net changes
        kept, expired = self._drop_included_and_expired(number, included)
        kept += self._retracted_entries(retracted, included)
        revalidated, invalid = self._revalidate(kept, number)
        self._rebuild(revalidated)
        report = self._prune_report(included, expired, invalid)
        self._announce()
        return report

    def _prune_by_tags(self, number: int, included: set[bytes]) -> PruneReport:
        entries = self._entries
        mined = [entries[h] for h in included if h in entries]
        leaving = {e.hash for e in mined}
        chain_tags = {tag for e in mined for tag in e.provides}
        unblocked: dict[bytes, PoolEntry] = {}
        for tag in chain_tags:  # the chain provides these now: whoever required them stops waiting
            waiting = self._dependants.get(tag)
            if not waiting:
                continue
            for tx_hash in [h for h in waiting if h not in leaving]:
                dependant = waiting.pop(tx_hash)
                self._touch(dependant)
                dependant.requires = tuple(t for t in dependant.requires if t != tag)
                dependant.missing.discard(tag)
                unblocked[tx_hash] = dependant
            if not waiting:
                del self._dependants[tag]
        for entry in mined:
            self._unlink(entry, leaving)  # nobody outside `leaving` requires its tags any more: no demotion
            self._removed[entry.hash] = (None, None)  # the RPC layer announces inclusion
        for entry in sorted(unblocked.values(), key=lambda e: e.order):
            if entry.hash not in entries:
                continue
            if entry.ready:
                self._refresh(entry)  # may have become a root
            elif not entry.missing:
                self._promote(entry)
        expired = [e for e in entries.values() if e.valid_till <= number]  # their dependants wait in future
        for entry in expired:
            self._ban(entry.hash)
        self._remove_all(expired, "invalid")
        invalid = 0
        if len(leaving) < len(included) and self._count[False]:
            invalid = self._revalidate_future(number)
        report = PruneReport(included=len(mined), expired=len(expired), invalid=invalid,
                             dropped=sum(1 for h, (event, _) in self._removed.items()
                                         if event in ("dropped", "usurped") and self._initial.get(h) != ABSENT),
                             resubmitted=0,
                             promoted=sum(1 for h, before in self._initial.items()
                                          if before == FUTURE and h in entries and entries[h].ready),
                             demoted=sum(1 for h, before in self._initial.items()
                                         if before == READY and h in entries and not entries[h].ready))
        self._announce()
        return report

    def _revalidate_future(self, number: int) -> int:
        """Validate the future queue again (a block included transactions whose tags this pool never saw,
        which may be what some of them wait for). Returns how many were invalid."""
        waiting = sorted((e for e in self._entries.values() if not e.ready), key=lambda e: e.order)
        leaving = {e.hash for e in waiting}
        for entry in waiting:
            self._unlink(entry, leaving)
        valid, invalid = self._revalidate(waiting, number)
        for entry in valid:
            holders = self._holders_of(entry.provides)
            if any(h.priority >= entry.priority for h in holders):
                self._removed[entry.hash] = ("usurped", holders[0].hash)
                continue
            self._remove_all(holders, "usurped", entry.hash)
            self._link(entry)
        return invalid

    def _drop_included_and_expired(self, number: int, included: set[bytes]) -> tuple[list[PoolEntry], int]:
        kept: list[PoolEntry] = []
        expired = 0
        for entry in self._entries.values():
            if entry.hash in included:
                self._removed[entry.hash] = (None, None)  # the RPC layer announces inclusion
            elif entry.valid_till <= number:  # the next block would be past its last valid block
                expired += 1
                self._removed[entry.hash] = ("invalid", None)
                self._ban(entry.hash)
            else:
                kept.append(entry)
        return kept, expired

    def _retracted_entries(self, retracted: Iterable[Any], included: set[bytes]) -> list[PoolEntry]:
        """Retracted transactions count as older than every pooled one (in the order given): they were
        sent earlier, later nonces depend on them, and the limits must evict the newest, not them (else a
        re-org under a full pool would leave every sender of a retracted transaction a nonce gap)."""
        retracted = list(retracted)
        self._first_order -= len(retracted)
        orders = itertools.count(self._first_order)
        entries = []
        for tx in retracted:
            try:
                tx_hash = self._call(self._tx_hash, tx, "hash")
                entry = PoolEntry(tx, tx_hash, self._call(self._tx_size, tx, "size"), next(orders))
            except UnknownTransaction:
                continue
            if tx_hash in included or tx_hash in self._initial:  # in the pool, or already seen
                continue
            self._banned.pop(tx_hash, None)  # it was in a block of ours: a ban must not keep it out
            self._touch(entry)
            entries.append(entry)
        return entries

    def _revalidate(self, entries: list[PoolEntry], number: int) -> tuple[list[PoolEntry], int]:
        valid: list[PoolEntry] = []
        invalid = 0
        for entry in entries:
            try:
                entry.set_validity(self._checked_validate(entry.tx, entry.hash), number)
                valid.append(entry)
            except InvalidTransaction:
                invalid += self._initial[entry.hash] != ABSENT
                self._removed[entry.hash] = ("invalid", None)
            except UnknownTransaction:
                self._removed[entry.hash] = ("dropped", None)
        return valid, invalid

    def _rebuild(self, entries: list[PoolEntry]) -> None:
        """Index the entries afresh, in arrival order, with their new tags and priorities: O(pool) like
        the validation before it, and it settles any tag conflict that the new answers made."""
        self._clear()
        for entry in sorted(entries, key=lambda e: e.order):
            holders = self._holders_of(entry.provides)
            strongest = max(holders, key=lambda e: e.priority, default=None)
            if strongest is not None and strongest.priority >= entry.priority:
                self._removed[entry.hash] = ("usurped", strongest.hash)
                continue
            self._remove_all(holders, "usurped", entry.hash)
            self._link(entry)

    def _prune_report(self, included: set[bytes], expired: int, invalid: int) -> PruneReport:
        initial, entries = self._initial, self._entries
        return PruneReport(
            included=sum(1 for h in included if initial.get(h, ABSENT) != ABSENT),
            expired=expired, invalid=invalid,
            dropped=sum(1 for h, (event, _) in self._removed.items()
                        if event in ("dropped", "usurped") and initial[h] != ABSENT and h not in entries),
            resubmitted=sum(1 for h, before in initial.items() if before == ABSENT and h in entries),
            promoted=sum(1 for h, before in initial.items() if before == FUTURE and h in entries and entries[h].ready),
            demoted=sum(1 for h, before in initial.items() if before == READY and h in entries and not entries[h].ready))
