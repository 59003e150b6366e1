"""Fork choice: which block is best. The one place that decides it.

The rule (what every node applies to the blocks it holds):

    1. Candidates are the blocks that descend from the last finalized block (or are it)
       and whose path from it holds no block this node excludes: a block whose
       useful-work status is `disputed` or `unverifiable` (cannot-check is not checked),
       and therefore every descendant of such a block. `pending` blocks count: their
       check runs off the chain thread and must not hold authorship back.
    2. The best is the highest candidate.
    3. Ties go to the lower slot (the block authored first), then to the lower hash
       (bytewise): deterministic, so nodes holding the same blocks agree, and a
       fork arriving later at the same height never moves the head by itself.

An author builds on the best block, so authors never build on an excluded block;
when the best turns excluded, the next best is chosen here and the node re-orgs to
it. `route` says which blocks leave and join the best chain (the pool retracts and
re-enters their transactions), and the HeadChange that storage writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from runtime.types import Header
from storage.block_status import VerificationStatus
from storage.chainstore import ChainStore, HeadChange

MEMO_SIZE = 65_536


@dataclass(frozen=True)
class Route:
    """How the best chain changes: blocks leaving it (newest first) and joining it (oldest first)."""

    old_best: Header
    new_best: Header
    retracted: tuple[Header, ...]
    enacted: tuple[Header, ...]
    head: HeadChange

    @property
    def is_reorg(self) -> bool:
        return bool(self.retracted)


def tie_key(header: Header) -> tuple:
    """Sort key of a candidate head: the first one sorted is best (highest, then lowest slot, then hash)."""
    return (-header.number, header.digest.slot, bytes(header.hash))


class ForkChoice:
    """Applies the rule above to one chain store; remembers which blocks are candidates."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self._viable: dict[bytes, bool] = {}  # block -> on an unexcluded path from the finalized block
        self._finalized: bytes | None = None
        self._override: tuple[bytes, VerificationStatus] | None = None

    def forget(self) -> None:
        """A status turned excluded (or back): every remembered answer may be stale."""
        self._viable.clear()

    def best(self, new: tuple[Header, VerificationStatus] | None = None,
             changed: tuple[bytes, VerificationStatus] | None = None) -> Header:
        """The best block among those stored, and `new` (a block about to be committed with that status),
        or with `changed` (a stored block's status about to be rewritten), so both go in one batch."""
        store = self.store
        finalized = store.finalized_header()
        if finalized.hash != self._finalized:
            self._viable.clear()
            self._finalized = finalized.hash
        self._override = changed
        try:
            return self._best(new, finalized)
        finally:
            self._override = None
            if changed is not None:
                self._viable.clear()  # answers computed with the new status are kept only once it is written

    def best_through(self, block_hash: bytes) -> Header:
        """The best block among those descending from `block_hash` (or it): where the head goes when finality
        settles on a block off the best chain (a supermajority precommitted it; every node must follow)."""
        self._viable.clear()  # answered for another finalized block
        try:
            return self._best(None, self.store.header(block_hash))
        finally:
            self._viable.clear()

    def _status(self, block_hash: bytes) -> VerificationStatus | None:
        if self._override is not None and self._override[0] == block_hash:
            return self._override[1]
        return self.store.verification_status(block_hash)

    def _best(self, new: tuple[Header, VerificationStatus] | None, finalized: Header) -> Header:
        store = self.store
        leaves = set(store.leaves()) or {store.best_hash}
        candidates: list[Header] = []
        if new is not None:
            header, status = new
            leaves.discard(header.parent_hash)
            parent = store.header(header.parent_hash)
            if not status.is_excluded and parent is not None and self.is_viable(parent, finalized):
                candidates.append(header)
            elif parent is not None:
                leaves.add(parent.hash)  # its highest candidate ancestor still counts
        for leaf in leaves:
            candidate = self._highest_viable(leaf, finalized)
            if candidate is not None:
                candidates.append(candidate)
        if not candidates:
            return finalized  # always a candidate: it is final
        return min(candidates, key=tie_key)

    def is_viable(self, header: Header, finalized: Header | None = None) -> bool:
        """Does `header` descend from the finalized block through no excluded block (itself included)?"""
        store = self.store
        finalized = finalized or store.finalized_header()
        path: list[Header] = []
        cursor: Header | None = header
        while True:
            known = self._viable.get(cursor.hash)
            if known is not None:
                result = known
                break
            if cursor.number <= finalized.number:
                result = cursor.hash == finalized.hash
                break
            path.append(cursor)
            cursor = store.header(cursor.parent_hash)
            if cursor is None:
                result = False
                break
        if len(self._viable) + len(path) > MEMO_SIZE:
            self._viable.clear()
        for block in reversed(path):  # from the oldest: a block is viable if its parent is and it is not excluded
            status = self._status(block.hash)  # None: stored before statuses existed, imported all the same
            result = result and (status is None or not status.is_excluded)
            self._viable[block.hash] = result
        return result

    def _highest_viable(self, leaf_hash: bytes, finalized: Header) -> Header | None:
        cursor = self.store.header(leaf_hash)
        while cursor is not None and cursor.number >= finalized.number:
            if self.is_viable(cursor, finalized):
                return cursor
            cursor = self.store.header(cursor.parent_hash)
        return None


def route(old_best: Header, new_best: Header, header_of: Callable[[bytes], Header | None]) -> Route:
    """The blocks between two heads, and the canonical index entries that make `new_best` the head.

    `header_of` reads headers (the store's, plus a block about to be committed)."""
    retracted: list[Header] = []
    enacted: list[Header] = []
    old, new = old_best, new_best
    while old.hash != new.hash:
        if old.number >= new.number:
            retracted.append(old)
            old = header_of(old.parent_hash)
        else:
            enacted.append(new)
            new = header_of(new.parent_hash)
    enacted.reverse()
    head = HeadChange(new_best.hash, tuple((h.number, h.hash) for h in enacted),
                      tuple(range(new_best.number + 1, old_best.number + 1)))
    return Route(old_best, new_best, tuple(retracted), tuple(enacted), head)
