"""Signature checks of extrinsics: in line, or shared with a second process for a run of blocks.

Importing a run of blocks (import-blocks, later sync) keeps both cores busy: while
block k executes on this process, a worker process verifies the signatures of
block k+1. The messages are built here (they need the block's ancestry, not its
state: see Executive.signature_checks), the worker only runs Ed25519, and the
import consults the answer at the same stage as in line, so the checks and the
order of their errors are the same (the lowest failing index wins).

The worker also hashes the block's encoded extrinsics into their root (not execution,
and a few percent of this process's work per block); execution compares it with the
header's at the stage where it would compute it.

Executing a block costs less than verifying its signatures, so the worker gets the
first `share` of each block's checks and this process verifies the rest at the
signature stage; `share` adapts so that neither side waits for the other.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable

from runtime import crypto
from runtime.hashing import blake2b_256
from runtime.types import Header, compute_extrinsics_root

Check = tuple[bytes, bytes, bytes]  # (public key, message, signature)


def first_failure(checks: list[Check]) -> int:
    """Index of the first check that does not verify, or -1."""
    verify = crypto.verify
    for index, (public, message, signature) in enumerate(checks):
        if not verify(public, message, signature):
            return index
    return -1


class Ancestry:
    """Hashes of a block's ancestors by number, walking parent links (only as far as asked)."""

    def __init__(self, header: Header, header_of: Callable[[bytes], Header | None]) -> None:
        self._header_of = header_of
        self._number = header.number - 1
        self._hash = header.parent_hash
        self._known: dict[int, bytes] = {self._number: header.parent_hash}

    def hash_at(self, number: int) -> bytes | None:
        while number < self._number:
            parent = self._header_of(self._hash)
            if parent is None or parent.number == 0:
                return self._known.get(number)
            self._hash, self._number = parent.parent_hash, parent.number - 1
            self._known[self._number] = self._hash
        return self._known.get(number)


def timed_first_failure(checks: list[Check], extrinsics: list[bytes] | None = None
                        ) -> tuple[int, float, bytes | None, float]:
    """first_failure, the CPU seconds it took (the worker's side, for balancing), the extrinsics root of
    the block's encoded extrinsics, if given (hashing them is not execution: it moves to the worker too),
    and the CPU seconds of that root (a fixed cost per block, not a cost per check)."""
    started = time.thread_time()
    failed = first_failure(checks)
    verified = time.thread_time()
    root = None if extrinsics is None else compute_extrinsics_root([blake2b_256(x) for x in extrinsics])
    return failed, verified - started, root, time.thread_time() - verified


@dataclass
class SharedChecks:
    """One block's checks: the first `split` in the worker (`future`), the rest verified here."""

    checks: list[Check]
    split: int
    future: Future
    owner: "SignatureVerifier"
    consumed: bool = False  # its block reached the signature stage (a block that fails before never does)

    def first_failure(self) -> int:
        if not self.consumed:
            self.consumed = True
            self.owner._queued -= 1
        entered = time.thread_time()
        here = first_failure(self.checks[self.split:])
        verified = time.thread_time()
        there, worker_seconds, _, root_seconds = self.future.result()
        self.owner.balance(len(self.checks) - self.split, verified - entered, self.split, worker_seconds, entered,
                           root_seconds)
        if there >= 0:
            return there
        return -1 if here < 0 else self.split + here

    def extrinsics_root(self) -> bytes | None:
        """The root the worker computed from the block's encoded extrinsics (None if they were not sent)."""
        return self.future.result()[2]


class SignatureVerifier:
    """A worker process that verifies a share of each block's checks. Close it when done.

    The share balances the two sides: this process also executes and commits each
    block (`other` seconds between two signature stages), so the worker takes
    share = (n c_here + other - root) / (n (c_here + c_worker)) of a block's n checks,
    with c the measured seconds per check on each side and root the worker's seconds
    hashing the block's extrinsics root (smoothed over blocks). All
    are CPU seconds of the thread that does the work: on two free cores that is the
    wall time, and on a busy machine it does not mistake being descheduled for work.
    """

    MIN_SHARE, MAX_SHARE = 0.3, 1.0
    IDLE_SHARE = 0.5  # of a block's checks submitted while no other block's are queued

    def __init__(self, share: float = 0.9) -> None:  # executing a block of transfers costs less than its checks
        # spawn: a fork of a process holding LevelDB handles and threads is not safe
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._pool.submit(timed_first_failure, [], []).result()  # start it now, not inside the first block's time
        self.share = share
        self._left_stage: float | None = None  # this thread's CPU clock when it last left a signature stage
        self.worker_cpu_seconds = 0.0  # CPU time the worker spent verifying, in all
        self.here_cpu_seconds = 0.0  # CPU time this thread spent verifying its part, in all
        self._queued = 0  # submitted checks whose block has not reached its signature stage yet

    def submit(self, checks: list[Check], extrinsics: list[bytes] | None = None) -> SharedChecks:
        """Start a block's checks; `extrinsics` (the block's encoded extrinsics) also has the worker compute
        their root, for execution to compare with the header's at its usual stage."""
        # With no other block's checks queued (a run's first block, or a block that arrived alone) this
        # process has nothing to execute while the worker verifies: it will wait for these checks next, so
        # both take half. Otherwise the worker's share overlaps this process executing the block before.
        split = round(len(checks) * (self.IDLE_SHARE if self._queued == 0 else self.share))
        self._queued += 1
        return SharedChecks(checks, split, self._pool.submit(timed_first_failure, checks[:split], extrinsics), self)

    def balance(self, here_count: int, here_seconds: float, worker_count: int, worker_seconds: float,
                entered: float, root_seconds: float = 0.0) -> None:
        self.worker_cpu_seconds += worker_seconds + root_seconds
        self.here_cpu_seconds += here_seconds
        first = self._left_stage is None
        other = 0.0 if first else entered - self._left_stage
        self._left_stage = time.thread_time()
        if first:  # what this process does between two blocks' checks is not known yet: keep the share
            return
        if here_count < 16 or worker_count < 16:  # too few to measure: nudge toward the side that waited less
            self.share = min(self.MAX_SHARE, max(self.MIN_SHARE, self.share + (0.05 if here_count < 16 else -0.05)))
            return
        per_check_here, per_check_worker = here_seconds / here_count, worker_seconds / worker_count
        n = here_count + worker_count
        # equal work on both sides: share n c_worker + root = (1 - share) n c_here + other
        target = (n * per_check_here + other - root_seconds) / (n * (per_check_here + per_check_worker))
        self.share = min(self.MAX_SHARE, max(self.MIN_SHARE, 0.3 * self.share + 0.7 * target))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "SignatureVerifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
