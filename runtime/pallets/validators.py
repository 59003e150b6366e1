"""validators: staking, the validator set, unbonding and slashing.

An account bonds stake (reserved balance) and declares its intent to validate.
Every `era_length` blocks the set is recomputed: the `max_validators` intending
accounts with the most active stake (at least `min_validator_stake`), ties by
account id. Unbonded stake stays reserved for `unbonding_period` blocks, so it can
still be slashed for misbehaviour seen in that time, and is then withdrawable.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.context import BlockContext
from runtime.dispatch import DispatchFailure, Pallet
from runtime.pallets import balances
from runtime.pallets.system import Account, AccountInfo
from runtime.state import StorageMap, StorageValue
from runtime.types import AccountId, Balance, BlockNumber, PartsPerMillion

pallet = Pallet(4, "validators", "Staking, the validator set, unbonding and slashing.")

# --- config -----------------------------------------------------------------

MAX_UNLOCKING_CHUNKS = 32
MAX_CANDIDATES = 1000
STAKING_WEIGHT = 80_000


@dataclass(frozen=True)
class UnlockChunk:
    value: Balance
    unlock_at: BlockNumber


@dataclass(frozen=True)
class Ledger:
    active: Balance
    unlocking: tuple[UnlockChunk, ...]


@dataclass(frozen=True)
class Validator:
    account: AccountId
    stake: Balance


@dataclass(frozen=True)
class SetRecord:
    """One validator set as it was: who, with what stake, and the blocks it authored and finalized.

    Set `n` (the era number) authors blocks `first_block` .. `last_block`; the block
    that elects the next set is its last (finality's set-change block). Kept until
    the evidence window after `last_block` closes, so old votes can still be judged."""

    validators: tuple[Validator, ...]
    first_block: BlockNumber
    last_block: BlockNumber | None  # None while in force


# --- storage ----------------------------------------------------------------

Validators = StorageValue(pallet, "Validators", tuple[Validator, ...], (), "The current validator set, in authoring order.")
Ledgers = StorageMap(pallet, "Ledger", AccountId, Ledger, None, "Bonded stake of each staker.")
Candidates = StorageValue(pallet, "Candidates", tuple[AccountId, ...], (), "Stakers that want to validate, in order of intent.")
CurrentEra = StorageValue(pallet, "CurrentEra", BlockNumber, 0, "Number of validator set changes so far.")
SetHistory = StorageMap(pallet, "SetHistory", BlockNumber, SetRecord, None,
                        "Recent validator sets by set id (the era), for judging evidence of old offences.")
OldestSet = StorageValue(pallet, "OldestSet", BlockNumber, 0, "The oldest set id still in SetHistory.")

# --- events -----------------------------------------------------------------


@pallet.event(0)
class Bonded:
    """Stake was bonded."""

    who: AccountId
    amount: Balance


@pallet.event(1)
class Unbonded:
    """Stake started unbonding; it can be withdrawn from block `unlock_at`."""

    who: AccountId
    amount: Balance
    unlock_at: BlockNumber


@pallet.event(2)
class Withdrawn:
    """Unbonded stake was returned to free balance."""

    who: AccountId
    amount: Balance


@pallet.event(3)
class IntentionDeclared:
    """A staker wants to validate from the next era."""

    who: AccountId


@pallet.event(4)
class Chilled:
    """A staker no longer wants to validate."""

    who: AccountId


@pallet.event(5)
class NewValidatorSet:
    """A new era began with this many validators."""

    era: BlockNumber
    count: BlockNumber


@pallet.event(6)
class Slashed:
    """A staker lost this much stake for misbehaviour."""

    who: AccountId
    amount: Balance


# --- errors -----------------------------------------------------------------


@pallet.error(0)
class NotBonded(DispatchFailure):
    """The account has no bonded stake."""


@pallet.error(1)
class InsufficientBond(DispatchFailure):
    """Active stake is below the minimum validator stake."""


@pallet.error(2)
class NothingToWithdraw(DispatchFailure):
    """No unbonding stake has reached its unlock block."""


@pallet.error(3)
class TooManyUnlockingChunks(DispatchFailure):
    """Too many unbonding requests are pending; withdraw some first."""


@pallet.error(4)
class ZeroAmount(DispatchFailure):
    """The amount must be greater than zero."""


@pallet.error(5)
class TooManyCandidates(DispatchFailure):
    """The candidate list is full."""


# --- genesis ----------------------------------------------------------------


def build_genesis(state, validators: list[tuple[bytes, int]]) -> None:
    for who, stake in validators:
        info = Account.get(state, who)
        if info is None or info.free < stake:
            raise ValueError("a genesis validator's stake must be covered by its endowment")
        Account.insert(state, who, AccountInfo(info.nonce, info.free - stake, info.reserved + stake))
        Ledgers.insert(state, who, Ledger(stake, ()))
    Candidates.put(state, tuple(who for who, _ in validators))
    Validators.put(state, tuple(Validator(who, stake) for who, stake in validators))
    SetHistory.insert(state, 0, SetRecord(tuple(Validator(who, stake) for who, stake in validators), 1, None))


# --- hooks ------------------------------------------------------------------


def on_finalize(ctx: BlockContext) -> None:
    if ctx.number % ctx.params.era_length == 0:
        start_new_era(ctx)


def start_new_era(ctx: BlockContext) -> None:
    """Elect the next set from the intentions; an empty election keeps the current set."""
    elected = []
    for who in Candidates.get(ctx.state):
        ledger = Ledgers.get(ctx.state, who)
        if ledger and ledger.active >= ctx.params.min_validator_stake:
            elected.append(Validator(who, ledger.active))
    elected.sort(key=lambda v: (-v.stake, v.account))
    elected = elected[: ctx.params.max_validators]
    if not elected:
        return
    era = CurrentEra.get(ctx.state) + 1
    CurrentEra.put(ctx.state, era)
    Validators.put(ctx.state, tuple(elected))
    previous = SetHistory.get(ctx.state, era - 1)
    if previous is not None:
        SetHistory.insert(ctx.state, era - 1, SetRecord(previous.validators, previous.first_block, ctx.number))
    SetHistory.insert(ctx.state, era, SetRecord(tuple(elected), ctx.number + 1, None))
    ctx.deposit_event(NewValidatorSet(era, len(elected)))


def slash(ctx: BlockContext, who: AccountId, fraction_ppm: PartsPerMillion) -> int:
    """Burn `fraction_ppm` of a staker's bonded stake (active first, then unlocking). Returns the amount."""
    taken = take_bond(ctx, who, fraction_ppm)
    if taken:
        balances.burn_from_issuance(ctx, taken)
        ctx.deposit_event(balances.Burned(who, taken))
    return taken


def take_bond(ctx: BlockContext, who: AccountId, fraction_ppm: PartsPerMillion) -> int:
    """Remove `fraction_ppm` of a staker's bonded stake (active first, then unlocking) from its ledger and
    reserved balance, and return the amount: the caller burns it or pays it out (issuance is its business)."""
    ledger = Ledgers.get(ctx.state, who)
    if ledger is None:
        return 0
    total = ledger.active + sum(c.value for c in ledger.unlocking)
    due = total * fraction_ppm // 1_000_000
    from_active = min(due, ledger.active)
    rest = due - from_active
    unlocking = []
    for chunk in ledger.unlocking:
        taken = min(rest, chunk.value)
        rest -= taken
        if chunk.value - taken:
            unlocking.append(UnlockChunk(chunk.value - taken, chunk.unlock_at))
    Ledgers.insert(ctx.state, who, Ledger(ledger.active - from_active, tuple(unlocking)))
    info = Account.get(ctx.state, who)
    taken = min(due, info.reserved) if info is not None else 0
    if taken:
        balances.write_account(ctx, who, AccountInfo(info.nonce, info.free, info.reserved - taken))
    ctx.deposit_event(Slashed(who, taken))
    return taken


def set_record(state, set_id: int) -> SetRecord | None:
    """The validator set `set_id`, if it is still kept."""
    return SetHistory.get(state, set_id)


def set_for_block(state, number: int) -> tuple[int, SetRecord] | None:
    """The kept set that authored block `number` (and voted on it), with its id."""
    for set_id in range(CurrentEra.get(state), OldestSet.get(state) - 1, -1):
        record = SetHistory.get(state, set_id)
        if record is not None and record.first_block <= number and (
                record.last_block is None or number <= record.last_block):
            return set_id, record
    return None


def forget_sets_before(state, set_id: int) -> None:
    """Drop the records of sets older than `set_id` (their evidence window has closed)."""
    for old in range(OldestSet.get(state), set_id):
        SetHistory.remove(state, old)
    OldestSet.put(state, max(set_id, OldestSet.get(state)))


# --- calls ------------------------------------------------------------------


@pallet.call(0, weight=STAKING_WEIGHT)
def bond(ctx: BlockContext, origin: AccountId, value: Balance) -> None:
    """Bond `value` of free balance as stake (reserved until unbonded and withdrawn)."""
    if value == 0:
        raise ZeroAmount()
    balances.reserve(ctx, origin, value)
    ledger = Ledgers.get(ctx.state, origin) or Ledger(0, ())
    Ledgers.insert(ctx.state, origin, Ledger(ledger.active + value, ledger.unlocking))
    ctx.deposit_event(Bonded(origin, value))


@pallet.call(1, weight=STAKING_WEIGHT)
def unbond(ctx: BlockContext, origin: AccountId, value: Balance) -> None:
    """Start unbonding `value` of active stake; it unlocks after the unbonding period."""
    ledger = Ledgers.get(ctx.state, origin)
    if ledger is None:
        raise NotBonded()
    if value == 0:
        raise ZeroAmount()
    if len(ledger.unlocking) >= MAX_UNLOCKING_CHUNKS:
        raise TooManyUnlockingChunks()
    amount = min(value, ledger.active)
    unlock_at = ctx.number + ctx.params.unbonding_period
    Ledgers.insert(ctx.state, origin, Ledger(ledger.active - amount, ledger.unlocking + (UnlockChunk(amount, unlock_at),)))
    ctx.deposit_event(Unbonded(origin, amount, unlock_at))


@pallet.call(2, weight=STAKING_WEIGHT)
def withdraw_unbonded(ctx: BlockContext, origin: AccountId) -> None:
    """Return every unbonding chunk that has reached its unlock block to free balance."""
    ledger = Ledgers.get(ctx.state, origin)
    if ledger is None:
        raise NotBonded()
    ready = sum(c.value for c in ledger.unlocking if c.unlock_at <= ctx.number)
    if ready == 0:
        raise NothingToWithdraw()
    remaining = tuple(c for c in ledger.unlocking if c.unlock_at > ctx.number)
    if ledger.active == 0 and not remaining:
        Ledgers.remove(ctx.state, origin)
    else:
        Ledgers.insert(ctx.state, origin, Ledger(ledger.active, remaining))
    balances.unreserve(ctx, origin, ready)
    ctx.deposit_event(Withdrawn(origin, ready))


@pallet.call(3, weight=STAKING_WEIGHT)
def validate(ctx: BlockContext, origin: AccountId) -> None:
    """Declare the intent to validate from the next era (needs the minimum stake)."""
    ledger = Ledgers.get(ctx.state, origin)
    if ledger is None:
        raise NotBonded()
    if ledger.active < ctx.params.min_validator_stake:
        raise InsufficientBond(f"active stake {ledger.active} is below {ctx.params.min_validator_stake}")
    candidates = Candidates.get(ctx.state)
    if origin not in candidates:
        if len(candidates) >= MAX_CANDIDATES:
            raise TooManyCandidates()
        Candidates.put(ctx.state, candidates + (origin,))
    ctx.deposit_event(IntentionDeclared(origin))


@pallet.call(4, weight=STAKING_WEIGHT)
def chill(ctx: BlockContext, origin: AccountId) -> None:
    """Withdraw the intent to validate; takes effect at the next era."""
    candidates = Candidates.get(ctx.state)
    if origin in candidates:
        Candidates.put(ctx.state, tuple(c for c in candidates if c != origin))
    ctx.deposit_event(Chilled(origin))
