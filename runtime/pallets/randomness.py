"""randomness: an accumulator of the block authors' slot signatures, the seed of every useful-work round.

Each block's author adds, as an inherent, its Ed25519 signature over

    blake2b-256(DOMAIN ++ genesis hash ++ slot as u64 big-endian)

Ed25519 signatures are deterministic (RFC 8032): an author has exactly one valid
signature for its slot, known to nobody else before the block is published. The
runtime checks it against the block's author (header digest) and folds it in:

    accumulator' = blake2b-256(accumulator ++ signature)

and keeps the accumulator after each of the last HISTORY_BLOCKS blocks. A round's
held-out subset seed is the accumulator after the first block past its reveal
window (training_types.round_windows): unknown while reveals are open, and an
author cannot steer it: it can only withhold its block (and lose its slot), after
which the next slot's author signs instead. Every block must carry the inherent,
or an author could choose between two seeds by leaving it out.

What remains: an author that also holds the slot before it could learn the seed
one block early (both are its own signatures) -- it still cannot change it, and
with reveals closed by then it gains nothing to act on. An author may leave its
slot empty and let the next author sign instead: one alternative seed per slot
given up, the only choice there is. A chain with one validator (--dev) holds every
slot, so its validator can try one seed per slot it skips; with more validators a
skipped slot hands the seed to someone else.
"""

from __future__ import annotations

from runtime import crypto
from runtime.context import BlockContext
from runtime.dispatch import ORIGIN_INHERENT, DispatchFailure, Pallet
from runtime.hashing import blake2b_256
from runtime.pallets.system import BLOCK_HASH_COUNT
from runtime.state import StorageMap, StorageValue
from runtime.types import BlockNumber, Hash, Signature

pallet = Pallet(8, "randomness", "Block authors' slot signatures folded into a seed nobody can choose.")

# --- config -----------------------------------------------------------------

DOMAIN = b"gradchain/randomness/slot"
HISTORY_BLOCKS = BLOCK_HASH_COUNT
NOTE_WEIGHT = 30_000  # one signature check

# --- storage ----------------------------------------------------------------

Accumulator = StorageValue(pallet, "Accumulator", Hash, bytes(32), "Every author's slot signature so far, folded.")
History = StorageMap(pallet, "History", BlockNumber, Hash, None,
                     f"The accumulator after each of the last {HISTORY_BLOCKS} blocks (rounds' seeds).")
DidNote = StorageValue(pallet, "DidNote", bool, False, "Whether the current block noted its slot signature.")

# --- errors -----------------------------------------------------------------


@pallet.error(0)
class BadSlotSignature(DispatchFailure):
    """The slot signature is not the block author's over this chain and slot."""


@pallet.error(1)
class AlreadyNoted(DispatchFailure):
    """The block already noted its slot signature."""


@pallet.error(2)
class NotNoted(DispatchFailure):
    """The block did not carry its author's slot signature."""


# --- functions other code uses --------------------------------------------


def slot_message(genesis_hash: bytes, slot: int) -> bytes:
    """What a block's author signs for the randomness of its slot."""
    return blake2b_256(DOMAIN + bytes(genesis_hash) + slot.to_bytes(8, "big"))


def slot_signature(keypair: crypto.Keypair, genesis_hash: bytes, slot: int) -> bytes:
    """The author's side: the one signature its slot admits."""
    return keypair.sign(slot_message(genesis_hash, slot))


# --- hooks ------------------------------------------------------------------


def on_finalize(ctx: BlockContext) -> None:
    if not DidNote.get(ctx.state):
        raise NotNoted("every block must carry a randomness.note_slot_signature inherent")
    DidNote.kill(ctx.state)
    History.insert(ctx.state, ctx.number, Accumulator.get(ctx.state))
    if ctx.number >= HISTORY_BLOCKS:
        History.remove(ctx.state, ctx.number - HISTORY_BLOCKS)


# --- calls ------------------------------------------------------------------


@pallet.call(0, weight=NOTE_WEIGHT, origin=ORIGIN_INHERENT)
def note_slot_signature(ctx: BlockContext, origin: None, signature: Signature) -> None:
    """Fold the block author's signature over its slot into the accumulator (inherent, once per block)."""
    if DidNote.get(ctx.state):
        raise AlreadyNoted()
    if not crypto.verify(ctx.author, slot_message(ctx.genesis_hash, ctx.slot), signature):
        raise BadSlotSignature(f"not the signature of block {ctx.number}'s author over slot {ctx.slot}")
    Accumulator.put(ctx.state, blake2b_256(Accumulator.get(ctx.state) + bytes(signature)))
    DidNote.put(ctx.state, True)
