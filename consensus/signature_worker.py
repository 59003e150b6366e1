"""The second process of a two-core import, and the board it shares with this one.

Each block's checks get a slot on a board of shared integers: the worker claims
chunks from the front (`front`), the importing process claims from the back
(`back`) once it reaches the block's signature stage, and the two meet wherever
they meet: no chunk is handed out in advance, so neither side ever waits for work
the other was given but has not begun. The checks themselves travel once per block
through a queue, packed into one bytes object (a list of tuples costs the sending
process's GIL a few milliseconds per block to pickle; a bytes object costs a copy).

A slot's integers (a multiprocessing Array without its own lock; `lock` guards the
claims, and each integer is written whole):

    FRONT   next index the worker would claim      BACK    one past the last index nobody claimed
    DONE    checks the worker has verified          FAILED  lowest index the worker found failing, or `n`
    ROOT    1 once the block's extrinsics root is in `roots`; 2 if the importing process computed it itself

and, after the slots, FINISHED: the sequence number of the last block the worker is done with (so a slot
is reused only once the worker has let go of it), and CPU_US: the worker process's CPU microseconds since
it started, as of its last block (what the benchmark reports as the worker's side).
"""

from __future__ import annotations

import multiprocessing
import queue
import time

from runtime import crypto
from runtime.hashing import blake2b_256
from runtime.types import compute_extrinsics_root

Check = tuple[bytes, bytes, bytes]  # (public key, message, signature)

SLOTS = 8  # blocks whose checks may be outstanding at once (a run keeps two)
FRONT, BACK, DONE, FAILED, ROOT = range(5)
FIELDS = 5
FINISHED = SLOTS * FIELDS
CPU_US = FINISHED + 1
BOARD_SIZE = FINISHED + 2
PARENT_CHECK_S = 1.0  # how often an idle worker looks whether the importing process is still there
RECORD = 128  # a packed check: public key (32), signature (64), message (32)


def pack_checks(checks: list[Check]) -> bytes | list[Check]:
    """The checks as one bytes object of fixed records, or as they are when one does not fit a record
    (an era not valid at the block gives an empty message; a test may give anything)."""
    records = [public + signature + message for public, message, signature in checks]
    if records and {len(record) for record in records} != {RECORD}:
        return checks
    return b"".join(records)


def verify_range(checks: bytes | list[Check], start: int, end: int) -> int:
    """Index (from `start`) of the first check in [start, end) that does not verify, or -1."""
    verify = crypto.verify
    if isinstance(checks, list):
        for index in range(start, end):
            public, message, signature = checks[index]
            if not verify(public, message, signature):
                return index - start
        return -1
    offset = start * RECORD
    for index in range(end - start):
        if not verify(checks[offset:offset + 32], checks[offset + 96:offset + 128], checks[offset + 32:offset + 96]):
            return index
        offset += RECORD
    return -1


def count_of(checks: bytes | list[Check]) -> int:
    return len(checks) if isinstance(checks, list) else len(checks) // RECORD


def extrinsics_root(extrinsics: list[bytes]) -> bytes:
    return compute_extrinsics_root([blake2b_256(x) for x in extrinsics])


def run_worker(inbox, lock, board, roots, ready, chunk: int) -> None:
    """The worker process: verify each block's checks from the front, chunk by chunk, until the claims meet."""
    ready.set()
    cpu_started = time.process_time()  # this whole process's CPU from now on: its side of the import
    parent = multiprocessing.parent_process()
    while True:
        try:
            message = inbox.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if parent is not None and not parent.is_alive():  # killed without closing us: do not linger
                return
            continue
        if message is None:
            return
        sequence, slot, checks, extrinsics = message
        base = slot * FIELDS
        if extrinsics is not None and board[base + ROOT] == 0 and board[base + FRONT] < board[base + BACK]:
            root = extrinsics_root(extrinsics)
            with lock:  # the lock orders the root's bytes before its flag, for the reader
                roots[slot * 32:slot * 32 + 32] = root
                board[base + ROOT] = 1
        while True:
            with lock:
                front, back = board[base + FRONT], board[base + BACK]
                if front >= back:
                    break
                end = min(front + chunk, back)
                board[base + FRONT] = end
            failed = verify_range(checks, front, end)
            with lock:
                if failed >= 0:  # written before DONE: whoever sees the chunk done sees its failure
                    board[base + FAILED] = front + failed
                    board[base + BACK] = board[base + FRONT]  # everything before it verified: the answer is known
                board[base + DONE] += end - front
            if failed >= 0:
                break
        board[CPU_US] = round((time.process_time() - cpu_started) * 1_000_000)
        board[FINISHED] = sequence
