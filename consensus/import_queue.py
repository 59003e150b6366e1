"""The block import pipeline: every block this node adds goes through `ImportQueue.import_block`.

Its own blocks (authorship), blocks of a file (import-blocks), and later gossip and
sync. Stages, in order; the first failed check names itself and leaves nothing of
the block in the database:

    1. header       parent known -> number follows the parent -> builds on finality
    2. slot/author  slot after the parent's, not in the future -> author is the slot's validator -> seal
    3. timestamp    the first extrinsic is timestamp.set, inside the slot
    4. signatures   every signed extrinsic (shared with a second process when importing a run of blocks,
                    which also hashes the extrinsics for their root; the block then executes while the
                    worker verifies, and a bad signature is still the error reported: see
                    _execute_beside_the_worker)
    5. execution    on the parent's state; every root compared; the new state is returned
    6. commit       block + state + verification status + new head: one WriteBatch
    7. useful work  the block's reports re-measured off the chain thread (consensus/verification.py);
                    its verdict is written with the head it moves, again in one batch
    8. fork choice  consensus/fork_choice.py decides the head before 6 and after 7

An authored block skips 1-5 (its author built it on this node's state) but not 6-8.
Results say what happened: imported, already known, bad (with the error), unknown parent.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

from consensus.fork_choice import ForkChoice, Route, route
from consensus.signatures import Ancestry, SharedChecks, SignatureVerifier, first_failure
from consensus.verification import NoUsefulWorkCheck
from runtime import crypto
from runtime.errors import InvalidBlock
from runtime.executive import BlockExecution, Executive
from runtime.pallets import timestamp
from runtime.types import Block, Header
from storage.block_status import VerificationStatus
from storage.chainstore import ChainStore, HeadChange
from storage.state_view import ExecutedState

MAX_DRIFT_MS = 5_000  # how far in the future a block's timestamp may be
# Blocks of a run whose checks are queued to the worker beyond the one executing: with two, a worker that
# finished the next block's checks while this process was slow goes on with the one after.
RUN_AHEAD = 2

IMPORTED = "imported"
KNOWN = "already_known"
BAD = "bad"
MISSING_PARENT = "unknown_parent"


class BlockImportError(InvalidBlock):
    code = "invalid_block"


class AlreadyKnown(BlockImportError):
    code = "already_known"


class UnknownParent(BlockImportError):
    code = "unknown_parent"


class BadSeal(BlockImportError):
    code = "bad_seal"


class WrongAuthor(BlockImportError):
    code = "wrong_author"


class BadSlot(BlockImportError):
    code = "bad_slot"


class BadTimestamp(BlockImportError):
    code = "bad_timestamp"


class BadSignature(BlockImportError):
    code = "bad_signature"


class RevertsFinality(BlockImportError):
    code = "reverts_finality"


@dataclass(frozen=True)
class ImportResult:
    outcome: str  # IMPORTED, KNOWN, BAD or MISSING_PARENT
    hash: bytes
    number: int
    error: InvalidBlock | None = None
    status: VerificationStatus | None = None  # at commit: verified, or pending while its useful work is checked
    route: Route | None = None  # how the best chain moved (None: it did not)
    import_ms: float = 0.0

    @property
    def is_best(self) -> bool:
        return self.route is not None and self.route.new_best.hash == self.hash

    def raise_for_error(self) -> "ImportResult":
        if self.error is not None:
            raise self.error
        return self


def expected_author(authorities: list[bytes], slot: int) -> bytes:
    """Aura: the validators take slots in turn."""
    return authorities[slot % len(authorities)]


class ImportQueue:
    def __init__(self, chain: ChainStore, executive: Executive, *, slot_duration_ms: int,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 useful_work=None, fork_choice: ForkChoice | None = None) -> None:
        self.chain = chain
        self.executive = executive
        self.slot_duration_ms = slot_duration_ms
        self.clock_ms = clock_ms
        self.fork_choice = fork_choice or ForkChoice(chain)
        self.useful_work = useful_work or NoUsefulWorkCheck()  # stage 7 (UsefulWorkCheck.attach sets it)
        self.head_listeners: list[Callable[[Route], None]] = []  # the best chain moved (pool, gauges)
        self.status_listeners: list[Callable[[bytes, VerificationStatus], None]] = []  # a block's status was written

    # --- the entry point --------------------------------------------------------

    def import_block(self, block: Block, *, authored: ExecutedState | None = None,
                     signatures: SharedChecks | None = None) -> ImportResult:
        """Check, execute, commit and choose the head; `authored` is this node's own block's state.

        `signatures`: this block's checks, already under way in a second process (import_run);
        otherwise they are verified here."""
        started = time.perf_counter()
        header = block.header
        if self.chain.header(header.hash) is not None:
            return ImportResult(KNOWN, header.hash, header.number,
                                AlreadyKnown(f"block #{header.number} {header.hash.hex()[:16]} is already imported"))
        try:
            with CollectorPaused():
                status, moved = self._check_and_commit(block, authored, signatures)
        except UnknownParent as error:
            return ImportResult(MISSING_PARENT, header.hash, header.number, error)
        except InvalidBlock as error:
            return ImportResult(BAD, header.hash, header.number, error)
        for listener in self.status_listeners:
            listener(header.hash, status)
        if moved is not None:
            self._moved(moved)
        if status.is_waiting:
            self.useful_work.start(block)
        return ImportResult(IMPORTED, header.hash, header.number, None, status, moved,
                            (time.perf_counter() - started) * 1000)

    def _check_and_commit(self, block: Block, authored: ExecutedState | None, signatures: SharedChecks | None
                          ) -> tuple[VerificationStatus, Route | None]:
        """Stages 1-6 and fork choice. The execution's results (its events, outcomes, the trie update) are
        dropped on return, while the collector is still paused (see CollectorPaused)."""
        header = block.header
        own = authored is not None
        if authored is None:
            authored = self.check_block(block, signatures=signatures).state
        status = self.useful_work.status_at_import(block, own=own)
        moved = self._route_to(self.fork_choice.best((header, status)), extra=header)
        self.chain.commit_block(block, authored, status, head=None if moved is None else moved.head)
        return status, moved

    def import_run(self, blocks: Iterable[Block], verifier: SignatureVerifier) -> Iterable[ImportResult]:
        """Import a run of blocks in order, verifying the next blocks' signatures in `verifier` (another
        process) while the current one executes. Same checks, same order of errors."""
        known: dict[bytes, Header] = {}
        iterator = iter(blocks)
        queued: deque[tuple[Block, SharedChecks]] = deque()

        def queue_ahead() -> None:
            while len(queued) <= RUN_AHEAD:
                following = next(iterator, None)
                if following is None:
                    return
                queued.append((following, self._verify_ahead(following, known, verifier)))
        try:
            queue_ahead()
            while queued:
                block, checks = queued.popleft()
                queue_ahead()  # the next blocks' checks go to the worker before this block executes
                result = self.import_block(block, signatures=checks)
                if result.outcome != IMPORTED:
                    checks.cancel()  # refused before its signature stage, or known: the worker need not go on
                yield result
        finally:  # the consumer stopped early: the worker drops what it has not begun
            for _, checks in queued:
                checks.cancel()

    def _verify_ahead(self, block: Block, known: dict[bytes, Header], verifier: SignatureVerifier) -> SharedChecks:
        known[block.hash] = block.header
        if len(known) > 1024:
            known.pop(next(iter(known)))
        ancestry = Ancestry(block.header, lambda h: known.get(h) or self.chain.header(h))
        return verifier.submit(self.executive.signature_checks(block, ancestry.hash_at),
                               [x.encoded for x in block.extrinsics])

    # --- verdicts and the head ----------------------------------------------------

    def set_status(self, block_hash: bytes, status: VerificationStatus) -> Route | None:
        """Write a new verdict for a stored block, with the head it moves, in one batch."""
        previous = self.chain.verification_status(block_hash)
        if previous is not None and previous.is_excluded != status.is_excluded:
            self.fork_choice.forget()
        moved = self._route_to(self.fork_choice.best(changed=(block_hash, status)))
        self.chain.write_status(block_hash, status, head=None if moved is None else moved.head)
        for listener in self.status_listeners:
            listener(block_hash, status)
        if moved is not None:
            self._moved(moved)
        return moved

    def reconsider_head(self) -> Route | None:
        """Apply fork choice again (after finality moved, say)."""
        self.fork_choice.forget()
        moved = self._route_to(self.fork_choice.best())
        if moved is not None:
            self.chain.set_head(moved.head)
            self._moved(moved)
        return moved

    def route_through(self, block_hash: bytes) -> Route | None:
        """Move the head onto the best chain through `block_hash` (finality is about to settle on it)."""
        moved = self._route_to(self.fork_choice.best_through(block_hash))
        if moved is not None:
            self.chain.set_head(moved.head)
            self._moved(moved)
        return moved

    def _route_to(self, best: Header, extra: Header | None = None) -> Route | None:
        old = self.chain.best_header()
        if best.hash == old.hash:
            return None

        def header_of(block_hash: bytes) -> Header | None:
            return extra if extra is not None and block_hash == extra.hash else self.chain.header(block_hash)
        return route(old, best, header_of)

    def _moved(self, moved: Route) -> None:
        for listener in self.head_listeners:
            listener(moved)

    # --- the checks, in the order import_block makes them ----------------------------

    def check_block(self, block: Block, *, check_finality: bool = True,
                    signatures: SharedChecks | None = None) -> BlockExecution:
        """Every check of import, without committing: the execution (its state ready for commit).

        `check_finality=False` re-checks a block already in the chain (check-block)."""
        chain, header = self.chain, block.header
        parent = chain.header(header.parent_hash)
        if parent is None:
            raise UnknownParent(f"parent {header.parent_hash.hex()[:16]} of block #{header.number} is unknown")
        if header.number != parent.number + 1:
            raise BlockImportError(f"block number {header.number} does not follow its parent's {parent.number}")
        if check_finality:
            self._check_builds_on_finality(block)
        parent_view = chain.state_view(header.parent_hash)
        self._check_slot_and_author(block, parent, parent_view)
        self._check_timestamp(block)
        if isinstance(signatures, SharedChecks):
            return self._execute_beside_the_worker(block, parent_view, signatures)
        self._check_signatures(block, signatures)
        root = None if signatures is None else signatures.extrinsics_root()
        return self.executive.execute_block(parent_view, block, signatures_checked=True, extrinsics_root=root)

    def _execute_beside_the_worker(self, block: Block, parent_view, signatures: SharedChecks) -> BlockExecution:
        """Stages 4 and 5 of a block whose checks the worker is verifying: execute while the worker finishes
        them, then report in stage order -- a bad signature before anything execution found -- so the outcome
        and the first error are the ones in line. Execution changes nothing (its state is returned and
        committed only after this), so a block refused here leaves nothing behind, as in line.

        The extrinsics root (the worker hashed it when the block was queued) is compared first, as execution
        would: a body that is not the header's is not executed at all."""
        root = signatures.extrinsics_root()
        if root != block.header.extrinsics_root:
            self._check_signatures(block, signatures)
            self.executive.check_extrinsics_root(block, root)  # raises: execution's first check
        try:
            execution = self.executive.execute_block(parent_view, block, signatures_checked=True, extrinsics_root=root)
        except Exception as error:  # noqa: BLE001 -- re-raised below unless a signature fails first
            self._check_signatures(block, signatures)
            raise error
        self._check_signatures(block, signatures)
        return execution

    def _check_builds_on_finality(self, block: Block) -> None:
        finalized = self.chain.finalized_header()
        if block.header.number <= finalized.number:
            raise RevertsFinality(f"block #{block.header.number} is at or below finalized #{finalized.number}")
        ancestor = self.chain.header(block.header.parent_hash)
        while ancestor is not None and ancestor.number > finalized.number:
            if self.chain.hash_at(ancestor.number) == ancestor.hash:
                return  # canonical ancestors lead to the finalized block
            ancestor = self.chain.header(ancestor.parent_hash)
        if ancestor is None or ancestor.hash != finalized.hash:
            raise RevertsFinality(f"block #{block.header.number} is not a descendant of the finalized block")

    def _check_slot_and_author(self, block: Block, parent: Header, parent_view) -> None:
        digest = block.header.digest
        if parent.number > 0 and digest.slot <= parent.digest.slot:
            raise BadSlot(f"slot {digest.slot} is not after the parent's slot {parent.digest.slot}")
        authorities = self.executive.authorities(parent_view)
        if not authorities:
            raise WrongAuthor("the parent state has no validators")
        expected = expected_author(authorities, digest.slot)
        if digest.author != expected:
            raise WrongAuthor(f"slot {digest.slot} belongs to {expected.hex()[:16]}, "
                              f"not {digest.author.hex()[:16]}")
        if len(digest.seal) != crypto.SIGNATURE_LENGTH or not crypto.verify(
                digest.author, block.header.pre_seal_hash(), digest.seal):
            raise BadSeal(f"the seal of block #{block.header.number} is not the author's signature")

    def _check_timestamp(self, block: Block) -> None:
        first = block.extrinsics[0] if block.extrinsics else None
        if first is None or first.signed is not None or first.call.definition is not timestamp.set:
            raise BadTimestamp("the first extrinsic must be the timestamp.set inherent")
        moment = first.call.args[0]
        if moment // self.slot_duration_ms != block.header.digest.slot:
            raise BadTimestamp(f"timestamp {moment} is not in slot {block.header.digest.slot}")
        if moment > self.clock_ms() + MAX_DRIFT_MS:
            raise BadTimestamp(f"timestamp {moment} is more than {MAX_DRIFT_MS} ms in the future")

    def _check_signatures(self, block: Block, ahead: SharedChecks | None) -> None:
        if ahead is not None:
            failed = ahead.first_failure()
        else:
            ancestry = Ancestry(block.header, self.chain.header)
            failed = first_failure(self.executive.signature_checks(block, ancestry.hash_at))
        if failed >= 0:
            raise BadSignature(f"extrinsic signature {failed} of block #{block.header.number} does not verify")


class CollectorPaused:
    """Pause Python's cyclic garbage collector while a block is imported.

    Importing a block allocates a few hundred thousand objects that all live until
    the block is committed. Left running, the collector starts every 700 net
    allocations, re-traverses every one of them each time and promotes them to the
    older generations, which soon triggers full collections of the whole heap, node
    caches included: measured at a quarter of import time. Reference counting
    frees the block's objects as usual while paused. The collector counts the
    allocations all the same, so it runs at the next allocation after the block.
    import_block drops the block's execution results (events, outcomes, the trie
    update: about a third of what survives the block) before it resumes the
    collector, which then traverses only what the block leaves behind (the caches'
    new entries); cycles are collected then as always.
    """

    def __enter__(self) -> None:
        self.resume = gc.isenabled()
        gc.disable()

    def __exit__(self, exc_type, exc, traceback) -> None:  # no *args: nothing is allocated after enable()
        if self.resume:
            gc.enable()


__all__ = ["ImportQueue", "ImportResult", "HeadChange", "expected_author", "IMPORTED", "KNOWN", "BAD",
           "MISSING_PARENT"]
