"""Block import: one function, top to bottom, the first failed check names itself.

    parent known -> number follows the parent -> builds on finality ->
    slot after the parent's and not in the future -> author is the slot's validator ->
    seal valid -> timestamp inherent matches the slot -> signatures valid ->
    execute on an overlay and compare every root -> commit atomically (best if longest)

Fork choice: the longest chain that contains the last finalized block.
"""

from __future__ import annotations

import gc
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable

from runtime import crypto
from runtime.errors import InvalidBlock
from runtime.executive import BlockExecution, Executive
from runtime.pallets import timestamp
from runtime.types import Block
from storage.chainstore import ChainStore

MAX_DRIFT_MS = 5_000  # how far in the future a block's timestamp may be


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
    hash: bytes
    number: int
    is_best: bool
    execution: BlockExecution
    import_ms: float


def expected_author(authorities: list[bytes], slot: int) -> bytes:
    """Aura: the validators take slots in turn."""
    return authorities[slot % len(authorities)]


class BlockImporter:
    def __init__(self, chain: ChainStore, executive: Executive, *, slot_duration_ms: int,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 verifier: Executor | None = None, finalize_imported: bool = False) -> None:
        self.chain = chain
        self.executive = executive
        self.slot_duration_ms = slot_duration_ms
        self.clock_ms = clock_ms
        self.verifier = verifier
        self.finalize_imported = finalize_imported

    def import_block(self, block: Block) -> ImportResult:
        started = time.perf_counter()
        chain, header = self.chain, block.header
        if chain.header(header.hash) is not None:
            raise AlreadyKnown(f"block #{header.number} {header.hash.hex()[:16]} is already imported")
        with CollectorPaused():
            parent_view, execution = self.check_block(block)
            is_best = header.number > chain.best_header().number
            chain.commit_block(block, parent_view, make_best=is_best, finalize=self.finalize_imported and is_best)
            result = ImportResult(header.hash, header.number, is_best, execution,
                                  (time.perf_counter() - started) * 1000)
        return result

    def check_block(self, block: Block, *, check_finality: bool = True):
        """Every check of import, without committing: (the parent's view holding the new state, execution).

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
        self._check_signatures(block, parent_view)
        execution = self.executive.execute_block(parent_view, block, signatures_checked=True)
        return parent_view, execution

    # --- the checks, in the order import_block makes them ---------------------

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

    def _check_slot_and_author(self, block: Block, parent, parent_view) -> None:
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

    def _check_signatures(self, block: Block, parent_view) -> None:
        checks = self.executive.signature_checks(parent_view, block)
        if not checks:
            return
        if self.verifier is None:
            results = [crypto.verify(*c) for c in checks]
        else:
            results = list(self.verifier.map(_verify_chunk, _chunks(checks, 256)))
            results = [ok for chunk in results for ok in chunk]
        if not all(results):
            raise BadSignature(f"extrinsic signature {results.index(False)} of block #{block.header.number} "
                               "does not verify")


class CollectorPaused:
    """Pause Python's cyclic garbage collector while a block is imported.

    Importing a block allocates a few hundred thousand objects that all live until
    the block is committed. Left running, the collector starts every 700 net
    allocations, re-traverses every one of them each time and promotes them to the
    older generations, which soon triggers full collections of the whole heap, node
    caches included: measured at a quarter of import time. Reference counting
    frees the block's objects as usual while paused. The collector counts the
    allocations all the same, so it runs at the next allocation after the block,
    by then (usually) without the block's execution results, which the caller
    has dropped; cycles are collected then as always.
    """

    def __enter__(self) -> None:
        self.resume = gc.isenabled()
        gc.disable()

    def __exit__(self, exc_type, exc, traceback) -> None:  # no *args: nothing is allocated after enable()
        if self.resume:
            gc.enable()


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _verify_chunk(chunk: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    return [crypto.verify(*c) for c in chunk]
