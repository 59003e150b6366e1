"""Building and sealing a block (the author's side of a slot).

The author executes inherents, then transactions in the order given (the pool's
ready order) until the block is full, finalizes, computes the roots and seals the
header with its key over the pre-seal hash. Invalid transactions are skipped and
reported so the pool can drop them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterable

from runtime.crypto import Keypair
from runtime.executive import Executive
from runtime.pallets import randomness
from runtime.types import (
    ApplyOutcome, Block, BlockHash, BlockNumber, Digest, Extrinsic, Hash, Header, Seal, compute_extrinsics_root,
)
from runtime.validity import InvalidReason, InvalidTransaction
from runtime.hashing import ZERO_HASH
from storage.chainstore import ChainStore
from storage.state_view import ExecutedState

# After this many transactions in a row that do not fit, the block is considered full.
FULL_BLOCK_MISSES = 8


@dataclass
class BuiltBlock:
    block: Block
    state: ExecutedState  # the computed state, ready for commit_block
    outcomes: list[ApplyOutcome]
    invalid: list[tuple[Extrinsic, InvalidTransaction]]  # drop these from the pool
    postponed: list[Extrinsic]  # valid but did not fit, or not yet (future nonce)


def build_block(chain: ChainStore, executive: Executive, parent_hash: bytes, *, author: Keypair, slot: int,
                timestamp_ms: int, transactions: Iterable[Extrinsic], signatures_checked: bool = True,
                should_stop: Callable[[], bool] | None = None, useful_work: tuple = ()) -> BuiltBlock:
    """Build a block on `parent_hash`. `signatures_checked` says the pool already verified them;
    `useful_work` holds the author's training.RoundReport measurements due in this block."""
    parent = chain.header(parent_hash)
    if parent is None:
        raise ValueError(f"unknown parent {parent_hash.hex()}")
    view = chain.state_view(parent_hash)
    number = BlockNumber(parent.number + 1)
    draft = Header(BlockHash(parent_hash), number, Hash(ZERO_HASH), Hash(ZERO_HASH), Digest(slot, author.public, Seal(b"")))
    ctx = executive.initialize_block(view, draft)
    included: list[Extrinsic] = []
    outcomes: list[ApplyOutcome] = []
    slot_signature = randomness.slot_signature(author, executive.genesis_hash, slot)
    for inherent in executive.inherent_extrinsics(timestamp_ms, useful_work, slot_signature=slot_signature):
        outcomes.append(executive.apply_extrinsic(ctx, inherent))
        included.append(inherent)
    invalid: list[tuple[Extrinsic, InvalidTransaction]] = []
    postponed: list[Extrinsic] = []
    misses = 0
    for transaction in transactions:
        if misses >= FULL_BLOCK_MISSES or (should_stop is not None and should_stop()):
            postponed.append(transaction)
            continue
        try:
            outcomes.append(executive.apply_extrinsic(ctx, transaction, signature_checked=signatures_checked))
        except InvalidTransaction as exc:
            if exc.reason is InvalidReason.EXHAUSTS_RESOURCES and len(transaction.encoded) <= ctx.params.max_extrinsic_length:
                misses += 1
                postponed.append(transaction)
            elif exc.reason is InvalidReason.FUTURE:
                postponed.append(transaction)
            else:
                invalid.append((transaction, exc))
            continue
        misses = 0
        included.append(transaction)
    executive.finalize_block(ctx)
    state = view.compute_state(ctx.state.changes)
    unsealed = dataclasses.replace(draft, state_root=Hash(state.root),
                                   extrinsics_root=compute_extrinsics_root([x.hash for x in included]))
    seal = Seal(author.sign(unsealed.pre_seal_hash()))
    header = dataclasses.replace(unsealed, digest=Digest(slot, author.public, seal))
    return BuiltBlock(Block(header, tuple(included)), state, outcomes, invalid, postponed)
