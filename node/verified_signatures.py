"""Signatures this node has verified once, not verified again: by the pool's re-validation after each
block, and by the import of a block whose transactions this node's pool already admitted.

Only immortal transactions are remembered: what one signs (the call, nonce, tip, genesis hash and
runtime version) is all in its bytes, so its hash (blake2b of those bytes, signer and signature
included) stands for one verification whose answer cannot change. A mortal one signs its birth
block's hash, which a re-org can change, so it is always verified.

A block from a peer still goes through every stage of the import pipeline in order
(consensus/import_queue.py); at the signature stage, `BlockChecks` verifies the signatures it does not
know and answers, like the pipeline's own check, with the lowest index that fails. In gossip, a
transaction reaches a node's pool before the block that includes it, so the import verifies few.
"""

from __future__ import annotations

from typing import Callable

from consensus.signatures import Ancestry
from runtime import crypto
from runtime.executive import Executive
from runtime.types import Block, Extrinsic, Header

CAPACITY = 200_000  # hashes remembered; all are dropped at once past it (a re-verification is all it costs)


class VerifiedSignatures:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._hashes: set[bytes] = set()

    def is_known(self, extrinsic: Extrinsic) -> bool:
        signed = extrinsic.signed
        return signed is not None and signed.era.is_immortal and extrinsic.hash in self._hashes

    def remember(self, extrinsic: Extrinsic) -> None:
        """`extrinsic`'s signature verified (call only after it did)."""
        signed = extrinsic.signed
        if signed is not None and signed.era.is_immortal:
            if len(self._hashes) >= self.capacity:
                self._hashes.clear()
            self._hashes.add(extrinsic.hash)

    def block_checks(self, block: Block, executive: Executive,
                     header_of: Callable[[bytes], Header | None]) -> "BlockChecks":
        return BlockChecks(self, block, executive, header_of)


class BlockChecks:
    """One block's signature stage for ImportQueue.import_block (its `signatures` argument): like the
    pipeline's own check, made when the stage is reached, but skipping the signatures already known."""

    def __init__(self, known: VerifiedSignatures, block: Block, executive: Executive,
                 header_of: Callable[[bytes], Header | None]) -> None:
        self.known, self.block, self.executive, self.header_of = known, block, executive, header_of
        self.verified = 0  # how many this check verified (the rest were known)

    def first_failure(self) -> int:
        """Index (among the block's signed extrinsics) of the first signature that does not verify, or -1."""
        block = self.block
        checks = self.executive.signature_checks(block, Ancestry(block.header, self.header_of).hash_at)
        signed = [extrinsic for extrinsic in block.extrinsics if extrinsic.signed is not None]
        for index, (extrinsic, (public, message, signature)) in enumerate(zip(signed, checks)):
            if self.known.is_known(extrinsic):
                continue
            self.verified += 1
            if not crypto.verify(public, message, signature):
                return index
            self.known.remember(extrinsic)
        return -1

    def extrinsics_root(self) -> None:
        """Not computed here (SharedChecks' worker may): execution computes it, as in line."""
        return None
