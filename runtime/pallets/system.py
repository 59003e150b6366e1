"""system: accounts and nonces, block number and parent hashes, events, runtime parameters.

Every other pallet builds on this one: it owns `Account` (nonce and balances in
one record, as in FRAME), the event log of the block, and `dispatch_call`, the
one place where a call's origin is checked before its function runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from runtime import codec
from runtime.context import BlockContext
from runtime.dispatch import ORIGIN_INHERENT, ORIGIN_ROOT, ORIGIN_SIGNED, ROOT, Call, DispatchFailure, Pallet
from runtime.hashing import blake2b_256
from runtime.state import StorageMap, StorageValue
from runtime.types import (
    AccountId, Balance, BlockHash, BlockNumber, DispatchError, EventRecord, Moment, Nonce,
    PartsPerMillion, Weight,
)

pallet = Pallet(0, "system", "Accounts, nonces, block number, parent hashes, events and runtime parameters.")

# --- config -----------------------------------------------------------------

BLOCK_HASH_COUNT = 2400  # parent hashes kept in state: the longest mortal era
WEIGHT_FEE_UNIT = 1000   # weight_fee is charged per this many units of weight
EXTRINSIC_BASE_WEIGHT = 20_000  # signature check, nonce and fee handling
WORK_PER_WEIGHT = 1_000  # multiply-adds of useful work per unit of weight (about 0.1 us of one core)
# A new account's nonce is its position in the chain (see `new_account_nonce`): block number x NONCE_STRIDE
# + place in the block. A block holds fewer extrinsics than the stride (the executive refuses more).
NONCE_STRIDE = 1_000_000
MAX_BLOCK_EXTRINSICS = NONCE_STRIDE - 1


@dataclass(frozen=True)
class Parameters:
    """Runtime parameters: set at genesis, changed only by governance (sudo)."""

    existential_deposit: Balance
    base_fee: Balance
    byte_fee: Balance
    weight_fee: Balance  # per WEIGHT_FEE_UNIT of weight
    fee_burn_ppm: PartsPerMillion  # share of fees and tips burned; the rest goes to the block author
    block_weight_limit: Weight
    block_length_limit: codec.U32
    max_extrinsic_length: codec.U32
    unbonding_period: BlockNumber
    era_length: BlockNumber
    min_validator_stake: Balance
    max_validators: codec.U32
    minimum_period_ms: Moment  # the least time between two blocks' timestamps
    # the useful-work budget of one task's round: parameters x max updates x held-out subset (a task
    # asking more is refused); at 1M parameters, 256 updates and 256 examples a round is ~6.7e10 multiply-adds
    max_task_work: codec.U64


class AccountInfo(NamedTuple):
    """Nonce and balances of one account (a NamedTuple: built and encoded on every transfer)."""

    nonce: Nonce
    free: Balance
    reserved: Balance

    @property
    def total(self) -> int:
        return self.free + self.reserved


# --- storage ----------------------------------------------------------------

Account = StorageMap(pallet, "Account", AccountId, AccountInfo, None, "Nonce and balances of every live account.")
Number = StorageValue(pallet, "Number", BlockNumber, 0, "The current block number.")
ParentHash = StorageValue(pallet, "ParentHash", BlockHash, bytes(32), "Hash of the current block's parent.")
BlockHashes = StorageMap(pallet, "BlockHash", BlockNumber, BlockHash, None,
                         f"Hashes of the last {BLOCK_HASH_COUNT} blocks, for mortal transactions.")
Events = StorageValue(pallet, "Events", tuple[EventRecord, ...], (), "Events of the current block.")
Params = StorageValue(pallet, "Parameters", Parameters, None, "Runtime parameters.")
ChainId = StorageValue(pallet, "ChainId", codec.Text, "", "The chain spec's id: two chains never share a genesis.")

# --- events -----------------------------------------------------------------


@pallet.event(0)
class ExtrinsicSuccess:
    """An extrinsic ran to completion."""

    weight: Weight
    fee: Balance


@pallet.event(1)
class ExtrinsicFailed:
    """An extrinsic was included, paid its fee, and its call failed; its changes were reverted."""

    error: DispatchError
    weight: Weight
    fee: Balance


@pallet.event(2)
class NewAccount:
    """An account came into existence."""

    account: AccountId


@pallet.event(3)
class KilledAccount:
    """An account fell below the existential deposit and was removed."""

    account: AccountId


@pallet.event(4)
class ParametersChanged:
    """Governance changed the runtime parameters (effective from the next block)."""


@pallet.event(5)
class Remarked:
    """Someone wrote a remark on chain."""

    sender: AccountId
    remark_hash: BlockHash


# --- errors -----------------------------------------------------------------


@pallet.error(0)
class BadOrigin(DispatchFailure):
    """The call needs another origin (signed, root or inherent)."""


@pallet.error(1)
class InvalidParameters(DispatchFailure):
    """The new parameters are inconsistent."""


# --- genesis ----------------------------------------------------------------


def build_genesis(state, params: Parameters, chain_id: str) -> None:
    check_parameters(params)
    Params.put(state, params)
    ChainId.put(state, chain_id)


def check_parameters(params: Parameters) -> None:
    """Parameters that would stall or break the chain are refused."""
    problems = []
    if params.existential_deposit < 1:
        problems.append("existential_deposit must be at least 1")
    if params.fee_burn_ppm > 1_000_000:
        problems.append("fee_burn_ppm must be at most 1000000")
    if params.block_weight_limit < EXTRINSIC_BASE_WEIGHT * 10:
        problems.append("block_weight_limit is too small for any block")
    if params.max_extrinsic_length > params.block_length_limit:
        problems.append("max_extrinsic_length exceeds block_length_limit")
    if params.era_length < 1 or params.max_validators < 1:
        problems.append("era_length and max_validators must be at least 1")
    if params.block_weight_limit // EXTRINSIC_BASE_WEIGHT > MAX_BLOCK_EXTRINSICS // 2:
        # authors must never fill a block past the extrinsic count that new accounts' nonces rely on
        problems.append(f"block_weight_limit must be at most {MAX_BLOCK_EXTRINSICS // 2 * EXTRINSIC_BASE_WEIGHT}")
    if params.max_task_work // WORK_PER_WEIGHT > params.block_weight_limit // 2:
        problems.append("max_task_work must fit in half a block: max_task_work / 1000 <= block_weight_limit / 2")
    if problems:
        raise InvalidParameters("; ".join(problems))


# --- hooks ------------------------------------------------------------------


def on_initialize(ctx: BlockContext) -> None:
    state = ctx.state
    Number.put(state, ctx.number)
    ParentHash.put(state, ctx.parent_hash)
    if ctx.number > 0:
        BlockHashes.insert(state, ctx.number - 1, ctx.parent_hash)
    if ctx.number > BLOCK_HASH_COUNT:
        BlockHashes.remove(state, ctx.number - 1 - BLOCK_HASH_COUNT)
    Events.kill(state)


def on_finalize(ctx: BlockContext) -> None:
    if ctx.state.events:
        Events.put(ctx.state, tuple(ctx.state.events))


# --- functions other pallets use --------------------------------------------


def get_account(ctx: BlockContext, who: AccountId) -> AccountInfo | None:
    return Account.get(ctx.state, who)


def new_account_nonce(ctx: BlockContext) -> Nonce:
    """The nonce of an account coming into existence now (or again, after it was reaped): its position.

    Reaping forgets an account's nonce, so an account re-created at nonce 0 would accept again every
    transaction its earlier life signed, immortal ones forever and mortal ones until their era ends.
    Substrate's answer (polkadot-sdk `TypeWithDefault` nonce, default `System::block_number()`) starts
    a new account at the block number; that still lets a re-created account meet its own old nonces
    when its earlier life sent more than one transaction per block. Here the start is the position in
    the chain: `number * NONCE_STRIDE` before the block's extrinsics, `+ index + 1` during extrinsic
    `index`, `+ NONCE_STRIDE - 1` in the finalize hooks. Every nonce ever used was below the position
    where it was used (a transaction moves one nonce up by one, at most one per extrinsic, and a block
    holds at most MAX_BLOCK_EXTRINSICS), so a re-created account starts above every nonce of its
    earlier lives, and none of their transactions can be valid again, in any era.
    """
    base = ctx.number * NONCE_STRIDE
    if ctx.extrinsic_index is not None:
        return Nonce(base + ctx.extrinsic_index + 1)
    return Nonce(base + NONCE_STRIDE - 1 if ctx.finalizing else base)


def dispatch_call(ctx: BlockContext, origin, call: Call) -> None:
    """Run a call after checking that `origin` may make it. Raises DispatchFailure."""
    definition = call.definition
    needed = definition.origin
    if needed == ORIGIN_SIGNED and not isinstance(origin, bytes):
        raise BadOrigin("this call needs a signed origin")
    if needed == ORIGIN_ROOT and origin is not ROOT:
        raise BadOrigin("this call needs the root origin (sudo)")
    if needed == ORIGIN_INHERENT and origin is not None:
        raise BadOrigin("this call is an inherent: only the block author adds it, unsigned")
    definition.function(ctx, origin, *call.args)


def dispatch_error_of(failure: DispatchFailure) -> DispatchError:
    cls = type(failure)
    return DispatchError(cls.pallet_index, cls.error_index, cls.__name__)


# --- calls ------------------------------------------------------------------


@pallet.call(0, weight=lambda remark: 10_000 + len(remark))
def remark(ctx: BlockContext, origin: AccountId, remark: bytes) -> None:
    """Write a note on chain; only its hash is kept, in an event."""
    ctx.deposit_event(Remarked(origin, blake2b_256(remark)))


@pallet.call(1, weight=50_000, origin=ORIGIN_ROOT)
def set_parameters(ctx: BlockContext, origin, parameters: Parameters) -> None:
    """Replace the runtime parameters (root only); they apply from the next block."""
    check_parameters(parameters)
    Params.put(ctx.state, parameters)
    ctx.deposit_event(ParametersChanged())
