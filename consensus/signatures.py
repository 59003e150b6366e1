"""Signature checks of extrinsics: in line, or shared with a second process for a run of blocks.

Importing a run of blocks (import-blocks, later sync) keeps both cores busy: while
block k executes on this process, a worker process verifies the signatures of
block k+1. The messages are built here (they need the block's ancestry, not its
state: see Executive.signature_checks), the worker only runs Ed25519, and the
import consults the answer at the same stage as in line, so the checks and the
order of their errors are the same (the lowest failing index wins).

Executing a block costs less than verifying its signatures, so the worker gets the
first `share` of each block's checks and this process verifies the rest at the
signature stage; `share` adapts so that neither side waits for the other.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable

from runtime import crypto
from runtime.types import Header

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


@dataclass
class SharedChecks:
    """One block's checks: the first `split` in the worker (`future`), the rest verified here."""

    checks: list[Check]
    split: int
    future: Future
    owner: "SignatureVerifier"

    def first_failure(self) -> int:
        worker_done_first = self.future.done()
        here = first_failure(self.checks[self.split:])
        worker_done_after = self.future.done()
        there = self.future.result()
        self.owner.adapt(worker_done_first, worker_done_after)
        if there >= 0:
            return there
        return -1 if here < 0 else self.split + here


class SignatureVerifier:
    """A worker process that verifies a share of each block's checks. Close it when done."""

    MIN_SHARE, MAX_SHARE, STEP = 0.5, 1.0, 0.02

    def __init__(self, share: float = 0.75) -> None:
        # spawn: a fork of a process holding LevelDB handles and threads is not safe
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._pool.submit(first_failure, []).result()  # start it now, not inside the first block's time
        self.share = share

    def submit(self, checks: list[Check]) -> SharedChecks:
        split = round(len(checks) * self.share)
        return SharedChecks(checks, split, self._pool.submit(first_failure, checks[:split]), self)

    def adapt(self, worker_done_first: bool, worker_done_after: bool) -> None:
        """The worker finished before this side began: give it more; still busy after: give it less."""
        if worker_done_first:
            self.share = min(self.MAX_SHARE, self.share + self.STEP)
        elif not worker_done_after:
            self.share = max(self.MIN_SHARE, self.share - self.STEP)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "SignatureVerifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
