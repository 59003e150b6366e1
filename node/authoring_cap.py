"""How much one authored block may hold.

An overloaded cluster must degrade gracefully: a block is built, imported by every
peer and propagated well within its slot even when the machine is saturated, and
the backlog waits in the pools. Without a cap, an author under a backlog builds
for half a slot; on a starved machine its peers then take seconds to import that
block, the next author builds before it has arrived, and the validators fork
(measured: blocks of 2,000-6,000 transfers taking 1-3 s at a 1 s slot).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class AuthoringCap:
    """max_transactions: pool transactions an author considers for one block. It is load-insensitive:
    every peer re-executes the block, so its size, not the author's speed, decides whether peers keep up.
    build_share: of the slot, the most wall-clock time spent adding transactions, counted from the moment
    building starts (the caller's deadline, counted from the slot's start, also holds)."""

    max_transactions: int = 1_500
    build_share: float = 0.25

    def __post_init__(self) -> None:
        if self.max_transactions < 0 or not 0 < self.build_share <= 1:
            raise ValueError("max_transactions must be >= 0 and build_share in (0, 1]")

    def deadline_ms(self, slot_deadline_ms: int, now_ms: int, slot_ms: int) -> int:
        return min(slot_deadline_ms, now_ms + int(slot_ms * self.build_share))

    def transactions(self, ready: Iterable[T]) -> Iterator[T]:
        """The first max_transactions of the pool's ready queue: the rest is not even walked (a long
        pool would otherwise be iterated to its end only to be postponed)."""
        return itertools.islice(ready, self.max_transactions)
