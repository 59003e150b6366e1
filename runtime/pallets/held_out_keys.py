"""held_out_keys: a task's held-out key reaches validators elected after the task was made.

The task creator seals the key to the validators of the moment (training's
`TaskConfig.sealed_keys`). At each era change a validator of the new set that
holds a task's key seals it to each validator that lacks one, with
`reseal_held_out_key`; the key itself never goes on chain. The runtime cannot
open a sealed box, so it records who sealed what; the newcomer checks off chain
that the key opens the ciphertext whose hash the task records, to the plaintext
whose hash the creator declared (`declare_held_out_plaintext`, so a key cannot
open the ciphertext to other data), and otherwise waits for another sealer:
up to MAX_SEALERS validators may seal to one newcomer.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime import codec
from runtime.context import BlockContext
from runtime.dispatch import DispatchFailure, Pallet
from runtime.pallets import training, validators
from runtime.state import StorageMap
from runtime.types import AccountId, BlockNumber, Hash

pallet = Pallet(10, "held_out_keys", "Held-out keys re-sealed to validators elected after a task was created.")

# --- config -----------------------------------------------------------------

MAX_SEALERS = 4  # sealed keys kept per (task, validator): a bad one does not lock a newcomer out
MAX_SEALED_BYTES = 256
RESEAL_WEIGHT = 60_000


@dataclass(frozen=True)
class ResealedKey:
    sealer: AccountId
    sealed: bytes  # the task's key in a SealedBox to the validator's Curve25519 key
    at: BlockNumber


# --- storage ----------------------------------------------------------------

Resealed = StorageMap(pallet, "Resealed", tuple[codec.U64, AccountId], tuple[ResealedKey, ...], (),
                      "Keys re-sealed to a validator for a task, by (task, validator).")
PlaintextHash = StorageMap(pallet, "PlaintextHash", codec.U64, Hash, None,
                           "blake2b-256 of a task's held-out plaintext, declared by its creator.")

# --- events -----------------------------------------------------------------


@pallet.event(0)
class KeyResealed:
    """A validator sealed a task's held-out key to another validator."""

    task: codec.U64
    sealer: AccountId
    validator: AccountId


@pallet.event(1)
class PlaintextDeclared:
    """A task's creator recorded the hash of its held-out plaintext."""

    task: codec.U64
    plaintext_hash: Hash


# --- errors -----------------------------------------------------------------


@pallet.error(0)
class UnknownTask(DispatchFailure):
    """No active task has this id."""


@pallet.error(1)
class NotAValidator(DispatchFailure):
    """The sealer and the recipient must both be validators of the current set."""


@pallet.error(2)
class SealerHasNoKey(DispatchFailure):
    """The sealer holds no key for this task (none was sealed to it)."""


@pallet.error(3)
class AlreadyHoldsKey(DispatchFailure):
    """The recipient had the key sealed to it by the task creator, or by this sealer already."""


@pallet.error(4)
class TooManySealers(DispatchFailure):
    """Enough validators sealed this key to the recipient already."""


@pallet.error(5)
class BadSealedKey(DispatchFailure):
    """A sealed key is 1 to 256 bytes."""


@pallet.error(6)
class NotTheCreator(DispatchFailure):
    """Only the task's creator declares its plaintext hash, once."""


# --- functions other parts use ---------------------------------------------------


def sealed_keys_for(state, task_id: int, validator: bytes) -> list[bytes]:
    """Every sealed key a validator may try for a task: the creator's first, then re-sealed ones."""
    task = training.Tasks.get(state, task_id)
    found = [bytes(k.sealed) for k in task.config.sealed_keys if bytes(k.validator) == validator] if task else []
    return found + [bytes(r.sealed) for r in Resealed.get(state, (task_id, AccountId(validator)))]


def _holds_key(state, task: training.Task, task_id: int, who: bytes) -> bool:
    return any(bytes(k.validator) == who for k in task.config.sealed_keys) or bool(
        Resealed.get(state, (task_id, AccountId(who))))


def _active_task(ctx: BlockContext, task_id: int) -> training.Task:
    task = training.Tasks.get(ctx.state, task_id)
    if task is None or task.status != training.STATUS_ACTIVE:
        raise UnknownTask(f"no active task {task_id}")
    return task


# --- calls ------------------------------------------------------------------


@pallet.call(0, weight=RESEAL_WEIGHT)
def reseal_held_out_key(ctx: BlockContext, origin: AccountId, task: codec.U64, validator: AccountId,
                        sealed: bytes) -> None:
    """Seal a task's held-out key, which the sender holds, to a validator of the current set that lacks it."""
    current = _active_task(ctx, task)
    if not 0 < len(sealed) <= MAX_SEALED_BYTES:
        raise BadSealedKey()
    members = {v.account for v in validators.Validators.get(ctx.state)}
    if origin not in members or validator not in members:
        raise NotAValidator()
    if not _holds_key(ctx.state, current, task, origin):
        raise SealerHasNoKey()
    existing = Resealed.get(ctx.state, (task, validator))
    if any(bytes(k.validator) == validator for k in current.config.sealed_keys) or any(
            r.sealer == origin for r in existing):
        raise AlreadyHoldsKey()
    if len(existing) >= MAX_SEALERS:
        raise TooManySealers()
    Resealed.insert(ctx.state, (task, validator), existing + (ResealedKey(origin, bytes(sealed), ctx.number),))
    ctx.deposit_event(KeyResealed(task, origin, validator))


@pallet.call(1, weight=RESEAL_WEIGHT)
def declare_held_out_plaintext(ctx: BlockContext, origin: AccountId, task: codec.U64, plaintext_hash: Hash) -> None:
    """Record the hash of a task's held-out plaintext (its creator, once), so every key is checked against it."""
    current = _active_task(ctx, task)
    if current.creator != origin or PlaintextHash.contains(ctx.state, task):
        raise NotTheCreator()
    PlaintextHash.insert(ctx.state, task, plaintext_hash)
    ctx.deposit_event(PlaintextDeclared(task, plaintext_hash))
