"""What the chain service keeps while it imports a run of blocks (sync), and the collector's heap
between runs.

During a run, the bookkeeping that need not follow every block (the state indexes, blob
collection, due useful-work measurements, gauges) waits for the run's end, and progress is logged
once a second ("imported blocks", count, best, bps), like Substrate's "Syncing" line, instead of
one line per block. Blocks imported one at a time (gossip, authoring) keep their line each.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import structlog

from runtime.types import Block

log = structlog.get_logger("chain")
LOG_INTERVAL_S = 1.0  # a run logs its progress this often


@dataclass
class ImportRun:
    blocks: dict[bytes, Block]  # the run's blocks by hash (head listeners read them, not the database)
    first: int  # the best block's number when the run started
    logged_at: float  # time.monotonic() of the last progress line (or of the start)
    imported: int = 0
    logged: int = 0  # imported when progress was last logged
    best: int = 0  # the highest block number imported

    @classmethod
    def of(cls, blocks: list[Block], best_number: int) -> "ImportRun":
        return cls({block.hash: block for block in blocks}, best_number, time.monotonic(), best=best_number)

    def imported_block(self, number: int) -> None:
        self.imported += 1
        self.best = max(self.best, number)
        if time.monotonic() - self.logged_at >= LOG_INTERVAL_S:
            self.log_progress()

    def log_progress(self) -> None:
        """The blocks imported since the last line (if any), at what rate."""
        if self.imported == self.logged:
            return
        now = time.monotonic()
        log.info("imported blocks", count=self.imported - self.logged, best=self.best,
                 bps=round((self.imported - self.logged) / max(now - self.logged_at, 1e-6), 1))
        self.logged, self.logged_at = self.imported, now


class HeapFreezer:
    """Between the runs of a sync, move what survived into the collector's permanent generation.

    Catching up fills the trie's node caches with millions of small containers that live for
    a long time; every full collection walks all of them again (measured: a fifth of a sync's
    CPU time). Frozen objects are still freed by reference counting as usual; only reference
    cycles among them wait, until the heap is thawed: at the first block imported alone (the
    node follows the chain again), at authoring, or at close. Young cycles are collected before
    each freeze, so what waits is the few that became garbage after reaching the oldest generation.
    """

    def __init__(self) -> None:
        self.frozen = False

    def freeze(self) -> None:
        gc.collect(1)
        gc.freeze()
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen:
            self.frozen = False
            gc.unfreeze()
