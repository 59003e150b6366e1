"""A fast path for the chain's most common extrinsic: a signed balances transfer that succeeds.

The general path (`Executive.apply_extrinsic`) checks the extrinsic (`_check_signed`:
length, room in the block, era, nonce, fee), writes the sender's account to pay
the fee and bump the nonce, opens a layer, dispatches `balances.transfer`, which
reads the sender again, checks, writes it again and writes the receiver, commits
the layer and records `ExtrinsicSuccess`. In the plain case -- a known era, the
right nonce, both accounts exist, the sender covers the fee and the amount and
stays at or above the existential deposit -- nothing can fail once the checks
pass, so this does the same in one step: the same checks in the same order, each
account read once and written once, the same events in the same order, the same
outcome and block counters.

Every other case (a check that fails, a new receiver, a transfer to oneself or
of nothing, a failing call, an account about to be reaped) returns None before
changing anything, and the general path runs from the start, so its errors (which
check, which code, which message) are the only ones there are. The one check this
path raises from is the era's, through the executive's own `check_era`, after the
same checks that come before it on the general path.
`tests/test_fastpath_transfer.py` holds this and the general path equal on random
states and transfers, failing ones included.
"""

from __future__ import annotations

from typing import Callable

from runtime import codec
from runtime.context import BlockContext
from runtime.pallets import payment
from runtime.pallets.balances import TRANSFER_WEIGHT, Transfer
from runtime.pallets.system import EXTRINSIC_BASE_WEIGHT, Account, AccountInfo, ExtrinsicSuccess
from runtime.state import _KEY_CACHE_SIZE, _MISSING, Overlay, make_room
from runtime.types import ApplyOutcome, Era, EventRecord, Extrinsic

# payment.compute_extrinsic_weight of both transfer calls: their declared weight is a constant
WEIGHT = EXTRINSIC_BASE_WEIGHT + TRANSFER_WEIGHT

CheckEra = Callable[[BlockContext, Era], tuple[bytes, int]]  # Executive._check_era: (birth hash, longevity)
IsValidSignature = Callable[[Extrinsic, bytes], bool]  # Executive.is_valid_signature


def apply_transfer(ctx: BlockContext, extrinsic: Extrinsic, check_era: CheckEra,
                   is_valid_signature: IsValidSignature | None) -> ApplyOutcome | None:
    """`balances.transfer` or `transfer_keep_alive`, checks included; None: take the general path.

    `is_valid_signature` None: the signature is known to be valid (checked before, or beside,
    execution)."""
    signed = extrinsic.signed
    params = ctx.params
    length = len(extrinsic.encoded)
    if (length > params.max_extrinsic_length or ctx.weight_used + WEIGHT > params.block_weight_limit
            or ctx.length_used + length > params.block_length_limit):
        return None
    era = signed.era
    if era.period == 0 and era.birth == 0:
        birth_hash = ctx.genesis_hash  # immortal: check_era's answer, without the call
    else:
        birth_hash = check_era(ctx, era)[0]  # raises as the general path would here
    state = ctx.state
    sender = signed.signer
    sender_key, info = _read_account(state, sender)
    if info is None or signed.nonce != info.nonce:
        return None
    fee = payment.compute_fee(params, length, WEIGHT, signed.tip)
    dest, value = extrinsic.call.args
    existential_deposit = params.existential_deposit
    after_fee = info.free - fee  # existential_deposit >= 1 (system.check_parameters): this also covers free < fee
    remaining = after_fee - value
    if after_fee < existential_deposit or remaining < 0 or sender == dest or value == 0:
        return None  # cannot pay (invalid); InsufficientBalance; no writes and one event: the general path
    if info.reserved == 0 and remaining < existential_deposit:
        return None  # transfer_keep_alive fails, transfer reaps the sender
    dest_key, target = _read_account(state, dest)
    if target is None:
        return None  # a new account: the existential deposit check and NewAccount
    if is_valid_signature is not None and not is_valid_signature(extrinsic, birth_hash):
        return None
    # Checks passed: from here on nothing fails.
    received = target.free + value
    sender_info = _new(AccountInfo, (info.nonce + 1, remaining, info.reserved))
    target_info = _new(AccountInfo, (target.nonce, received, target.reserved))
    if (state._journals or remaining >= _U64_LIMIT or received >= _U64_LIMIT or info.reserved >= _U64_LIMIT
            or target.reserved >= _U64_LIMIT):
        Account.insert(state, sender, sender_info)
        Account.insert(state, dest, target_info)
    else:  # Account.insert, inlined: an AccountInfo whose balances are below 2**64 is its own msgpack tree
        memo = _ACCOUNT_MEMO
        if len(memo) >= _MEMO_LIMIT - 2:
            make_room(memo)
        changes = state.changes
        changes[sender_key] = raw = _pack(sender_info)
        memo[raw] = sender_info
        changes[dest_key] = raw = _pack(target_info)
        memo[raw] = target_info
    ctx.fees_collected += fee
    ctx.weight_used += WEIGHT
    ctx.length_used += length
    index = ctx.extrinsic_index
    events = state.events
    events.append(_new(EventRecord, (index, Transfer(sender, dest, value))))
    events.append(_new(EventRecord, (index, _SUCCESS_EVENTS.get(fee) or _extrinsic_success(fee))))
    ctx.extrinsic_index = index + 1
    return _new(ApplyOutcome, (index, True, None, WEIGHT, fee))


# Account.get and Account.insert without their calls (a transfer makes two of each): what they do,
# for the plain case only; the test of this module holds the results equal.
_ACCOUNT_KEYS = Account._key_cache
_ACCOUNT_MEMO = Account._decode.memo
_MEMO_LIMIT = _KEY_CACHE_SIZE
_U64_LIMIT = 1 << 64
_pack = codec.pack


def _read_account(state: Overlay, who: bytes) -> tuple[bytes, AccountInfo | None]:
    """(storage key, account) as Account.get reads it, and the key for the write that follows."""
    storage_key = _ACCOUNT_KEYS.get(who) or Account.key_of(who)
    raw = state.changes.get(storage_key, _MISSING)
    if raw is _MISSING:
        raw = state.backend.get(storage_key)
    if raw is None:
        return storage_key, None
    info = _ACCOUNT_MEMO.get(raw)
    return storage_key, Account.decode_value(raw) if info is None else info


# A NamedTuple's own __new__ only packs its arguments into a tuple: tuple.__new__ does the
# same without one more Python call.
_new = tuple.__new__

# Events are immutable, and transfers of one size pay one fee: one ExtrinsicSuccess value
# per fee serves them all, instead of a new object per extrinsic.
_SUCCESS_EVENTS: dict[int, ExtrinsicSuccess] = {}


def _extrinsic_success(fee: int) -> ExtrinsicSuccess:
    event = _SUCCESS_EVENTS.get(fee)
    if event is None:
        if len(_SUCCESS_EVENTS) >= 4096:
            _SUCCESS_EVENTS.clear()
        event = _SUCCESS_EVENTS[fee] = ExtrinsicSuccess(WEIGHT, fee)
    return event
