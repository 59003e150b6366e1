"""Signature checks of extrinsics: in line, or shared with a second process for a run of blocks.

Importing a run of blocks (import-blocks, later sync) keeps both cores busy: while
block k executes on this process, a worker process verifies the signatures of the
blocks after it. The messages are built here (they need the block's ancestry, not
its state: see Executive.signature_checks), the worker only runs Ed25519, and the
import consults the answer before it commits, so the checks and the order of their
errors are the same (the lowest failing index wins; see ImportQueue.check_block).

Sharing is work stealing, not a split fixed in advance (consensus/signature_worker.py):
the worker verifies each block's checks from the front, and when this process reaches
the block's signature stage it verifies from the back whatever the worker has not
claimed yet, then waits only for the chunk the worker is on. The worker always has the
next block's checks queued, and this process verifies only what would otherwise keep
it waiting. (The split fixed per block that this replaced was balanced on the CPU
seconds of earlier blocks: a block slower or faster than its estimate left a core idle.)

The worker also hashes each block's encoded extrinsics into their root (not
execution, a fixed cost per block); execution compares it with the header's.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Callable

from consensus import signature_worker as board_
from consensus.signature_worker import BACK, DONE, FAILED, FIELDS, FRONT, ROOT, Check, count_of, pack_checks
from runtime import crypto
from runtime.errors import GradchainError
from runtime.types import Header

WAIT_S = 0.0002  # how long this process sleeps between two looks at the worker's progress


class SignatureWorkerFailed(GradchainError):
    code = "signature_worker_failed"


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


class SharedChecks:
    """One block's checks on the board: the worker's from the front, this process's from the back."""

    def __init__(self, owner: "SignatureVerifier", slot: int, checks: bytes | list[Check],
                 extrinsics: list[bytes] | None) -> None:
        self.owner = owner
        self.slot = slot
        self._base = slot * FIELDS
        self._checks = checks
        self._count = count_of(checks)
        self._extrinsics = extrinsics
        self._found = -1  # the lowest failing index this process found from the back
        self._answer: int | None = None
        self._root: bytes | None = None

    def first_failure(self) -> int:
        """Index of the first check that does not verify, or -1: the same answer as in line.

        Verifies from the back until the claims meet, then waits for the worker's chunk in progress
        (verifying the next blocks' checks from their back meanwhile)."""
        if self._answer is None:
            owner, board, base = self.owner, self.owner._board, self._base
            while self.take_from_back():
                pass
            while board[base + DONE] < board[base + FRONT]:
                owner._wait(self)
            with owner._lock:  # after the worker's last write to this slot (it writes under the lock)
                worker_failed = board[base + FAILED]
            self._answer = worker_failed if worker_failed < self._count else self._found
            self._release()
        return self._answer

    def take_from_back(self) -> bool:
        """Claim and verify the last chunk nobody has claimed; False if there is none."""
        owner, board, base = self.owner, self.owner._board, self._base
        with owner._lock:
            front, back = board[base + FRONT], board[base + BACK]
            if front >= back:
                return False
            start = max(front, back - owner.chunk)
            board[base + BACK] = start
        entered = time.thread_time()
        failed = board_.verify_range(self._checks, start, back)
        owner.here_cpu_seconds += time.thread_time() - entered
        owner.here_checks += back - start
        if failed >= 0:
            self._found = start + failed  # lower than any found before: this side goes down
        return True

    def extrinsics_root(self) -> bytes | None:
        """The root of the block's encoded extrinsics (None if they were not sent): the worker's, or computed
        here if the worker has not come to this block yet."""
        if self._root is None and self._extrinsics is not None:
            self._root = self.owner._root(self.slot, self._extrinsics)
            self._extrinsics = None
        return self._root

    def cancel(self) -> None:
        """The block failed before its signature stage: the worker need not verify the rest."""
        if self._answer is None:
            with self.owner._lock:
                self.owner._board[self._base + BACK] = self.owner._board[self._base + FRONT]
            self._answer = -1
            self._release()

    def _release(self) -> None:
        self._checks = b""
        self.owner._outstanding.remove(self)


class SignatureVerifier:
    """A worker process that verifies each block's checks beside this one. Close it when done."""

    CHUNK = 32  # checks per claim: what this process may wait for at most when it comes (~1.5 ms)

    def __init__(self, chunk: int = CHUNK) -> None:
        # spawn: a fork of a process holding LevelDB handles and threads is not safe
        context = multiprocessing.get_context("spawn")
        self.chunk = chunk
        self._sequence = 0
        self._outstanding: list[SharedChecks] = []  # submitted, not yet answered nor cancelled, in order
        self.here_cpu_seconds = 0.0  # CPU time this thread spent verifying from the back, in all
        self.here_checks = 0  # checks this thread verified from the back, in all
        self.waited_seconds = 0.0  # wall time this thread waited for the worker's chunk in progress, in all
        self._lock = context.Lock()
        self._board = context.Array("q", board_.BOARD_SIZE, lock=False)
        self._roots = context.Array("c", board_.SLOTS * 32, lock=False)
        self._inbox = context.Queue()
        ready = context.Event()
        self._process = context.Process(target=board_.run_worker, name="signature-worker", daemon=True,
                                        args=(self._inbox, self._lock, self._board, self._roots, ready, chunk))
        self._process.start()
        if not ready.wait(60):  # started now, not inside the first block's time
            self.close()
            raise SignatureWorkerFailed("the signature worker process did not start")

    @property
    def worker_cpu_seconds(self) -> float:
        """CPU time of the worker process since it started (verifying, hashing roots, receiving), as of its
        last block."""
        return self._board[board_.CPU_US] / 1_000_000

    def submit(self, checks: list[Check], extrinsics: list[bytes] | None = None) -> SharedChecks:
        """Queue a block's checks; `extrinsics` (the block's encoded extrinsics) also has the worker compute
        their root, for execution to compare with the header's."""
        self._sequence += 1
        sequence, board = self._sequence, self._board
        slot = sequence % board_.SLOTS
        while board[board_.FINISHED] < sequence - board_.SLOTS:  # the slot's last block still in the worker
            self._wait(None)
        packed = pack_checks(checks)
        base = slot * FIELDS
        with self._lock:
            board[base + FRONT], board[base + BACK], board[base + DONE] = 0, count_of(packed), 0
            board[base + FAILED], board[base + ROOT] = count_of(packed), 0
        self._inbox.put((sequence, slot, packed, extrinsics))
        shared = SharedChecks(self, slot, packed, extrinsics)
        self._outstanding.append(shared)
        return shared

    def _root(self, slot: int, extrinsics: list[bytes]) -> bytes:
        with self._lock:
            if self._board[slot * FIELDS + ROOT] == 1:
                return bytes(self._roots[slot * 32:slot * 32 + 32])
            self._board[slot * FIELDS + ROOT] = 2  # taken here: the worker need not hash it
        entered = time.thread_time()
        root = board_.extrinsics_root(extrinsics)
        self.here_cpu_seconds += time.thread_time() - entered
        return root

    def _wait(self, waiting: SharedChecks | None) -> None:
        """While the worker finishes what `waiting` needs: verify a chunk of a later block from its back,
        or, with none left, sleep a moment."""
        if not self._process.is_alive():
            raise SignatureWorkerFailed(f"the signature worker process exited (code {self._process.exitcode})")
        if waiting is not None:
            later = self._outstanding[self._outstanding.index(waiting) + 1:]
            if any(shared.take_from_back() for shared in later):
                return
        started = time.perf_counter()
        time.sleep(WAIT_S)
        self.waited_seconds += time.perf_counter() - started

    def close(self) -> None:
        for shared in list(self._outstanding):  # the worker drops what nobody will ask for
            shared.cancel()
        if self._process.is_alive():
            self._inbox.put(None)
            self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._inbox.close()
        self._inbox.join_thread()

    def __enter__(self) -> "SignatureVerifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
